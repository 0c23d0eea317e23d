"""A classification family where every task needs its support set."""

from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params

from ..tasks import Task, TaskCollection


@validate_params(
    {
        "n_tasks": [Interval(Integral, 1, None, closed="left")],
        "n_classes": [Interval(Integral, 2, None, closed="left")],
        "n_rows_per_class": [Interval(Integral, 1, None, closed="left")],
        "n_features": [Interval(Integral, 1, None, closed="left")],
        "n_informative": [Interval(Integral, 1, None, closed="left")],
        "class_sep": [Interval(Real, 0, None, closed="left")],
        "noise": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_blob_tasks(
    n_tasks=50,
    *,
    n_classes=2,
    n_rows_per_class=40,
    n_features=20,
    n_informative=2,
    class_sep=2.0,
    noise=2.0,
    n_recurring=None,
    variation=0.25,
    random_state=None,
):
    """Gaussian classes placed at random per task in a shared, hidden subspace.

    All tasks share which ``n_informative`` directions of the feature space
    carry the classes; the other directions are noise of scale ``noise``.
    Each task places its class centres anew in the informative subspace, so
    no pooled model can classify a new task: its support set says where the
    classes are. A learner fitted on the support set alone sees all the noise
    dimensions; a meta-learner can learn to look only where classes live.

    Parameters
    ----------
    n_tasks : int, default=50
        Number of tasks.
    n_classes : int, default=2
        Classes per task.
    n_rows_per_class : int, default=40
        Rows of each class in each task.
    n_features : int, default=20
        Number of features.
    n_informative : int, default=2
        Dimension of the subspace that carries the classes, at most
        ``n_features``.
    class_sep : float, default=2.0
        Scale of the class centres in that subspace (unit within-class spread).
    noise : float, default=2.0
        Standard deviation of the uninformative directions.
    n_recurring : int or None, default=None
        None: every task places its class centres anew. An int: tasks recur
        with variations; there are ``n_recurring`` base tasks (sets of class
        centres, labels included), task ``i`` is base ``i % n_recurring``
        with each centre moved by a normal draw of scale ``variation *
        class_sep``.
    variation : float, default=0.25
        How far a recurring task's centres move from its base's; used only
        with ``n_recurring``.
    random_state : int, RandomState instance or None, default=None
        Seeds the class centres and the rows.

    Returns
    -------
    TaskCollection
        Tasks named ``"blobs_<i>"`` with integer labels ``0 .. n_classes - 1``.

    Examples
    --------
    >>> from skmeta.datasets import make_blob_tasks
    >>> tasks = make_blob_tasks(n_tasks=4, random_state=0)
    >>> len(tasks), tasks[0].X.shape
    (4, (80, 20))
    """
    if n_informative > n_features:
        raise ValueError(
            f"n_informative={n_informative} exceeds n_features={n_features}; the "
            "informative directions are some of the features. Lower n_informative."
        )
    if n_recurring is not None and n_recurring < 1:
        raise ValueError(f"n_recurring={n_recurring} must be None or a positive int (base tasks).")
    rng = check_random_state(random_state)
    bases = None
    if n_recurring is not None:
        bases = rng.normal(scale=class_sep, size=(n_recurring, n_classes, n_informative))
    basis = np.linalg.qr(np.random.default_rng(0).normal(size=(n_features, n_features)))[0]
    informative, rest = basis[:, :n_informative], basis[:, n_informative:]
    tasks = []
    for i in range(n_tasks):
        if bases is None:
            centres = rng.normal(scale=class_sep, size=(n_classes, n_informative))
        else:
            centres = bases[i % n_recurring] + rng.normal(scale=variation * class_sep,
                                                          size=(n_classes, n_informative))
        y = np.repeat(np.arange(n_classes), n_rows_per_class)
        signal = centres[y] + rng.normal(size=(y.shape[0], n_informative))
        clutter = rng.normal(scale=noise, size=(y.shape[0], n_features - n_informative))
        X = (signal @ informative.T + clutter @ rest.T).astype(np.float32)
        order = rng.permutation(y.shape[0])
        tasks.append(Task(X[order], y[order], name=f"blobs_{i}"))
    return TaskCollection(tasks)
