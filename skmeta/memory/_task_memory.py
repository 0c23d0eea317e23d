"""A memory of past tasks: written as tasks are meta-trained on, recalled by a new task.

Each past task is kept as a sample of its labelled rows (at most
``n_rows``), under its name. The memory holds at most ``capacity`` tasks:
writing one more evicts the least recently used, the task whose last write
or recall in meta-training is the oldest (the earliest written among
equals). A task written again replaces what was kept of it.

A new support set recalls the past tasks nearest it in the network's row
encoding: for classification, those whose class means (prototypes) lie
nearest the support rows of the same class; for regression, those whose
rows, read by attention, predict the support targets best. Their rows then join
the new support set in memory, marked as recalled, so that the query rows
read both.

Labels travel with their meaning: a past task's rows of classification
keep the task's own labels, and a new support set reads the rows of its own
classes only (other rows weigh 0). Regression targets are kept as they
are and standardised by the new support set's mean and scale, as its own
targets are.

Functional core: :func:`write_tasks`, :func:`memory_codes`,
:func:`recall`. The estimators (:mod:`skmeta.memory._in_context`) hold the
memory as their fitted attribute ``task_memory_``.
"""

import math

import numpy as np
import torch

from .._attention import weighted_softmax


def write_tasks(entries, used, tasks, *, capacity, n_rows, clock, seed):
    """Write tasks to a bounded memory; evict the least recently used when full.

    Parameters
    ----------
    entries : list of dict
        The memory: one ``{"name", "X", "y"}`` per past task.
    used : ndarray of shape (len(entries),)
        When each entry was last written or recalled (a training clock).
    tasks : iterable of Task
        Tasks to write, each under its ``name``.
    capacity : int
        Most tasks kept; 0 keeps none.
    n_rows : int
        Most rows kept of a task, a seeded random sample of them.
    clock : int
        The time of this write.
    seed : sequence of int
        Seed of the row samples; each task draws from its own stream.

    Returns
    -------
    entries : list of dict
    used : ndarray

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta.tasks import Task
    >>> tasks = [Task(np.zeros((5, 2)), np.arange(5) % 2, name=n) for n in "abc"]
    >>> entries, used = write_tasks([], np.zeros(0, int), tasks, capacity=2, n_rows=3,
    ...                             clock=0, seed=(0,))
    >>> [e["name"] for e in entries], entries[0]["X"].shape
    (['b', 'c'], (3, 2))
    """
    entries, used = list(entries), np.asarray(used, dtype=np.int64).copy()
    for i, task in enumerate(tasks):
        same = [k for k, entry in enumerate(entries) if entry["name"] == task.name]
        if same:  # a task written again replaces what was kept of it
            entries = [entry for k, entry in enumerate(entries) if k not in same]
            used = np.delete(used, same)
        if capacity == 0:
            continue
        if len(entries) >= capacity:
            oldest = int(np.argmin(used))  # the earliest written among equals
            entries.pop(oldest)
            used = np.delete(used, oldest)
        X, y = np.asarray(task.X), np.asarray(task.y)
        rng = np.random.default_rng([*seed, i])
        rows = np.sort(rng.choice(y.shape[0], min(n_rows, y.shape[0]), replace=False))
        entries.append({"name": task.name, "X": np.asarray(X[rows], dtype=np.float32), "y": y[rows]})
        used = np.append(used, clock)
    return entries, used


def memory_codes(entries, *, classes=None, mean=None, scale=None, n_ways=None, device="cpu"):
    """The past tasks' rows, as each episode would write them to memory.

    Parameters
    ----------
    entries : list of dict
        The memory (:func:`write_tasks`).
    classes : sequence of ndarray, default=None
        Classification: each episode's own labels behind its episode labels.
        A past row of one of them gets that episode label (one hot); other
        rows weigh 0.
    mean, scale : Tensor of shape (n_episodes, 1), default=None
        Regression: each episode's support mean and scale, by which the past
        targets are standardised.
    n_ways : int, default=None
        Width of a classification code.
    device : str or torch.device, default="cpu"

    Returns
    -------
    X : Tensor of shape (n_entries, n_rows, n_features)
        The rows, padded to the longest entry.
    codes : Tensor of shape (n_episodes, n_entries, n_rows, n_ways or 1)
    weight : Tensor of shape (n_episodes, n_entries, n_rows)
        1 for a row the episode reads, 0 for padding or a row of another class.

    Examples
    --------
    >>> import numpy as np
    >>> entries = [{"name": "a", "X": np.zeros((3, 1), np.float32), "y": np.array(["no", "yes", "maybe"])}]
    >>> X, codes, weight = memory_codes(entries, classes=[np.array(["no", "yes"])], n_ways=2)
    >>> codes[0, 0].argmax(-1).tolist(), weight[0, 0].tolist()
    ([0, 1, 0], [1.0, 1.0, 0.0])
    """
    longest = max(entry["X"].shape[0] for entry in entries)
    n_features = entries[0]["X"].shape[1]
    X = np.zeros((len(entries), longest, n_features), dtype=np.float32)
    real = np.zeros((len(entries), longest), dtype=bool)
    for m, entry in enumerate(entries):
        X[m, : entry["X"].shape[0]] = entry["X"]
        real[m, : entry["X"].shape[0]] = True
    X = torch.as_tensor(X, device=device)
    if classes is not None:
        labels = np.concatenate([entry["y"] for entry in entries])
        vocabulary, ids = np.unique(labels, return_inverse=True)
        row_ids = np.zeros((len(entries), longest), dtype=np.int64)
        start = 0
        for m, entry in enumerate(entries):
            row_ids[m, : entry["y"].shape[0]] = ids[start : start + entry["y"].shape[0]]
            start += entry["y"].shape[0]
        # per episode: each known label's episode label, or -1
        table = np.full((len(classes), vocabulary.shape[0]), -1, dtype=np.int64)
        for e, episode_classes in enumerate(classes):
            at = np.searchsorted(vocabulary, episode_classes)
            found = (at < vocabulary.shape[0]) & (vocabulary[np.minimum(at, vocabulary.shape[0] - 1)]
                                                   == episode_classes)
            table[e, at[found]] = np.flatnonzero(found)
        labels = table[:, row_ids]  # (n_episodes, n_entries, n_rows)
        weight = torch.as_tensor((labels >= 0) & real, dtype=torch.float32, device=device)
        codes = torch.nn.functional.one_hot(torch.as_tensor(np.maximum(labels, 0), device=device),
                                            n_ways).to(torch.float32)
        return X, codes, weight
    y = np.zeros((len(entries), longest), dtype=np.float32)
    for m, entry in enumerate(entries):
        y[m, : entry["y"].shape[0]] = entry["y"]
    y = torch.as_tensor(y, device=device)
    codes = ((y - mean.unsqueeze(-1)) / scale.unsqueeze(-1)).to(torch.float32).unsqueeze(-1)
    weight = torch.as_tensor(real, dtype=torch.float32, device=device).expand(mean.shape[0], -1, -1)
    return X, codes, weight


def recall(net, X_support, codes_support, support_weight, X_memory, codes_memory, weight_memory,
           *, n_recalled, classification, exclude=None):
    """The past tasks nearest each support set, in the network's row encoding.

    Classification: a past task is represented by its class means
    (prototypes) in the row encoding, and its loss on a support set is the
    mean squared distance of each support row to the past task's mean of
    the row's own class (infinite if the past task has no row of it).
    Regression: each support row reads each past task's rows by one
    attention over the row encodings (scaled dot products, as a memory
    layer reads), which predicts its target as their weighted mean, and the
    loss is the mean squared error. The tasks of smallest loss are recalled.

    Parameters
    ----------
    net : InContextNet
    X_support : Tensor of shape (n_episodes, n_support, n_features)
    codes_support : Tensor of shape (n_episodes, n_support, n_outputs)
        The support labels (one hot) or standardised targets.
    support_weight : Tensor of shape (n_episodes, n_support) or None
    X_memory, codes_memory, weight_memory
        The past tasks' rows as each episode reads them (:func:`memory_codes`).
    n_recalled : int
        Past tasks recalled per episode (fewer when fewer can be).
    classification : bool
    exclude : Tensor of bool of shape (n_episodes, n_entries), default=None
        Past tasks an episode may not recall (its own task, in meta-training).

    Returns
    -------
    chosen : Tensor of shape (n_episodes, k)
        Indices of the recalled tasks, the best first.
    usable : Tensor of bool of shape (n_episodes, k)
        Whether each could be recalled (False: excluded, or no row the
        episode can read).
    loss : Tensor of shape (n_episodes, n_entries)
        Each past task's loss on each support set (inf where not usable).

    Examples
    --------
    >>> import torch
    >>> from skmeta.memory import InContextNet
    >>> net = InContextNet(1, n_outputs=1, width=8, n_heads=2)
    >>> chosen, usable, loss = recall(
    ...     net, torch.zeros(2, 3, 1), torch.zeros(2, 3, 1), None, torch.zeros(4, 5, 1),
    ...     torch.zeros(2, 4, 5, 1), torch.ones(2, 4, 5), n_recalled=2, classification=False)
    >>> tuple(chosen.shape), bool(usable.all()), tuple(loss.shape)
    ((2, 2), True, (2, 4))
    """
    with torch.no_grad():
        keys, queries = net.rows(X_memory), net.rows(X_support)  # (M, R, W), (E, S, W)
        if classification:
            # each past task's class means (prototypes), as each episode labels its rows
            counts = torch.einsum("emr,emrc->emc", weight_memory, codes_memory)
            centres = torch.einsum("emr,emrc,mrw->emcw", weight_memory, codes_memory, keys)
            centres = centres / counts.clamp_min(1e-12).unsqueeze(-1)
            own = torch.einsum("esc,emcw->emsw", codes_support, centres)  # the support row's class mean
            row_loss = ((queries.unsqueeze(1) - own) ** 2).sum(-1)
            has_class = torch.einsum("esc,emc->ems", codes_support, (counts > 0).to(codes_support.dtype))
            row_loss = torch.where(has_class > 0, row_loss, torch.inf)
        else:
            scores = torch.einsum("esw,mrw->emsr", queries, keys) / math.sqrt(keys.shape[-1])
            attended = weighted_softmax(scores, weight_memory.unsqueeze(-2))
            predicted = torch.einsum("emsr,emrc->emsc", attended, codes_memory)
            row_loss = ((predicted - codes_support.unsqueeze(1)) ** 2).squeeze(-1)
        weight = (torch.ones_like(codes_support[..., 0]) if support_weight is None
                  else support_weight.to(row_loss.dtype)).unsqueeze(1)
        loss = (row_loss * weight).sum(-1) / weight.sum(-1).clamp_min(1e-12)
        usable = weight_memory.sum(-1) > 0
        if exclude is not None:
            usable = usable & ~exclude
        loss = torch.where(usable & torch.isfinite(loss), loss, torch.inf)
        best, chosen = torch.topk(loss, min(n_recalled, loss.shape[-1]), dim=-1, largest=False)
    return chosen, torch.isfinite(best), loss
