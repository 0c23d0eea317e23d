"""Episodes: a support set to adapt on and a query set to be judged on.

This module is the one place where tasks are split into support and query
rows. Everything that samples episodes (meta-training, meta-validation, the
episodic score) goes through :class:`EpisodeSampler`.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch

from ._task import _python_scalar


@dataclass
class Episode:
    """One support/query split of one task.

    For classification, ``y_support`` and ``y_query`` hold episode labels
    ``0 .. n_ways - 1`` and ``classes[k]`` is the task's own label behind
    episode label ``k``. For regression, they hold the targets and
    ``classes`` is None.

    Parameters
    ----------
    X_support : ndarray of shape (n_support, n_features)
    y_support : ndarray of shape (n_support,)
    X_query : ndarray of shape (n_query, n_features)
    y_query : ndarray of shape (n_query,)
    classes : ndarray of shape (n_ways,) or None, default=None
        The task's labels behind episode labels ``0 .. n_ways - 1``.
    task : object, default=None
        The name of the task the episode was drawn from.

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta.tasks import EpisodeSampler
    >>> y = np.array(["no", "yes"] * 4)
    >>> episode = EpisodeSampler(n_shots=1, n_queries=2).sample(
    ...     np.zeros((8, 1)), y, np.random.default_rng(0), task="shop")
    >>> episode.classes[episode.y_query], episode.task
    (array(['no', 'no', 'yes', 'yes'], dtype='<U3'), 'shop')
    """

    X_support: np.ndarray
    y_support: np.ndarray
    X_query: np.ndarray
    y_query: np.ndarray
    classes: np.ndarray | None = None
    task: object = None


class EpisodeSampler:
    """Draw seeded N-way K-shot episodes from tasks.

    Parameters
    ----------
    n_ways : int or None, default=None
        Classes per episode. None takes all classes of the task; an integer
        draws that many of the task's classes, so one task with many classes
        yields N-way episodes. Ignored for regression.
    n_shots : int, default=5
        Support rows per class (classification) or in all (regression).
    n_queries : int, default=15
        Query rows per class (classification) or in all (regression).
    classification : bool, default=True
        Whether targets are class labels.

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta.tasks import EpisodeSampler
    >>> X, y = np.arange(20.0).reshape(10, 2), np.array(["a", "b"] * 5)
    >>> sampler = EpisodeSampler(n_shots=2, n_queries=3)
    >>> episode = sampler.sample(X, y, np.random.default_rng(0))
    >>> episode.classes, episode.y_support
    (array(['a', 'b'], dtype='<U1'), array([0, 0, 1, 1]))
    """

    def __init__(self, *, n_ways=None, n_shots=5, n_queries=15, classification=True):
        self.n_ways = n_ways
        self.n_shots = n_shots
        self.n_queries = n_queries
        self.classification = classification

    @property
    def rows_needed(self):
        """Rows an episode takes from each class (or from the task)."""
        return self.n_shots + self.n_queries

    def ways(self, y):
        """Number of classes an episode of a task with targets ``y`` has."""
        return self.n_ways if self.n_ways is not None else np.unique(y).shape[0]

    def check(self, y, *, task=None):
        """Raise a ValueError that says why ``y`` cannot yield an episode.

        Parameters
        ----------
        y : ndarray of shape (n_rows,)
            The task's targets.
        task : object, default=None
            The task's name, for the message.
        """
        if not self.classification:
            if y.shape[0] < self.rows_needed:
                raise ValueError(
                    f"n_shots + n_queries = {self.rows_needed} exceeds the "
                    f"{y.shape[0]} rows of task {task!r}; lower n_shots or "
                    "n_queries, or drop that task."
                )
            return
        classes, counts = np.unique(y, return_counts=True)
        ways = self.ways(y)
        if classes.shape[0] < max(ways, 2):
            raise ValueError(
                f"Task {task!r} has {classes.shape[0]} class(es) {classes.tolist()} "
                f"but episodes need {max(ways, 2)} (n_ways={self.n_ways}); drop "
                "that task or lower n_ways."
            )
        # The ways-th largest class must fill an episode; name it if it cannot.
        limiting = np.argsort(counts, kind="stable")[classes.shape[0] - ways]
        if counts[limiting] < self.rows_needed:
            also = ""
            if ways < classes.shape[0]:
                n_enough = int((counts >= self.rows_needed).sum())
                also = f", so {n_enough} of its classes can fill an episode but n_ways={ways}"
            raise ValueError(
                f"n_shots + n_queries = {self.rows_needed} exceeds the "
                f"{counts[limiting]} rows of class {_python_scalar(classes[limiting])!r} in task "
                f"{task!r}{also}; lower n_shots or n_queries"
                f"{', or n_ways' if also else ''}, or drop that task."
            )

    def sample(self, X, y, rng, *, task=None, query="sampled"):
        """Draw one episode from a task.

        Parameters
        ----------
        X : ndarray of shape (n_rows, n_features)
        y : ndarray of shape (n_rows,)
        rng : numpy.random.Generator
            The source of randomness; the same seed gives the same episode.
        task : object, default=None
            The task's name, stored on the episode.
        query : {"sampled", "rest"}, default="sampled"
            "sampled" takes ``n_queries`` query rows (per class); "rest"
            takes every row not in the support set, as the episodic score does.

        Returns
        -------
        Episode
        """
        if query not in ("sampled", "rest"):
            raise ValueError(f"query must be 'sampled' or 'rest'; got {query!r}.")
        if not self.classification:
            rows = rng.permutation(y.shape[0])
            stop = self.rows_needed if query == "sampled" else None
            support, query_rows = rows[: self.n_shots], rows[self.n_shots : stop]
            return Episode(X[support], y[support], X[query_rows], y[query_rows], task=task)

        classes, counts = np.unique(y, return_counts=True)
        eligible = classes[counts >= self.rows_needed]
        ways = self.ways(y)
        if ways < eligible.shape[0]:
            eligible = np.sort(rng.choice(eligible, ways, replace=False))
        support, query_rows, y_support, y_query = [], [], [], []
        for label, cls in enumerate(eligible):
            rows = rng.permutation(np.flatnonzero(y == cls))
            stop = self.rows_needed if query == "sampled" else None
            support.append(rows[: self.n_shots])
            query_rows.append(rows[self.n_shots : stop])
            y_support.append(np.full(self.n_shots, label))
            y_query.append(np.full(query_rows[-1].shape[0], label))
        support, query_rows = np.concatenate(support), np.concatenate(query_rows)
        return Episode(
            X[support],
            np.concatenate(y_support),
            X[query_rows],
            np.concatenate(y_query),
            classes=eligible,
            task=task,
        )


@dataclass
class EpisodeBatch:
    """Episodes of equal shape stacked along a first, meta-batch axis.

    ``X_support`` has shape (n_episodes, n_support, n_features),
    ``y_support`` (n_episodes, n_support), and likewise for the query set.

    Parameters
    ----------
    X_support : Tensor of shape (n_episodes, n_support, n_features)
    y_support : Tensor of shape (n_episodes, n_support)
        Episode labels (long) or targets (float32).
    X_query : Tensor of shape (n_episodes, n_query, n_features)
    y_query : Tensor of shape (n_episodes, n_query)

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta.tasks import EpisodeBatch, EpisodeSampler
    >>> sampler, rng = EpisodeSampler(n_shots=2, n_queries=3), np.random.default_rng(0)
    >>> X, y = np.zeros((10, 4)), np.array([0, 1] * 5)
    >>> batch = EpisodeBatch.stack([sampler.sample(X, y, rng) for _ in range(3)])
    >>> len(batch), tuple(batch.X_support.shape), batch.y_query.dtype
    (3, (3, 4, 4), torch.int64)
    """

    X_support: torch.Tensor
    y_support: torch.Tensor
    X_query: torch.Tensor
    y_query: torch.Tensor

    @classmethod
    def stack(cls, episodes, *, device="cpu", classification=True):
        """Stack episodes into tensors on ``device``."""
        target_dtype = torch.long if classification else torch.float32

        def tensor(name, dtype):
            values = np.stack([getattr(episode, name) for episode in episodes])
            return torch.as_tensor(values, dtype=dtype, device=device)

        return cls(
            tensor("X_support", torch.float32),
            tensor("y_support", target_dtype),
            tensor("X_query", torch.float32),
            tensor("y_query", target_dtype),
        )

    def __len__(self):
        return self.X_support.shape[0]


class EpisodeLoader:
    """Meta-batches of episodes, drawn from a task collection.

    It plays both parts skorch gives a dataset and its iterator: ``len()``
    is the number of episodes per pass, iteration yields
    :class:`EpisodeBatch` objects of ``meta_batch_size`` episodes.

    Parameters
    ----------
    tasks : TaskCollection
        Validated tasks (numeric ``X`` arrays).
    sampler : EpisodeSampler
    n_episodes : int
        Episodes per pass.
    meta_batch_size : int
        Episodes per meta-batch.
    random_state : numpy.random.Generator or int
        A Generator is shared and advances, so each pass draws new episodes;
        an int seeds every pass alike, so each pass draws the same episodes.
    shuffle : bool, default=True
        Draw tasks at random; otherwise cycle through them in order.
    device : str or torch.device, default="cpu"

    Examples
    --------
    >>> from skmeta.datasets import make_blob_tasks
    >>> from skmeta.tasks import EpisodeLoader, EpisodeSampler
    >>> tasks = make_blob_tasks(n_tasks=3, n_features=4, random_state=0)
    >>> loader = EpisodeLoader(tasks, EpisodeSampler(n_shots=2, n_queries=3),
    ...                        n_episodes=5, meta_batch_size=2, random_state=0)
    >>> len(loader), loader.n_meta_batches
    (5, 3)
    >>> [tuple(batch.X_query.shape) for batch in loader]
    [(2, 6, 4), (2, 6, 4), (1, 6, 4)]
    """

    def __init__(self, tasks, sampler, *, n_episodes, meta_batch_size, random_state,
                 shuffle=True, device="cpu"):
        self.tasks = tasks
        self.sampler = sampler
        self.n_episodes = n_episodes
        self.meta_batch_size = meta_batch_size
        self.random_state = random_state
        self.shuffle = shuffle
        self.device = device

    def __len__(self):
        # As a dataset's length counts samples, this counts episodes; skorch's
        # ProgressBar divides it by the meta-batch size.
        return self.n_episodes

    @property
    def n_meta_batches(self):
        return math.ceil(self.n_episodes / self.meta_batch_size)

    def __iter__(self):
        rng = self.random_state
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        if self.shuffle:
            order = rng.integers(len(self.tasks), size=self.n_episodes)
        else:
            order = np.arange(self.n_episodes) % len(self.tasks)
        for start in range(0, self.n_episodes, self.meta_batch_size):
            episodes = [
                self.sampler.sample(task.X, task.y, rng, task=task.name)
                for task in (self.tasks[i] for i in order[start : start + self.meta_batch_size])
            ]
            yield EpisodeBatch.stack(
                episodes, device=self.device, classification=self.sampler.classification
            )
