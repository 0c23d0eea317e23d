"""Input validation at the public boundary: features, targets, task collections."""

import numpy as np
import pandas as pd
import torch
from pandas.api.types import is_bool_dtype, is_numeric_dtype
from sklearn.utils import check_array
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import _check_feature_names, _get_feature_names

from .tasks import Task, TaskCollection
from .tasks._task import group_rows


def _where(task):
    return "" if task is None else f" of task {task!r}"


def check_numeric_columns(X, *, what="X", task=None):
    """Raise a ValueError naming the columns of ``X`` that are not numbers.

    Parameters
    ----------
    X : DataFrame or array-like
        Only a DataFrame's column dtypes are checked; other input passes.
    what : str, default="X"
        What ``X`` is called in the message.
    task : object, default=None
        The task ``X`` belongs to, for the message.

    Examples
    --------
    >>> import pandas as pd
    >>> from skmeta._validation import check_numeric_columns
    >>> check_numeric_columns(pd.DataFrame({"age": [31], "job": ["clerk"]}), task="a")
    Traceback (most recent call last):
    ...
    ValueError: X of task 'a' has non-numeric columns ['job']; meta-learners take ...
    """
    dtypes = getattr(X, "dtypes", None)
    if dtypes is None or not hasattr(dtypes, "items"):
        return
    bad = [str(c) for c, dtype in dtypes.items() if not (is_numeric_dtype(dtype) or is_bool_dtype(dtype))]
    if bad:
        raise ValueError(_non_numeric_message(what, task, bad))


def _non_numeric_message(what, task, columns=None):
    named = f" columns {columns}" if columns else " values"
    return (
        f"{what}{_where(task)} has non-numeric{named}; meta-learners take numbers "
        "only. Encode them first, e.g. with sklearn.compose.ColumnTransformer "
        "and sklearn.preprocessing.OneHotEncoder in a Pipeline."
    )


def check_finite(X, *, what="X", task=None):
    """Raise a ValueError if ``X`` holds NaN or infinity, saying where.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features)
        Numbers.
    what : str, default="X"
        What ``X`` is called in the message.
    task : object, default=None
        The task ``X`` belongs to, for the message.

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta._validation import check_finite
    >>> check_finite(np.array([[1.0, 2.0], [np.inf, 0.0]]), what="X_support")
    Traceback (most recent call last):
    ...
    ValueError: X_support contains infinity in 1 row(s), the first at row 1; impute ...
    """
    finite = np.isfinite(X)
    if finite.all():
        return
    bad_rows = np.flatnonzero(~finite.all(axis=1))
    kind = "NaN" if np.isnan(X).any() else "infinity"
    raise ValueError(
        f"{what}{_where(task)} contains {kind} in {bad_rows.size} row(s), the first "
        f"at row {bad_rows[0]}; impute or drop them first, e.g. with "
        "sklearn.impute.SimpleImputer in a Pipeline."
    )


_FLOAT_DTYPES = (np.float32, np.float64)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_float32_range(X, *, what="X", task=None):
    """Raise a ValueError if finite values of ``X`` overflow float32.

    The backbones compute in float32, where values beyond about 3.4e38
    become infinity.

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta._validation import check_float32_range
    >>> check_float32_range(np.array([[1.0], [1e39]]))
    Traceback (most recent call last):
    ...
    ValueError: X holds values that overflow float32 (largest magnitude 1e+39, ...
    """
    largest = float(np.abs(X).max(initial=0.0))
    if largest > _FLOAT32_MAX:
        raise ValueError(
            f"X{_where(task)} holds values that overflow float32 (largest magnitude "
            f"{largest:.3g}, float32 stops at {_FLOAT32_MAX:.3g}); meta-learners compute "
            "in float32: rescale the features, e.g. with sklearn.preprocessing."
            "StandardScaler in a Pipeline.".replace("X", what, 1)
        )


def check_features(X, *, what="X", task=None):
    """Features as a finite, writable float32 array of shape (n_rows, n_features).

    Parameters
    ----------
    X : array-like or DataFrame of shape (n_rows, n_features)
        Numbers only: non-numeric columns, NaN and infinity are refused
        with a message that says how to fix them.
    what : str, default="X"
        What ``X`` is called in messages.
    task : object, default=None
        The task ``X`` belongs to, for messages.

    Returns
    -------
    ndarray of shape (n_rows, n_features), dtype float32

    Examples
    --------
    >>> from skmeta._validation import check_features
    >>> check_features([[1, 2], [3, 4]])
    array([[1., 2.],
           [3., 4.]], dtype=float32)
    >>> check_features([[1.0, float("nan")]], task="store_7")
    Traceback (most recent call last):
    ...
    ValueError: X of task 'store_7' contains NaN in 1 row(s), the first at row 0; ...
    """
    if isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype in _FLOAT_DTYPES and X.size:
        # The common case, without sklearn's container detection (it dominates
        # the latency of adapting to a small support set).
        check_finite(X, what=what, task=task)
        if X.dtype != np.float32:
            check_float32_range(X, what=what, task=task)
        return np.require(X, dtype=np.float32, requirements=["C", "W"])
    check_numeric_columns(X, what=what, task=task)
    try:
        X = check_array(X, dtype=_FLOAT_DTYPES, ensure_all_finite=False, input_name=what)
    except ValueError as exc:
        if "convert" in str(exc):
            raise ValueError(_non_numeric_message(what, task)) from exc
        raise ValueError(f"{what}{_where(task)}: {exc}") from exc
    check_finite(X, what=what, task=task)
    if X.dtype != np.float32:
        check_float32_range(X, what=what, task=task)
        X = X.astype(np.float32)
    # A float32 DataFrame gives a read-only view (pandas copy-on-write), which
    # torch.as_tensor warns about; copy only then.
    return np.require(X, requirements="W")


def check_feature_names(estimator, X, *, reset):
    """sklearn's ``_check_feature_names``, at no cost for an array when none were fitted.

    An ndarray has no feature names, so when ``estimator`` has no
    ``feature_names_in_`` either there is nothing to check, set or remove:
    sklearn's dataframe detection, which costs as much as adapting a
    prototype network to a small support set, is skipped.

    Parameters
    ----------
    estimator : estimator
    X : array-like or DataFrame
    reset : bool
        Record ``X``'s names (True) or check them against the recorded ones.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from sklearn.base import BaseEstimator
    >>> from skmeta._validation import check_feature_names
    >>> estimator = BaseEstimator()
    >>> check_feature_names(estimator, pd.DataFrame({"age": [31.0]}), reset=True)
    >>> estimator.feature_names_in_.tolist()
    ['age']
    >>> check_feature_names(estimator, np.zeros((1, 1)), reset=True)
    >>> hasattr(estimator, "feature_names_in_")
    False
    """
    if isinstance(X, np.ndarray) and not hasattr(estimator, "feature_names_in_"):
        return
    _check_feature_names(estimator, X, reset=reset)


def check_targets(y, *, classification, what="y", task=None):
    """Targets as a 1-d array: labels for classification, float32 otherwise.

    Parameters
    ----------
    y : array-like of shape (n_rows,)
        Class labels of any type (classification) or numbers (regression).
    classification : bool
        Whether ``y`` holds class labels.
    what : str, default="y"
        What ``y`` is called in messages.
    task : object, default=None
        The task ``y`` belongs to, for messages.

    Returns
    -------
    ndarray of shape (n_rows,)

    Examples
    --------
    >>> from skmeta._validation import check_targets
    >>> check_targets([1, 2], classification=False)
    array([1., 2.], dtype=float32)
    >>> check_targets([0.5, 1.5, 0.25], classification=True, task="t")
    Traceback (most recent call last):
    ...
    ValueError: Unknown label type: y of task 't' holds continuous values, not class labels; pass labels, ...
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{what}{_where(task)} must be one-dimensional; got shape {y.shape}.")
    if y.dtype.kind in "OfcmM":
        missing = pd.isna(y)
        if missing.any():
            raise ValueError(
                f"{what}{_where(task)} has missing {'labels' if classification else 'targets'} "
                f"(NaN, None or NA) in {int(missing.sum())} of {y.shape[0]} rows, the first "
                f"at row {int(np.flatnonzero(missing)[0])}; drop those rows first."
            )
    if classification:
        if y.dtype == object:
            try:
                np.unique(y)
            except TypeError:
                kinds = sorted({type(label).__name__ for label in y})
                raise TypeError(
                    f"{what}{_where(task)} mixes label types ({', '.join(kinds)}) that cannot be "
                    "sorted together; give every label one type, e.g. y.astype(str)."
                ) from None
        if y.dtype.kind in "iubUS" and y.size:
            return y  # integers, booleans or strings: labels, never missing
        try:
            check_classification_targets(y)
        except ValueError as exc:
            if "Unknown label type" not in str(exc):  # NaN, infinity
                raise ValueError(f"{what}{_where(task)}: {exc} Drop those rows.") from exc
            kind = type_of_target(y, input_name=what)
            raise ValueError(
                f"Unknown label type: {what}{_where(task)} holds {kind} values, not class labels; pass "
                "labels, or use a regressor such as MAMLRegressor for numeric targets."
            ) from exc
        return y
    try:
        y = y.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{what}{_where(task)} must hold numbers for regression; got dtype {y.dtype}."
        ) from exc
    if not np.isfinite(y).all():
        raise ValueError(f"{what}{_where(task)} contains NaN or infinity; drop those rows.")
    check_float32_range(y, what=what, task=task)
    return y.astype(np.float32)


def _check_long_format_arguments(X, y, task_column):
    if task_column is None:
        raise ValueError(
            "X is a DataFrame but task_column is None; set task_column to the "
            "column that says which task each row belongs to, or pass a "
            "TaskCollection."
        )
    if task_column not in X.columns:
        raise ValueError(
            f"task_column={task_column!r} is not a column of X (columns: "
            f"{list(X.columns)[:10]}); after a ColumnTransformer, pass it "
            "through with 'passthrough', verbose_feature_names_out=False and "
            "set_output(transform='pandas')."
        )
    if y is None:
        raise ValueError("Long-format input needs y, the target of each row of X.")


def as_task_collection(X, y=None, *, task_column=None):
    """Turn what ``fit`` or ``score`` was given into a TaskCollection.

    Parameters
    ----------
    X : TaskCollection, list of Task or of (X, y) pairs, or DataFrame
        The tasks; a DataFrame is long format, one row per example.
    y : array-like of shape (n_rows,), default=None
        Targets of long format; None otherwise, as each task holds its own.
    task_column : str, int or None, default=None
        The column of a long-format ``X`` that names each row's task.

    Returns
    -------
    TaskCollection

    Examples
    --------
    >>> import pandas as pd
    >>> from skmeta._validation import as_task_collection
    >>> X = pd.DataFrame({"shop": ["a", "b", "a"], "x": [1.0, 2.0, 3.0]})
    >>> as_task_collection(X, [0, 1, 1], task_column="shop").names
    ['a', 'b']
    """
    if isinstance(X, (TaskCollection, list, tuple)) and y is not None:
        raise ValueError(
            f"y must be None when X is a {type(X).__name__} of tasks: each task holds "
            "its own targets. For long format, pass a DataFrame X with task_column."
        )
    if isinstance(X, TaskCollection):
        return X
    if isinstance(X, pd.DataFrame):
        _check_long_format_arguments(X, y, task_column)
        return TaskCollection.from_arrays(X.drop(columns=[task_column]), y, X[task_column])
    if isinstance(X, (list, tuple)) and y is None:
        return TaskCollection(X)
    raise TypeError(
        f"Expected a TaskCollection, a list of tasks, or a DataFrame X with "
        f"task_column and y; got {type(X).__name__}"
        + ("" if task_column is not None else " (task_column is None)")
        + ". Build one with TaskCollection.from_frame or TaskCollection.from_arrays."
    )


def check_long_format(X, y, *, task_column, classification):
    """Validate a long-format table once, then split it into tasks.

    One pass over the whole table (a single ``check_array``), not one per
    task: the tasks hold float32 arrays that need no further conversion.

    Parameters
    ----------
    X : DataFrame
        Features and the column ``task_column``.
    y : array-like of shape (n_rows,)
    task_column : str or int
    classification : bool

    Returns
    -------
    tasks : TaskCollection
    n_features : int
    feature_names : ndarray of str or None

    Examples
    --------
    >>> import pandas as pd
    >>> from skmeta._validation import check_long_format
    >>> X = pd.DataFrame({"shop": ["a", "b", "a"], "x": [1.0, 2.0, 3.0]})
    >>> tasks, n_features, names = check_long_format(X, [0, 1, 1], task_column="shop",
    ...                                              classification=True)
    >>> tasks.names, n_features, names.tolist()
    (['a', 'b'], 1, ['x'])
    """
    _check_long_format_arguments(X, y, task_column)
    features = X.drop(columns=[task_column])
    feature_names = _get_feature_names(features)
    array = check_features(features)
    targets = check_targets(np.asarray(y), classification=classification)
    if targets.shape[0] != array.shape[0]:
        raise ValueError(
            f"X has {array.shape[0]} rows but y has {targets.shape[0]}; pass one target per row."
        )
    names, rows = group_rows(X[task_column], what=f"Column {task_column!r}")
    tasks = TaskCollection(Task(array[r], targets[r], name=n) for n, r in zip(names, rows, strict=True))
    return tasks, array.shape[1], feature_names


def check_task_collection(tasks, *, classification, sampler=None):
    """Validate every task; return numeric tasks, their width and feature names.

    Every task must have numeric, finite features of one width (and the same
    column names, if any) and valid targets. Whether a task can give an
    episode is the caller's question (see ``EpisodeSampler.why_not``).

    Parameters
    ----------
    tasks : TaskCollection
    classification : bool
    sampler : EpisodeSampler or None, default=None
        If given, every task must yield an episode.

    Returns
    -------
    tasks : TaskCollection
        Tasks with float32 ``X`` arrays and checked ``y``.
    n_features : int
    feature_names : ndarray of str or None

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta._validation import check_task_collection
    >>> from skmeta.tasks import EpisodeSampler, TaskCollection
    >>> tasks = TaskCollection([(np.zeros((4, 3)), [0, 1, 0, 1]), (np.zeros((4, 2)), [0, 1, 0, 1])])
    >>> check_task_collection(tasks, classification=True, sampler=EpisodeSampler(n_shots=1, n_queries=1))
    Traceback (most recent call last):
    ...
    ValueError: Task 1 has 2 features but task 0 has 3; all tasks must share one feature space.
    """
    if len(tasks) == 0:
        raise ValueError("The task collection is empty; pass at least one task.")
    checked = []
    for task in tasks:
        names = _get_feature_names(task.X)
        X = check_features(task.X, task=task.name)
        y = check_targets(task.y, classification=classification, task=task.name)
        if not checked:
            first, n_features, feature_names = task.name, X.shape[1], names
        elif X.shape[1] != n_features:
            raise ValueError(
                f"Task {task.name!r} has {X.shape[1]} features but task {first!r} "
                f"has {n_features}; all tasks must share one feature space."
            )
        elif (names is None) != (feature_names is None) or (
            names is not None and list(names) != list(feature_names)
        ):
            raise ValueError(
                f"Task {task.name!r} has other feature names than task {first!r}; "
                "give every task the same columns in the same order."
            )
        if sampler is not None:
            sampler.check(y, task=task.name)
        checked.append(Task(X, y, name=task.name))
    return TaskCollection(checked), n_features, feature_names


def resolve_device(device):
    """The torch device that ``device`` ("auto", "cpu", "cuda") means here.

    Parameters
    ----------
    device : str or torch.device
        "auto" is "cuda" where CUDA is available, else "cpu".

    Returns
    -------
    str

    Examples
    --------
    >>> from skmeta._validation import resolve_device
    >>> resolve_device("cpu")
    'cpu'
    """
    if str(device) == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} but CUDA is not available on this machine; "
            "use device='auto' or device='cpu'."
        )
    return str(device)
