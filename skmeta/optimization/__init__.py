"""Optimization-based meta-learners: learn how a few gradient steps adapt a model."""

from ._maml import MAMLClassifier, MAMLRegressor

__all__ = ["MAMLClassifier", "MAMLRegressor"]
