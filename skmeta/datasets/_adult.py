"""The adult census table, shipped with the package, as tasks by occupation."""

from importlib import resources

import pandas as pd

from ..tasks import TaskCollection

_ADULT = "adult.csv.gz"


def load_adult(*, as_frame=True):
    """The adult census table (UCI Adult, 48,841 rows), one row per person.

    Parameters
    ----------
    as_frame : bool, default=True
        Only DataFrames are offered; present for sklearn's loader API.

    Returns
    -------
    DataFrame
        14 columns of features (numbers and strings, missing values as NaN)
        and the target ``income`` (``"<=50K"`` or ``">50K"``).

    Examples
    --------
    >>> from skmeta.datasets import load_adult
    >>> load_adult().shape
    (48841, 15)
    """
    with resources.files(__package__).joinpath("data", _ADULT).open("rb") as f:
        return pd.read_csv(f, compression="gzip")


def load_adult_tasks(*, task="occupation", min_rows_per_class=30, return_frame=False):
    """The adult census table as one task per occupation.

    Each occupation is a task: predict whether a person earns more than 50K
    a year. Rows without an occupation, and occupations with fewer than
    ``min_rows_per_class`` rows in either class (Armed-Forces,
    Priv-house-serv at the default), are dropped.

    Parameters
    ----------
    task : str, default="occupation"
        The column that splits the table into tasks.
    min_rows_per_class : int, default=30
        Occupations with fewer rows of a class are dropped.
    return_frame : bool, default=False
        Return the long-format DataFrame instead (the kept rows, task column
        included), for Pipelines and GroupKFold.

    Returns
    -------
    TaskCollection or DataFrame
        Tasks whose ``X`` are DataFrames of 13 raw columns (strings
        included: encode them, e.g. with a ColumnTransformer) and whose
        ``y`` are the income labels.

    Examples
    --------
    >>> from skmeta.datasets import load_adult_tasks
    >>> tasks = load_adult_tasks()
    >>> len(tasks), tasks[0].name
    (12, 'Adm-clerical')
    """
    df = load_adult()
    if task not in df.columns or task == "income":
        raise ValueError(
            f"task={task!r} is not a feature column of the adult table; pick one of "
            f"{[c for c in df.columns if c != 'income']}."
        )
    df = df.dropna(subset=[task])
    counts = df.groupby(task)["income"].value_counts().unstack(fill_value=0)
    kept = counts.index[(counts.min(axis=1) >= min_rows_per_class) & (counts.shape[1] > 1)]
    df = df[df[task].isin(kept)].reset_index(drop=True)
    if return_frame:
        return df
    return TaskCollection.from_frame(df, task=task, target="income")
