"""Metric-based meta-learners: classify or regress by distances in a learned embedding."""

from ._protonet import ProtoNetClassifier

__all__ = ["ProtoNetClassifier"]
