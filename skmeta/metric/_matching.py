"""Matching networks: attend over the support set in a learned embedding.

A query row's prediction is a weighted mean of the support set's labels (one
hot) or targets, the weights a softmax over support rows of a similarity
(kernel) between the query's embedding and each support row's. With
``full_context``, the support embeddings are first conditioned on the whole
support set (self-attention), and each query's embedding reads the support
set once more (attention) before the kernel is taken.

Functional core: :func:`similarities`, :func:`attend`, :func:`context` and
:func:`matching_outputs`, pure functions on tensors with any leading
(meta-batch) axes. Network: :class:`MatchingNet`. Estimators:
:class:`MatchingNetClassifier`, :class:`MatchingNetRegressor`.
"""

import math
from numbers import Real

import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from .._attention import weighted_softmax
from .._base import MetaClassifierMixin, MetaLearner
from .._base._docs import episodic_parameters, fitted_attributes
from .._mlp import MLP
from ._embedding import EmbeddingMixin

#: Floor of a class probability, before its logarithm is taken.
_PROBABILITY_FLOOR = 1e-12


def similarities(queries, support, *, kernel, scale, weight_matrix=None):
    """Kernel between every query row and every support row.

    Parameters
    ----------
    queries : Tensor of shape (..., n_queries, width)
    support : Tensor of shape (..., n_support, width)
    kernel : {"cosine", "learned"}
        "cosine": cosine similarity times ``scale`` (a learned inverse
        temperature); "learned": the bilinear form ``q^T W s`` times
        ``scale``, with ``W`` learned.
    scale : Tensor, scalar
    weight_matrix : Tensor of shape (width, width) or None
        ``W`` of the learned kernel.

    Returns
    -------
    Tensor of shape (..., n_queries, n_support)

    Examples
    --------
    >>> import torch
    >>> similarities(torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0], [0.0, 3.0]]),
    ...              kernel="cosine", scale=torch.tensor(1.0))
    tensor([[1., 0.]])
    """
    if kernel == "cosine":
        queries = nn.functional.normalize(queries, dim=-1, eps=1e-8)
        support = nn.functional.normalize(support, dim=-1, eps=1e-8)
    else:
        queries = queries @ weight_matrix
    return scale * (queries @ support.transpose(-1, -2))


def attend(scores, weight=None):
    """Softmax of ``scores`` over the support rows, rows of weight ``w`` counting ``w`` times.

    Parameters
    ----------
    scores : Tensor of shape (..., n_queries, n_support)
    weight : Tensor of shape (..., n_support) or None, default=None
        Support row weights; a row of weight 0 (padding) gets no attention.

    Returns
    -------
    Tensor of shape (..., n_queries, n_support)
        Each row sums to one.

    Examples
    --------
    >>> import torch
    >>> attend(torch.zeros(1, 3), weight=torch.tensor([1.0, 3.0, 0.0]))
    tensor([[0.2500, 0.7500, 0.0000]])
    """
    return weighted_softmax(scores, None if weight is None else weight.unsqueeze(-2))


def context(rows, keys, projections, weight=None):
    """One residual attention read of ``rows`` over ``keys`` (single head).

    Parameters
    ----------
    rows : Tensor of shape (..., n_rows, width)
    keys : Tensor of shape (..., n_keys, width)
    projections : (Linear, Linear, Linear)
        Query, key and value projections.
    weight : Tensor of shape (..., n_keys) or None, default=None
        Key weights (0: padding, never read).

    Returns
    -------
    Tensor of shape (..., n_rows, width)
        ``rows`` plus what they read.
    """
    query, key, value = projections
    scores = query(rows) @ key(keys).transpose(-1, -2) / math.sqrt(rows.shape[-1])
    return rows + attend(scores, weight) @ value(keys)


def matching_outputs(attention, support_values):
    """The attention-weighted mean of the support set's one-hot labels or targets.

    Parameters
    ----------
    attention : Tensor of shape (..., n_queries, n_support)
    support_values : Tensor of shape (..., n_support, n_values)

    Returns
    -------
    Tensor of shape (..., n_queries, n_values)

    Examples
    --------
    >>> import torch
    >>> matching_outputs(torch.tensor([[0.25, 0.75]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    tensor([[0.2500, 0.7500]])
    """
    return attention @ support_values


class MatchingNet(nn.Module):
    """An embedding with what matching needs beside it: the kernel's scale, ``W``, the context.

    Parameters
    ----------
    embedding : torch.nn.Module
        Rows to embeddings of ``width``.
    width : int
        The embedding's width.
    kernel : {"cosine", "learned"}
    full_context : bool
        Whether to add the attention layers of full-context embeddings.
    scale : float
        Initial inverse temperature of the kernel.
    """

    def __init__(self, embedding, width, *, kernel, full_context, scale):
        super().__init__()
        self.embedding = embedding
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)))
        self.weight_matrix = (nn.Parameter(torch.eye(width) / math.sqrt(width)) if kernel == "learned"
                              else None)
        self.support_context = (nn.ModuleList([nn.Linear(width, width) for _ in range(3)])
                                if full_context else None)
        self.query_context = (nn.ModuleList([nn.Linear(width, width) for _ in range(3)])
                              if full_context else None)
        self.kernel = kernel

    def embed(self, X):
        """Apply the embedding to rows of any leading shape."""
        return self.embedding(X.reshape(-1, X.shape[-1])).reshape(*X.shape[:-1], -1)

    def encode_support(self, X_support, weight=None):
        """Support embeddings, conditioned on the whole support set when full-context."""
        support = self.embed(X_support)
        if self.support_context is not None:
            support = context(support, support, self.support_context, weight)
        return support

    def forward(self, X_query, support, support_values, weight=None):
        """Outputs of the query rows: the attention-weighted mean of ``support_values``."""
        queries = self.embed(X_query)
        if self.query_context is not None:
            queries = context(queries, support, self.query_context, weight)
        scores = similarities(queries, support, kernel=self.kernel, scale=self.log_scale.exp(),
                              weight_matrix=self.weight_matrix)
        return matching_outputs(attend(scores, weight), support_values)


class _MatchingNet(EmbeddingMixin, MetaLearner):
    """What the classifier and the regressor share: the network and the episode loss."""

    _parameter_constraints = {
        **MetaLearner._parameter_constraints,
        "kernel": [StrOptions({"cosine", "learned"})],
        "full_context": ["boolean"],
        "scale": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(self, module=MLP, *, kernel="cosine", full_context=False, scale=10.0, **kwargs):
        self.kernel = kernel
        self.full_context = full_context
        self.scale = scale
        super().__init__(module, **kwargs)

    def _initialize_module(self, reason=None):
        super()._initialize_module(reason=reason)
        if hasattr(self, "n_features_in_") and not isinstance(self.module_, MatchingNet):
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                width = self.module_(torch.zeros(1, self.n_features_in_)).shape[-1]
                torch.manual_seed(getattr(self, "_torch_seed", torch.initial_seed()))
                self.module_ = MatchingNet(self.module_, width, kernel=self.kernel,
                                           full_context=self.full_context, scale=self.scale)
            self.module_.to(self.device_)
        return self

    def _embedding(self):
        return self.module_.embedding

    def _values(self, y, n_classes):
        """What the attention averages: one-hot labels, or targets as a column."""
        raise NotImplementedError

    def _episode_loss(self, batch, training):
        n_classes = getattr(self, "n_ways_", None)
        support = self.module_.encode_support(batch.X_support, batch.support_weight)
        outputs = self._logits(self.module_(batch.X_query, support, self._values(batch.y_support, n_classes),
                                            batch.support_weight))
        query_weight = None if batch.query_weight is None else batch.query_weight.reshape(-1)
        loss = self._weighted_loss(self._flat(outputs), batch.y_query.reshape(-1), query_weight)
        return loss, self._outputs(outputs)

    def _adapt(self, X_support, y_support, n_classes, weight=None):
        with torch.no_grad():
            support = self.module_.encode_support(X_support, weight)
        return {"support": support, "values": self._values(y_support, n_classes), "weight": weight}, None

    def _predict_state(self, state, X):
        return self._outputs(self._logits(self.module_(X, state["support"], state["values"],
                                                       state["weight"])))

    def _logits(self, outputs):
        return outputs

    def _outputs(self, outputs):
        return outputs


_OWN_ATTRIBUTES = """    module_ : MatchingNet
        The meta-learned embedding (``module_.embedding``), kernel scale and
        context layers.
"""

_PARAMETERS = """
    Parameters
    ----------
    module : torch.nn.Module class or instance, default=MLP
        The embedding. A class is built in ``fit`` with its ``module__*``
        parameters, and with ``n_features`` if it accepts it.
    kernel : {{"cosine", "learned"}}, default="cosine"
        The similarity of a query row to a support row: their embeddings'
        cosine, as in [1]_, or a learned bilinear form ``q^T W s`` (``W``
        starts at the identity over the square root of the width). Either
        is multiplied by a learned inverse temperature.
    full_context : bool, default=False
        Full-context embeddings: each support row's embedding is conditioned
        on the whole support set, and each query's reads the support set,
        before the kernel is taken. [1]_ does this with LSTMs over the
        support set, which depend on its order; here each is one residual
        attention layer (single head), which does not.
    scale : float, default=10.0
        Initial inverse temperature of the kernel (meta-learned from there).
        Cosines lie in [-1, 1]: with a scale of 1 every support row gets
        nearly the same attention.
{episodic}"""


class MatchingNetClassifier(MetaClassifierMixin, _MatchingNet):
    __doc__ = """Matching networks for few-shot classification.

    A query row's class probabilities are an attention-weighted vote of the
    support set's labels; the attention is a softmax, over support rows, of a
    kernel between embeddings that meta-training learns. Adapting takes no
    gradient step: it embeds the support set. Unlike
    :class:`ProtoNetClassifier`, every support row counts on its own, so a
    class made of several clusters is not summarised by one mean.
    """ + _PARAMETERS.format(episodic=episodic_parameters(
        criterion="Loss on the log of the query probabilities; None is\n"
                  "        ``torch.nn.CrossEntropyLoss`` (the negative log-likelihood).",
        classification=True,
    )) + fitted_attributes(classification=True, own=_OWN_ATTRIBUTES, prior=False, fixed_ways=False) + """
    See Also
    --------
    ProtoNetClassifier : Classifies by the nearest class mean instead.
    MatchingNetRegressor : The same attention over support targets.

    References
    ----------
    .. [1] Vinyals, Blundell, Lillicrap, Kavukcuoglu and Wierstra, "Matching
       Networks for One Shot Learning", NeurIPS 2016.

    Examples
    --------
    >>> from skmeta import MatchingNetClassifier
    >>> from skmeta.datasets import make_blob_tasks
    >>> tasks = make_blob_tasks(n_tasks=20, random_state=0)
    >>> meta = MatchingNetClassifier(max_epochs=2, random_state=0).fit(tasks[:15])
    >>> start = MatchingNetClassifier(lr=1e-9, max_epochs=1, n_episodes=8, random_state=0).fit(tasks[:15])
    >>> meta.score(tasks[15:]) > start.score(tasks[15:]) + 0.05
    True
    """

    def _values(self, y, n_classes):
        return nn.functional.one_hot(y, n_classes).to(torch.float32)

    def _logits(self, outputs):
        # The base's criterion and predict_proba take logits: the log of the
        # probabilities is one whose softmax gives them back.
        return outputs.clamp_min(_PROBABILITY_FLOOR).log()

    def _flat(self, outputs):
        return outputs.reshape(-1, outputs.shape[-1])


class MatchingNetRegressor(_MatchingNet):
    _classification = False

    def _standardizes_targets(self):
        # A weighted mean of the support targets moves with them: a*y + c
        # predicts a*prediction + c whether or not they are standardised, so
        # there is no choice to offer. Standardised, every task weighs alike
        # in the training loss, whatever its targets' units.
        return True

    __doc__ = """Matching networks for few-shot regression: attention kernel regression.

    A query row's prediction is an attention-weighted mean of the support
    set's targets (a Nadaraya-Watson estimate), the attention a softmax over
    support rows of a kernel between embeddings that meta-training learns.
    Adapting takes no gradient step. Predictions lie within the range of the
    support targets: the learner interpolates between support rows, it does
    not extrapolate a trend beyond them. Targets are standardised per task
    in meta-training, so that every task weighs alike in the loss whatever
    its units; predictions do not depend on it (the weighted mean of ``a * y
    + c`` is ``a`` times that of ``y``, plus ``c``).
    """ + _PARAMETERS.format(episodic=episodic_parameters(
        criterion="Loss on the query predictions; None is ``torch.nn.MSELoss``.",
        classification=False,
    )) + fitted_attributes(classification=False, own=_OWN_ATTRIBUTES, prior=False) + """
    See Also
    --------
    MatchingNetClassifier : The same attention over support labels.
    sklearn.neighbors.KNeighborsRegressor : A fixed kernel on the raw features.

    References
    ----------
    .. [1] Vinyals, Blundell, Lillicrap, Kavukcuoglu and Wierstra, "Matching
       Networks for One Shot Learning", NeurIPS 2016.

    Examples
    --------
    >>> from skmeta import MatchingNetRegressor
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> tasks = make_sinusoid_tasks(n_tasks=200, random_state=0)
    >>> meta = MatchingNetRegressor(n_shots=10, n_queries=10, max_epochs=2,
    ...                             random_state=0).fit(tasks)
    >>> meta.adapt(tasks[0].X[:10], tasks[0].y[:10]).predict(tasks[0].X[10:12]).shape
    (2,)
    """

    def _values(self, y, n_classes):
        return y.unsqueeze(-1)

    def _flat(self, outputs):
        return outputs.reshape(-1)

    def _outputs(self, outputs):
        return outputs.squeeze(-1)
