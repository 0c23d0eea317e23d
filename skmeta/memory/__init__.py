"""Memory-based meta-learners: predictions read an explicit memory by attention."""

from ._in_context import InContextNet, MemoryClassifier, MemoryRegressor

__all__ = ["InContextNet", "MemoryClassifier", "MemoryRegressor"]
