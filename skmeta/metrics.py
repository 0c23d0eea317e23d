"""Episodic scoring: any sklearn metric, per task, after adapting to that task.

A meta-learner has no ``predict(X)`` of its own: it predicts for a task once
adapted to that task's support set. So sklearn's scorers, which call
``predict``/``predict_proba`` on the estimator they are given, cannot score
it. An episodic scorer does what the meta-learner's ``score`` does, with the
metric of your choice: for each task it draws a seeded support set, adapts,
and applies the sklearn scorer to the adapted estimator on the task's other
rows; the score is the mean over tasks. :func:`episodic_score` is that loop,
the one the meta-learners' and meta-pipelines' ``score`` run too.
"""

import inspect
import sys
import warnings
from numbers import Integral
from types import SimpleNamespace

import numpy as np
import pandas as pd
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import check_scoring
from sklearn.metrics._scorer import _BaseScorer, _MultimetricScorer
from sklearn.model_selection import _validation as _model_selection
from sklearn.pipeline import Pipeline
from sklearn.utils import _safe_indexing
from sklearn.utils._param_validation import Interval, validate_params
from sklearn.utils.metadata_routing import get_routing_for_object
from sklearn.utils.validation import _check_sample_weight

from ._base import MetaLearner
from ._validation import as_task_collection
from .pipeline import MetaPipeline, _final_chain
from .utils._stacklevel import external_stacklevel

__all__ = ["episodic_score", "make_episodic_scorer"]


def _plain_scorer_message(estimator):
    """What to say when a meta-learner is asked to predict without a support set.

    For ``predict``/``predict_proba`` called without ``X_support``, and for
    ``classes_``: both are what a plain sklearn scorer (``scoring="roc_auc"``)
    reaches for, so the message names the episodic scorer as well.

    Parameters
    ----------
    estimator : estimator
        The meta-learner; its class name goes into the message.

    Returns
    -------
    str

    Examples
    --------
    >>> from skmeta import ProtoNetClassifier
    >>> from skmeta.metrics import _plain_scorer_message
    >>> message = _plain_scorer_message(ProtoNetClassifier())
    >>> message.split(":")[0]
    "ProtoNetClassifier predicts for a task only once adapted to that task's support set"
    >>> "skmeta.metrics.make_episodic_scorer" in message
    True
    """
    name = type(estimator).__name__
    return (
        f"{name} predicts for a task only once adapted to that task's support set: "
        "pass X_support and y_support, or call adapt(X_support, y_support) once and "
        "predict with the estimator it returns. It has no classes_ and no predict or "
        "predict_proba of its own, so a plain sklearn scorer (scoring='roc_auc', "
        "'accuracy', ...) cannot score it; for cross_val_score, cross_validate or "
        'GridSearchCV pass scoring=skmeta.metrics.make_episodic_scorer("roc_auc"), '
        "which adapts to a seeded support set in each task and scores the task's "
        "other rows."
    )


def _refuse_plain_scorer(meta_learner):
    """Raise if sklearn's model selection is about to score us with a plain scorer.

    Call it first thing in a meta-learner's ``fit``. It looks up the call
    stack for sklearn's ``_fit_and_score`` (``cross_val_score``,
    ``cross_validate``, ``GridSearchCV``, ...): when the estimator it fits
    is ``meta_learner`` or a pipeline ending in it, and its scorer is (or
    holds) one of sklearn's metric scorers (``scoring="roc_auc"``,
    ``make_scorer(...)``), that scorer would call ``predict`` or
    ``predict_proba`` without a support set and fail after meta-training,
    or, on a TaskCollection, before reaching the estimator at all. So it
    fails now, with a message naming :func:`make_episodic_scorer`.

    Parameters
    ----------
    meta_learner : estimator
        The meta-learner being fitted.

    Raises
    ------
    ValueError
        Naming the scorer and :func:`make_episodic_scorer`.

    Examples
    --------
    >>> from skmeta.metrics import _refuse_plain_scorer
    >>> _refuse_plain_scorer(object())  # not fitted by sklearn's model selection: no-op
    """
    fit_and_score = getattr(_model_selection, "_fit_and_score", None)
    if fit_and_score is None:  # pragma: no cover - another sklearn: nothing to look for
        return
    code = inspect.unwrap(fit_and_score).__code__
    frame = sys._getframe(1)
    try:
        while frame is not None and frame.f_code is not code:
            frame = frame.f_back
        if frame is None:
            return
        estimator, scorer = frame.f_locals.get("estimator"), frame.f_locals.get("scorer")
    finally:
        del frame  # no reference cycle through the frames
    if not any(step is meta_learner for step in _final_chain(estimator)):
        return  # a meta-estimator (a search) around the learner: it may score otherwise
    named = scorer._scorers if isinstance(scorer, _MultimetricScorer) else {None: scorer}
    plain = [(name, s) for name, s in named.items() if isinstance(s, _BaseScorer)]
    if plain:
        shown = ", ".join(repr(s) if name is None else f"{name!r}: {s!r}" for name, s in plain)
        raise ValueError(f"{_plain_scorer_message(meta_learner)} Got scoring {shown}.")


def _adapter(estimator):
    """The meta-learner behind ``estimator``, and what adapts ``estimator`` to a task."""
    final = estimator._final_estimator if isinstance(estimator, Pipeline) else estimator
    if not isinstance(final, MetaLearner):
        ending = f" ending in {type(final).__name__}" if final is not estimator else ""
        raise TypeError(
            "An episodic score needs a meta-learner (ProtoNetClassifier, MAMLClassifier, "
            f"MAMLRegressor, ...) or a Pipeline ending in one; got {type(estimator).__name__}"
            f"{ending}. Score other estimators with sklearn's scorers."
        )
    if isinstance(estimator, Pipeline) and not isinstance(estimator, MetaPipeline):
        estimator = MetaPipeline(estimator.steps)  # support rows are transformed all the same
    return final, estimator.adapt


def _check_scorer(scoring, classification):
    """A sklearn scorer ``(estimator, X, y)`` from a name, a scorer or None."""
    if isinstance(scoring, _EpisodicScorer):
        raise ValueError(
            f"scoring={scoring!r} is already episodic; pass the metric it wraps "
            "(a name such as 'roc_auc', or a scorer from sklearn.metrics.make_scorer)."
        )
    if scoring is None:
        scoring = "accuracy" if classification else "r2"
    return check_scoring(None, scoring)  # sklearn's names, and its checks of callables


def _accepts_sample_weight(scorer):
    if hasattr(scorer, "_accept_sample_weight"):  # sklearn's scorers
        return scorer._accept_sample_weight()
    try:
        parameters = inspect.signature(scorer).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "sample_weight" or p.kind == p.VAR_KEYWORD for p in parameters)


def _split_tasks(X, y, task_column):
    """Yield ``(name, X_task, y_task, rows)`` for each task of ``X``.

    Long-format rows are split by ``task_column`` as ``fit`` splits them
    (:func:`~skmeta._validation.as_task_collection`), but ``X_task`` keeps
    all of the raw columns, the task column included, and ``rows`` are the
    task's positions in ``X``. For tasks, ``rows`` is None.
    """
    if not isinstance(X, pd.DataFrame) or task_column is None or task_column not in X.columns:
        for task in as_task_collection(X, y, task_column=task_column):
            yield task.name, task.X, np.asarray(task.y), None
        return
    position = "_row" if task_column != "_row" else "_row_"
    rows = pd.DataFrame({task_column: X[task_column].to_numpy(), position: np.arange(X.shape[0])})
    for task in as_task_collection(rows, y, task_column=task_column):
        positions = task.X[position].to_numpy()
        yield task.name, _safe_indexing(X, positions), np.asarray(task.y), positions


def _is_degenerate(y_query, classification):
    """Whether no metric can tell anything from these query targets."""
    if classification:
        return np.unique(y_query).shape[0] < 2
    return y_query.shape[0] < 2


def _score_task(scorer, adapted, X_query, y_query, weights, classification):
    """The scorer's value on one task and the warnings it gave.

    The value is NaN where the metric is undefined on the task's query rows.
    """
    kwargs = {} if weights is None else {"sample_weight": weights}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = float(scorer(adapted, X_query, y_query, **kwargs))
        except ValueError:
            if not _is_degenerate(y_query, classification):
                raise
            value = np.nan
    return value, caught


def _names(names, limit=10):
    shown = ", ".join(repr(name) for name in names[:limit])
    return shown + (", ..." if len(names) > limit else "")


@validate_params(
    {
        "estimator": "no_validation",
        "X": "no_validation",
        "y": "no_validation",
        "scoring": [str, callable, None],
        "sample_weight": ["array-like", None],
        "n_shots": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": [Interval(Integral, 0, None, closed="left"), None],
    },
    prefer_skip_nested_validation=True,
)
def episodic_score(estimator, X, y=None, *, scoring=None, sample_weight=None, n_shots=None,
                   random_state=None):
    """Mean over tasks of a metric, each task scored after adapting to it.

    For each task, in order, a support set is drawn by the meta-learner's
    episode sampler (``n_shots`` rows per class, or in all for regression)
    from one seeded random stream; the estimator adapts to it (through the
    preprocessing steps, for a pipeline) and ``scoring`` scores the adapted
    estimator on all of the task's other rows, in the task's own labels.

    Parameters
    ----------
    estimator : meta-learner, or Pipeline ending in one
        Fitted. A pipeline (a :class:`~skmeta.pipeline.MetaPipeline`, or a
        plain ``Pipeline``) takes raw rows: they are split into tasks before
        any preprocessing, and support and query rows are each transformed.
    X : DataFrame, TaskCollection or list of tasks
        A long-format DataFrame holding the meta-learner's ``task_column``,
        or tasks.
    y : array-like of shape (n_rows,), default=None
        Targets, for long format only.
    scoring : str, callable or None, default=None
        A name that :func:`sklearn.metrics.get_scorer` knows ("roc_auc",
        "neg_log_loss", "neg_mean_absolute_error", ...) or a scorer
        ``scorer(estimator, X, y)`` (e.g. from
        :func:`sklearn.metrics.make_scorer`). None: accuracy for
        classifiers, R² for regressors, as ``score`` gives.
    sample_weight : array-like of shape (n_rows,), default=None
        Weights of the rows of a long-format ``X``, given to the metric on
        each task's query rows; the metric must take ``sample_weight``.
    n_shots : int, default=None
        Support rows per class (in all, for regression); None takes the
        meta-learner's ``n_shots``.
    random_state : int, default=None
        Seed of the support draws; None takes the meta-learner's
        ``random_state`` when it is an int, else 0.

    Returns
    -------
    float
        The mean over the tasks on which the metric is defined.

    Warns
    -----
    UndefinedMetricWarning
        Once, naming the tasks left out because the metric is undefined on
        their query rows (ROC AUC where they hold one class, R² on one row).
    UserWarning
        Once, naming the tasks left out because they cannot give a support
        and a query set (a class with a single row).

    Raises
    ------
    ValueError
        If no task could be scored.

    See Also
    --------
    make_episodic_scorer : The same, as a scorer for ``cross_validate`` and
        ``GridSearchCV``.

    Examples
    --------
    >>> from skmeta import ProtoNetClassifier
    >>> from skmeta.datasets import make_blob_tasks
    >>> from skmeta.metrics import episodic_score
    >>> tasks = make_blob_tasks(n_tasks=8, n_features=4, random_state=0)
    >>> meta = ProtoNetClassifier(max_epochs=1, n_episodes=8, random_state=0,
    ...                           module__hidden_sizes=(8,)).fit(tasks[:6])
    >>> episodic_score(meta, tasks[6:]) == meta.score(tasks[6:])
    True
    >>> from skmeta.metrics import make_episodic_scorer
    >>> auc = episodic_score(meta, tasks[6:], scoring="roc_auc", n_shots=1)
    >>> auc == make_episodic_scorer("roc_auc", n_shots=1)(meta, tasks[6:])
    True
    """
    meta, adapt = _adapter(estimator)
    classification = meta._classification
    scorer = _check_scorer(scoring, classification)
    if sample_weight is not None:
        if not isinstance(X, pd.DataFrame):
            raise ValueError(
                "sample_weight weighs the rows of a long-format DataFrame X; with "
                f"X a {type(X).__name__} of tasks, pass sample_weight=None."
            )
        if not _accepts_sample_weight(scorer):
            raise ValueError(
                f"scoring={scorer!r} takes no sample_weight; pass sample_weight=None "
                "or a scorer whose metric takes it."
            )
        sample_weight = _check_sample_weight(sample_weight, X)
    sampler = meta._sampler()
    if n_shots is not None:
        sampler.n_shots = n_shots
    if random_state is None:
        random_state = meta.random_state if isinstance(meta.random_state, Integral) else 0
    rng = np.random.default_rng(random_state)

    scores, undefined, unusable, passed_on, scored = [], [], [], {}, []
    for name, X_task, y_task, rows in _split_tasks(X, y, meta.task_column):
        scored.append(SimpleNamespace(name=name, X=meta._drop_task_column(X_task)))
        # Draw row positions: the sampler indexes what it is given as X.
        positions = np.arange(y_task.shape[0]).reshape(-1, 1)
        try:
            episode = sampler.sample(positions, y_task, rng, task=name, query="rest")
        except ValueError as exc:  # too few rows (of a class) for a support and a query set
            unusable.append(str(exc))
            continue
        support, query = episode.X_support[:, 0], episode.X_query[:, 0]
        adapted = adapt(_safe_indexing(X_task, support), y_task[support])
        weights = None if sample_weight is None else sample_weight[rows[query]]
        value, caught = _score_task(scorer, adapted, _safe_indexing(X_task, query), y_task[query],
                                    weights, classification)
        if np.isnan(value):
            undefined.append(name)
            continue
        scores.append(value)
        for warning in caught:  # each different warning once, not once per task
            passed_on.setdefault((warning.category, str(warning.message)), warning.message)
    meta._warn_if_seen(scored, isinstance(X, pd.DataFrame))
    for (category, _), message in passed_on.items():
        warnings.warn(message, category, stacklevel=external_stacklevel())
    if unusable:
        warnings.warn(
            f"Left out {len(unusable)} task(s) that cannot give a support and a query set: "
            + " ".join(unusable[:3]) + (" ..." if len(unusable) > 3 else ""),
            UserWarning,
            stacklevel=external_stacklevel(),
        )
    if not scores:
        raise ValueError(
            f"{scorer!r} could score none of the {len(undefined) + len(unusable)} task(s): "
            + (f"it is undefined on the query rows of every task ({_names(undefined)}); "
               if undefined else "")
            + "give the tasks more rows of each class, lower n_shots, or choose another metric."
        )
    if undefined:
        warnings.warn(
            f"{scorer!r} is undefined on the query rows of {len(undefined)} of "
            f"{len(undefined) + len(scores)} tasks ({_names(undefined)}), left out of "
            "the mean; a metric such as ROC AUC needs two classes among the rows "
            "left after the support set.",
            UndefinedMetricWarning,
            stacklevel=external_stacklevel(),
        )
    return float(np.mean(scores))


class _EpisodicScorer:
    """A scorer ``scorer(estimator, X, y=None, sample_weight=None)`` of meta-learners.

    Built by :func:`make_episodic_scorer`; calling it runs
    :func:`episodic_score` with its metric, ``n_shots`` and ``random_state``.
    """

    def __init__(self, scorer, *, scoring, n_shots, random_state):
        self._scorer = scorer
        self._scoring = scoring
        self._n_shots = n_shots
        self._random_state = random_state

    def __call__(self, estimator, X, y=None, sample_weight=None):
        """The episodic score of a fitted meta-learner (or pipeline) on tasks ``X``."""
        return episodic_score(estimator, X, y, scoring=self._scorer, sample_weight=sample_weight,
                              n_shots=self._n_shots, random_state=self._random_state)

    def __repr__(self):
        options = "".join(
            f", {name}={value!r}"
            for name, value in (("n_shots", self._n_shots), ("random_state", self._random_state))
            if value is not None
        )
        return f"make_episodic_scorer({self._scoring!r}{options})"

    # sklearn's multi-metric scoring asks this before passing sample_weight.
    def _accept_sample_weight(self):
        return _accepts_sample_weight(self._scorer)

    def set_score_request(self, **kwargs):
        """Request metadata (``sample_weight=True``) for the metric, under routing.

        Parameters
        ----------
        **kwargs : dict
            As :meth:`sklearn.metrics.make_scorer`'s ``set_score_request``.

        Returns
        -------
        self : object
        """
        if not hasattr(self._scorer, "set_score_request"):
            raise TypeError(
                f"{self._scorer!r} has no set_score_request; build the scorer with "
                "sklearn.metrics.make_scorer to route metadata to it."
            )
        self._scorer.set_score_request(**kwargs)
        return self

    def get_metadata_routing(self):
        """The metric's metadata requests (sklearn's metadata routing)."""
        return get_routing_for_object(self._scorer)


@validate_params(
    {
        "scoring": [str, callable],
        "n_shots": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": [Interval(Integral, 0, None, closed="left"), None],
    },
    prefer_skip_nested_validation=True,
)
def make_episodic_scorer(scoring, *, n_shots=None, random_state=None):
    """Make an episodic scorer from a metric name or a sklearn scorer.

    The scorer, ``scorer(estimator, X, y=None, sample_weight=None)``, goes
    where sklearn takes ``scoring=``: ``cross_val_score``,
    ``cross_validate`` (several, as a dict), ``GridSearchCV`` (with
    ``refit`` naming one). Given a fitted meta-learner and tasks (a
    TaskCollection, or a long-format DataFrame and ``y``), or a fitted
    :class:`~skmeta.pipeline.MetaPipeline` and raw long-format rows, it
    adapts to a seeded support set in each task, scores the task's other
    rows with ``scoring`` and returns the mean over tasks (see
    :func:`episodic_score`).

    Parameters
    ----------
    scoring : str or callable
        A name that :func:`sklearn.metrics.get_scorer` knows ("accuracy",
        "balanced_accuracy", "roc_auc", "neg_log_loss", "r2",
        "neg_mean_absolute_error", ...) or a scorer ``scorer(estimator, X,
        y)``; wrap a metric function with :func:`sklearn.metrics.make_scorer`.
    n_shots : int, default=None
        Support rows per class (in all, for regression); None takes the
        meta-learner's ``n_shots``.
    random_state : int, default=None
        Seed of the support draws; None takes the meta-learner's
        ``random_state`` when it is an int, else 0, as its ``score`` does.

    Returns
    -------
    callable
        The episodic scorer. Greater is better, as for sklearn's scorers
        ("neg_log_loss" is the negated log loss).

    See Also
    --------
    episodic_score : The loop the scorer runs.
    sklearn.metrics.get_scorer : The metric names.

    Examples
    --------
    >>> from sklearn.model_selection import cross_validate
    >>> from skmeta import ProtoNetClassifier
    >>> from skmeta.datasets import make_blob_tasks
    >>> from skmeta.metrics import make_episodic_scorer
    >>> tasks = make_blob_tasks(n_tasks=9, n_features=4, random_state=0)
    >>> meta = ProtoNetClassifier(max_epochs=1, n_episodes=8, random_state=0,
    ...                           module__hidden_sizes=(8,))
    >>> scoring = {"auc": make_episodic_scorer("roc_auc"),
    ...            "log_loss": make_episodic_scorer("neg_log_loss", n_shots=1)}
    >>> scoring["log_loss"]
    make_episodic_scorer('neg_log_loss', n_shots=1)
    >>> result = cross_validate(meta, tasks, cv=3, scoring=scoring)
    >>> result["test_auc"].shape, bool((result["test_log_loss"] < 0).all())
    ((3,), True)
    """
    scorer = _check_scorer(scoring, classification=None)
    return _EpisodicScorer(scorer, scoring=scoring, n_shots=n_shots, random_state=random_state)
