"""Adaptation: from a support set to a fitted estimator, and the episodic score.

:class:`AdaptationMixin` validates a support set, standardises regression
targets, calls the algorithm's ``_adapt`` under a per-learner lock in
evaluation mode, checks the result is finite, and wraps it as an
:class:`~skmeta.AdaptedClassifier` or :class:`~skmeta.AdaptedRegressor`.
The algorithm supplies ``_adapt(X_support, y_support, n_classes, weight)``
and ``_predict_state(state, X)``.
"""

import contextlib
import threading
import warnings
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import pandas as pd
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import (
    _check_n_features,
    _check_sample_weight,
    check_is_fitted,
)

from .._adapted import AdaptedClassifier, AdaptedRegressor
from .._validation import check_feature_names, check_features, check_targets
from ..utils._stacklevel import external_stacklevel
from ._parameters import _refuse_plain_pipeline
from ._training import _support_statistics


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
    classes : ndarray or None
        A classifier's support labels, sorted (episode label ``k`` is
        ``classes[k]``): they pick the columns of a fitted ``prior_``.
    """

    state: object
    target_mean: float = 0.0
    target_scale: float = 1.0
    report: dict | None = None
    classes: np.ndarray | None = None


#: Routed parameters skorch would accept but episodes make meaningless.
_REFUSED_PREFIXES = ("iterator_train", "iterator_valid", "dataset")


class AdaptationMixin:
    """adapt, predict and score: a meta-learner used on new tasks."""

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
        check_feature_names(self, X, reset=False)
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

    def _adapt_task(self, X_support, y_support, n_classes=None, sample_weight=None, classes=None):
        """Adapt to validated arrays (episode labels for classes): an :class:`Adaptation`.

        With a fitted ``prior_``, the support set gets its offsets first
        (columns of log-probabilities of ``classes``, the sorted support
        labels; or residual targets). Regression targets are standardised by
        the support set's mean and scale then, when ``standardize_targets``
        is set.
        """
        X_support, y_support = self._prior_support(X_support, y_support, classes)
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
        return Adaptation(state, mean, scale, report, classes)

    def _predict_task(self, adaptation, X):
        """Logits (classification) or values (regression) as a numpy array.

        A fitted ``prior_``'s offsets are added to them, in float64.
        """
        with self._lock, self._evaluating(), torch.no_grad():
            out = self._predict_state(adaptation.state, self._tensor(self._prior_query(X)))
        out = out.detach().cpu().numpy().astype(np.float64)
        if not np.isfinite(out).all():
            bad = np.flatnonzero(~np.isfinite(out.reshape(out.shape[0], -1)).all(axis=1))
            raise ValueError(
                f"The backbone's output overflowed float32 for {bad.size} of {out.shape[0]} "
                f"query row(s), the first at row {bad[0]} (largest feature magnitude "
                f"{float(np.abs(X[bad[0]]).max(initial=0)):.3g}); standardise the features, "
                "e.g. with sklearn.preprocessing.StandardScaler."
            )
        out = out * adaptation.target_scale + adaptation.target_mean
        return self._add_prior(out, X, adaptation.classes)

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
                UserWarning, stacklevel=external_stacklevel(),
            )

    def score(self, X, y=None, sample_weight=None, scoring=None):
        """Episodic meta-test score: adapt on a seeded support set per task.

        For each task, a support set of ``n_shots`` rows (per class; fewer
        in a class that has fewer; with ``class_balance="natural"``,
        ``n_shots * n_ways`` rows in the task's proportions) is drawn with a
        fixed seed (``random_state`` when an int, else 0); the adapted model
        is scored on all the task's other rows. When ``n_shots`` is a tuple
        or list, the support set takes its largest shot count, so the score
        is deterministic and measures the most data adaptation was trained
        for. The score is the mean over tasks of the accuracy (classifiers)
        or R² (regressors). Tasks that cannot give a
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
            from ..metrics import episodic_score

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
            adaptation = self._adapt_task(task.X[support], episode.y_support, n_classes,
                                          classes=episode.classes)
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
                       f"{sampler.max_shots} support rows are drawn, and R² of one row is undefined "
                       f"({shown})")
            if not scores:
                raise ValueError(f"{message}; no task can be scored: pass tasks with more rows, or "
                                 "lower n_shots.")
            warnings.warn(f"{message}: they are left out of the score.", UserWarning,
                          stacklevel=external_stacklevel())
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
        from ..metrics import _plain_scorer_message

        raise AttributeError(_plain_scorer_message(self))

    def predict_proba(self, X, X_support=None, y_support=None, sample_weight=None):
        """Adapt on a support set, then give class probabilities of ``X``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_queries, n_features)
        X_support : array-like or DataFrame of shape (n_support, n_features)
        y_support : array-like of shape (n_support,)
        sample_weight : array-like of shape (n_support,), default=None
            Weights of the support rows, as in :meth:`~skmeta._base.MetaLearner.adapt`.

        Returns
        -------
        ndarray of shape (n_queries, n_classes)
            Columns follow the sorted labels of ``y_support``.
        """
        return self._adapted_for(X_support, y_support, sample_weight).predict_proba(X)


def _all_finite(state):
    if isinstance(state, torch.Tensor):
        return bool(torch.isfinite(state).all())
    if isinstance(state, dict):
        return all(_all_finite(value) for value in state.values())
    return True


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
