"""Meta-pipelines: preprocessing steps that a new task's support set goes through too.

sklearn's :class:`~sklearn.pipeline.Pipeline` transforms the rows it
predicts for, but passes any other argument on untouched: given
``X_support=`` it would hand the meta-learner raw support rows beside
transformed query rows. :class:`MetaPipeline` is a ``Pipeline`` whose last
step is a meta-learner and whose ``adapt``, ``predict``, ``predict_proba``
and ``score`` send the support rows through the fitted preprocessing steps
as well.
"""

import sys

from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.utils.metaestimators import available_if

from ._base import MetaLearner

__all__ = ["MetaPipeline", "make_meta_pipeline"]


def _final_estimator_has(attr):
    """Whether the last step has ``attr``, for ``available_if``."""

    def check(self):
        getattr(self._final_estimator, attr)  # raises the AttributeError
        return True

    return check


class MetaPipeline(Pipeline):
    """A Pipeline whose last step is a meta-learner, support sets transformed too.

    It fits, transforms and is tuned as a :class:`~sklearn.pipeline.Pipeline`.
    What it adds is adaptation to a new task through the fitted preprocessing
    steps: ``adapt(X_support, y_support)`` transforms the support rows with
    ``self[:-1]`` and adapts the meta-learner on them, and
    ``predict(X, X_support=..., y_support=...)`` transforms both the support
    and the query rows. ``score`` is the episodic score on raw long-format
    rows: the table is split into tasks by the meta-learner's
    ``task_column`` first, then each task is adapted to through the pipeline.

    Parameters
    ----------
    steps : list of (str, estimator) tuples
        Transformers, then a meta-learner (:class:`~skmeta.ProtoNetClassifier`,
        :class:`~skmeta.MAMLClassifier`, :class:`~skmeta.MAMLRegressor`).
    transform_input : list of str, default=None
        As in :class:`~sklearn.pipeline.Pipeline` (metadata routing only).
    memory : str or object with the joblib.Memory interface, default=None
        Caches the fitted transformers, as in :class:`~sklearn.pipeline.Pipeline`.
    verbose : bool, default=False
        Print the time each step takes to fit.

    Attributes
    ----------
    named_steps : :class:`~sklearn.utils.Bunch`
        The steps by name.
    n_features_in_ : int
        Number of raw columns seen by the first step during ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Raw column names seen by the first step during ``fit``.

    See Also
    --------
    make_meta_pipeline : Build a MetaPipeline without naming the steps.
    skmeta.metrics.make_episodic_scorer : Any sklearn metric as an episodic
        scorer, for ``cross_validate`` and ``GridSearchCV``.

    Examples
    --------
    >>> from skmeta import ProtoNetClassifier, make_task_preprocessor
    >>> from skmeta.datasets import load_adult_tasks
    >>> from skmeta.pipeline import make_meta_pipeline
    >>> df = load_adult_tasks(return_frame=True).groupby(["occupation", "income"]).head(20)
    >>> X, y = df.drop(columns="income"), df["income"].to_numpy()
    >>> new = (X["occupation"] == "Sales").to_numpy()
    >>> pipe = make_meta_pipeline(
    ...     make_task_preprocessor(X, "occupation"),
    ...     ProtoNetClassifier(task_column="occupation", max_epochs=1, n_episodes=8,
    ...                        random_state=0, module__hidden_sizes=(8,)),
    ... ).fit(X[~new], y[~new])
    >>> X_new, y_new = X[new], y[new]
    >>> support = [0, 1, 2, -3, -2, -1]  # three rows of each class
    >>> clf = pipe.adapt(X_new.iloc[support], y_new[support])
    >>> clf
    Pipeline(steps=[('columntransformer', FrozenEstimator(...)),
                    ('protonetclassifier', AdaptedClassifier(...))])
    >>> clf.predict_proba(X_new.iloc[3:6]).shape
    (3, 2)
    >>> proba = pipe.predict_proba(X_new.iloc[3:6], X_support=X_new.iloc[support],
    ...                            y_support=y_new[support])
    >>> bool((proba == clf.predict_proba(X_new.iloc[3:6])).all())
    True
    >>> pipe.score(X_new, y_new) == pipe[-1].score(pipe[:-1].transform(X_new), y_new)
    True
    """

    def _meta_learner(self):
        """The last step, checked to be a meta-learner."""
        meta = self._final_estimator
        if not isinstance(meta, MetaLearner):
            raise TypeError(
                f"The last step of a {type(self).__name__} must be a meta-learner "
                "(ProtoNetClassifier, MAMLClassifier, MAMLRegressor, ...) to adapt to a "
                f"task; got {type(meta).__name__}. For any other estimator use "
                "sklearn.pipeline.Pipeline."
            )
        return meta

    def adapt(self, X_support, y_support, sample_weight=None):
        """Adapt to a new task from its raw support set, through the preprocessing.

        The support rows go through the fitted preprocessing steps
        (``self[:-1].transform``), then the meta-learner adapts on them.
        Nothing is refitted: the returned pipeline holds the fitted
        preprocessing steps, frozen, and the adapted estimator.

        Parameters
        ----------
        X_support : array-like or DataFrame of shape (n_support, n_columns)
            The new task's labelled rows, raw: as ``fit`` was given them
            (the task column included, if the preprocessing takes it).
        y_support : array-like of shape (n_support,)
            Their labels or targets.
        sample_weight : array-like of shape (n_support,), default=None
            Weights of the support rows, passed on to the meta-learner's
            ``adapt``.

        Returns
        -------
        Pipeline
            A fitted :class:`~sklearn.pipeline.Pipeline`: each preprocessing
            step wrapped in :class:`~sklearn.frozen.FrozenEstimator`, then the
            adapted estimator (:class:`~skmeta.AdaptedClassifier` or
            :class:`~skmeta.AdaptedRegressor`). Its ``fit(X, y)`` adapts again,
            from the same meta-learned start and with the same preprocessing,
            so ``cross_val_score`` can refit it on a new task's rows.

        Examples
        --------
        >>> import numpy as np
        >>> import pandas as pd
        >>> from skmeta import ProtoNetClassifier, make_task_preprocessor
        >>> from skmeta.datasets import make_blob_tasks
        >>> from skmeta.pipeline import make_meta_pipeline
        >>> tasks = make_blob_tasks(n_tasks=7, n_features=4, random_state=0)
        >>> X = pd.concat([pd.DataFrame(t.X, columns=list("abcd")).assign(task=t.name)
        ...                for t in tasks], ignore_index=True)
        >>> y = np.concatenate([t.y for t in tasks])
        >>> new = (X["task"] == "blobs_6").to_numpy()
        >>> pipe = make_meta_pipeline(
        ...     make_task_preprocessor(X, "task"),
        ...     ProtoNetClassifier(task_column="task", max_epochs=1, n_episodes=8,
        ...                        random_state=0, module__hidden_sizes=(8,)),
        ... ).fit(X[~new], y[~new])
        >>> clf = pipe.adapt(X[new].iloc[::8], y[new][::8])  # 10 labelled rows
        >>> clf.predict(X[new].iloc[1:4]).shape
        (3,)
        >>> manual = pipe[-1].adapt(pipe[:-1].transform(X[new].iloc[::8]), y[new][::8])
        >>> bool((clf.predict_proba(X[new]) ==
        ...       manual.predict_proba(pipe[:-1].transform(X[new]))).all())
        True
        """
        meta = self._meta_learner()
        Xt = X_support
        for _, _, step in self._iter(with_final=False):  # as Pipeline.predict transforms
            Xt = step.transform(Xt)  # NotFittedError before fit
        kwargs = {} if sample_weight is None else {"sample_weight": sample_weight}
        adapted = meta.adapt(Xt, y_support, **kwargs)
        steps = [
            (name, step if step is None or step == "passthrough" else FrozenEstimator(step))
            for name, step in self.steps[:-1]
        ]
        return Pipeline([*steps, (self.steps[-1][0], adapted)], verbose=self.verbose)

    def _adapted_for(self, X_support, y_support, sample_weight):
        _refuse_plain_pipeline(self)  # nested in a plain Pipeline's predict
        return self.adapt(X_support, y_support, sample_weight=sample_weight)

    @available_if(_final_estimator_has("predict"))
    def _through_adapted(self, method, X, X_support, y_support, sample_weight, params):
        """``method`` of the pipeline adapted to the support set; without one, the meta-learner's error."""
        if X_support is None or y_support is None:
            return getattr(super(), method)(X, **params)
        return getattr(self._adapted_for(X_support, y_support, sample_weight), method)(X, **params)

    def predict(self, X, X_support=None, y_support=None, sample_weight=None, **params):
        """Adapt on a raw support set, then predict the raw query rows ``X``.

        Both are transformed by the fitted preprocessing steps:
        ``self.adapt(X_support, y_support).predict(X)``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_queries, n_columns)
            Query rows, raw.
        X_support : array-like or DataFrame of shape (n_support, n_columns)
            The task's labelled rows, raw.
        y_support : array-like of shape (n_support,)
            Their labels or targets.
        sample_weight : array-like of shape (n_support,), default=None
            Weights of the support rows, as in :meth:`adapt`.
        **params : dict
            Passed on to the adapted estimator's ``predict``.

        Returns
        -------
        ndarray of shape (n_queries,)
        """
        return self._through_adapted("predict", X, X_support, y_support, sample_weight, params)

    @available_if(_final_estimator_has("predict_proba"))
    def predict_proba(self, X, X_support=None, y_support=None, sample_weight=None, **params):
        """Adapt on a raw support set, then give class probabilities of ``X``.

        Both are transformed by the fitted preprocessing steps:
        ``self.adapt(X_support, y_support).predict_proba(X)``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_queries, n_columns)
            Query rows, raw.
        X_support : array-like or DataFrame of shape (n_support, n_columns)
            The task's labelled rows, raw.
        y_support : array-like of shape (n_support,)
            Their labels.
        sample_weight : array-like of shape (n_support,), default=None
            Weights of the support rows, as in :meth:`adapt`.
        **params : dict
            Passed on to the adapted estimator's ``predict_proba``.

        Returns
        -------
        ndarray of shape (n_queries, n_classes)
            Columns follow the sorted labels of ``y_support``.
        """
        return self._through_adapted("predict_proba", X, X_support, y_support, sample_weight, params)

    @available_if(_final_estimator_has("decision_function"))
    def decision_function(self, X, X_support=None, y_support=None, sample_weight=None, **params):
        """Adapt on a raw support set, then give decision values of ``X``.

        ``self.adapt(X_support, y_support).decision_function(X)``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_queries, n_columns)
            Query rows, raw.
        X_support : array-like or DataFrame of shape (n_support, n_columns)
            The task's labelled rows, raw.
        y_support : array-like of shape (n_support,)
            Their labels.
        sample_weight : array-like of shape (n_support,), default=None
            Weights of the support rows, as in :meth:`adapt`.
        **params : dict
            Passed on to the adapted estimator's ``decision_function``.

        Returns
        -------
        ndarray
        """
        return self._through_adapted("decision_function", X, X_support, y_support, sample_weight, params)

    @available_if(_final_estimator_has("score"))
    def score(self, X, y=None, sample_weight=None):
        """Episodic meta-test score on raw long-format rows.

        The rows are split into tasks by the meta-learner's ``task_column``
        before any preprocessing; in each task a seeded support set is drawn
        as the meta-learner's own ``score`` draws it, :meth:`adapt` adapts
        to it through the pipeline, and the adapted pipeline is scored on the
        task's other rows. The score is the mean over tasks of the accuracy
        (classifiers) or R² (regressors). With row-wise preprocessing (a
        fitted ``ColumnTransformer``) it equals
        ``self[-1].score(self[:-1].transform(X), y)``.

        Parameters
        ----------
        X : DataFrame, TaskCollection or list of tasks
            Raw long-format rows holding the task column, or tasks.
        y : array-like of shape (n_rows,), default=None
            Targets, for long format only.
        sample_weight : array-like of shape (n_rows,), default=None
            Weights of the rows of long-format ``X`` in each task's score.

        Returns
        -------
        float

        See Also
        --------
        skmeta.metrics.make_episodic_scorer : Other metrics, episodically.
        """
        if not isinstance(self._final_estimator, MetaLearner):
            return super().score(X, y, sample_weight=sample_weight)
        from .metrics import episodic_score  # metrics adapts through this module

        return episodic_score(self, X, y, sample_weight=sample_weight)


def make_meta_pipeline(*steps, memory=None, verbose=False):
    """Build a :class:`MetaPipeline` from estimators, naming the steps by type.

    The counterpart of :func:`sklearn.pipeline.make_pipeline`; the last step
    is a meta-learner.

    Parameters
    ----------
    *steps : estimators
        Transformers, then a meta-learner.
    memory : str or object with the joblib.Memory interface, default=None
        Caches the fitted transformers.
    verbose : bool, default=False
        Print the time each step takes to fit.

    Returns
    -------
    MetaPipeline

    Examples
    --------
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skmeta import ProtoNetClassifier
    >>> from skmeta.pipeline import make_meta_pipeline
    >>> make_meta_pipeline(StandardScaler(), ProtoNetClassifier())
    MetaPipeline(steps=[('standardscaler', StandardScaler()),
                        ('protonetclassifier', ProtoNetClassifier())])
    """
    steps = make_pipeline(*steps).steps
    return MetaPipeline(steps, memory=memory, verbose=verbose)


# Pipeline methods that would pass X_support on to the last step untransformed.
_PREDICTING = ("predict", "predict_proba", "predict_log_proba", "decision_function")


def _final_chain(estimator):
    """``estimator``, then the last step of each pipeline it ends in."""
    while True:
        yield estimator
        if not isinstance(estimator, Pipeline) or not estimator.steps:
            return
        estimator = estimator.steps[-1][1]


def _preprocesses(pipeline):
    """Whether a pipeline has a step before its last that is not passthrough."""
    return any(step is not None and step != "passthrough" for _, step in pipeline.steps[:-1])


def _refuse_plain_pipeline(meta_learner):
    """Raise if a plain sklearn Pipeline passed untransformed support rows to us.

    Call it from a meta-learner's ``predict``/``predict_proba``/``adapt``
    when ``X_support`` is given. It walks up the call stack for a
    prediction method of a :class:`~sklearn.pipeline.Pipeline` that is not a
    :class:`MetaPipeline`, whose last step is ``meta_learner`` (or a pipeline
    ending in it) and which has preprocessing steps: such a pipeline
    transformed the query rows but passed ``X_support`` on raw, so the
    predictions would be wrong.

    Parameters
    ----------
    meta_learner : estimator
        The meta-learner (or MetaPipeline) being asked to adapt.

    Raises
    ------
    ValueError
        Naming :func:`make_meta_pipeline` and the manual route.

    Examples
    --------
    >>> from skmeta.pipeline import _refuse_plain_pipeline
    >>> _refuse_plain_pipeline(object())  # called outside a Pipeline: no-op
    """
    frame = sys._getframe(1)
    try:
        while frame is not None:
            pipeline = frame.f_locals.get("self") if frame.f_code.co_name in _PREDICTING else None
            if (
                isinstance(pipeline, Pipeline)
                and not isinstance(pipeline, MetaPipeline)
                and pipeline.steps
                and _preprocesses(pipeline)
                and any(step is meta_learner for step in _final_chain(pipeline.steps[-1][1]))
            ):
                raise ValueError(
                    f"A plain sklearn Pipeline passed X_support on to its last step "
                    f"{type(meta_learner).__name__} without transforming it: the support rows "
                    "would skip the pipeline's preprocessing steps and the predictions "
                    "would be wrong. Build the pipeline with "
                    "skmeta.pipeline.make_meta_pipeline (a skmeta.pipeline.MetaPipeline), "
                    "whose predict, predict_proba and adapt transform the support rows "
                    "too, or adapt by hand: "
                    "pipe[-1].adapt(pipe[:-1].transform(X_support), y_support)."
                )
            frame = frame.f_back
    finally:
        del frame  # no reference cycle through the frames

