"""skmeta: scikit-learn compatible meta-learning.

Meta-train on many related tasks, then adapt to a new task from a few
labelled rows, with the sklearn tools you already use.
"""

from ._adapted import AdaptedClassifier, AdaptedRegressor
from ._mlp import MLP
from ._preprocessing import make_task_preprocessor
from .mapping import FiLMClassifier, FiLMRegressor
from .metric import ProtoNetClassifier
from .metrics import episodic_score, make_episodic_scorer
from .multitask import SharedTrunkClassifier, SharedTrunkRegressor
from .optimization import MAMLClassifier, MAMLRegressor
from .pipeline import MetaPipeline, make_meta_pipeline
from .tasks import Task, TaskCollection, TaskSplit
from .transfer import FineTuneClassifier, FineTuneRegressor

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "AdaptedClassifier",
    "AdaptedRegressor",
    "FiLMClassifier",
    "FiLMRegressor",
    "FineTuneClassifier",
    "FineTuneRegressor",
    "MAMLClassifier",
    "MAMLRegressor",
    "MetaPipeline",
    "ProtoNetClassifier",
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
