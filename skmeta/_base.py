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
import inspect
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import _fit_context
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_parameter_constraints
from sklearn.utils._tags import ClassifierTags, RegressorTags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import _check_feature_names, _check_n_features, check_is_fitted
from skorch import NeuralNet
from skorch.callbacks import EpochTimer, PassthroughScoring, PrintLog
from skorch.exceptions import DeviceWarning

from ._adapted import AdaptedClassifier, AdaptedRegressor
from ._mlp import MLP
from ._validation import (
    as_task_collection,
    check_features,
    check_targets,
    check_task_collection,
    resolve_device,
)
from .tasks import EpisodeLoader, EpisodeSampler, TaskCollection, TaskSplit


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
        device="auto",
        random_state=None,
        verbose=0,
        warm_start=False,
        **kwargs,
    ):
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
        signature = inspect.signature(type(self).__init__)
        names = {
            p.name for p in signature.parameters.values()
            if p.name != "self" and p.kind != p.VAR_KEYWORD
        }
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
        for key, value in params.items():
            if key.startswith("optimizer__") and not key.startswith("optimizer__param_groups__"):
                # On a built optimizer skorch only changes the live one; keep
                # the value as a parameter too, for get_params, clone and the
                # optimizer the next fit builds.
                setattr(self, key, value)
                self._params_to_validate.add(key)
        return super().set_params(**params)

    def _validate_params(self):
        validate_parameter_constraints(
            self._parameter_constraints,
            self.get_params(deep=False),
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

    def __getstate__(self):
        state = super().__getstate__()
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
        """Build the loss; None means cross-entropy or squared error."""
        criterion = self.criterion
        if criterion is None:
            criterion = torch.nn.CrossEntropyLoss if self._classification else torch.nn.MSELoss
        self.criterion_ = self.initialized_instance(criterion, self.get_params_for("criterion"))
        return self

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
            self.module_ = self.initialized_instance(self.module, kwargs)
        return self

    # ---------------------------------------------------------------- episodes

    def _sampler(self):
        return EpisodeSampler(
            n_ways=self.n_ways,
            n_shots=self.n_shots,
            n_queries=self.n_queries,
            classification=self._classification,
        )

    def _check_tasks(self, X, y=None):
        tasks = as_task_collection(X, y, task_column=self.task_column)
        sampler = self._sampler()
        tasks, n_features, feature_names = check_task_collection(
            tasks, classification=self._classification, sampler=sampler
        )
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
        return _CheckedTasks(tasks), n_features, feature_names, ways

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
        tasks, n_features, feature_names, ways = self._check_tasks(X, y)
        if not reset:
            self._check_fitted_width(n_features, feature_names)
            if self._classification and ways != self.n_ways_:
                raise ValueError(
                    f"These tasks give {ways}-way episodes but the model was "
                    f"meta-trained on {self.n_ways_}-way ones; set n_ways={self.n_ways_}."
                )
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
        # With warm_start, a fitted model goes on: the tasks must match it.
        tasks = self._prepare_fit(X, y, reset=not (self.warm_start and self.initialized_))
        return super().fit(tasks, None, **fit_params)

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
        if not isinstance(X, _CheckedTasks):
            self._validate_params()
            X = self._prepare_fit(X, y, reset=not self.initialized_)
        return super().partial_fit(X, None, classes=classes, **fit_params)

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        """skorch's loop over epochs, with torch seeded from ``random_state``."""
        with self._seeded_torch():
            return super().fit_loop(X, y, epochs=epochs, **fit_params)

    def get_split_datasets(self, X, y=None, **fit_params):
        train, valid = (X, None) if self.train_split is None else self.train_split(X)
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
        loss, y_pred = self._episode_loss(batch, training=True)
        if loss.requires_grad:  # not so for a fixed embedding (no trainable parameter)
            loss.backward()
        return {"loss": loss, "y_pred": y_pred.detach()}

    def validation_step(self, batch, **fit_params):
        self._set_training(False)
        with torch.no_grad():
            loss, y_pred = self._episode_loss(batch, training=False)
        self.history.record_batch("valid_score", self._batch_score(y_pred, batch.y_query))
        return {"loss": loss, "y_pred": y_pred}

    def _batch_score(self, y_pred, y_true):
        """Mean accuracy (classification) or mean per-episode R² (regression)."""
        if self._classification:
            return (y_pred.argmax(-1) == y_true).float().mean().item()
        residual = ((y_true - y_pred) ** 2).sum(-1)
        total = ((y_true - y_true.mean(-1, keepdim=True)) ** 2).sum(-1).clamp_min(1e-12)
        return (1 - residual / total).mean().item()

    # ------------------------------------------------------------- adaptation

    def _check_meta_fitted(self):
        check_is_fitted(self, ["module_", "n_features_in_"])

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

    def _adapt_arrays(self, X_support, y_support, n_classes=None):
        """Adapted state from validated arrays (episode labels for classes)."""
        target_dtype = torch.long if self._classification else torch.float32
        with self._evaluating():
            return self._adapt(self._tensor(X_support), self._tensor(y_support, target_dtype), n_classes)

    def _predict_arrays(self, state, X):
        """Logits (classification) or values (regression) as a numpy array."""
        with self._evaluating(), torch.no_grad():
            out = self._predict_state(state, self._tensor(X))
        return out.detach().cpu().numpy().astype(np.float64)

    def adapt(self, X_support, y_support):
        """Adapt to a new task from its support set.

        The meta-learned parameters are left as they are: the returned
        estimator holds its own adapted state.

        Parameters
        ----------
        X_support : array-like or DataFrame of shape (n_support, n_features)
            The new task's labelled rows (a DataFrame may keep the task column).
        y_support : array-like of shape (n_support,)
            Their labels or targets.

        Returns
        -------
        AdaptedClassifier or AdaptedRegressor
            A fitted sklearn estimator for the new task; its ``fit(X, y)``
            adapts again from the same meta-learned starting point.
        """
        self._check_meta_fitted()
        adapted_type = AdaptedClassifier if self._classification else AdaptedRegressor
        return adapted_type(FrozenEstimator(self)).fit(X_support, y_support)

    def predict(self, X, X_support=None, y_support=None):
        """Adapt on a support set, then predict the query rows ``X``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_queries, n_features)
            Query rows.
        X_support : array-like or DataFrame of shape (n_support, n_features)
        y_support : array-like of shape (n_support,)

        Returns
        -------
        ndarray of shape (n_queries,)
        """
        return self._adapted_for(X_support, y_support).predict(X)

    def _adapted_for(self, X_support, y_support):
        if X_support is None or y_support is None:
            self._check_meta_fitted()
            raise ValueError(
                f"{type(self).__name__} predicts for a task from its support set: pass "
                "X_support and y_support, or call adapt(X_support, y_support) once "
                "and predict with the estimator it returns."
            )
        return self.adapt(X_support, y_support)

    def score(self, X, y=None, sample_weight=None):
        """Episodic meta-test score: adapt on a seeded support set per task.

        For each task, a support set of ``n_shots`` rows (per class) is drawn
        with a fixed seed (``random_state`` when an int, else 0); the adapted
        model is scored on all the task's other rows. The score is the mean
        over tasks of the accuracy (classifiers) or R² (regressors).

        Parameters
        ----------
        X : TaskCollection, list of tasks, or long-format DataFrame
        y : array-like, default=None
            Targets, for long format only.
        sample_weight : None
            Unused; present for sklearn's API.

        Returns
        -------
        float
        """
        self._check_meta_fitted()
        tasks, n_features, feature_names, _ = self._check_tasks(X, y)
        self._check_fitted_width(n_features, feature_names)
        seed = self.random_state if isinstance(self.random_state, Integral) else 0
        rng = np.random.default_rng(seed)
        sampler, scores = self._sampler(), []
        for task in tasks:
            episode = sampler.sample(task.X, task.y, rng, task=task.name, query="rest")
            n_classes = None
            if episode.classes is not None:
                self._check_support_classes(episode.classes)
                n_classes = episode.classes.shape[0]
            state = self._adapt_arrays(episode.X_support, episode.y_support, n_classes)
            out = self._predict_arrays(state, episode.X_query)
            if self._classification:
                scores.append(accuracy_score(episode.y_query, out.argmax(1)))
            else:
                scores.append(r2_score(episode.y_query, out))
        return float(np.mean(scores))

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

    def predict_proba(self, X, X_support=None, y_support=None):
        """Adapt on a support set, then give class probabilities of ``X``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_queries, n_features)
        X_support : array-like or DataFrame of shape (n_support, n_features)
        y_support : array-like of shape (n_support,)

        Returns
        -------
        ndarray of shape (n_queries, n_classes)
            Columns follow the sorted labels of ``y_support``.
        """
        return self._adapted_for(X_support, y_support).predict_proba(X)
