"""Lifelong meta-learning: ``partial_fit`` on tasks that arrive later, without forgetting.

Meta-training that goes on (``partial_fit``) on new tasks alone moves the
weights to wherever the new tasks are served best, and what the learner knew
of earlier tasks is forgotten. Two controls, either or both:

- **Replay** (``replay_size``): a reservoir of past tasks, a uniform sample of
  every task meta-trained on so far (reservoir sampling, seeded), of at most
  ``replay_size`` tasks. ``partial_fit`` meta-trains on the new tasks and the
  reservoir together, at the same cost (``n_episodes`` per epoch).
- **A quadratic penalty** (``ewc``, elastic weight consolidation): after each
  stage, each weight's importance is estimated as the mean squared gradient
  of the training loss of one episode (of one task's rows, for learners that
  pre-train on pooled rows), over the episodes of ``IMPORTANCE_BATCHES``
  meta-batches of that stage's tasks (the empirical Fisher information),
  added to the importance of earlier stages; later training adds
  ``ewc / 2 * sum(importance * (weight - weight_then) ** 2)`` to its loss,
  with the importance divided by its mean over the weights (so that ``ewc``
  is the pull on a weight of average importance, whatever the loss's
  scale), and weights that mattered stay near where they were.

``fit`` (not ``warm_start``) starts a new history: stage 0, an empty
reservoir, no penalty. Each epoch's row of ``history_`` records its
``stage``: 0 for ``fit``, then one more for each ``partial_fit``.
"""

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval

from ..tasks import EpisodeBatch, Task

#: Meta-batches (or batches of pooled rows) that estimate the weights' importance.
IMPORTANCE_BATCHES = 10

LIFELONG_CONSTRAINTS = {
    "replay_size": [Interval(Integral, 0, None, closed="left")],
    "ewc": [Interval(Real, 0, None, closed="left")],
}


def reservoir_sample(reservoir, items, size, n_seen, rng):
    """Reservoir sampling: a uniform sample of at most ``size`` of every item seen.

    Parameters
    ----------
    reservoir : list
        The sample of the ``n_seen`` items seen so far.
    items : iterable
        New items, in the order they arrive.
    size : int
        Most items kept.
    n_seen : int
        Items seen before ``items``.
    rng : numpy.random.Generator

    Returns
    -------
    reservoir : list
        Each of the ``n_seen + len(items)`` items is in it with probability
        ``size / (n_seen + len(items))`` (all of them while they fit).
    n_seen : int

    Examples
    --------
    >>> import numpy as np
    >>> sample, n_seen = reservoir_sample([], range(100), 5, 0, np.random.default_rng(0))
    >>> len(sample), n_seen, all(0 <= item < 100 for item in sample)
    (5, 100, True)
    """
    reservoir = list(reservoir)
    for item in items:
        n_seen += 1
        if len(reservoir) < size:
            reservoir.append(item)
        elif size:
            slot = int(rng.integers(n_seen))
            if slot < size:
                reservoir[slot] = item
    return reservoir, n_seen


class LifelongMixin:
    """The reservoir of past tasks, the penalty toward past weights, and the stage."""

    #: Whether continued training may add past tasks to the ones given. A
    #: learner whose weights belong to training tasks by position (one head
    #: per task) may not: it neither lists nor takes ``replay_size``.
    _replays = True

    # ------------------------------------------------------------ stages

    @property
    def _stage(self):
        return self.__dict__.get("stage_", 0)

    def _begin_stage(self, tasks, *, reset):
        """Fitted state of a new stage; the tasks to train on (with replayed ones)."""
        if reset:
            self.stage_ = 0
            self.replay_ = []
            self._tasks_seen = 0
            # Its own stream, from the seed of the weights: the other streams
            # (episodes, training) draw as they did before replay existed.
            self._replay_rng = np.random.default_rng((self._torch_seed, 1))
            self.__dict__.pop("_importance", None)
            self.__dict__.pop("_anchor", None)
            return tasks
        self.stage_ = self._stage + 1
        if not self._replays:
            return tasks
        names = {task.name for task in tasks}
        replayed = [Task(entry["X"], entry["y"], name=entry["name"])
                    for entry in self.__dict__.get("replay_", []) if entry["name"] not in names]
        if not replayed:
            return tasks
        return type(tasks)(list(tasks) + replayed)

    def _end_stage(self, new_tasks):
        """Keep a sample of the new tasks in the reservoir; consolidate the weights (``ewc``)."""
        names = {task.name for task in new_tasks}
        # A task given again replaces what was kept of it.
        kept = [entry for entry in self.__dict__.get("replay_", []) if entry["name"] not in names]
        entries = [{"X": np.asarray(task.X), "y": np.asarray(task.y), "name": task.name}
                   for task in new_tasks]
        size = self.replay_size if self._replays else 0
        self.replay_, self._tasks_seen = reservoir_sample(kept, entries, size, self._tasks_seen,
                                                          self._replay_rng)
        if self.ewc > 0:
            self._consolidate(new_tasks)

    def on_epoch_begin(self, net, **kwargs):
        super().on_epoch_begin(net, **kwargs)
        self.history.record("stage", self._stage)

    # ------------------------------------------------------------ penalty

    def _consolidate(self, tasks):
        """Add this stage's importance of each weight; remember the weights."""
        loader = self.get_split_datasets(tasks)[0]
        params = [p for p in self.module_.parameters() if p.requires_grad]
        importance = [torch.zeros_like(p) for p in params]
        n_batches = 0
        self._set_training(True)
        n_parts = 0
        with self._seeded_torch():
            for batch in loader:
                for part in _parts(batch):
                    loss, _ = self._training_loss(part)
                    grads = torch.autograd.grad(loss, params, allow_unused=True)
                    for total, g in zip(importance, grads, strict=True):
                        if g is not None:
                            total += g.detach() ** 2
                    n_parts += 1
                n_batches += 1
                if n_batches == IMPORTANCE_BATCHES:
                    break
        self._set_training(False)
        importance = [total / max(n_parts, 1) for total in importance]
        previous = self.__dict__.get("_importance")
        if previous is not None and len(previous) == len(importance):
            importance = [old + new for old, new in zip(previous, importance, strict=True)]
        self._importance = importance
        self._anchor = [p.detach().clone() for p in params]

    def _training_penalty(self):
        """``ewc / 2 * sum(importance * (weight - anchor) ** 2)`` (importance of mean 1), or None."""
        importance, anchor = self.__dict__.get("_importance"), self.__dict__.get("_anchor")
        if not self.ewc or importance is None:
            return None
        params = [p for p in self.module_.parameters() if p.requires_grad]
        # Relative importance (mean 1 over the weights): ``ewc`` is then the
        # pull on a weight of average importance, whatever the loss's scale.
        mean = sum(f.sum() for f in importance) / sum(f.numel() for f in importance)
        scale = self.ewc / 2 / mean.clamp_min(torch.finfo(mean.dtype).tiny)
        return scale * sum((f * (p - a) ** 2).sum()
                           for f, p, a in zip(importance, params, anchor, strict=True))


def _parts(batch):
    """A meta-batch's episodes one at a time; a batch of pooled rows task by task."""
    if isinstance(batch, EpisodeBatch):
        for e in range(len(batch)):
            yield batch.episodes(e, e + 1)
        return
    X, y, task_index = batch
    for task in torch.unique(task_index):
        rows = task_index == task
        yield X[rows], y[rows], task_index[rows]
