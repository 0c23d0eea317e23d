"""The estimator a meta-learner returns for one new task.

``meta_learner.adapt(X_support, y_support)`` returns one of these, fitted.
It is a plain sklearn estimator: ``fit(X, y)`` adapts again from the same
meta-learned starting point, so ``cross_val_score`` can refit it on a new
task's rows; its predictions come from the meta-learner's backbone with the
adapted state (prototypes, or fine-tuned weights) it holds.
"""


import numpy as np
import torch
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import (
    _check_n_features,
    _check_sample_weight,
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
)

from ._validation import check_feature_names, check_features


def _labels_or_targets(y):
    """``y`` as a 1-d array: sklearn's ``column_or_1d``, without its checks for a plain 1-d array."""
    if isinstance(y, np.ndarray) and y.ndim == 1 and y.dtype.kind in "biufUS":
        return np.ascontiguousarray(y)
    return column_or_1d(y, warn=True)


class _AdaptedMixin:
    """What both adapted estimators share: the meta-learner and its state."""

    def __init__(self, meta_learner):
        self.meta_learner = meta_learner

    @property
    def _meta(self):
        meta = self.meta_learner
        return getattr(meta, "estimator", meta)  # unwrap sklearn's FrozenEstimator

    def _fit_state(self, X, y, sample_weight=None):
        """Validate a support set: first as data, then against the meta-learner."""
        meta = self._meta
        meta._check_meta_fitted()
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None; "
                "pass the support set's labels or targets."
            )
        X_frame = meta._drop_task_column(X)
        X = check_features(X_frame, what="X_support")
        y = meta._check_targets(_labels_or_targets(y))
        check_consistent_length(X, y)
        y = self._check_support_targets(y)
        if X.shape[1] != meta.n_features_in_:
            raise ValueError(
                f"X_support has {X.shape[1]} feature(s), but {type(meta).__name__} was "
                f"meta-trained on {meta.n_features_in_}; the backbone's input width is "
                "fixed at meta-training, so pass the columns it was meta-trained on."
            )
        check_feature_names(meta, X_frame, reset=False)  # the names it was meta-trained on
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                                 ensure_non_negative=True)
            if not sample_weight.sum() > 0:
                raise ValueError("sample_weight sums to 0: give some support rows a positive weight.")
        return X, y, sample_weight

    def _store(self, X_frame_or_array, adaptation):
        """Record a successful adaptation: the state and what describes it."""
        check_feature_names(self, X_frame_or_array, reset=True)
        self.n_features_in_ = self._meta.n_features_in_
        self.state_ = adaptation.state
        if adaptation.report is not None:
            self.adapt_history_ = adaptation.report
            if adaptation.report.get("backtracked"):
                self._meta._warn_backtracked(1, 1)
        elif hasattr(self, "adapt_history_"):
            del self.adapt_history_

    def _check_support_targets(self, y):
        return y

    def _raw_predict(self, X):
        check_is_fitted(self, "state_")
        meta = self._meta
        X = meta._drop_task_column(X)
        check_feature_names(self, X, reset=False)  # fit checked them against meta's
        array = check_features(X, what="X")
        _check_n_features(meta, array, reset=False)
        return meta._predict_task(self._adaptation(), array)

    def _adaptation(self):
        from ._base import Adaptation

        return Adaptation(self.state_, getattr(self, "target_mean_", 0.0),
                          getattr(self, "target_scale_", 1.0), classes=getattr(self, "classes_", None))

    def __getstate__(self):
        state = self.__dict__.copy()
        if "state_" in state:  # tensors travel on the CPU; see __setstate__
            state["state_"] = _to_device(state["state_"], "cpu")
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if "state_" in state:
            self.state_ = _to_device(self.state_, self._meta.device_)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def _to_device(state, device):
    if isinstance(state, torch.Tensor):
        return state.to(device)
    if isinstance(state, dict):
        return {key: _to_device(value, device) for key, value in state.items()}
    return state


class AdaptedClassifier(_AdaptedMixin, ClassifierMixin, BaseEstimator):
    """A meta-learned classifier adapted to one task's support set.

    Parameters
    ----------
    meta_learner : FrozenEstimator wrapping a fitted meta-learner
        The starting point. It is frozen so that ``clone`` keeps it fitted.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The support set's labels, sorted.
    state_ : torch.Tensor or dict of torch.Tensor
        The adapted state: prototypes of shape (n_classes, n_embedding), or
        the adapted weights of the backbone.
    adapt_history_ : dict
        For learners that adapt by gradient steps: ``step_sizes`` and
        ``support_loss`` per step, and whether a step was ``backtracked``.
    n_features_in_ : int
        Number of features.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names, when the support set had string column names.

    Notes
    -----
    What the meta-learner fixed at meta-training stays fixed: the support
    set needs its columns (``n_features_in_``, and names if it had them)
    and, for :class:`~skmeta.MAMLClassifier`, exactly ``n_ways_`` classes.
    Adapting never changes the meta-learner.

    Examples
    --------
    >>> from skmeta import ProtoNetClassifier
    >>> from skmeta.datasets import make_blob_tasks
    >>> tasks = make_blob_tasks(n_tasks=8, random_state=0)
    >>> meta = ProtoNetClassifier(max_epochs=1, n_episodes=8, random_state=0).fit(tasks)
    >>> new_task = make_blob_tasks(n_tasks=1, random_state=1)[0]
    >>> clf = meta.adapt(new_task.X[:10], new_task.y[:10])
    >>> clf.predict(new_task.X[10:13]).shape
    (3,)
    """

    def fit(self, X, y, sample_weight=None):
        """Adapt to the support set ``(X, y)`` from the meta-learned start.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_support, n_features)
        y : array-like of shape (n_support,)
        sample_weight : array-like of shape (n_support,), default=None
            Weights of the support rows; a row of weight 0 counts as absent.

        Returns
        -------
        self : object
        """
        frame = self._meta._drop_task_column(X)
        X, y, sample_weight = self._fit_state(X, y, sample_weight)
        if sample_weight is not None:
            present = np.unique(y[sample_weight > 0])
            if present.shape[0] < np.unique(y).shape[0]:
                absent = sorted(set(np.unique(y).tolist()) - set(present.tolist()))
                raise ValueError(
                    f"Every support row of class(es) {absent} has weight 0; drop those rows "
                    "(the adapted classifier then has no such class) or give them weight."
                )
        classes, y_encoded = np.unique(y, return_inverse=True)
        adaptation = self._meta._adapt_task(X, y_encoded, classes.shape[0], sample_weight, classes=classes)
        self.classes_ = classes
        self._store(frame, adaptation)
        return self

    def _check_support_targets(self, y):
        self._meta._check_support_classes(np.unique(y))
        return y

    def predict_proba(self, X):
        """Class probabilities of query rows.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_queries, n_features)

        Returns
        -------
        ndarray of shape (n_queries, n_classes)
        """
        return softmax(self._raw_predict(X), axis=1)

    def predict(self, X):
        """Labels of query rows.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_queries, n_features)

        Returns
        -------
        ndarray of shape (n_queries,)
        """
        scores = self._raw_predict(X)  # checks that the estimator is fitted
        return self.classes_[scores.argmax(axis=1)]


class AdaptedRegressor(_AdaptedMixin, RegressorMixin, BaseEstimator):
    """A meta-learned regressor adapted to one task's support set.

    Parameters
    ----------
    meta_learner : FrozenEstimator wrapping a fitted meta-learner
        The starting point. It is frozen so that ``clone`` keeps it fitted.

    Attributes
    ----------
    state_ : dict of torch.Tensor
        The adapted weights of the backbone.
    target_mean_, target_scale_ : float
        The support targets were standardised as ``(y - target_mean_) /
        target_scale_`` for adapting, and predictions are mapped back to the
        targets' units (0 and 1 when the meta-learner does not standardise).
    adapt_history_ : dict
        For learners that adapt by gradient steps: ``step_sizes`` and
        ``support_loss`` per step, and whether a step was ``backtracked``.
    n_features_in_ : int
        Number of features.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names, when the support set had string column names.

    Notes
    -----
    The support set needs the columns the meta-learner was meta-trained on
    (``n_features_in_``, and names if it had them). Adapting never changes
    the meta-learner.

    Examples
    --------
    >>> from skmeta import MAMLRegressor
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> tasks = make_sinusoid_tasks(n_tasks=20, random_state=0)
    >>> meta = MAMLRegressor(inner_lr=0.01, max_epochs=1, n_episodes=20,
    ...                      random_state=0).fit(tasks)
    >>> task = make_sinusoid_tasks(n_tasks=1, random_state=1)[0]
    >>> reg = meta.adapt(task.X[:10], task.y[:10])
    >>> reg.predict(task.X[10:13]).shape
    (3,)
    """

    def fit(self, X, y, sample_weight=None):
        """Adapt to the support set ``(X, y)`` from the meta-learned start.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_support, n_features)
        y : array-like of shape (n_support,)
        sample_weight : array-like of shape (n_support,), default=None
            Weights of the support rows; a row of weight 0 counts as absent.

        Returns
        -------
        self : object
        """
        frame = self._meta._drop_task_column(X)
        X, y, sample_weight = self._fit_state(X, y, sample_weight)
        adaptation = self._meta._adapt_task(X, y, None, sample_weight)
        self.target_mean_ = adaptation.target_mean
        self.target_scale_ = adaptation.target_scale
        self._store(frame, adaptation)
        return self

    def predict(self, X):
        """Targets of query rows.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_queries, n_features)

        Returns
        -------
        ndarray of shape (n_queries,)
        """
        return self._raw_predict(X)
