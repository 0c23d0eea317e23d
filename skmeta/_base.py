"""The base class of every meta-learner: the sklearn and skorch plumbing.

An algorithm module (``_protonet.py``, ``_maml.py``) subclasses
:class:`MetaLearner` and writes only its mathematics:

- ``_n_outputs()``: the width the backbone must end on (None: its own);
- ``_episode_loss(batch, training)``: the meta-objective on an
  :class:`~skmeta.tasks.EpisodeBatch`, with the query predictions;
- ``_adapt(X_support, y_support, n_classes)``: the adapted state of one task;
- ``_predict_state(state, X)``: logits or values for query rows.

Everything else lives here: validation of tasks and support sets, label
encoding, seeding, devices, the training loop (skorch's, fed with episodes),
history, pickling and the episodic score.
"""

import contextlib
import copy
import functools
import inspect
import os
import tempfile
import threading
import warnings
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import pandas as pd
import torch
from sklearn.base import _fit_context
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_parameter_constraints
from sklearn.utils._tags import ClassifierTags, RegressorTags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import (
    _check_feature_names,
    _check_n_features,
    _check_sample_weight,
    check_is_fitted,
)
from skorch import NeuralNet
from skorch.callbacks import EpochTimer, PassthroughScoring, PrintLog
from skorch.exceptions import DeviceWarning

from ._adapted import AdaptedClassifier, AdaptedRegressor
from ._mlp import MLP
from ._validation import (
    as_task_collection,
    check_features,
    check_long_format,
    check_targets,
    check_task_collection,
    resolve_device,
)
from .exceptions import DivergenceError
from .tasks import EpisodeBatch, EpisodeLoader, EpisodeSampler, TaskCollection, TaskSplit


@dataclass
class Adaptation:
    """What adapting to one support set gives.

    Attributes
    ----------
    state : Tensor or dict of Tensor
        The algorithm's adapted state (prototypes, adapted weights).
    target_mean, target_scale : float
        Regression targets were standardised as ``(y - mean) / scale`` for
        adapting; predictions are mapped back. 0 and 1 otherwise.
    report : dict or None
        The algorithm's record of the adaptation (step sizes and support
        loss per step, for gradient steps).
    """

    state: object
    target_mean: float = 0.0
    target_scale: float = 1.0
    report: dict | None = None


#: Routed parameters skorch would accept but episodes make meaningless.
_REFUSED_PREFIXES = ("iterator_train", "iterator_valid", "dataset")


class _CheckedTasks(TaskCollection):
    """A task collection whose tasks already passed validation."""


class MetaLearner(NeuralNet):
    """Base class of the meta-learners; not meant to be used directly.

    A skorch :class:`~skorch.NeuralNet` whose samples are tasks: ``fit``
    meta-trains on a task collection, one meta-batch of episodes per step,
    and ``adapt`` returns a fitted sklearn estimator for a new task.
    """

    _classification = True

    _parameter_constraints = {
        "lr": [Interval(Real, 0, None, closed="neither")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "n_episodes": [Interval(Integral, 1, None, closed="left")],
        "meta_batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_ways": [Interval(Integral, 2, None, closed="left"), None],
        "n_shots": [Interval(Integral, 1, None, closed="left")],
        "n_queries": [Interval(Integral, 1, None, closed="left")],
        "task_column": [str, Integral, None],
        "device": [StrOptions({"auto", "cpu", "cuda"}), torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "train_split": [callable, None],
        "warm_start": ["boolean"],
        "strict_episodes": ["boolean"],
    }

    def __init__(
        self,
        module=MLP,
        *,
        criterion=None,
        optimizer=torch.optim.Adam,
        lr=1e-3,
        max_epochs=20,
        n_episodes=200,
        meta_batch_size=8,
        n_ways=None,
        n_shots=5,
        n_queries=15,
        train_split=TaskSplit(0.2),
        callbacks=None,
        task_column=None,
        strict_episodes=False,
        device="auto",
        random_state=None,
        verbose=0,
        warm_start=False,
        **kwargs,
    ):
        self.strict_episodes = strict_episodes
        self.n_episodes = n_episodes
        self.meta_batch_size = meta_batch_size
        self.n_ways = n_ways
        self.n_shots = n_shots
        self.n_queries = n_queries
        self.task_column = task_column
        self.random_state = random_state
        super().__init__(
            module,
            criterion,
            optimizer=optimizer,
            lr=lr,
            max_epochs=max_epochs,
            train_split=train_split,
            callbacks=callbacks,
            warm_start=warm_start,
            verbose=verbose,
            device=device,
            **kwargs,
        )

    # ------------------------------------------------------------------ params

    def _get_param_names(self):
        # The signature's parameters plus routed ones (module__*, optimizer__*,
        # ...); skorch's own would list every attribute without a trailing _.
        # A subclass may add its own parameters and pass the rest on as
        # **kwargs: the names are those of every __init__ down to this one.
        names = _signature_parameter_names(type(self))
        routed = {k for k in vars(self) if "__" in k and not k.startswith("_") and not k.endswith("_")}
        return sorted(names | routed)

    def get_params(self, deep=True, **kwargs):
        params = super().get_params(deep=deep, **kwargs)
        if deep:
            # skorch's ProgressBar reads "batch_size"; a meta-batch is our batch.
            params.setdefault("batch_size", self.meta_batch_size)
        return params

    def set_params(self, **params):
        """Set parameters, routed ones (``module__*``, ``optimizer__*``) included.

        Parameters
        ----------
        **params : dict
            Estimator parameters.

        Returns
        -------
        self : object

        Examples
        --------
        >>> from skmeta import ProtoNetClassifier
        >>> from skmeta.datasets import make_blob_tasks
        >>> meta = ProtoNetClassifier(max_epochs=1, n_episodes=8, random_state=0)
        >>> meta = meta.fit(make_blob_tasks(n_tasks=6, random_state=0))
        >>> meta = meta.set_params(optimizer__weight_decay=0.01)
        >>> meta.get_params()["optimizer__weight_decay"], meta.optimizer_.param_groups[0]["weight_decay"]
        (0.01, 0.01)
        """
        if "batch_size" in params and params["batch_size"] != self.meta_batch_size:
            raise ValueError(
                f"batch_size={params['batch_size']!r} is not a parameter of "
                f"{type(self).__name__}: a meta-batch of episodes is its batch; set "
                "meta_batch_size instead."
            )
        params = {key: value for key, value in params.items() if key != "batch_size"}
        for key, value in params.items():
            if key.startswith("optimizer__") and not key.startswith("optimizer__param_groups__"):
                # On a built optimizer skorch only changes the live one; keep
                # the value as a parameter too, for get_params, clone and the
                # optimizer the next fit builds.
                setattr(self, key, value)
                self._params_to_validate.add(key)
        return super().set_params(**params)

    def _validate_params(self):
        params = self.get_params(deep=False)
        skorch_defaults = _skorch_defaults()
        refused = sorted(
            name for name, value in vars(self).items()
            if (name.split("__")[0] in _REFUSED_PREFIXES and "__" in name)
            or (name in (*_REFUSED_PREFIXES, "batch_size") and value is not skorch_defaults[name].default
                and value != skorch_defaults[name].default)
        )
        if refused:
            raise ValueError(
                f"{type(self).__name__} does not take {refused[0]}: episodes are drawn by "
                "skmeta.tasks.EpisodeLoader, not by a torch DataLoader. Set n_episodes "
                "(episodes per epoch) and meta_batch_size (episodes per step) instead."
            )
        validate_parameter_constraints(
            self._parameter_constraints,
            {name: value for name, value in params.items() if "__" not in name},
            caller_name=type(self).__name__,
        )
        if hasattr(self, "module_"):
            # skorch checks that routed names (module__*, ...) have a known
            # prefix; it learns "module", "optimizer", ... only as they are
            # built, and initialize() runs this check again once they are.
            super()._validate_params()

    @property
    def _default_callbacks(self):
        return [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
            ("valid_loss", PassthroughScoring(name="valid_loss")),
            ("valid_score", PassthroughScoring(name="valid_score", lower_is_better=False)),
            ("print_log", PrintLog()),
        ]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        if self._classification:
            tags.estimator_type = "classifier"
            tags.classifier_tags = ClassifierTags()
        else:
            tags.estimator_type = "regressor"
            tags.regressor_tags = RegressorTags()
        return tags

    # ----------------------------------------------------------------- devices

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

    # ----------------------------------------------------------------- modules

    def _n_outputs(self):
        return None

    def initialize_criterion(self):
        """Build the loss; None means cross-entropy or squared error.

        A second instance with ``reduction="none"`` gives per-row losses
        where rows are weighted (padded episodes, ``sample_weight``).
        """
        criterion = self.criterion
        if criterion is None:
            criterion = torch.nn.CrossEntropyLoss if self._classification else torch.nn.MSELoss
        kwargs = self.get_params_for("criterion")
        self.criterion_ = self.initialized_instance(criterion, kwargs)
        per_row = None
        if not isinstance(criterion, torch.nn.Module):
            with contextlib.suppress(TypeError, ValueError):
                per_row = criterion(**{**kwargs, "reduction": "none"}).to(self.device_)
        # Not a registered component (skorch would save and route it): a helper.
        self.__dict__["_criterion_per_row"] = per_row
        return self

    def _weighted_loss(self, output, target, weight=None):
        """The criterion, or its weighted mean over rows when ``weight`` is given."""
        if weight is None:
            return self.criterion_(output, target)
        if self._criterion_per_row is None:
            raise ValueError(
                f"criterion={self.criterion!r} takes no reduction='none', so rows cannot be "
                "weighted (padded episodes of small tasks, sample_weight). Pass a criterion "
                "class such as torch.nn.CrossEntropyLoss, or set strict_episodes=True."
            )
        per_row = self._criterion_per_row(output, target)
        weight = weight.to(per_row.dtype)
        return (per_row * weight).sum() / weight.sum()

    def get_params_for_optimizer(self, prefix, named_parameters):
        args, kwargs = super().get_params_for_optimizer(prefix, named_parameters)
        if not args[0]:
            # A backbone without parameters (a fixed embedding such as
            # torch.nn.Identity): torch refuses an empty list, not an empty group.
            args = ([{"params": []}], *args[1:])
        return args, kwargs

    def initialize_module(self):
        """Build the backbone, filling ``n_features``/``n_outputs`` it accepts."""
        kwargs = self.get_params_for("module")
        if not isinstance(self.module, torch.nn.Module) and hasattr(self, "n_features_in_"):
            accepted = inspect.signature(self.module).parameters
            dims = {"n_features": self.n_features_in_, "n_outputs": self._n_outputs()}
            for name, value in dims.items():
                if name in accepted and name not in kwargs:
                    kwargs[name] = value
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(getattr(self, "_torch_seed", torch.initial_seed()))
            try:
                self.module_ = self.initialized_instance(self.module, kwargs)
            except (TypeError, ValueError, RuntimeError) as exc:
                routed = {f"module__{k}": v for k, v in self.get_params_for("module").items()}
                raise ValueError(
                    f"Building the module {getattr(self.module, '__name__', self.module)!r} "
                    f"failed with {routed or 'no module__* parameters'}: {exc} Check the "
                    "module__* parameters."
                ) from exc
        return self

    # ---------------------------------------------------------------- episodes

    def _sampler(self):
        return EpisodeSampler(
            n_ways=self.n_ways,
            n_shots=self.n_shots,
            n_queries=self.n_queries,
            classification=self._classification,
            strict=self.strict_episodes,
        )

    def _validated_tasks(self, X, y=None):
        """Every task of ``X`` validated: (tasks, n_features, feature_names, long_format)."""
        if isinstance(X, pd.DataFrame):
            return (*check_long_format(X, y, task_column=self.task_column,
                                       classification=self._classification), True)
        tasks = as_task_collection(X, y, task_column=self.task_column)
        return (*check_task_collection(tasks, classification=self._classification), False)

    def _usable_tasks(self, tasks, purpose):
        """The tasks that can give an episode; one warning names the others."""
        sampler = self._sampler()
        usable, reasons = [], []
        for task in tasks:
            reason = sampler.why_not(task.y, task=task.name)
            if reason is None:
                usable.append(task)
            else:
                reasons.append(reason)
        if not reasons:
            return tasks
        fix = (" Lower n_shots or n_queries, or set strict_episodes=False." if self.strict_episodes
               else "")
        if self.strict_episodes or not usable:
            count = "None of the" if not usable else f"{len(reasons)} of the"
            verb = "can" if not usable else "cannot"
            raise ValueError(
                f"{count} {len(tasks)} tasks {verb} give an episode for {purpose}: {reasons[0]}"
                f"{f' (and {len(reasons) - 1} more)' if len(reasons) > 1 else ''}.{fix}"
            )
        shown = "; ".join(reasons[:5]) + ("; ..." if len(reasons) > 5 else "")
        warnings.warn(
            f"{len(reasons)} of {len(tasks)} tasks cannot give an episode and are left out "
            f"of {purpose}: {shown}.",
            UserWarning,
            stacklevel=4,
        )
        return TaskCollection(usable)

    def _check_tasks(self, X, y=None, *, purpose="meta-training"):
        tasks, n_features, feature_names, long_format = self._validated_tasks(X, y)
        tasks = self._usable_tasks(tasks, purpose)
        sampler = self._sampler()
        ways = None
        if self._classification:
            # A list, not a dict by name: two tasks may share a name.
            per_task = [(task.name, sampler.ways(task.y)) for task in tasks]
            if len({w for _, w in per_task}) > 1:
                shown = ", ".join(f"{name!r}: {w}" for name, w in per_task[:10])
                raise ValueError(
                    f"Tasks have different numbers of classes ({shown}"
                    f"{', ...' if len(per_task) > 10 else ''}); episodes of "
                    "one meta-batch must share a shape. Set n_ways to the number of "
                    "classes each episode should draw."
                )
            ways = per_task[0][1]
        return _CheckedTasks(tasks), n_features, feature_names, ways, long_format

    def _check_fitted_width(self, n_features, feature_names, what="The tasks"):
        if n_features != self.n_features_in_:
            raise ValueError(
                f"{what} have {n_features} features, but {type(self).__name__} was "
                f"meta-trained on {self.n_features_in_}; pass the same columns."
            )
        fitted = getattr(self, "feature_names_in_", None)
        if fitted is not None and feature_names is not None and list(fitted) != list(feature_names):
            raise ValueError(
                f"{what} have other feature names than {type(self).__name__} was "
                f"meta-trained on ({list(fitted)[:5]}...); pass the same columns in the same order."
            )

    def _prepare_fit(self, X, y, *, reset):
        tasks, n_features, feature_names, ways, long_format = self._check_tasks(X, y)
        if not reset:
            self._check_fitted_width(n_features, feature_names)
            if self._classification and ways != self.n_ways_:
                raise ValueError(
                    f"These tasks give {ways}-way episodes but the model was "
                    f"meta-trained on {self.n_ways_}-way ones; set n_ways={self.n_ways_}."
                )
            self._seen_tasks = self._seen_tasks.union(_TaskFingerprint(tasks, long_format=long_format))
            return tasks
        resolve_device(self.device)  # raises now, not after fitted state is replaced
        # All checks passed: only now is fitted state replaced.
        self.n_features_in_ = n_features
        if feature_names is not None:
            self.feature_names_in_ = feature_names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        if self._classification:
            self.n_ways_ = ways
        self._seen_tasks = _TaskFingerprint(tasks, long_format=long_format)
        self._pooled_target_scale = _pooled_target_scale(tasks, self._classification)
        rng = check_random_state(self.random_state)
        self._torch_seed = int(rng.randint(np.iinfo(np.int32).max))
        self._episode_rng = np.random.default_rng(rng.randint(np.iinfo(np.int32).max))
        self._valid_seed = int(rng.randint(np.iinfo(np.int32).max))
        self._training_rng = np.random.default_rng(rng.randint(np.iinfo(np.int32).max))
        return tasks

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

    # ------------------------------------------------------------- fit (skorch)

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
            return super().fit(tasks, None)

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
            if not isinstance(X, _CheckedTasks):
                self._validate_params()
                X = self._prepare_fit(X, y, reset=not self.initialized_)
            return super().partial_fit(X, None)

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
        deep = {k: copy.deepcopy(saved[k]) for k in ("history_", "_episode_rng", "_training_rng")
                if k in saved}
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

    def get_split_datasets(self, X, y=None, **fit_params):
        train, valid = (X, None) if self.train_split is None else self.train_split(X)
        if len(train) < 2:
            warnings.warn(
                f"Meta-training on {len(train)} task{'s' if len(train) != 1 else ''} "
                f"(of {len(X)} given{', the rest held out for validation' if valid else ''}): "
                "what is learned cannot generalise across tasks. Pass more tasks, or set "
                "train_split=None to meta-train on all of them.",
                UserWarning, stacklevel=2,
            )
        if self.train_split is not None and (valid is None or len(valid) == 0):
            warnings.warn(
                f"train_split={self.train_split!r} held out no task for meta-validation "
                f"({len(X)} task(s)): history_ has no valid_loss or valid_score, and "
                "EarlyStopping on them cannot work. Pass more tasks, or set train_split=None "
                "to say no validation is wanted.",
                UserWarning, stacklevel=2,
            )
        sampler = self._sampler()
        loaders = [
            EpisodeLoader(train, sampler, n_episodes=self.n_episodes,
                          meta_batch_size=self.meta_batch_size, random_state=self._episode_rng,
                          device=self.device_)
        ]
        if valid is None or len(valid) == 0:
            return loaders[0], None
        loaders.append(
            EpisodeLoader(valid, sampler, n_episodes=max(len(valid), self.meta_batch_size),
                          meta_batch_size=self.meta_batch_size, random_state=self._valid_seed,
                          shuffle=False, device=self.device_)
        )
        return tuple(loaders)

    def get_iterator(self, dataset, training=False):
        return dataset

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        batch = self._standardized(batch)
        loss, y_pred = self._episode_loss(batch, training=True)
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

    # ---------------------------------------------------- target standardisation

    def _standardizes_targets(self):
        return not self._classification and bool(getattr(self, "standardize_targets", False))

    def _standardized(self, batch):
        """A regression batch with each episode's targets standardised by its support."""
        if not self._standardizes_targets():
            return batch
        mean, scale = _support_statistics(
            batch.y_support, batch.support_weight, self._pooled_target_scale
        )
        return EpisodeBatch(
            batch.X_support, (batch.y_support - mean) / scale,
            batch.X_query, (batch.y_query - mean) / scale,
            batch.support_weight, batch.query_weight,
        )

    # ------------------------------------------------------------- adaptation

    def _check_meta_fitted(self):
        """Raise unless fitted; re-check parameters, which set_params may have changed."""
        check_is_fitted(self, ["module_", "n_features_in_"])
        self._validate_params()

    @property
    def _lock(self):
        """Serialises adaptation and prediction on this learner across threads.

        They run the shared backbone functionally (``torch.func`` swaps its
        parameters for the duration of a call) and switch it to evaluation
        mode, neither of which may interleave with another thread's call.
        """
        lock = self.__dict__.get("_adapt_lock")
        if lock is None:
            lock = self.__dict__.setdefault("_adapt_lock", threading.RLock())
        return lock

    def _drop_task_column(self, X):
        column = self.task_column
        if column is not None and hasattr(X, "columns") and column in X.columns:
            return X.drop(columns=[column])
        return X

    def _validate_X(self, X, *, what="X"):
        """Query or support features as a float32 array, checked against fit."""
        X = self._drop_task_column(X)
        array = check_features(X, what=what)
        _check_n_features(self, array, reset=False)
        _check_feature_names(self, X, reset=False)
        return array

    def _check_support_classes(self, classes):
        """Raise if a support set with labels ``classes`` cannot be adapted to."""
        if classes.shape[0] < 2:
            raise ValueError(
                f"y_support has {classes.shape[0]} class ({classes.tolist()}); a "
                "support set needs at least 2 classes."
            )

    def _tensor(self, values, dtype=torch.float32):
        return torch.as_tensor(values, dtype=dtype, device=self.device_)

    @contextlib.contextmanager
    def _evaluating(self):
        """Evaluation mode for the duration, then each module's mode as it was.

        Adapting and predicting must leave the meta-learner exactly as they
        found it, its modules' train/eval flags included.
        """
        modules = [getattr(self, name + "_") for name in self._modules + self._criteria]
        modules = [module for module in modules if isinstance(module, torch.nn.Module)]
        modes = [(sub, sub.training) for module in modules for sub in module.modules()]
        self._set_training(False)
        try:
            yield
        finally:
            for sub, training in modes:
                sub.training = training

    def _adapt_task(self, X_support, y_support, n_classes=None, sample_weight=None):
        """Adapt to validated arrays (episode labels for classes): an :class:`Adaptation`.

        Regression targets are standardised by the support set's mean and
        scale first when ``standardize_targets`` is set.
        """
        mean, scale = 0.0, 1.0
        if self._standardizes_targets():
            weight = None if sample_weight is None else torch.as_tensor(sample_weight)
            mean, scale = (float(v) for v in _support_statistics(
                torch.as_tensor(y_support, dtype=torch.float64), weight, self._pooled_target_scale))
            y_support = (y_support - mean) / scale
        target_dtype = torch.long if self._classification else torch.float32
        weight = None if sample_weight is None else self._tensor(sample_weight)
        with self._lock, self._evaluating():
            state, report = self._adapt(
                self._tensor(X_support), self._tensor(y_support, target_dtype), n_classes, weight
            )
        if not _all_finite(state):
            raise ValueError(
                "Adapting to this support set gave non-finite values: the features are too "
                "large for float32 computation in the backbone (largest magnitude "
                f"{float(np.abs(X_support).max(initial=0)):.3g}). Standardise them, e.g. with "
                "sklearn.preprocessing.StandardScaler."
            )
        return Adaptation(state, mean, scale, report)

    def _predict_task(self, adaptation, X):
        """Logits (classification) or values (regression) as a numpy array."""
        with self._lock, self._evaluating(), torch.no_grad():
            out = self._predict_state(adaptation.state, self._tensor(X))
        out = out.detach().cpu().numpy().astype(np.float64)
        if not np.isfinite(out).all():
            bad = np.flatnonzero(~np.isfinite(out.reshape(out.shape[0], -1)).all(axis=1))
            raise ValueError(
                f"The backbone's output overflowed float32 for {bad.size} of {out.shape[0]} "
                f"query row(s), the first at row {bad[0]} (largest feature magnitude "
                f"{float(np.abs(X[bad[0]]).max(initial=0)):.3g}); standardise the features, "
                "e.g. with sklearn.preprocessing.StandardScaler."
            )
        return out * adaptation.target_scale + adaptation.target_mean

    def adapt(self, X_support, y_support, sample_weight=None):
        """Adapt to a new task from its support set.

        The meta-learned parameters are left as they are: the returned
        estimator holds its own adapted state.

        Parameters
        ----------
        X_support : array-like or DataFrame of shape (n_support, n_features)
            The new task's labelled rows (a DataFrame may keep the task column).
        y_support : array-like of shape (n_support,)
            Their labels or targets.
        sample_weight : array-like of shape (n_support,), default=None
            Weights of the support rows: a row of weight 0 counts as if it
            were not there (in class means, or in the support loss of
            gradient steps). None weighs every row alike.

        Returns
        -------
        AdaptedClassifier or AdaptedRegressor
            A fitted sklearn estimator for the new task; its ``fit(X, y)``
            adapts again from the same meta-learned starting point.
        """
        # AdaptedClassifier/AdaptedRegressor.fit checks that this learner is
        # fitted and its parameters valid.
        adapted_type = AdaptedClassifier if self._classification else AdaptedRegressor
        return adapted_type(FrozenEstimator(self)).fit(X_support, y_support, sample_weight=sample_weight)

    def predict(self, X, X_support=None, y_support=None, sample_weight=None):
        """Adapt on a support set, then predict the query rows ``X``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_queries, n_features)
            Query rows.
        X_support : array-like or DataFrame of shape (n_support, n_features)
        y_support : array-like of shape (n_support,)
        sample_weight : array-like of shape (n_support,), default=None
            Weights of the support rows, as in :meth:`adapt`.

        Returns
        -------
        ndarray of shape (n_queries,)
        """
        return self._adapted_for(X_support, y_support, sample_weight).predict(X)

    def _adapted_for(self, X_support, y_support, sample_weight=None):
        if X_support is None or y_support is None:
            self._check_meta_fitted()
            raise ValueError(
                f"{type(self).__name__} predicts for a task from its support set: pass "
                "X_support and y_support, or call adapt(X_support, y_support) once "
                "and predict with the estimator it returns. To score a meta-learner "
                "with a metric of sklearn, use skmeta.metrics.make_episodic_scorer."
            )
        _refuse_plain_pipeline(self)
        return self.adapt(X_support, y_support, sample_weight=sample_weight)

    def _score_seed(self):
        """The seed of the support sets that the episodic score draws."""
        return self.random_state if isinstance(self.random_state, Integral) else 0

    def _warn_if_seen(self, tasks, long_format):
        """Warn when tasks being scored were meta-trained on."""
        seen = self._seen_tasks.overlap(tasks, long_format=long_format)
        if seen:
            shown = ", ".join(repr(name) for name in seen[:5]) + (", ..." if len(seen) > 5 else "")
            warnings.warn(
                f"Scoring {len(seen)} task(s) that {type(self).__name__} was meta-trained on "
                f"({shown}): the score overstates how it does on new tasks. Hold tasks out "
                "with GroupKFold or LeaveOneGroupOut (groups = the task column), or score a "
                "TaskCollection of other tasks.",
                UserWarning, stacklevel=3,
            )

    def score(self, X, y=None, sample_weight=None, scoring=None):
        """Episodic meta-test score: adapt on a seeded support set per task.

        For each task, a support set of ``n_shots`` rows (per class; fewer
        in a class that has fewer) is drawn with a fixed seed
        (``random_state`` when an int, else 0); the adapted model is scored
        on all the task's other rows. The score is the mean over tasks of the
        accuracy (classifiers) or R² (regressors). Tasks that cannot give a
        support and a query set are left out with a warning; scoring tasks
        the learner was meta-trained on warns too. For other metrics, use
        :func:`skmeta.metrics.make_episodic_scorer`.

        Parameters
        ----------
        X : TaskCollection, list of tasks, or long-format DataFrame
        y : array-like, default=None
            Targets, for long format only.
        sample_weight : array-like of shape (n_rows,), default=None
            Long format only: weights of the query rows in each task's
            accuracy or R².
        scoring : str, callable or None, default=None
            Another metric, by a name sklearn knows (``"roc_auc"``,
            ``"neg_log_loss"``, ``"neg_mean_absolute_error"``, ...) or a
            scorer ``(estimator, X, y)``, applied to each adapted estimator
            on the same support and query rows; see
            :func:`skmeta.metrics.episodic_score`. None: accuracy or R².

        Returns
        -------
        float

        Examples
        --------
        >>> from skmeta import ProtoNetClassifier
        >>> from skmeta.datasets import make_blob_tasks
        >>> tasks = make_blob_tasks(n_tasks=8, n_features=4, random_state=0)
        >>> meta = ProtoNetClassifier(max_epochs=1, n_episodes=8, random_state=0).fit(tasks[:6])
        >>> from skmeta.metrics import episodic_score
        >>> meta.score(tasks[6:], scoring="roc_auc") == episodic_score(meta, tasks[6:], scoring="roc_auc")
        True
        """
        self._check_meta_fitted()
        if scoring is not None:
            from .metrics import episodic_score

            return episodic_score(self, X, y, scoring=scoring, sample_weight=sample_weight)
        tasks, n_features, feature_names, _, long_format = self._check_tasks(X, y, purpose="scoring")
        self._check_fitted_width(n_features, feature_names)
        self._warn_if_seen(tasks, long_format)
        weights = _query_weights(X, tasks, sample_weight, self.task_column)
        rng = np.random.default_rng(self._score_seed())
        sampler, scores, backtracked, undefined = self._sampler(), [], 0, []
        for task, task_weight in zip(tasks, weights, strict=True):
            positions = np.arange(task.n_rows)
            episode = sampler.sample(positions[:, None], task.y, rng, task=task.name, query="rest")
            support, query = episode.X_support[:, 0], episode.X_query[:, 0]
            if not self._classification and query.shape[0] < 2:
                undefined.append(task.name)  # R² of one row is undefined
                continue
            n_classes = None
            if episode.classes is not None:
                self._check_support_classes(episode.classes)
                n_classes = episode.classes.shape[0]
            adaptation = self._adapt_task(task.X[support], episode.y_support, n_classes)
            backtracked += bool(adaptation.report and adaptation.report.get("backtracked"))
            out = self._predict_task(adaptation, task.X[query])
            weight = None if task_weight is None else task_weight[query]
            if self._classification:
                scores.append(accuracy_score(episode.y_query, out.argmax(1), sample_weight=weight))
            else:
                scores.append(r2_score(episode.y_query, out, sample_weight=weight))
        if backtracked:
            self._warn_backtracked(backtracked, len(tasks))
        if undefined:
            shown = ", ".join(repr(name) for name in undefined[:5]) + (", ..." if len(undefined) > 5 else "")
            message = (f"{len(undefined)} of {len(tasks)} tasks leave a single query row once "
                       f"{self.n_shots} support rows are drawn, and R² of one row is undefined ({shown})")
            if not scores:
                raise ValueError(f"{message}; no task can be scored: pass tasks with more rows, or "
                                 "lower n_shots.")
            warnings.warn(f"{message}: they are left out of the score.", UserWarning, stacklevel=2)
        return float(np.mean(scores))

    def _warn_backtracked(self, n_backtracked, n_tasks):
        """Hook: learners that adapt by gradient steps say when steps were shortened."""

    def _check_targets(self, y, *, what="y_support"):
        return check_targets(y, classification=self._classification, what=what)

    @available_if(lambda self: False)
    def predict_proba(self, X):
        """Hide skorch's ``predict_proba``: a regressor has none.

        :class:`MetaClassifierMixin` gives classifiers theirs.
        """


class MetaClassifierMixin:
    """``predict_proba`` for meta-learned classifiers."""

    _classification = True

    @property
    def classes_(self):
        """None of its own: a meta-learner has classes once adapted to a task."""
        from .metrics import _plain_scorer_message

        raise AttributeError(_plain_scorer_message(self))

    def predict_proba(self, X, X_support=None, y_support=None, sample_weight=None):
        """Adapt on a support set, then give class probabilities of ``X``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_queries, n_features)
        X_support : array-like or DataFrame of shape (n_support, n_features)
        y_support : array-like of shape (n_support,)
        sample_weight : array-like of shape (n_support,), default=None
            Weights of the support rows, as in :meth:`MetaLearner.adapt`.

        Returns
        -------
        ndarray of shape (n_queries, n_classes)
            Columns follow the sorted labels of ``y_support``.
        """
        return self._adapted_for(X_support, y_support, sample_weight).predict_proba(X)


# ---------------------------------------------------------------------- helpers


@functools.cache
def _signature_parameter_names(klass):
    """The parameters of every ``__init__`` from ``klass`` down to MetaLearner's."""
    names = set()
    for base in klass.__mro__:
        if "__init__" not in vars(base):
            continue
        names |= {
            p.name for p in inspect.signature(base.__init__).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        }
        if base is MetaLearner:
            break
    return frozenset(names)


@functools.cache
def _skorch_defaults():
    return inspect.signature(NeuralNet.__init__).parameters


def _refuse_fit_params(estimator, method, fit_params):
    if fit_params:
        raise TypeError(
            f"{type(estimator).__name__}.{method} got unexpected argument(s) "
            f"{sorted(fit_params)}: meta-training weighs every episode alike. Support rows "
            "are weighted in adapt(..., sample_weight=...), query rows in score and the "
            "episodic scorers."
        )


def _refuse_plain_pipeline(meta_learner):
    """Raise if a plain sklearn Pipeline handed this learner untransformed support rows."""
    from .pipeline import _refuse_plain_pipeline as refuse

    refuse(meta_learner)


def _refuse_plain_scorer(meta_learner):
    """Raise if sklearn's model selection will score this learner with a plain scorer."""
    from .metrics import _refuse_plain_scorer as refuse

    refuse(meta_learner)


def _all_finite(state):
    if isinstance(state, torch.Tensor):
        return bool(torch.isfinite(state).all())
    if isinstance(state, dict):
        return all(_all_finite(value) for value in state.values())
    return True


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


def _pooled_target_scale(tasks, classification):
    """The root mean within-task variance of regression targets (1 if none)."""
    if classification:
        return 1.0
    variances = [float(np.var(task.y, dtype=np.float64)) for task in tasks if task.n_rows > 1]
    scale = float(np.sqrt(np.mean(variances))) if variances else 0.0
    return scale if np.isfinite(scale) and scale > 0 else 1.0


def _query_weights(X, tasks, sample_weight, task_column):
    """Per task, the weights of its rows (long format), or None for each."""
    if sample_weight is None:
        return [None] * len(tasks)
    if not isinstance(X, pd.DataFrame):
        raise TypeError(
            "sample_weight in score needs long-format input (a DataFrame with task_column), "
            "one weight per row; for a TaskCollection weigh rows within each task yourself."
        )
    weight = _check_sample_weight(sample_weight, X.to_numpy()[:, :1], dtype=np.float64)
    by_task = pd.Series(weight).groupby(X[task_column].to_numpy(), sort=False)
    rows = {name: by_task.get_group(name).to_numpy() for name in by_task.groups}
    return [rows[task.name] for task in tasks]


class _TaskFingerprint:
    """What a learner was meta-trained on, to tell when it is scored on it again.

    Long-format task ids (the values of the task column) are remembered as
    they are: scoring another slice of the same ids is leakage even on other
    rows (a row-wise split). Rows of any task are remembered by a 64-bit hash,
    and a scored task more than half of whose rows were trained on is seen.
    """

    def __init__(self, tasks=(), *, long_format=False):
        self.ids = {task.name for task in tasks} if long_format else set()
        hashes = [_row_hashes(task.X) for task in tasks]
        self.hashes = np.unique(np.concatenate(hashes)) if hashes else np.empty(0, np.uint64)

    def union(self, other):
        merged = _TaskFingerprint()
        merged.ids = self.ids | other.ids
        merged.hashes = np.union1d(self.hashes, other.hashes)
        return merged

    def overlap(self, tasks, *, long_format):
        """Names of ``tasks`` that were meta-trained on."""
        seen = []
        for task in tasks:
            if long_format and task.name in self.ids:
                seen.append(task.name)
                continue
            try:
                hashes = _row_hashes(task.X)
            except (TypeError, ValueError):  # raw rows, before a pipeline encodes them
                continue
            if hashes.size and np.isin(hashes, self.hashes).mean() > 0.5:
                seen.append(task.name)
        return seen


def _row_hashes(X):
    """One 64-bit hash per row of a float32 array."""
    words = np.ascontiguousarray(X, dtype=np.float32).view(np.uint32).astype(np.uint64)
    with np.errstate(over="ignore"):
        multipliers = np.uint64(0x9E3779B97F4A7C15) * (np.arange(words.shape[1], dtype=np.uint64) * 2 + 1)
        mixed = (words + np.uint64(1)) * multipliers
        return np.bitwise_xor.reduce(mixed ^ (mixed >> np.uint64(29)), axis=1) if words.shape[1] else (
            np.zeros(words.shape[0], np.uint64))
