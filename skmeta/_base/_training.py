"""Meta-training: skorch's loop, fed with episodes.

:class:`TrainingMixin` keeps skorch's layering (``fit → partial_fit →
fit_loop → run_single_epoch → train_step → train_step_single``) and fills
each step for episodes: a failed call leaves the estimator as it was
(``_all_or_nothing``), torch's randomness comes from ``random_state``,
batches are meta-batches of episodes, and a non-finite loss, gradient or
weight raises a :class:`~skmeta.exceptions.DivergenceError`. The algorithm
supplies ``_episode_loss(batch, training)``.
"""

import contextlib
import copy
import dataclasses
import warnings

import numpy as np
import torch
from sklearn.base import _fit_context

from ..exceptions import DivergenceError
from ..tasks import EpisodeLoader
from ..utils._stacklevel import external_stacklevel
from ._parameters import _refuse_fit_params, _refuse_plain_scorer
from ._tasks import _CheckedTasks


class TrainingMixin:
    """fit, partial_fit and the steps of skorch's training loop, for episodes."""

    @contextlib.contextmanager
    def _seeded_torch(self):
        """Draw torch's randomness in training (dropout, ...) from ``random_state``.

        Each call seeds torch from this estimator's own stream, which goes on
        from one call to the next (warm_start, partial_fit); torch's global
        random state is left as it was.
        """
        seed = int(self._training_rng.integers(np.iinfo(np.int64).max))
        device = torch.device(self.device_)
        cuda = []
        if device.type == "cuda":
            cuda = [device.index if device.index is not None else torch.cuda.current_device()]
        with torch.random.fork_rng(devices=cuda):
            torch.random.default_generator.manual_seed(seed)
            for index in cuda:
                with torch.cuda.device(index):
                    torch.cuda.manual_seed(seed)
            yield

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, **fit_params):
        """Meta-train on a collection of tasks.

        Parameters
        ----------
        X : TaskCollection, list of Task or of (X, y) pairs, or DataFrame
            The tasks. A DataFrame is long format: one row per example, with
            the column named by ``task_column`` saying which task it is of.
        y : array-like of shape (n_rows,), default=None
            Targets, for long format only.
        **fit_params : dict
            Passed on to skorch's ``fit``.

        Returns
        -------
        self : object
            The meta-trained estimator.
        """
        _refuse_plain_scorer(self)
        _refuse_fit_params(self, "fit", fit_params)
        with self._all_or_nothing():
            # With warm_start, a fitted model goes on: the tasks must match it.
            tasks = self._prepare_fit(X, y, reset=not (self.warm_start and self.initialized_))
            super().fit(tasks, None)
            self._end_stage(self.__dict__.pop("_stage_tasks"))
            return self

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        """Continue meta-training on tasks without re-initializing the backbone.

        Parameters
        ----------
        X, y : see :meth:`fit`.
        classes : None
            Unused; present for sklearn's API.
        **fit_params : dict
            Passed on to skorch's ``partial_fit``.

        Returns
        -------
        self : object
        """
        fit_params.pop("_routing_method", None)  # skorch's fit says who called
        _refuse_fit_params(self, "partial_fit", fit_params)
        if classes is not None:
            raise TypeError(
                f"{type(self).__name__}.partial_fit takes no classes: each episode's classes "
                "come from its task. Leave classes=None."
            )
        with self._all_or_nothing():
            if isinstance(X, _CheckedTasks):  # called by fit, which ends the stage
                return super().partial_fit(X, None)
            self._validate_params()
            X = self._prepare_fit(X, y, reset=not self.initialized_)
            super().partial_fit(X, None)
            self._end_stage(self.__dict__.pop("_stage_tasks"))
            return self

    @contextlib.contextmanager
    def _all_or_nothing(self):
        """Leave the estimator exactly as it was if the body raises.

        Fitted attributes, the history, the random streams and the weights of
        modules and optimizers are restored; for a first fit, the estimator
        is left unfitted.
        """
        if self.__dict__.get("_in_fit"):
            yield
            return
        saved = {k: (list(v) if type(v) is list else v) for k, v in self.__dict__.items()}
        streams = ("history_", "_episode_rng", "_training_rng", "_replay_rng")
        deep = {k: copy.deepcopy(saved[k]) for k in streams if k in saved}
        weights = {}
        for name in [*saved.get("_modules", []), *saved.get("_optimizers", []), *saved.get("_criteria", [])]:
            component = saved.get(name + "_")
            if hasattr(component, "state_dict"):
                weights[name] = (component, copy.deepcopy(component.state_dict()))
        self.__dict__["_in_fit"] = True
        try:
            yield
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            self.__dict__.update(deep)
            for component, state in weights.values():
                component.load_state_dict(state)
            raise
        finally:
            self.__dict__.pop("_in_fit", None)

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        """skorch's loop over epochs, with torch seeded from ``random_state``."""
        with self._seeded_torch():
            return super().fit_loop(X, y, epochs=epochs, **fit_params)

    #: What training is called in messages ("pre-training" for pooled learners).
    _training_name = "meta-training"

    def _split_tasks(self, tasks):
        """Training and held-out tasks (None if none), warning on a split that cannot be right."""
        train, valid = (tasks, None) if self.train_split is None else self.train_split(tasks)
        if len(train) < 2:
            warnings.warn(
                f"{self._training_name.capitalize()} on {len(train)} task"
                f"{'s' if len(train) != 1 else ''} (of {len(tasks)} given"
                f"{', the rest held out for validation' if valid else ''}): what is learned "
                "cannot generalise across tasks. Pass more tasks, or set train_split=None to "
                f"use all of them for {self._training_name}.",
                UserWarning, stacklevel=external_stacklevel(),
            )
        if self.train_split is not None and (valid is None or len(valid) == 0):
            warnings.warn(
                f"train_split={self.train_split!r} held out no task for meta-validation "
                f"({len(tasks)} task(s)): history_ has no valid_loss or valid_score, and "
                "EarlyStopping on them cannot work. Pass more tasks, or set train_split=None "
                "to say no validation is wanted.",
                UserWarning, stacklevel=external_stacklevel(),
            )
        return train, (None if valid is None or len(valid) == 0 else valid)

    def get_split_datasets(self, X, y=None, **fit_params):
        """Episode loaders of the training tasks, and of the held-out ones (or None)."""
        train, valid = self._split_tasks(X)
        sampler = self._sampler()
        loaders = [
            EpisodeLoader(train, sampler, n_episodes=self.n_episodes,
                          meta_batch_size=self.meta_batch_size, random_state=self._episode_rng,
                          device=self.device_)
        ]
        if valid is None:
            return loaders[0], None
        loaders.append(
            EpisodeLoader(valid, sampler, n_episodes=max(len(valid), self.meta_batch_size),
                          meta_batch_size=self.meta_batch_size, random_state=self._valid_seed,
                          shuffle=False, device=self.device_)
        )
        return tuple(loaders)

    def get_iterator(self, dataset, training=False):
        return dataset

    def _training_loss(self, batch):
        """The algorithm's training loss of a meta-batch, and its query outputs."""
        return self._episode_loss(self._standardized(batch), training=True)

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        loss, y_pred = self._training_loss(batch)
        penalty = self._training_penalty()  # ewc: see _lifelong.py
        if penalty is not None:
            loss = loss + penalty
        self._check_finite("loss", loss)
        if loss.requires_grad:  # not so for a fixed embedding (no trainable parameter)
            loss.backward()
            self._check_finite("gradient", *(p.grad for p in self.module_.parameters()
                                             if p.grad is not None))
        return {"loss": loss, "y_pred": y_pred.detach()}

    def train_step(self, batch, **fit_params):
        step = super().train_step(batch, **fit_params)
        self._check_finite("weights after the optimizer step", *self.module_.parameters())
        return step

    def _check_finite(self, what, *tensors):
        """Raise a DivergenceError, naming epoch and batch, if a tensor is not finite."""
        bad = next((t for t in tensors if not torch.isfinite(t).all()), None)
        if bad is None:
            return
        value = "NaN" if torch.isnan(bad).any() else "infinite"
        epoch = len(self.history)
        n_batch = len(self.history[-1]["batches"]) if epoch else 0
        inner = f", inner_lr={self.inner_lr}" if hasattr(self, "inner_lr") else ""
        raise DivergenceError(
            f"Meta-training diverged at epoch {epoch}, batch {n_batch}: the {what} became "
            f"{value}. The estimator is left as it was before this call. Lower lr "
            f"(lr={self.lr}{inner}), or standardise the features"
            f"{'' if self._classification else ' and targets'}."
        )

    def validation_step(self, batch, **fit_params):
        self._set_training(False)
        batch = self._standardized(batch)
        with torch.no_grad():
            loss, y_pred = self._episode_loss(batch, training=False)
        self.history.record_batch("valid_score", self._batch_score(y_pred, batch))
        return {"loss": loss, "y_pred": y_pred}

    def _batch_score(self, y_pred, batch):
        """Mean accuracy (classification) or mean per-episode R² (regression).

        Padded query rows (weight 0) do not count.
        """
        y_true = batch.y_query
        weight = batch.query_weight if batch.query_weight is not None else torch.ones_like(
            y_true, dtype=torch.float32)
        if self._classification:
            correct = (y_pred.argmax(-1) == y_true).float()
            return ((correct * weight).sum() / weight.sum()).item()
        n = weight.sum(-1, keepdim=True)
        mean = (y_true * weight).sum(-1, keepdim=True) / n
        residual = (((y_true - y_pred) ** 2) * weight).sum(-1)
        total = (((y_true - mean) ** 2) * weight).sum(-1).clamp_min(1e-12)
        return (1 - residual / total).mean().item()


    def _standardizes_targets(self):
        return not self._classification and bool(getattr(self, "standardize_targets", False))

    def _standardized(self, batch):
        """A regression batch with each episode's targets standardised by its support."""
        if not self._standardizes_targets():
            return batch
        mean, scale = _support_statistics(
            batch.y_support, batch.support_weight, self._pooled_target_scale
        )
        return dataclasses.replace(batch, y_support=(batch.y_support - mean) / scale,
                                   y_query=(batch.y_query - mean) / scale)


def _support_statistics(y_support, support_weight, pooled_scale):
    """Mean and scale of support targets (last axis), weighted; padding has weight 0.

    The scale is the support's standard deviation, floored at a tenth of the
    pooled within-task scale of meta-training (and that scale itself where
    the support has fewer than two rows), so a support set of equal
    targets does not blow its queries up.
    """
    weight = torch.ones_like(y_support) if support_weight is None else support_weight.to(y_support.dtype)
    total = weight.sum(-1, keepdim=True)
    mean = (y_support * weight).sum(-1, keepdim=True) / total
    variance = (((y_support - mean) ** 2) * weight).sum(-1, keepdim=True) / total
    n_rows = (weight > 0).sum(-1, keepdim=True)
    scale = torch.where(n_rows >= 2, variance.sqrt(), torch.full_like(variance, pooled_scale))
    return mean, scale.clamp_min(0.1 * pooled_scale)
