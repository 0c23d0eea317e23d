"""Transfer learners: pre-train on the pooled rows of many tasks, then fine-tune to a new one."""

from ._finetune import FineTuneClassifier, FineTuneRegressor

__all__ = ["FineTuneClassifier", "FineTuneRegressor"]
