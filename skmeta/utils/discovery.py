"""The registry of public meta-learners, as ``sklearn.utils.all_estimators``.

Tests iterate over it, so that every contract (sklearn surface, threads,
divergence, bad input, persistence) runs on a learner the day it is exported.
"""

import inspect


def all_learners(type_filter=None):
    """The public meta-learners of skmeta, sorted by name.

    Parameters
    ----------
    type_filter : {"classifier", "regressor"} or None, default=None
        Keep only classifiers or only regressors; None keeps all.

    Returns
    -------
    list of (str, type)
        Each learner's name and class.

    Examples
    --------
    >>> from skmeta.utils import all_learners
    >>> names = [name for name, _ in all_learners("regressor")]
    >>> "MAMLRegressor" in names, "ProtoNetClassifier" in names
    (True, False)
    """
    import skmeta
    from skmeta._base import MetaLearner

    if type_filter not in (None, "classifier", "regressor"):
        raise ValueError(
            f"type_filter must be 'classifier', 'regressor' or None; got {type_filter!r}."
        )
    learners = []
    for name in sorted(skmeta.__all__):
        obj = getattr(skmeta, name)
        if not (inspect.isclass(obj) and issubclass(obj, MetaLearner)) or inspect.isabstract(obj):
            continue
        if type_filter is not None and obj._classification != (type_filter == "classifier"):
            continue
        learners.append((name, obj))
    return learners
