"""The sinusoid regression family of the MAML paper."""

import numpy as np
from sklearn.utils import check_random_state

from ..tasks import Task, TaskCollection


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
    """The sinusoid of one task at points ``X`` of shape (n, 1)."""
    return amplitude * np.sin(np.asarray(X)[:, 0] - phase)
