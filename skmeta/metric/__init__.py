"""Metric-based meta-learners: classify or regress by distances in a learned embedding."""

from ._matching import MatchingNetClassifier, MatchingNetRegressor
from ._neighbors import EmbeddingKNNClassifier
from ._protonet import ProtoNetClassifier

__all__ = ["EmbeddingKNNClassifier", "MatchingNetClassifier", "MatchingNetRegressor", "ProtoNetClassifier"]
