"""Tasks, task collections and the episodes drawn from them."""

from ._episodes import Episode, EpisodeBatch, EpisodeLoader, EpisodeSampler
from ._split import TaskSplit
from ._task import Task, TaskCollection

__all__ = [
    "Episode",
    "EpisodeBatch",
    "EpisodeLoader",
    "EpisodeSampler",
    "Task",
    "TaskCollection",
    "TaskSplit",
]
