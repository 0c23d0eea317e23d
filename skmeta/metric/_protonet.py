"""Prototypical networks: classify by the nearest class mean in a learned embedding.

Functional core: :func:`prototypes`, :func:`prototypical_logits` and
:func:`prototypical_loss`, pure functions on tensors with a leading
meta-batch axis. Estimator:
:class:`ProtoNetClassifier`.
"""

import torch

from .._base import MetaClassifierMixin, MetaLearner
from .._base._docs import episodic_parameters, fitted_attributes
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


def prototypical_loss(module, batch, n_ways, loss_fn):
    """The loss of a meta-batch's query rows classified by their episode's prototypes.

    Parameters
    ----------
    module : torch.nn.Module
        The embedding.
    batch : EpisodeBatch
    n_ways : int
    loss_fn : callable
        ``loss_fn(logits, labels, weight)`` over all query rows (``weight``
        None or the query rows' weights).

    Returns
    -------
    loss : Tensor
    logits : Tensor of shape (n_episodes, n_query, n_ways)

    Examples
    --------
    >>> import torch
    >>> from skmeta.tasks import EpisodeBatch
    >>> batch = EpisodeBatch(torch.tensor([[[0.0], [2.0]]]), torch.tensor([[0, 1]]),
    ...                      torch.tensor([[[0.0]]]), torch.tensor([[0]]))
    >>> loss, logits = prototypical_loss(torch.nn.Identity(), batch, 2,
    ...                                  lambda z, y, w: torch.nn.functional.cross_entropy(z, y))
    >>> logits
    tensor([[[-0., -4.]]])
    """
    centres = prototypes(_embed(module, batch.X_support), batch.y_support, n_ways, batch.support_weight)
    logits = prototypical_logits(_embed(module, batch.X_query), centres)
    weight = None if batch.query_weight is None else batch.query_weight.reshape(-1)
    return loss_fn(logits.reshape(-1, n_ways), batch.y_query.reshape(-1), weight), logits


class ProtoNetClassifier(EmbeddingMixin, MetaClassifierMixin, MetaLearner):
    __doc__ = """Prototypical networks for few-shot classification.

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
""" + episodic_parameters(
        criterion="Loss on the query logits; None is ``torch.nn.CrossEntropyLoss``.",
        classification=True,
    ) + fitted_attributes(
        classification=True, prior=False, fixed_ways=False,
        own="    module_ : torch.nn.Module\n        The meta-learned embedding.\n",
    ) + """
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
        return prototypical_loss(self.module_, batch, self.n_ways_, self._weighted_loss)

    def _adapt(self, X_support, y_support, n_classes, weight=None):
        with torch.no_grad():
            return prototypes(self.module_(X_support), y_support, n_classes, weight), None

    def _predict_state(self, state, X):
        return prototypical_logits(self.module_(X), state)
