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

    Real tables have small groups: a class with fewer rows than
    ``n_shots + n_queries`` still gives an episode (unless ``strict``), with
    fewer support rows (``n_shots`` at most, one at least) and the class's
    other rows as queries (one at least). A task that cannot give any episode
    (fewer than two classes with two rows, or fewer than ``n_ways`` of them)
    is reported by :meth:`why_not`.

    With ``class_balance="natural"``, a classification episode keeps the
    task's own class proportions: its support set is ``n_shots * n_ways``
    rows drawn from the rows of the episode's classes without stratifying
    by class, and its query set ``n_queries * n_ways`` of the other rows,
    likewise. One support row of each class is drawn first, so that every
    class has a prototype (a class mean over no rows is undefined); this
    pulls very small support sets slightly towards balance.

    ``n_shots`` may be a tuple or list of shot counts: each sampled episode
    draws one of them uniformly (with the ``rng`` it is given), so a
    meta-batch mixes shot counts and :meth:`EpisodeBatch.stack` pads its
    episodes to the largest. ``query="rest"`` (the episodic score) always
    takes the largest, so a score does not depend on a drawn shot count.

    Parameters
    ----------
    n_ways : int or None, default=None
        Classes per episode. None takes all classes of the task; an integer
        draws that many of the task's classes, so one task with many classes
        yields N-way episodes. Ignored for regression.
    n_shots : int or tuple of int, default=5
        Support rows per class (classification) or in all (regression). A
        tuple or list gives the shot counts an episode draws one of.
    n_queries : int, default=15
        Query rows per class (classification) or in all (regression).
    classification : bool, default=True
        Whether targets are class labels.
    strict : bool, default=False
        Whether every class (or regression task) must hold ``n_shots +
        n_queries`` rows (the largest ``n_shots``); then episodes of one
        shot count all have one shape.
    class_balance : {"balanced", "natural"}, default="balanced"
        "balanced" draws ``n_shots`` support and ``n_queries`` query rows
        per class; "natural" draws ``n_shots * n_ways`` and ``n_queries *
        n_ways`` rows in all, in the task's class proportions, with at
        least one support row per class. Only affects classification:
        regression episodes are never stratified.

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta.tasks import EpisodeSampler
    >>> X, y = np.arange(20.0).reshape(10, 2), np.array(["a", "b"] * 5)
    >>> sampler = EpisodeSampler(n_shots=2, n_queries=3)
    >>> episode = sampler.sample(X, y, np.random.default_rng(0))
    >>> episode.classes, episode.y_support
    (array(['a', 'b'], dtype='<U1'), array([0, 0, 1, 1]))

    A class of three rows gives two shots and one query:

    >>> y_small = np.array(["a"] * 7 + ["b"] * 3)
    >>> episode = sampler.sample(X, y_small, np.random.default_rng(0))
    >>> np.bincount(episode.y_support), np.bincount(episode.y_query)
    (array([2, 2]), array([3, 1]))

    Natural proportions, and one shot count drawn per episode:

    >>> y_skewed = np.array(["a"] * 8 + ["b"] * 2)
    >>> natural = EpisodeSampler(n_shots=(1, 2), n_queries=1, class_balance="natural")
    >>> episode = natural.sample(X, y_skewed, np.random.default_rng(0))
    >>> episode.y_support.shape[0] in (2, 4), sorted(set(episode.y_support.tolist()))
    (True, [0, 1])
    """

    def __init__(self, *, n_ways=None, n_shots=5, n_queries=15, classification=True, strict=False,
                 class_balance="balanced"):
        self.n_ways = n_ways
        self.n_shots = n_shots
        self.n_queries = n_queries
        self.classification = classification
        self.strict = strict
        self.class_balance = class_balance

    @property
    def max_shots(self):
        """The largest shot count: ``n_shots``, or the largest of a tuple of them."""
        return self.n_shots if np.ndim(self.n_shots) == 0 else int(max(self.n_shots))

    @property
    def rows_needed(self):
        """Rows a full episode takes from each class (or from the task)."""
        return self.max_shots + self.n_queries

    def _shots(self, rng, query):
        """The shot count of one episode: drawn when ``n_shots`` is a tuple."""
        if np.ndim(self.n_shots) == 0:
            return self.n_shots
        if query == "rest":
            return self.max_shots
        return int(self.n_shots[rng.integers(len(self.n_shots))])

    @property
    def _min_rows(self):
        """Rows a class (or task) needs to give any episode at all."""
        return self.rows_needed if self.strict else 2

    def ways(self, y):
        """Number of classes an episode of a task with targets ``y`` has."""
        return self.n_ways if self.n_ways is not None else np.unique(y).shape[0]

    def why_not(self, y, *, task=None):
        """Why ``y`` cannot give an episode, or None when it can.

        Parameters
        ----------
        y : ndarray of shape (n_rows,)
            The task's targets.
        task : object, default=None
            The task's name, for the message.

        Returns
        -------
        str or None
        """
        if not self.classification:
            if y.shape[0] < self._min_rows:
                need = "n_shots + n_queries = " if self.strict else ""
                return (
                    f"task {task!r} has {y.shape[0]} row(s) but an episode needs "
                    f"{need}{self._min_rows}"
                )
            return None
        classes, counts = np.unique(y, return_counts=True)
        ways = self.ways(y)
        if classes.shape[0] < max(ways, 2):
            return (
                f"task {task!r} has {classes.shape[0]} class(es) {classes.tolist()} but "
                f"episodes need {max(ways, 2)} (n_ways={self.n_ways})"
            )
        # The ways-th largest class must fill an episode; name it if it cannot.
        limiting = np.argsort(counts, kind="stable")[classes.shape[0] - ways]
        if counts[limiting] < self._min_rows:
            also = ""
            if ways < classes.shape[0]:
                n_enough = int((counts >= self._min_rows).sum())
                also = f", so {n_enough} of its classes can give an episode but n_ways={ways}"
            need = f"n_shots + n_queries = {self.rows_needed}" if self.strict else "2 (a shot and a query)"
            return (
                f"class {_python_scalar(classes[limiting])!r} of task {task!r} has "
                f"{counts[limiting]} row(s) but an episode needs {need}{also}"
            )
        return None

    def check(self, y, *, task=None):
        """Raise a ValueError that says why ``y`` cannot yield an episode.

        Parameters
        ----------
        y : ndarray of shape (n_rows,)
            The task's targets.
        task : object, default=None
            The task's name, for the message.
        """
        reason = self.why_not(y, task=task)
        if reason is not None:
            fix = "lower n_shots or n_queries, " if self.strict else ""
            raise ValueError(f"{reason[0].upper()}{reason[1:]}; {fix}or drop that task.")

    def _split(self, rows, query, shots):
        """Support and query positions from shuffled ``rows`` of one class or task."""
        n_shots = min(shots, rows.shape[0] - 1)
        stop = n_shots + self.n_queries if query == "sampled" else None
        return rows[:n_shots], rows[n_shots:stop]

    def _natural(self, y, classes, rng, query, shots):
        """Support and query positions in the task's class proportions.

        One support row of each class first, then the rest of the support
        and the query rows drawn from the other rows of ``classes`` alike.
        """
        ways = classes.shape[0]
        first = np.array([rng.choice(np.flatnonzero(y == cls)) for cls in classes])
        rest = rng.permutation(np.setdiff1d(np.flatnonzero(np.isin(y, classes)), first))
        # n_shots * n_ways in all, but leave one query row at least.
        n_more = min(shots * ways, ways + rest.shape[0] - 1) - ways
        stop = n_more + self.n_queries * ways if query == "sampled" else None
        return np.concatenate([first, rest[:n_more]]), rest[n_more:stop]

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
        return self._draw(X, y, rng, self._prepare(y, task), task=task, query=query)

    def _prepare(self, y, task=None):
        """Check ``y`` and compute what every episode of the task needs, once.

        Returns the eligible classes, the number of ways and each eligible
        class's row positions (None for regression): :meth:`_draw` takes them,
        so that a loader drawing many episodes of one task checks and scans
        its targets once, and draws the very episodes :meth:`sample` would.
        """
        if self.class_balance not in ("balanced", "natural"):
            raise ValueError(
                f"class_balance must be 'balanced' or 'natural'; got {self.class_balance!r}."
            )
        self.check(y, task=task)
        if not self.classification:
            return None
        classes, counts = np.unique(y, return_counts=True)
        eligible = classes[counts >= self._min_rows]
        rows = {cls: np.flatnonzero(y == cls) for cls in eligible.tolist()}
        return eligible, self.ways(y), rows

    def _draw(self, X, y, rng, prepared, *, task=None, query="sampled"):
        """One episode, from the checked targets' :meth:`_prepare` result."""
        shots = self._shots(rng, query)
        if not self.classification:
            support, query_rows = self._split(rng.permutation(y.shape[0]), query, shots)
            return Episode(X[support], y[support], X[query_rows], y[query_rows], task=task)

        eligible, ways, rows = prepared
        if ways < eligible.shape[0]:
            eligible = np.sort(rng.choice(eligible, ways, replace=False))
        if self.class_balance == "natural":
            support, query_rows = self._natural(y, eligible, rng, query, shots)
            return Episode(
                X[support],
                np.searchsorted(eligible, y[support]),
                X[query_rows],
                np.searchsorted(eligible, y[query_rows]),
                classes=eligible,
                task=task,
            )
        support, query_rows, y_support, y_query = [], [], [], []
        for label, cls in enumerate(eligible.tolist()):
            shot_rows, queries = self._split(rng.permutation(rows[cls]), query, shots)
            support.append(shot_rows)
            query_rows.append(queries)
            y_support.append(np.full(shot_rows.shape[0], label))
            y_query.append(np.full(queries.shape[0], label))
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
    """Episodes stacked along a first, meta-batch axis.

    ``X_support`` has shape (n_episodes, n_support, n_features),
    ``y_support`` (n_episodes, n_support), and likewise for the query set.
    Episodes of different sizes are padded to the largest: then
    ``support_weight`` and ``query_weight`` are 1 on real rows and 0 on
    padding, and losses, prototypes and inner steps weight rows by them.
    When every episode has one shape they are None.

    Parameters
    ----------
    X_support : Tensor of shape (n_episodes, n_support, n_features)
    y_support : Tensor of shape (n_episodes, n_support)
        Episode labels (long) or targets (float32).
    X_query : Tensor of shape (n_episodes, n_query, n_features)
    y_query : Tensor of shape (n_episodes, n_query)
    support_weight : Tensor of shape (n_episodes, n_support) or None, default=None
    query_weight : Tensor of shape (n_episodes, n_query) or None, default=None
    tasks : tuple or None, default=None
        The name of each episode's task, when known.
    classes : tuple of ndarray or None, default=None
        Classification: each episode's task labels behind its episode labels
        (:attr:`Episode.classes`), when known.

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
    support_weight: torch.Tensor | None = None
    query_weight: torch.Tensor | None = None
    tasks: tuple | None = None
    classes: tuple | None = None

    @classmethod
    def stack(cls, episodes, *, device="cpu", classification=True):
        """Stack episodes into tensors on ``device``, padding where sizes differ."""
        target_dtype = torch.long if classification else torch.float32

        def tensor(values, dtype):
            return torch.as_tensor(values, dtype=dtype, device=device)

        parts, weights = {}, {}
        for side in ("support", "query"):
            X_parts = [getattr(episode, f"X_{side}") for episode in episodes]
            y_parts = [getattr(episode, f"y_{side}") for episode in episodes]
            sizes = np.array([part.shape[0] for part in y_parts])
            if (sizes == sizes[0]).all():
                X_values, y_values, weight = np.stack(X_parts), np.stack(y_parts), None
            else:  # pad with copies of the first row, weighted 0
                longest = int(sizes.max())
                take = np.minimum(np.arange(longest), sizes[:, None] - 1)
                take = np.where(np.arange(longest) < sizes[:, None], take, 0)
                X_values = np.stack([part[rows] for part, rows in zip(X_parts, take, strict=True)])
                y_values = np.stack([part[rows] for part, rows in zip(y_parts, take, strict=True)])
                weight = tensor(np.arange(longest) < sizes[:, None], torch.float32)
            parts[side] = (tensor(X_values, torch.float32), tensor(y_values, target_dtype))
            weights[side] = weight
        return cls(*parts["support"], *parts["query"], weights["support"], weights["query"],
                   tasks=tuple(episode.task for episode in episodes),
                   classes=tuple(episode.classes for episode in episodes) if classification else None)

    def episodes(self, start, stop):
        """The episodes ``start`` to ``stop`` of the batch, as a batch.

        Parameters
        ----------
        start, stop : int
            Positions along the meta-batch axis, as in a slice.

        Returns
        -------
        EpisodeBatch

        Examples
        --------
        >>> import numpy as np
        >>> from skmeta.tasks import EpisodeBatch, EpisodeSampler
        >>> sampler, rng = EpisodeSampler(n_shots=2, n_queries=3), np.random.default_rng(0)
        >>> episodes = [sampler.sample(np.zeros((10, 4)), np.array([0, 1] * 5), rng, task=name)
        ...             for name in "abc"]
        >>> EpisodeBatch.stack(episodes).episodes(1, 3).tasks
        ('b', 'c')
        """
        def part(values):
            return None if values is None else values[start:stop]

        return EpisodeBatch(
            *(part(t) for t in (self.X_support, self.y_support, self.X_query, self.y_query,
                                self.support_weight, self.query_weight)),
            tasks=part(self.tasks), classes=part(self.classes),
        )

    @property
    def padded(self):
        """Whether some episodes are padded (the weights are not None)."""
        return self.support_weight is not None or self.query_weight is not None

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
        prepared = {}  # per task: its targets checked and scanned once for the whole pass
        for start in range(0, self.n_episodes, self.meta_batch_size):
            episodes = []
            for i in order[start : start + self.meta_batch_size].tolist():
                task = self.tasks[i]
                if i not in prepared:
                    prepared[i] = self.sampler._prepare(task.y, task.name)
                episodes.append(self.sampler._draw(task.X, task.y, rng, prepared[i], task=task.name))
            yield EpisodeBatch.stack(
                episodes, device=self.device, classification=self.sampler.classification
            )
