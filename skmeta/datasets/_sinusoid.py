"""The sinusoid regression family of the MAML paper."""

from numbers import Integral

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params

from ..tasks import Task, TaskCollection


@validate_params(
    {
        "n_tasks": [Interval(Integral, 1, None, closed="left")],
        "n_rows": [Interval(Integral, 1, None, closed="left")],
        "amplitude_range": [tuple],
        "phase_range": [tuple],
        "x_range": [tuple],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_sinusoid_tasks(
    n_tasks=100,
    *,
    n_rows=50,
    amplitude_range=(0.1, 5.0),
    phase_range=(0.0, np.pi),
    x_range=(-5.0, 5.0),
    random_state=None,
):
    """Tasks ``y = A sin(x - phase)``, each with its own amplitude and phase.

    The family of Finn et al. (2017): amplitude ~ U[0.1, 5], phase ~ U[0, π],
    x ~ U[-5, 5]. No single function fits them all; a few points of a task
    pin down its amplitude and phase.

    Parameters
    ----------
    n_tasks : int, default=100
        Number of tasks.
    n_rows : int, default=50
        Points per task.
    amplitude_range, phase_range, x_range : tuple of float
        Bounds of the uniform distributions.
    random_state : int, RandomState instance or None, default=None
        Seed.

    Returns
    -------
    TaskCollection
        Each task has ``X`` of shape (n_rows, 1), ``y`` of shape (n_rows,),
        and a name ``"sinusoid_<i>"``; ``task.amplitude`` and ``task.phase``
        hold its parameters.

    Examples
    --------
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> tasks = make_sinusoid_tasks(3, n_rows=20, random_state=0)
    >>> tasks[0].X.shape, tasks[0].y.shape
    ((20, 1), (20,))
    """
    for name, bounds in (("amplitude_range", amplitude_range), ("phase_range", phase_range),
                         ("x_range", x_range)):
        if len(bounds) != 2 or not bounds[0] <= bounds[1]:
            raise ValueError(f"{name} must be a pair (low, high) with low <= high; got {bounds!r}.")
    rng = check_random_state(random_state)
    tasks = []
    for i in range(n_tasks):
        amplitude = rng.uniform(*amplitude_range)
        phase = rng.uniform(*phase_range)
        X = rng.uniform(*x_range, size=(n_rows, 1)).astype(np.float32)
        task = Task(X, (amplitude * np.sin(X[:, 0] - phase)).astype(np.float32), name=f"sinusoid_{i}")
        task.amplitude, task.phase = amplitude, phase
        tasks.append(task)
    return TaskCollection(tasks)


def sinusoid(X, amplitude, phase):
    """The sinusoid ``amplitude * sin(x - phase)`` of one task at points ``X``.

    Parameters
    ----------
    X : array-like of shape (n_rows, 1)
        The points.
    amplitude : float
        The task's amplitude, ``task.amplitude`` for a task of
        :func:`make_sinusoid_tasks`.
    phase : float
        The task's phase, ``task.phase``.

    Returns
    -------
    ndarray of shape (n_rows,)

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta.datasets import make_sinusoid_tasks, sinusoid
    >>> task = make_sinusoid_tasks(1, random_state=0)[0]
    >>> np.allclose(sinusoid(task.X, task.amplitude, task.phase), task.y, atol=1e-5)
    True
    """
    return amplitude * np.sin(np.asarray(X)[:, 0] - phase)
