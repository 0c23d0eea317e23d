"""ANIL: MAML whose inner loop adapts the output layer only.

The backbone splits into a *body* and a *head*, its last ``torch.nn.Linear``.
Inner steps (in meta-training and when adapting) move the head alone; the
body is meta-learned in the outer loop and frozen at adaptation.

Functional core: :func:`head_names` finds the head's parameters;
:func:`support_embedding` runs the body once and returns the head's input
(captured by a forward hook) and what the module adds after the head;
:func:`anil_inner_loop` takes the inner steps, on that cached embedding or
through the whole backbone; :func:`anil_loss` runs every episode of a
meta-batch at once with ``vmap``. :func:`check_head_is_additive` checks
that caching is exact for a module. Estimators: :class:`ANILClassifier`,
:class:`ANILRegressor`.
"""

import torch
from torch.func import functional_call, grad
from torch.nn.functional import linear

from .._base._docs import fitted_attributes
from .._mlp import MLP
from .._steps import guarded_inner_loop
from ._base import (
    STANDARDIZE_TARGETS_CONSTRAINT,
    InnerLoopClassifier,
    InnerLoopRegressor,
    parameters_doc,
    query_loss,
    vmap_episodes,
)
from ._maml import _MAML, _REGRESSOR_LR_NOTE


def _last_linear(module):
    """``(name, Linear)`` of the last ``torch.nn.Linear`` among ``module``'s submodules."""
    linears = [(name, m) for name, m in module.named_modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise ValueError(
            f"ANIL adapts the backbone's last torch.nn.Linear (the head), and "
            f"{type(module).__name__} has none. Use skmeta's MLP or end the module in a Linear."
        )
    return linears[-1]


def head_names(module):
    """``(weight, bias)``: the names of the head's parameters (bias None if it has none).

    Examples
    --------
    >>> from skmeta import MLP
    >>> head_names(MLP(3, 2, hidden_sizes=(4,)))
    ('layers.2.weight', 'layers.2.bias')
    """
    name, layer = _last_linear(module)
    prefix = f"{name}." if name else ""
    return f"{prefix}weight", (f"{prefix}bias" if layer.bias is not None else None)


def support_embedding(module, params, X):
    """Run the body once: the head's input, and the output with the head's output zeroed.

    Parameters
    ----------
    module : torch.nn.Module
        The backbone, called functionally with ``params``.
    params : dict of str to Tensor
    X : Tensor of shape (n_rows, n_features)

    Returns
    -------
    embedding : Tensor of shape (n_rows, head.in_features)
        The input of the last ``torch.nn.Linear``.
    offset : Tensor
        The module's output had that Linear output zeros: what the module
        adds after the head (zeros for an MLP, the prior's offsets). When
        the output is the head's output plus terms that do not depend on it
        (:func:`check_head_is_additive`), the output for head weights ``W,
        b`` is ``offset + embedding @ W.T + b``.

    Examples
    --------
    >>> import torch
    >>> from skmeta import MLP
    >>> module = MLP(3, 2, hidden_sizes=(4,))
    >>> embedding, offset = support_embedding(module, dict(module.named_parameters()), torch.ones(5, 3))
    >>> embedding.shape, bool((offset == 0).all())
    (torch.Size([5, 4]), True)
    """
    _, layer = _last_linear(module)
    captured = []

    def hook(_, inputs, output):
        captured.append(inputs[0])
        return torch.zeros_like(output)

    handle = layer.register_forward_hook(hook)
    try:
        offset = functional_call(module, params, (X,))
    finally:
        handle.remove()
    return captured[-1], offset


def head_output(head, embedding, offset, names):
    """``offset + embedding @ W.T + b``: the module's output for head weights ``head``."""
    weight, bias = names
    return offset + linear(embedding, head[weight], None if bias is None else head[bias])


def check_head_is_additive(module, X, *, tolerance=1e-4):
    """Whether the module's output is its last Linear's output plus terms that do not depend on it.

    The head's output is replaced by random values ``u`` (a forward hook):
    the module's output must move by exactly ``u``, and the head must run
    once per call. Only then does caching the support embedding
    (:func:`support_embedding`) give the same steps as running the whole
    backbone.

    Parameters
    ----------
    module : torch.nn.Module
    X : Tensor of shape (n_rows, n_features)
        Rows to run it on.
    tolerance : float, default=1e-4
        Largest difference accepted, relative to the size of ``u``.

    Returns
    -------
    bool or None
        None when the module's output is not finite: nothing can be told.

    Examples
    --------
    >>> import torch
    >>> from skmeta import MLP
    >>> check_head_is_additive(MLP(3, 2, hidden_sizes=(4,)), torch.randn(5, 3))
    True
    >>> check_head_is_additive(torch.nn.Sequential(MLP(3, 2, hidden_sizes=(4,)), torch.nn.Tanh()),
    ...                        torch.randn(5, 3))
    False
    """
    _, layer = _last_linear(module)
    generator = torch.Generator().manual_seed(0)
    replacement, calls = [None], []

    def hook(_, inputs, output):
        calls.append(output.shape)
        return replacement[0](output)

    handle = layer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            replacement[0] = torch.zeros_like
            base = module(X)
            if len(calls) != 1:  # the head unused, or run more than once
                return False
            if not torch.isfinite(base).all():
                return None
            for scale in (1.0, 10.0):
                u = scale * torch.randn(calls[0], generator=generator).to(base.device, base.dtype)
                replacement[0] = lambda output, u=u: u
                moved = module(X)
                if moved.shape != u.shape or not torch.allclose(moved - base, u, rtol=0,
                                                               atol=tolerance * scale):
                    return False
    finally:
        handle.remove()
    return len(calls) == 3


def anil_inner_loop(module, params, X, y, *, loss_fn, inner_lr, steps, first_order=False, weight=None,
                    cache_support_embedding=True):
    """Adapt the head of ``params`` to one support set by ``steps`` gradient steps.

    Parameters
    ----------
    module : torch.nn.Module
        The backbone, called functionally with ``params``.
    params : dict of str to Tensor
        The meta-learned parameters; only the head's (:func:`head_names`) move.
    X : Tensor of shape (n_support, n_features)
    y : Tensor of shape (n_support,)
    loss_fn : callable
        ``loss_fn(output, y)``, or ``loss_fn(output, y, weight)`` with ``weight``.
    inner_lr : float
    steps : int
    first_order : bool, default=False
        Treat the inner gradients as constants.
    weight : Tensor of shape (n_support,) or None, default=None
    cache_support_embedding : bool, default=True
        Run the body once and take the steps on the head alone; False runs
        the whole backbone at every step (the same result when the module
        passes :func:`check_head_is_additive`).

    Returns
    -------
    dict of str to Tensor
        ``params`` with the head adapted, differentiable w.r.t. all of
        ``params`` unless ``first_order``.

    Examples
    --------
    >>> import torch
    >>> from torch.nn.functional import mse_loss
    >>> from skmeta import MLP
    >>> module = MLP(2, 1, hidden_sizes=(3,))
    >>> params = dict(module.named_parameters())
    >>> X, y = torch.randn(6, 2), torch.randn(6, 1)
    >>> adapted = anil_inner_loop(module, params, X, y, loss_fn=mse_loss, inner_lr=0.1, steps=2)
    >>> [name for name in params if not torch.equal(adapted[name], params[name])]
    ['layers.2.weight', 'layers.2.bias']
    """
    names = head_names(module)
    head = {name: params[name] for name in names if name is not None}

    def loss(output):
        return loss_fn(output, y) if weight is None else loss_fn(output, y, weight)

    if cache_support_embedding:
        embedding, offset = support_embedding(module, params, X)
        if first_order:
            embedding, offset = embedding.detach(), offset.detach()

        def support_loss(h):
            return loss(head_output(h, embedding, offset, names))
    else:
        body = {name: p for name, p in params.items() if name not in head}
        if first_order:
            body = {name: p.detach() for name, p in body.items()}

        def support_loss(h):
            return loss(functional_call(module, {**body, **h}, (X,)))

    for _ in range(steps):
        if first_order:
            grads = grad(support_loss)({name: p.detach() for name, p in head.items()})
        else:
            grads = grad(support_loss)(head)
        head = {name: p - inner_lr * grads[name] for name, p in head.items()}
    return {**params, **head}


def anil_loss(module, params, batch, *, loss_fn, inner_lr, steps, first_order=False,
              cache_support_embedding=True):
    """Mean query loss over a meta-batch after adapting each episode's head.

    Parameters
    ----------
    module : torch.nn.Module
    params : dict of str to Tensor
    batch : EpisodeBatch
        Support and query tensors with a leading meta-batch axis.
    loss_fn, inner_lr, steps, first_order, cache_support_embedding
        As in :func:`anil_inner_loop`.

    Returns
    -------
    loss : Tensor
        Scalar: the mean over episodes of the query loss (episodes weighed
        by their real query rows when the batch is padded).
    outputs : Tensor of shape (n_episodes, n_queries, n_outputs)
    """

    def episode(X_support, y_support, X_query, y_query, support_weight=None, query_weight=None):
        adapted = anil_inner_loop(
            module, params, X_support, y_support, loss_fn=loss_fn, inner_lr=inner_lr, steps=steps,
            first_order=first_order, weight=support_weight,
            cache_support_embedding=cache_support_embedding,
        )
        return query_loss(module, adapted, X_query, y_query, loss_fn=loss_fn, query_weight=query_weight)

    return vmap_episodes(episode, batch)


class _CachedHead(torch.nn.Module):
    """The head on a cached embedding: ``offset + Linear(embedding)``."""

    def __init__(self, layer, offset):
        super().__init__()
        self.head = layer
        self.offset = offset

    def forward(self, embedding):
        return self.offset + self.head(embedding)


class _ANIL(_MAML):
    """What ANILClassifier and ANILRegressor share: inner steps on the head only."""

    _parameter_constraints = {**_MAML._parameter_constraints, "cache_support_embedding": ["boolean"]}

    def __init__(self, module=MLP, *, cache_support_embedding=True, **kwargs):
        self.cache_support_embedding = cache_support_embedding
        super().__init__(module, **kwargs)

    def _initialize_module(self, reason=None):
        super()._initialize_module(reason=reason)
        if hasattr(self, "n_features_in_"):
            self._check_cacheable()
        return self

    def _check_cacheable(self):
        """Raise if caching the support embedding would change the result (once per module)."""
        backbone = self._backbone()
        if not self.cache_support_embedding or self.__dict__.get("_checked_backbone") is backbone:
            return
        _last_linear(backbone)
        device = next(iter(backbone.parameters())).device
        X = torch.randn(4, self.n_features_in_, generator=torch.Generator().manual_seed(0)).to(device)
        training = backbone.training
        backbone.eval()
        try:
            additive = check_head_is_additive(backbone, X)
        finally:
            backbone.train(training)
        if additive is None:  # a non-finite output: meta-training reports it, where it happens
            return
        if not additive:
            raise ValueError(
                f"cache_support_embedding=True needs a module whose output is its last "
                f"torch.nn.Linear's output plus terms that do not depend on it, but the output "
                f"of {type(backbone).__name__} does not move with that Linear's output one to one "
                "(a nonlinearity or scaling after it, or a Linear run more than once). Caching "
                "the embedding would adapt the wrong function: set cache_support_embedding=False."
            )
        self.__dict__["_checked_backbone"] = backbone

    def _episode_loss(self, batch, training):
        self._check_cacheable()
        loss, outputs = anil_loss(
            self._backbone(), self._params(), batch, loss_fn=self._loss, inner_lr=self.inner_lr,
            steps=self._steps(training), first_order=self.first_order or not training,
            cache_support_embedding=self.cache_support_embedding,
        )
        return loss, self._outputs(outputs)

    def _adapt(self, X_support, y_support, n_classes, weight=None):
        backbone, params = self._backbone(), self._params()
        names = [name for name in head_names(backbone) if name is not None]
        state = {name: p.detach() for name, p in params.items()}
        head = {name: state[name] for name in names}
        options = dict(loss_fn=self._loss, inner_lr=self.inner_lr, steps=self._steps(training=False),
                       weight=weight)
        if self.cache_support_embedding:
            self._check_cacheable()
            with torch.no_grad():
                embedding, offset = support_embedding(backbone, state, X_support)
            local = dict(zip(["head.weight", "head.bias"], names, strict=False))
            adapted, report = guarded_inner_loop(
                _CachedHead(_last_linear(backbone)[1], offset),
                {key: head[name] for key, name in local.items()}, embedding, y_support, **options)
            adapted = {name: adapted[key] for key, name in local.items()}
        else:
            # The body's own weights are the module's: a partial parameter dict moves the head.
            adapted, report = guarded_inner_loop(backbone, head, X_support, y_support, **options)
        return {**state, **adapted}, report


_OWN = """    inner_lr : float, default={inner_lr}
        Step size of the inner gradient steps on the head, in meta-training
        and when adapting;
{lr_note}    inner_steps : int, default=1
        Inner steps per episode in meta-training. The meta-gradient goes
        back through every one, into the head's and the body's initial
        weights.
    adapt_steps : int or None, default=10
        Steps on the head when adapting to a new task (``adapt``,
        ``predict``, ``score``) and in meta-validation; None uses
        ``inner_steps``. Set it to 0 for the meta-learned initialisation's
        own predictions.
    first_order : bool, default=False
        Treat the inner gradients as constants, so the meta-gradient has no
        second derivatives.
    cache_support_embedding : bool, default=True
        Run the body once per support set and take the inner steps on the
        head alone: the head's input (captured by a forward hook) and what
        the module adds after the head (the prior's offsets) are kept. The
        result is the same as with False, which runs the whole backbone at
        every inner step and differentiates w.r.t. the head only; caching
        is faster, the more so the more steps. It needs a module whose
        output is the last Linear's output plus terms that do not depend on
        it (checked in ``fit``: a ValueError says to set False otherwise).
"""

_OWN_ATTRIBUTES = """    module_ : torch.nn.Module
        The meta-learned backbone: its last ``torch.nn.Linear`` is the head
        that adaptation moves, the rest the body it leaves as it is.
"""

_REFERENCE = """
    References
    ----------
    .. [1] Raghu, Raghu, Bengio and Vinyals, "Rapid Learning or Feature Reuse?
       Towards Understanding the Effectiveness of MAML", ICLR 2020.
"""


class ANILClassifier(InnerLoopClassifier, _ANIL):
    __doc__ = """ANIL (almost no inner loop) for few-shot classification.

    MAML whose inner loop adapts only the head, the backbone's last
    ``torch.nn.Linear``: the body is meta-learned in the outer loop, as a
    feature extractor reused by every task, and frozen when adapting, so
    that adaptation is a few steps of a linear classifier on a fixed
    embedding [1]_.
    """ + parameters_doc(
        _OWN.format(inner_lr="0.1", lr_note="        0.1 suits standardised features.\n"),
        classification=True, lr="1e-3", max_epochs="20",
    ) + fitted_attributes(classification=True, own=_OWN_ATTRIBUTES) + """
    See Also
    --------
    ANILRegressor : The same for regression.
    MAMLClassifier : Adapts every layer.
    MetaSGDClassifier : Learns a learning rate per weight.
""" + _REFERENCE + """
    Examples
    --------
    >>> from skmeta import ANILClassifier
    >>> from skmeta.datasets import make_blob_tasks
    >>> tasks = make_blob_tasks(n_tasks=20, random_state=0)
    >>> meta = ANILClassifier(lr=3e-3, max_epochs=2, n_episodes=40, module__hidden_sizes=(32,),
    ...                       random_state=0).fit(tasks[:15])
    >>> meta.score(tasks[15:]) > 0.6
    True

    The body stays as meta-learned; adapting moves the head only:

    >>> import torch
    >>> adapted = meta.adapt(tasks[15].X[:10], tasks[15].y[:10])
    >>> [name for name, p in meta.module_.named_parameters()
    ...  if not torch.equal(adapted.state_[name], p)]
    ['layers.2.weight', 'layers.2.bias']
    """


class ANILRegressor(InnerLoopRegressor, _ANIL):
    _parameter_constraints = {**_ANIL._parameter_constraints, **STANDARDIZE_TARGETS_CONSTRAINT}

    def __init__(self, module=MLP, *, inner_lr=0.05, lr=0.01, max_epochs=60, standardize_targets=True,
                 **kwargs):
        self.standardize_targets = standardize_targets
        super().__init__(module, inner_lr=inner_lr, lr=lr, max_epochs=max_epochs, **kwargs)

    __doc__ = """ANIL (almost no inner loop) for few-shot regression.

    MAML whose inner loop adapts only the head, the backbone's last
    ``torch.nn.Linear``: the body is meta-learned in the outer loop and
    frozen when adapting, so that adaptation is a few steps of a linear
    regression on a fixed, meta-learned embedding [1]_.
    """ + parameters_doc(
        _OWN.format(inner_lr="0.05", lr_note=_REGRESSOR_LR_NOTE),
        classification=False, lr="0.01", max_epochs="60",
    ) + fitted_attributes(classification=False, own=_OWN_ATTRIBUTES) + """
    See Also
    --------
    ANILClassifier : The same for classification.
    MAMLRegressor : Adapts every layer.
""" + _REFERENCE + """
    Examples
    --------
    >>> from skmeta import ANILRegressor
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> tasks = make_sinusoid_tasks(n_tasks=50, random_state=0)
    >>> meta = ANILRegressor(n_shots=10, n_queries=10, max_epochs=1, n_episodes=40,
    ...                      module__hidden_sizes=(32,), random_state=0).fit(tasks)
    >>> meta.adapt(tasks[0].X[:10], tasks[0].y[:10]).predict(tasks[0].X[10:12]).shape
    (2,)
    """
