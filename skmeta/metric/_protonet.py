"""Prototypical networks: classify by the nearest class mean in a learned embedding.

Functional core: :func:`prototypes` and :func:`prototypical_logits`, pure
functions on tensors with a leading meta-batch axis. Estimator:
:class:`ProtoNetClassifier`.
"""

import torch

from .._base import MetaClassifierMixin, MetaLearner
from ._embedding import EmbeddingMixin


def prototypes(embeddings, labels, n_classes, weight=None):
    """Mean embedding of each class, weighted by ``weight`` if given.

    Parameters
    ----------
    embeddings : Tensor of shape (..., n_support, n_embedding)
    labels : LongTensor of shape (..., n_support)
        Episode labels in ``0 .. n_classes - 1``.
    n_classes : int
    weight : Tensor of shape (..., n_support) or None, default=None
        Row weights (0 for padding); None weighs rows alike.

    Returns
    -------
    Tensor of shape (..., n_classes, n_embedding)

    Examples
    --------
    >>> import torch
    >>> prototypes(torch.tensor([[0.0], [2.0], [5.0]]), torch.tensor([0, 0, 1]), 2)
    tensor([[1.],
            [5.]])
    """
    one_hot = torch.nn.functional.one_hot(labels, n_classes).to(embeddings.dtype)
    if weight is not None:
        one_hot = one_hot * weight.to(embeddings.dtype).unsqueeze(-1)
    sums = one_hot.transpose(-1, -2) @ embeddings
    return sums / one_hot.sum(-2).unsqueeze(-1)


def prototypical_logits(embeddings, prototypes):
    """Negative squared Euclidean distance of each row to each prototype.

    Parameters
    ----------
    embeddings : Tensor of shape (..., n_queries, n_embedding)
    prototypes : Tensor of shape (..., n_classes, n_embedding)

    Returns
    -------
    Tensor of shape (..., n_queries, n_classes)

    Examples
    --------
    >>> import torch
    >>> prototypical_logits(torch.tensor([[1.0]]), torch.tensor([[1.0], [3.0]]))
    tensor([[-0., -4.]])
    """
    squared = (
        embeddings.pow(2).sum(-1, keepdim=True)
        - 2 * embeddings @ prototypes.transpose(-1, -2)
        + prototypes.pow(2).sum(-1).unsqueeze(-2)
    )
    return -squared.clamp_min(0)


def _embed(module, X):
    """Apply ``module`` to rows of any leading shape."""
    return module(X.reshape(-1, X.shape[-1])).reshape(*X.shape[:-1], -1)


class ProtoNetClassifier(EmbeddingMixin, MetaClassifierMixin, MetaLearner):
    """Prototypical networks for few-shot classification.

    Meta-training learns an embedding in which each class of a task gathers
    around its mean (the prototype); a new task is adapted to by embedding
    its support set and taking class means, and query rows go to the nearest
    prototype. Adapting takes no gradient step.

    Parameters
    ----------
    module : torch.nn.Module class or instance, default=MLP
        The embedding. A class is built in ``fit`` with its ``module__*``
        parameters, and with ``n_features`` if it accepts it. One without
        parameters, such as ``torch.nn.Identity``, is a fixed embedding:
        fitting learns nothing and the classifier is sklearn's
        ``NearestCentroid`` fitted on each support set.
    criterion : torch.nn.Module class or None, default=None
        Loss on the query logits; None is ``torch.nn.CrossEntropyLoss``.
    optimizer : torch.optim.Optimizer class, default=torch.optim.Adam
        The meta-optimizer; tune it with ``optimizer__*`` parameters.
    lr : float, default=1e-3
        Meta learning rate.
    max_epochs : int, default=20
        Passes of meta-training.
    n_episodes : int, default=200
        Episodes per epoch.
    meta_batch_size : int, default=8
        Episodes per meta-gradient step.
    n_ways : int or None, default=None
        Classes per training episode; None takes all classes of each task.
    n_shots : int or tuple of int, default=5
        Support rows per class in an episode. A tuple or list such as ``(1,
        5, 10)`` draws one shot count per training episode, uniformly
        (seeded); a meta-batch of mixed shot counts is padded to the largest
        and the padding masked out. ``score`` and the episodic scorers adapt
        on the largest.
    n_queries : int, default=15
        Query rows per class in a training episode.
    class_balance : {"balanced", "natural"}, default="balanced"
        "balanced" draws ``n_shots`` support and ``n_queries`` query rows
        per class; "natural" draws ``n_shots * n_ways`` and ``n_queries *
        n_ways`` rows in all, in each task's own class proportions, so that
        the base rate learnt is the tasks' own. Every class still gets one
        support row at least, so that every prototype is defined. ``score``
        draws its support sets alike.
    train_split : callable or None, default=TaskSplit(0.2)
        Splits the tasks into meta-training and meta-validation tasks;
        None meta-validates on nothing.
    callbacks : list of skorch callbacks or None, default=None
        E.g. ``EarlyStopping(monitor="valid_score", lower_is_better=False)``,
        ``ProgressBar()``, ``Checkpoint()``, ``LRScheduler()``.
    task_column : str or None, default=None
        In long format, the column of ``X`` that names each row's task.
    strict_episodes : bool, default=False
        Whether every class must fill whole episodes (``n_shots +
        n_queries`` rows). By default a smaller class gives fewer shots and
        queries, episodes of a meta-batch are padded and the padding masked
        out, and tasks that cannot give an episode at all are left out with
        a warning.
    device : {"auto", "cpu", "cuda"} or torch.device, default="auto"
        "auto" uses CUDA when present.
    random_state : int, RandomState instance or None, default=None
        Seeds the backbone's initial weights and the episodes.
    verbose : int, default=0
        1 prints one line per epoch.
    warm_start : bool, default=False
        Whether ``fit`` continues from the current weights.
    **kwargs : dict
        Routed parameters: ``module__*``, ``optimizer__*``, ``callbacks__*``.

    Attributes
    ----------
    module_ : torch.nn.Module
        The meta-learned embedding.
    history_ : skorch.History
        Per epoch: ``train_loss``, ``valid_loss``, ``valid_score`` (query
        accuracy of meta-validation episodes), ``dur``.
    n_features_in_ : int
        Number of features.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names, when the tasks had string column names.
    n_ways_ : int
        Classes per training episode.

    See Also
    --------
    MAMLClassifier : Adapts the whole network by gradient steps.
    sklearn.neighbors.NearestCentroid : The same rule without a learned embedding.

    References
    ----------
    .. [1] Snell, Swersky and Zemel, "Prototypical Networks for Few-shot
       Learning", NeurIPS 2017.

    Examples
    --------
    >>> from skmeta import ProtoNetClassifier
    >>> from skmeta.datasets import make_blob_tasks
    >>> tasks = make_blob_tasks(n_tasks=20, random_state=0)
    >>> meta = ProtoNetClassifier(max_epochs=2, random_state=0).fit(tasks[:15])
    >>> # the same initial embedding, left as it was
    >>> start = ProtoNetClassifier(lr=1e-9, max_epochs=1, n_episodes=8, random_state=0).fit(tasks[:15])
    >>> meta.score(tasks[15:]) > start.score(tasks[15:]) + 0.1
    True
    """

    def _episode_loss(self, batch, training):
        n_ways = self.n_ways_
        centres = prototypes(_embed(self.module_, batch.X_support), batch.y_support, n_ways,
                             batch.support_weight)
        logits = prototypical_logits(_embed(self.module_, batch.X_query), centres)
        loss = self._weighted_loss(logits.reshape(-1, n_ways), batch.y_query.reshape(-1),
                                   None if batch.query_weight is None else batch.query_weight.reshape(-1))
        return loss, logits

    def _adapt(self, X_support, y_support, n_classes, weight=None):
        with torch.no_grad():
            return prototypes(self.module_(X_support), y_support, n_classes, weight), None

    def _predict_state(self, state, X):
        return prototypical_logits(self.module_(X), state)
