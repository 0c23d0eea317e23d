"""Mapping-based meta-learners: a network maps a support set to a task-specific model in one pass."""

from ._film import FiLMClassifier, FiLMNet, FiLMRegressor

__all__ = ["FiLMClassifier", "FiLMNet", "FiLMRegressor"]
