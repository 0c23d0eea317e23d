"""Encoding a long-format table for a meta-learner, the task column kept by name."""

from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def make_task_preprocessor(X, task_column):
    """Scale numeric columns, one-hot the others, pass the task column through.

    The usual first step of a ``Pipeline`` whose last step is a meta-learner
    with ``task_column`` set: its output is a DataFrame that keeps the task
    column under its own name.

    Parameters
    ----------
    X : DataFrame
        Long-format features, holding ``task_column`` (other columns of it
        that are not features should be dropped first).
    task_column : str
        The column that names each row's task; passed through unchanged.

    Returns
    -------
    ColumnTransformer
        Unfitted: a ``StandardScaler`` on numeric columns and a
        ``OneHotEncoder(handle_unknown="ignore")`` on the others.

    Examples
    --------
    >>> import pandas as pd
    >>> from skmeta import make_task_preprocessor
    >>> X = pd.DataFrame({"age": [30, 50], "job": ["a", "b"], "store": ["s1", "s2"]})
    >>> make_task_preprocessor(X, "store").fit_transform(X).columns.tolist()
    ['age', 'job_a', 'job_b', 'store']
    """
    features = X.drop(columns=[task_column])
    numeric = features.select_dtypes("number").columns.tolist()
    categorical = [c for c in features.columns if c not in numeric]
    return ColumnTransformer(
        [
            ("numeric", StandardScaler(), numeric),
            ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
            ("task", "passthrough", [task_column]),
        ],
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")
