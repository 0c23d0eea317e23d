"""Devices and persistence: where the tensors live, and how they travel.

:class:`DevicesMixin` resolves ``device="auto"`` to a concrete device while
skorch builds and moves components, writes parameter files atomically and
pickles a learner fitted on CUDA so that it unpickles on a CPU.
"""

import contextlib
import os
import tempfile
import warnings

import torch
from skorch.exceptions import DeviceWarning

from .._validation import resolve_device


class DevicesMixin:
    """Device resolution, atomic ``save_params`` and device-portable pickling."""

    @contextlib.contextmanager
    def _on_device(self):
        """Let skorch see the concrete device while it moves components."""
        requested = self.device
        self.device_ = resolve_device(requested)
        self.device = self.device_
        try:
            yield
        finally:
            self.device = requested

    def _initialize_module(self, reason=None):
        with self._on_device():
            return super()._initialize_module(reason=reason)

    def _initialize_criterion(self, reason=None):
        with self._on_device():
            return super()._initialize_criterion(reason=reason)

    def load_params(self, *args, **kwargs):
        with self._on_device():
            return super().load_params(*args, **kwargs)

    def save_params(self, f_params=None, f_optimizer=None, f_criterion=None, f_history=None,
                    use_safetensors=False, **kwargs):
        """skorch's ``save_params``, with every file written atomically.

        Each file is written under a temporary name in its own folder, then
        renamed over the target, so an interrupted write (``Checkpoint``
        during a long fit) never leaves a truncated file behind: the target
        holds the previous complete file or the new one.

        Parameters
        ----------
        f_params, f_optimizer, f_criterion, f_history : str, path, file-like or None
            As in :meth:`skorch.net.NeuralNet.save_params`.
        use_safetensors : bool, default=False
            As in skorch.
        **kwargs : dict
            ``f_<module>`` targets, as in skorch.
        """
        targets = dict(f_params=f_params, f_optimizer=f_optimizer, f_criterion=f_criterion,
                       f_history=f_history, **kwargs)
        renames = []
        for key, target in targets.items():
            if isinstance(target, (str, os.PathLike)):
                final = os.fspath(target)
                handle, temporary = tempfile.mkstemp(
                    dir=os.path.dirname(final) or ".", prefix=f".{os.path.basename(final)}.", suffix=".tmp")
                os.close(handle)
                targets[key] = temporary
                renames.append((temporary, final))
        try:
            super().save_params(use_safetensors=use_safetensors, **targets)
            for temporary, final in renames:
                os.replace(temporary, final)
        finally:
            for temporary, _ in renames:
                if os.path.exists(temporary):
                    os.remove(temporary)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_adapt_lock", None)  # each copy makes its own
        # skorch maps tensors from state["device"]: the device they are on.
        state["device"] = state.get("device_", "cpu")
        state["_requested_device"] = self.device
        return state

    def __setstate__(self, state):
        requested = state.pop("_requested_device", state["device"])
        fitted_on = state["device"]
        fitted = "device_" in state
        with warnings.catch_warnings():
            if requested == "auto":  # the CPU is what "auto" asks for here: no news
                warnings.simplefilter("ignore", DeviceWarning)
            super().__setstate__(state)  # maps CUDA tensors to the CPU when needed
        loaded_on = str(self.device)  # where the tensors are now
        if fitted:
            self.device_ = loaded_on
        if requested != "auto" and loaded_on != str(fitted_on):
            requested = loaded_on  # fitted on CUDA, loaded where there is none
        self.device = requested

    def _tensor(self, values, dtype=torch.float32):
        return torch.as_tensor(values, dtype=dtype, device=self.device_)
