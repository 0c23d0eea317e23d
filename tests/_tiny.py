"""Helpers shared by test modules that run each meta-learner on tiny tasks."""

from skmeta import MAMLClassifier, MAMLRegressor, ProtoNetClassifier
from skmeta.datasets import make_blob_tasks, make_sinusoid_tasks

ESTIMATORS = [ProtoNetClassifier, MAMLClassifier, MAMLRegressor]


def tiny_params(estimator_type, base, **overrides):
    """``base`` settings, with a smaller inner step for the sinusoids (amplitudes up to 5)."""
    extra = {"inner_lr": 0.01} if estimator_type is MAMLRegressor else {}
    return {**base, **extra, **overrides}


def tiny_tasks(estimator_type, n_tasks):
    """Sinusoids for the regressor, 2-class blobs of 4 features for the classifiers."""
    if estimator_type is MAMLRegressor:
        return make_sinusoid_tasks(n_tasks, n_rows=10, random_state=0)
    return make_blob_tasks(n_tasks=n_tasks, n_rows_per_class=10, n_features=4, random_state=0)
