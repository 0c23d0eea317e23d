"""Multi-task learners: a shared trunk trained jointly with one head per task."""

from ._shared_trunk import SharedTrunkClassifier, SharedTrunkRegressor

__all__ = ["SharedTrunkClassifier", "SharedTrunkRegressor"]
