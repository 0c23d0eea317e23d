"""skmeta: scikit-learn compatible meta-learning.

Meta-train on many related tasks, then adapt to a new task from a few
labelled rows, with the sklearn tools you already use.
"""

from ._adapted import AdaptedClassifier, AdaptedRegressor
from ._mlp import MLP
from ._preprocessing import make_task_preprocessor
from .mapping import FiLMClassifier, FiLMRegressor
from .memory import MemoryClassifier, MemoryRegressor
from .metric import (
    EmbeddingKNNClassifier,
    MatchingNetClassifier,
    MatchingNetRegressor,
    ProtoNetClassifier,
)
from .metrics import episodic_score, make_episodic_scorer
from .multitask import SharedTrunkClassifier, SharedTrunkRegressor
from .optimization import (
    ANILClassifier,
    ANILRegressor,
    MAMLClassifier,
    MAMLRegressor,
    MetaLSTMClassifier,
    MetaLSTMRegressor,
    MetaSGDClassifier,
    MetaSGDRegressor,
    ReptileClassifier,
    ReptileRegressor,
)
from .pipeline import MetaPipeline, make_meta_pipeline
from .tasks import Task, TaskCollection, TaskSplit
from .transfer import FineTuneClassifier, FineTuneRegressor

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "ANILClassifier",
    "ANILRegressor",
    "AdaptedClassifier",
    "AdaptedRegressor",
    "EmbeddingKNNClassifier",
    "FiLMClassifier",
    "FiLMRegressor",
    "FineTuneClassifier",
    "FineTuneRegressor",
    "MAMLClassifier",
    "MAMLRegressor",
    "MatchingNetClassifier",
    "MatchingNetRegressor",
    "MemoryClassifier",
    "MemoryRegressor",
    "MetaLSTMClassifier",
    "MetaLSTMRegressor",
    "MetaPipeline",
    "MetaSGDClassifier",
    "MetaSGDRegressor",
    "ProtoNetClassifier",
    "ReptileClassifier",
    "ReptileRegressor",
    "SharedTrunkClassifier",
    "SharedTrunkRegressor",
    "Task",
    "TaskCollection",
    "TaskSplit",
    "episodic_score",
    "make_episodic_scorer",
    "make_meta_pipeline",
    "make_task_preprocessor",
]
