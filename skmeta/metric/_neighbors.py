"""k nearest neighbours in a meta-learned embedding.

The embedding is meta-trained as prototypical networks train theirs (query
rows near their class mean, far from the others); a new task is adapted to by
embedding its support set, and a query row's class probabilities are the
(weighted) vote of its ``n_neighbors`` nearest support rows there. Where a
class is made of several clusters, neighbours follow them and a class mean
does not.

Functional core: :func:`neighbor_votes`. Estimator:
:class:`EmbeddingKNNClassifier`.
"""

from numbers import Integral

import torch
from sklearn.utils._param_validation import Interval, StrOptions

from .._base import MetaClassifierMixin, MetaLearner
from .._base._docs import episodic_parameters
from .._mlp import MLP
from ._embedding import EmbeddingMixin
from ._protonet import _embed, prototypes, prototypical_logits

#: Floor of a vote share, before its logarithm is taken.
_PROBABILITY_FLOOR = 1e-12


def neighbor_votes(queries, support, labels, n_classes, *, n_neighbors, weights="uniform",
                   support_weight=None):
    """Class shares of each query row's nearest support rows (Euclidean).

    Parameters
    ----------
    queries : Tensor of shape (n_queries, width)
    support : Tensor of shape (n_support, width)
    labels : LongTensor of shape (n_support,)
        Labels in ``0 .. n_classes - 1``.
    n_classes : int
    n_neighbors : int
        Neighbours that vote; at most the support rows of positive weight.
    weights : {"uniform", "distance"}, default="uniform"
        "distance" weighs a neighbour's vote by its inverse distance (a
        neighbour at distance 0 takes the whole vote, shared among such).
    support_weight : Tensor of shape (n_support,) or None, default=None
        Multiplies each support row's vote; rows of weight 0 never vote.

    Returns
    -------
    Tensor of shape (n_queries, n_classes)
        Vote shares, each row summing to one.

    Examples
    --------
    >>> import torch
    >>> support = torch.tensor([[0.0], [1.0], [5.0]])
    >>> neighbor_votes(torch.tensor([[0.4]]), support, torch.tensor([0, 1, 1]), 2, n_neighbors=2)
    tensor([[0.5000, 0.5000]])
    >>> neighbor_votes(torch.tensor([[4.0]]), support, torch.tensor([0, 1, 1]), 2, n_neighbors=1)
    tensor([[0., 1.]])
    """
    distances = torch.cdist(queries, support)
    if support_weight is None:
        support_weight = torch.ones(support.shape[0], dtype=queries.dtype, device=queries.device)
    support_weight = support_weight.to(queries.dtype)
    n_voters = int((support_weight > 0).sum())
    distances = distances.masked_fill(support_weight <= 0, torch.inf)
    nearest, index = distances.topk(min(n_neighbors, n_voters), dim=-1, largest=False)
    votes = support_weight[index]
    if weights == "distance":
        exact = nearest == 0
        votes = torch.where(exact.any(-1, keepdim=True), votes * exact, votes / nearest.clamp_min(1e-30))
    one_hot = torch.nn.functional.one_hot(labels[index], n_classes).to(queries.dtype)
    shares = (votes.unsqueeze(-1) * one_hot).sum(-2)
    return shares / shares.sum(-1, keepdim=True)


class EmbeddingKNNClassifier(EmbeddingMixin, MetaClassifierMixin, MetaLearner):
    __doc__ = """k nearest neighbours in a meta-learned embedding, for few-shot classification.

    Meta-training learns an embedding as :class:`ProtoNetClassifier` does
    (episodes whose query rows must lie near their class's mean); adapting
    to a new task embeds its support set, and a query row's class
    probabilities are the vote of its ``n_neighbors`` nearest support rows
    in the embedding, as :class:`sklearn.neighbors.KNeighborsClassifier`
    votes on raw features. Adapting takes no gradient step.

    Parameters
    ----------
    module : torch.nn.Module class or instance, default=MLP
        The embedding. A class is built in ``fit`` with its ``module__*``
        parameters, and with ``n_features`` if it accepts it.
    n_neighbors : int, default=3
        Neighbours that vote, at most the support set's rows (a 1-shot
        2-way support set has 2: then both vote).
    weights : {"uniform", "distance"}, default="uniform"
        As in :class:`~sklearn.neighbors.KNeighborsClassifier`: every
        neighbour's vote counts alike, or by its inverse distance. Support
        ``sample_weight`` multiplies either.
""" + episodic_parameters(
        criterion="Loss of meta-training on the prototypical query logits; None is\n"
                  "        ``torch.nn.CrossEntropyLoss``.",
        classification=True,
    ) + """
    Attributes
    ----------
    module_ : torch.nn.Module
        The meta-learned embedding.
    history_ : skorch.History
        Per epoch: ``train_loss``, ``valid_loss``, ``valid_score`` (query
        accuracy of the k-nearest-neighbour vote on meta-validation
        episodes), ``dur``.
    n_features_in_ : int
        Number of features.
    n_ways_ : int
        Classes per training episode.

    See Also
    --------
    ProtoNetClassifier : The same embedding, classified by class means.
    sklearn.neighbors.KNeighborsClassifier : The same vote on raw features.

    Examples
    --------
    >>> from skmeta import EmbeddingKNNClassifier
    >>> from skmeta.datasets import make_blob_tasks
    >>> tasks = make_blob_tasks(n_tasks=20, random_state=0)
    >>> meta = EmbeddingKNNClassifier(n_neighbors=3, max_epochs=2, random_state=0).fit(tasks[:15])
    >>> adapted = meta.adapt(tasks[15].X[:10], tasks[15].y[:10])
    >>> adapted.predict_proba(tasks[15].X[10:12]).shape
    (2, 2)
    """

    _parameter_constraints = {
        **MetaLearner._parameter_constraints,
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "weights": [StrOptions({"uniform", "distance"})],
    }

    def __init__(self, module=MLP, *, n_neighbors=3, weights="uniform", **kwargs):
        self.n_neighbors = n_neighbors
        self.weights = weights
        super().__init__(module, **kwargs)

    def _episode_loss(self, batch, training):
        n_ways = self.n_ways_
        centres = prototypes(_embed(self.module_, batch.X_support), batch.y_support, n_ways,
                             batch.support_weight)
        logits = prototypical_logits(_embed(self.module_, batch.X_query), centres)
        loss = self._weighted_loss(logits.reshape(-1, n_ways), batch.y_query.reshape(-1),
                                   None if batch.query_weight is None else batch.query_weight.reshape(-1))
        if training:
            return loss, logits
        # Meta-validation scores what adapting does: the neighbours' vote.
        votes = [self._vote(batch.X_query[e], self._adapt(batch.X_support[e], batch.y_support[e], n_ways,
                                                          None if batch.support_weight is None
                                                          else batch.support_weight[e])[0])
                 for e in range(len(batch))]
        return loss, torch.stack(votes)

    def _adapt(self, X_support, y_support, n_classes, weight=None):
        with torch.no_grad():
            return {"support": self.module_(X_support), "labels": y_support, "n_classes": n_classes,
                    "weight": weight}, None

    def _vote(self, X, state):
        shares = neighbor_votes(self.module_(X), state["support"], state["labels"], state["n_classes"],
                                n_neighbors=self.n_neighbors, weights=self.weights,
                                support_weight=state["weight"])
        return shares.clamp_min(_PROBABILITY_FLOOR).log()

    def _predict_state(self, state, X):
        return self._vote(X, state)
