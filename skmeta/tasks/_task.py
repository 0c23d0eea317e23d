"""One task's labelled rows, and a collection of related tasks."""

from collections.abc import Sequence
from numbers import Integral

import numpy as np
import pandas as pd


def _n_rows(X, name=None):
    ndim = getattr(X, "ndim", None)
    if ndim is not None and ndim != 2:
        raise ValueError(
            f"X of task {name!r} must be two-dimensional (rows by features); got "
            f"{ndim} dimension(s) with shape {getattr(X, 'shape', None)}. Reshape a single "
            "feature with X.reshape(-1, 1) or a single row with X.reshape(1, -1)."
        )
    try:
        return X.shape[0] if hasattr(X, "shape") else len(X)
    except TypeError:
        raise TypeError(
            f"X of task {name!r} must be an array-like or DataFrame of rows; got "
            f"{type(X).__name__}."
        ) from None


def group_rows(groups, *, what="groups"):
    """The distinct task ids of ``groups`` and the row positions of each.

    One pass over the rows (a stable sort), whatever the number of tasks.
    Ids are sorted when they can be compared (numbers, or strings), else
    ordered by type name, then value, so that ints and strings may mix.

    Parameters
    ----------
    groups : array-like of shape (n_rows,)
        The task each row belongs to.
    what : str, default="groups"
        What ``groups`` is called in messages.

    Returns
    -------
    names : list
        The task ids, as plain Python scalars.
    rows : list of ndarray of int
        The positions of each task's rows, in their original order.

    Examples
    --------
    >>> from skmeta.tasks._task import group_rows
    >>> names, rows = group_rows(["b", 3, "b", 3, "a"])
    >>> names, [r.tolist() for r in rows]
    ([3, 'a', 'b'], [[1, 3], [4], [0, 2]])
    """
    if np.ndim(groups) != 1:
        raise ValueError(
            f"{what} must be one-dimensional, one task id per row; got shape "
            f"{np.shape(groups)}. Pass a single column."
        )
    values = groups.reset_index(drop=True) if isinstance(groups, pd.Series) else pd.Series(groups)
    missing = values.isna().to_numpy()
    if missing.any():
        raise ValueError(
            f"{what} has no task id (NaN, None or NA) in {int(missing.sum())} of "
            f"{missing.shape[0]} rows, the first at row {int(np.flatnonzero(missing)[0])}; "
            "drop those rows or fill their task id first."
        )
    codes, uniques = pd.factorize(values, sort=False)
    names = [_python_scalar(u) for u in (uniques.tolist() if hasattr(uniques, "tolist") else list(uniques))]
    try:
        order = sorted(range(len(names)), key=lambda i: names[i])
    except TypeError:  # ids of several types: ints and strings, say
        order = sorted(range(len(names)), key=lambda i: (type(names[i]).__name__, str(names[i])))
    by_row = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=len(names)))[:-1]
    rows = np.split(by_row, bounds)
    return [names[i] for i in order], [rows[i] for i in order]


class Task:
    """The labelled rows of one task: one store, one patient, one machine.

    Parameters
    ----------
    X : array-like or DataFrame of shape (n_rows, n_features)
        The task's features, kept as given (a DataFrame keeps its column
        names); estimators validate and convert them.
    y : array-like of shape (n_rows,)
        The task's targets: class labels of any type, or numbers.
    name : object, default=None
        What the task is called in messages and listings.

    Attributes
    ----------
    n_rows : int
        Number of labelled rows.

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta.tasks import Task
    >>> task = Task(np.zeros((4, 2)), ["a", "b", "a", "b"], name="store_7")
    >>> task
    Task(name='store_7', n_rows=4, n_features=2)
    """

    def __init__(self, X, y, name=None):
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(
                f"y of task {name!r} must be one-dimensional; got shape {y.shape}. "
                "Pass one target per row."
            )
        n_rows = _n_rows(X, name)
        if n_rows != y.shape[0]:
            raise ValueError(
                f"Task {name!r} has {n_rows} rows in X but {y.shape[0]} "
                "targets in y; pass one target per row."
            )
        self.X = X
        self.y = y
        self.name = name

    @property
    def n_rows(self):
        return self.y.shape[0]

    def __repr__(self):
        n_features = self.X.shape[1] if getattr(self.X, "ndim", 0) == 2 else "?"
        return f"Task(name={self.name!r}, n_rows={self.n_rows}, n_features={n_features})"


class TaskCollection(Sequence):
    """A sequence of related tasks, the unit that meta-learners fit on.

    It behaves as a list of :class:`Task`: ``len()``, iteration and
    ``tasks[i]``. Indexing with a slice, or with an array of integers or
    booleans, gives a new ``TaskCollection``, so scikit-learn's
    cross-validation splitters split it by task.

    Parameters
    ----------
    tasks : iterable of Task or of (X, y) pairs
        The tasks. Pairs are named by their position.

    See Also
    --------
    TaskCollection.from_frame : One task per value of a column of a DataFrame.
    TaskCollection.from_arrays : One task per value of a group array.

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta.tasks import TaskCollection
    >>> rng = np.random.default_rng(0)
    >>> tasks = TaskCollection([(rng.normal(size=(6, 2)), [0, 1] * 3)
    ...                         for _ in range(4)])
    >>> len(tasks), tasks[0].name
    (4, 0)
    >>> tasks[[0, 2]].names
    [0, 2]
    """

    def __init__(self, tasks=()):
        self.tasks = [
            task if isinstance(task, Task) else Task(*_as_pair(task, i), name=i)
            for i, task in enumerate(tasks)
        ]

    @classmethod
    def from_frame(cls, df, *, task, target):
        """One task per value of the column ``task`` of a long-format DataFrame.

        Parameters
        ----------
        df : DataFrame
            One row per labelled example, holding the task column, the target
            column and the features.
        task : str
            The column that names each row's task. It is not a feature.
            Rows where it is missing are refused (a ValueError says how many):
            drop them or fill their task id first.
        target : str
            The column that holds the target.

        Returns
        -------
        TaskCollection
            Tasks in the order of the sorted task values; each task's ``X`` is
            a DataFrame of the remaining columns.

        Examples
        --------
        >>> import pandas as pd
        >>> from skmeta.tasks import TaskCollection
        >>> df = pd.DataFrame({"store": ["a", "a", "b", "b"], "x": [1, 2, 3, 4],
        ...                    "sold": [0, 1, 1, 0]})
        >>> tasks = TaskCollection.from_frame(df, task="store", target="sold")
        >>> tasks.names, list(tasks[0].X.columns)
        (['a', 'b'], ['x'])
        """
        if not isinstance(df, pd.DataFrame):
            raise TypeError(
                f"from_frame expects a pandas DataFrame; got {type(df).__name__}. "
                "For arrays use TaskCollection.from_arrays(X, y, groups)."
            )
        for role, column in (("task", task), ("target", target)):
            if column not in df.columns:
                raise ValueError(
                    f"{role}={column!r} is not a column of the DataFrame; "
                    f"its columns are {list(df.columns)}."
                )
        features = df.drop(columns=[task, target])
        targets = df[target].to_numpy()
        # Positions, not index labels: a DataFrame may repeat index labels
        # (after pd.concat), and .loc would then take rows of other tasks.
        names, rows = group_rows(df[task], what=f"Column {task!r}")
        return cls(
            Task(features.iloc[r], targets[r], name=name) for name, r in zip(names, rows, strict=True)
        )

    @classmethod
    def from_arrays(cls, X, y, groups):
        """One task per distinct value of ``groups``.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_rows, n_features)
            Features of all rows.
        y : array-like of shape (n_rows,)
            Targets of all rows.
        groups : array-like of shape (n_rows,)
            The task each row belongs to.

        Returns
        -------
        TaskCollection
            Tasks in the order of the sorted group values.

        Examples
        --------
        >>> import numpy as np
        >>> from skmeta.tasks import TaskCollection
        >>> X = np.arange(8.0).reshape(4, 2)
        >>> TaskCollection.from_arrays(X, [0, 1, 0, 1], ["u", "u", "v", "v"]).names
        ['u', 'v']
        """
        y = np.asarray(y)
        group_array = np.asarray(groups, dtype=object) if not hasattr(groups, "shape") else groups
        if np.ndim(group_array) != 1:
            raise ValueError(
                f"groups must be one-dimensional, one task id per row; got shape "
                f"{np.shape(group_array)}. Pass a single column."
            )
        n_rows = _n_rows(X)
        if not (n_rows == y.shape[0] == len(group_array)):
            raise ValueError(
                f"X, y and groups must have one entry per row; got {n_rows}, "
                f"{y.shape[0]} and {len(group_array)} rows."
            )
        names, rows = group_rows(group_array)
        if not hasattr(X, "iloc"):
            X = np.asarray(X)
        tasks = []
        for name, r in zip(names, rows, strict=True):
            X_task = X.iloc[r] if hasattr(X, "iloc") else X[r]
            tasks.append(Task(X_task, y[r], name=name))
        return cls(tasks)

    @property
    def names(self):
        """The tasks' names, in order."""
        return [task.name for task in self.tasks]

    def __len__(self):
        return len(self.tasks)

    def __iter__(self):
        return iter(self.tasks)

    def __getitem__(self, index):
        if isinstance(index, Integral):
            return self.tasks[index]
        if isinstance(index, slice):
            return type(self)(self.tasks[index])
        index = np.asarray(index)
        if index.dtype == bool:
            if index.shape != (len(self),):
                raise IndexError(
                    f"A boolean mask over {len(self)} tasks must have shape ({len(self)},); "
                    f"got {index.shape}."
                )
            index = np.flatnonzero(index)
        elif index.ndim != 1 or not (index.size == 0 or np.issubdtype(index.dtype, np.integer)):
            raise TypeError(
                "Tasks are indexed by an int, a slice, or a 1-d array of ints or "
                f"booleans; got an array of dtype {index.dtype} and shape {index.shape}."
            )
        return type(self)(self.tasks[i] for i in index.tolist())

    def __repr__(self):
        return f"TaskCollection(n_tasks={len(self)}, names={self.names[:5]}{'...' if len(self) > 5 else ''})"


def _python_scalar(value):
    """``np.int64(3)`` as ``3``, so that task names read plainly in messages."""
    return value.item() if isinstance(value, np.generic) else value


def _as_pair(item, position):
    try:
        X, y = item
    except (TypeError, ValueError):
        raise TypeError(
            f"Item {position} of the task list is a {type(item).__name__}; each "
            "item must be a Task or an (X, y) pair."
        ) from None
    return X, y
