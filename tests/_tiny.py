"""Helpers shared by test modules that run each meta-learner on tiny tasks.

Contract tests iterate over :data:`LEARNERS` (every public learner from
:func:`skmeta.utils.all_learners`), so a learner is covered the day it is
exported; what differs between learners (tasks, a smaller inner step) is
chosen by its ``_classification`` flag and its parameters, not by its name.
"""


import copy

import numpy as np
import pytest
import torch
from conftest import FAST

from skmeta import MAMLClassifier, MAMLRegressor, ProtoNetClassifier, Task, TaskCollection
from skmeta.datasets import make_blob_tasks, make_sinusoid_tasks
from skmeta.tasks import EpisodeBatch
from skmeta.utils import all_learners

#: The learners that existed when the first tests were written; kept for
#: the modules that use it. New tests use :data:`LEARNERS`.
ESTIMATORS = [ProtoNetClassifier, MAMLClassifier, MAMLRegressor]

#: Every public meta-learner, as pytest parameters named by the class.
LEARNERS = [pytest.param(cls, id=name) for name, cls in all_learners()]
CLASSIFIERS = [pytest.param(cls, id=name) for name, cls in all_learners("classifier")]
REGRESSORS = [pytest.param(cls, id=name) for name, cls in all_learners("regressor")]

#: One short epoch of tiny episodes on the CPU, no meta-validation (conftest.FAST).
TINY = FAST


def has_param(estimator_type, name):
    """Whether ``estimator_type`` takes the parameter ``name``."""
    return name in estimator_type().get_params(deep=False)


def module_takes(estimator_type, routed):
    """Whether the default module of ``estimator_type`` takes ``module__<name>``."""
    import inspect

    module = estimator_type().module
    return routed.removeprefix("module__") in inspect.signature(module).parameters


def tiny_params(estimator_type, base=TINY, **overrides):
    """``base`` settings, with a smaller inner step for regressors that take one.

    The sinusoids have amplitudes up to 5: ten adaptation steps of the
    default ``inner_lr=0.1`` diverge on them.
    """
    extra = {}
    if not estimator_type._classification and has_param(estimator_type, "inner_lr"):
        extra["inner_lr"] = 0.01
    # Episode settings (n_episodes, ...) only for learners that train on episodes;
    # module__* settings only for default modules that take them.
    taken = {name: value for name, value in base.items()
             if (module_takes(estimator_type, name) if name.startswith("module__")
                 else "__" in name or has_param(estimator_type, name))}
    return {**taken, **extra, **overrides}


def tiny_tasks(estimator_type, n_tasks):
    """Sinusoids for regressors, 2-class blobs of 4 features for classifiers."""
    if not estimator_type._classification:
        return make_sinusoid_tasks(n_tasks, n_rows=10, random_state=0)
    return make_blob_tasks(n_tasks=n_tasks, n_rows_per_class=10, n_features=4, random_state=0)


def new_task(estimator_type, random_state=1):
    """``(X_support, y_support, X_query)`` of a task unseen in meta-training.

    Classifiers get 3 support rows of each of 2 classes, regressors 6 rows.
    """
    if not estimator_type._classification:
        task = make_sinusoid_tasks(1, n_rows=12, random_state=random_state)[0]
        return task.X[:6], task.y[:6], task.X[6:]
    task = make_blob_tasks(n_tasks=1, n_rows_per_class=8, n_features=4, random_state=random_state)[0]
    support = np.concatenate([np.flatnonzero(task.y == c)[:3] for c in np.unique(task.y)])
    query = np.setdiff1d(np.arange(task.n_rows), support)
    return task.X[support], task.y[support], task.X[query]


def fit_tiny(estimator_type, n_tasks=6, **overrides):
    """A learner of ``estimator_type`` meta-trained with :data:`TINY` settings."""
    return estimator_type(**tiny_params(estimator_type, **overrides)).fit(
        tiny_tasks(estimator_type, n_tasks))


def outputs(meta, X_query, X_support, y_support):
    """Probabilities (classifiers) or values (regressors) of the query rows."""
    if meta._classification:
        return meta.predict_proba(X_query, X_support, y_support)
    return meta.predict(X_query, X_support, y_support)


def adapted_outputs(meta, X_query, X_support, y_support):
    """The same through ``adapt``: the returned estimator's predictions."""
    adapted = meta.adapt(X_support, y_support)
    if meta._classification:
        return adapted.predict_proba(X_query)
    return adapted.predict(X_query)


def reference_outputs(meta):
    """What ``meta`` predicts for the task of :func:`new_task`, every time."""
    X_support, y_support, X_query = new_task(type(meta))
    out = outputs(meta, X_query, X_support, y_support)
    assert np.isfinite(out).all()
    return out


def shifted_tasks(n_tasks, *, classification, n_rows=40, n_features=8, random_state=0):
    """X ~ N(0, 1); y from a shared rule w, perturbed per task, plus a per-task shift."""
    rng = np.random.default_rng(random_state)
    w = np.random.default_rng(123).normal(size=n_features)
    tasks = []
    for t in range(n_tasks):
        X = rng.normal(size=(n_rows, n_features))
        signal = X @ (w + 0.3 * rng.normal(size=n_features)) + 1.5 * rng.normal()
        y = (signal + 0.3 * rng.normal(size=n_rows) > 0).astype(int) if classification else (
            signal + 0.3 * rng.normal(size=n_rows))
        tasks.append(Task(X, y, name=f"task_{t}"))
    return TaskCollection(tasks)


def classification_batch(n_episodes=3, n_ways=2, n_shots=2, n_queries=3, n_features=3):
    """A seeded meta-batch of ``n_ways``-way episodes in float64, labels in class order."""
    g = torch.Generator().manual_seed(0)

    def labels(n):
        return torch.arange(n_ways).repeat_interleave(n).expand(n_episodes, -1).clone()

    return EpisodeBatch(
        torch.randn(n_episodes, n_ways * n_shots, n_features, generator=g, dtype=torch.float64),
        labels(n_shots),
        torch.randn(n_episodes, n_ways * n_queries, n_features, generator=g, dtype=torch.float64),
        labels(n_queries),
    )


def unadapted_score(meta, tasks):
    """The episodic score of a copy of ``meta`` that takes no adaptation step."""
    return copy.deepcopy(meta).set_params(adapt_steps=0).score(tasks)
