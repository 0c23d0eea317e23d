"""Optimization-based meta-learners: learn how a few gradient steps adapt a model."""

from ._anil import ANILClassifier, ANILRegressor
from ._maml import MAMLClassifier, MAMLRegressor
from ._meta_lstm import MetaLSTMClassifier, MetaLSTMRegressor
from ._metasgd import MetaSGDClassifier, MetaSGDRegressor
from ._reptile import ReptileClassifier, ReptileRegressor

__all__ = [
    "ANILClassifier",
    "ANILRegressor",
    "MAMLClassifier",
    "MAMLRegressor",
    "MetaLSTMClassifier",
    "MetaLSTMRegressor",
    "MetaSGDClassifier",
    "MetaSGDRegressor",
    "ReptileClassifier",
    "ReptileRegressor",
]
