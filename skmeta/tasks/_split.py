"""Hold tasks out of meta-training to score meta-validation on."""

import math
from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_random_state


class TaskSplit:
    """Split a task collection into meta-training and meta-validation tasks.

    The meta-learners call it as skorch calls its ``train_split``: once per
    fit, with the training tasks. Meta-validation scores episodes of tasks
    never seen in meta-training, which is what ``EarlyStopping(monitor=
    "valid_score", lower_is_better=False)`` watches.

    Parameters
    ----------
    valid_size : float or int, default=0.2
        Fraction of the tasks (float in (0, 1)) or number of tasks (int) held
        out. With fewer than two tasks nothing is held out.
    random_state : int, RandomState instance or None, default=0
        Which tasks are held out.

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta.tasks import TaskCollection, TaskSplit
    >>> tasks = TaskCollection([(np.zeros((2, 1)), [0, 1])] * 10)
    >>> train, valid = TaskSplit(0.2)(tasks)
    >>> len(train), len(valid)
    (8, 2)
    """

    def __init__(self, valid_size=0.2, random_state=0):
        self.valid_size = valid_size
        self.random_state = random_state

    def __call__(self, tasks, y=None, **fit_params):
        n_tasks = len(tasks)
        size = self.valid_size
        if isinstance(size, Integral) and not isinstance(size, bool) and size >= 0:
            n_valid = int(size)
        elif isinstance(size, Real) and not isinstance(size, bool) and 0 < size < 1:
            n_valid = max(1, math.floor(size * n_tasks))
        else:
            raise ValueError(
                f"valid_size must be a float in (0, 1) or an int >= 0; got {self.valid_size!r}."
            )
        if n_tasks < 2 or n_valid < 1:
            return tasks, None
        if n_valid >= n_tasks:
            raise ValueError(
                f"valid_size={self.valid_size!r} holds out {n_valid} of {n_tasks} tasks, "
                "leaving none to meta-train on; lower valid_size."
            )
        order = check_random_state(self.random_state).permutation(n_tasks)
        return tasks[np.sort(order[n_valid:])], tasks[np.sort(order[:n_valid])]

    def __repr__(self):
        return f"TaskSplit(valid_size={self.valid_size!r}, random_state={self.random_state!r})"
