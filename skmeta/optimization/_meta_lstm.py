"""Meta-LSTM: a learned optimizer that writes the inner updates (Ravi and Larochelle 2017).

A small LSTM, shared by every coordinate of the backbone's weights, reads
each coordinate's gradient and the support loss, and its two gates set the
coordinate's update,

    theta_t = f_t * theta_{t-1} - i_t * grad_t,

with the input gate ``i_t`` a learned step size and the forget gate ``f_t``
a learned decay of the weight. The backbone's initial weights are
meta-learned together with the LSTM.

Functional core: :func:`preprocess` (the log-magnitude and sign of
Andrychowicz et al. 2016), :class:`MetaLSTMOptimizer` (the cell, written
from linear layers so that it runs under ``torch.func.vmap``),
:func:`meta_lstm_inner_loop` (one support set, differentiable) and
:func:`meta_lstm_loss` (a meta-batch of episodes at once, with ``vmap``).
Estimators: :class:`MetaLSTMClassifier`, :class:`MetaLSTMRegressor`.
"""

import math
from numbers import Integral, Real

import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import Interval
from torch.func import functional_call, grad_and_value

from .._base._docs import fitted_attributes
from .._mlp import MLP
from ._base import (
    STANDARDIZE_TARGETS_CONSTRAINT,
    InnerLoopClassifier,
    InnerLoopLearner,
    InnerLoopRegressor,
    parameters_doc,
    query_loss,
    vmap_episodes,
)

#: The ``p`` of the preprocessing: magnitudes below ``exp(-p)`` are read linearly.
PREPROCESSING_P = 10.0

#: The forget gate's initial bias: ``sigmoid(6) = 0.9975``, a weight kept
#: almost whole at each step (the top of Ravi and Larochelle's range 4 to
#: 6), yet a gate that still learns (a larger bias saturates the sigmoid).
FORGET_BIAS = 6.0

#: The spread of the gates' initial weights, ``uniform(-0.01, 0.01)`` as in
#: Ravi and Larochelle's code: the gates start near their biases.
GATE_WEIGHT_SPREAD = 0.01


def preprocess(x, p=PREPROCESSING_P):
    """Two inputs per value: its log-magnitude and its sign (Andrychowicz et al. 2016).

    ``(log|x| / p, sign(x))`` where ``|x| >= exp(-p)``, and ``(-1, exp(p) * x)``
    below, so that values of any scale reach the LSTM in a bounded range.

    Parameters
    ----------
    x : Tensor
    p : float, default=10
        The cut-off exponent.

    Returns
    -------
    Tensor of shape ``x.shape + (2,)``

    Examples
    --------
    >>> import torch
    >>> preprocess(torch.tensor([-1.0, 1e-6, 0.0]))
    tensor([[ 0.0000, -1.0000],
            [-1.0000,  0.0220],
            [-1.0000,  0.0000]])
    """
    magnitude = x.abs()
    large = magnitude >= math.exp(-p)
    # The clamp keeps log finite where the other branch is taken (else NaN gradients).
    log_part = torch.where(large, torch.log(magnitude.clamp_min(math.exp(-p))) / p, -torch.ones_like(x))
    sign_part = torch.where(large, torch.sign(x), math.exp(p) * x)
    return torch.stack([log_part, sign_part], dim=-1)


class MetaLSTMOptimizer(torch.nn.Module):
    """The meta-LSTM cell: one learned update per weight coordinate, shared by all.

    For each coordinate, an LSTM cell of ``hidden_size`` units reads the
    preprocessed gradient and support loss (4 inputs) into its hidden state
    ``h_t``; the update is then the paper's meta-LSTM cell::

        i_t = sigmoid(W_I [h_t, theta_{t-1}, i_{t-1}] + b_I)
        f_t = sigmoid(W_F [h_t, theta_{t-1}, f_{t-1}] + b_F)
        theta_t = f_t * theta_{t-1} - i_t * grad_t

    ``b_I`` starts at ``logit(inner_lr)`` and ``b_F`` at 6, with small gate
    weights, so that untrained it is close to gradient descent of
    ``inner_lr`` (``f`` about 0.9975). ``i_0`` and ``f_0`` are 0.

    Parameters
    ----------
    hidden_size : int, default=20
        Units of the LSTM cell.
    inner_lr : float, default=0.1
        The step size the input gate starts at.

    Examples
    --------
    >>> import torch
    >>> cell = MetaLSTMOptimizer(hidden_size=4, inner_lr=0.1)
    >>> theta, grad = torch.zeros(3), torch.ones(3)
    >>> state = cell.initial_state(theta)
    >>> new_theta, state = cell(theta, grad, torch.tensor(0.5), state)
    >>> new_theta.shape, bool((new_theta + 0.1).abs().max() < 0.01)
    (torch.Size([3]), True)
    """

    def __init__(self, hidden_size=20, inner_lr=0.1):
        super().__init__()
        self.hidden_size = hidden_size
        # An LSTM cell written from linear layers: gates (input, forget, cell, output).
        self.lstm_input = torch.nn.Linear(4, 4 * hidden_size)
        self.lstm_hidden = torch.nn.Linear(hidden_size, 4 * hidden_size, bias=False)
        self.input_gate = torch.nn.Linear(hidden_size + 2, 1)
        self.forget_gate = torch.nn.Linear(hidden_size + 2, 1)
        with torch.no_grad():
            for gate, bias in ((self.input_gate, math.log(inner_lr / (1 - inner_lr))),
                               (self.forget_gate, FORGET_BIAS)):
                gate.weight.uniform_(-GATE_WEIGHT_SPREAD, GATE_WEIGHT_SPREAD)
                gate.bias.fill_(bias)

    def initial_state(self, theta):
        """``(h, c, i, f)`` before the first step, for the flat weights ``theta``."""
        hidden = theta.new_zeros(theta.shape + (self.hidden_size,))
        return hidden, hidden, torch.zeros_like(theta), torch.zeros_like(theta)

    def forward(self, theta, grad, loss, state):
        """One step: the new weights and the new state.

        Parameters
        ----------
        theta, grad : Tensor of shape (n_coordinates,)
            The flat weights and their gradient.
        loss : Tensor, scalar
            The support loss at ``theta``.
        state : tuple of Tensor
            ``(h, c, i, f)`` from :meth:`initial_state` or the previous step.

        Returns
        -------
        theta : Tensor of shape (n_coordinates,)
        state : tuple of Tensor
        """
        h, c, i_prev, f_prev = state
        inputs = torch.cat([preprocess(grad), preprocess(loss).expand(grad.shape + (2,))], dim=-1)
        gates = self.lstm_input(inputs) + self.lstm_hidden(h)
        in_gate, forget, candidate, out = gates.chunk(4, dim=-1)
        c = torch.sigmoid(forget) * c + torch.sigmoid(in_gate) * torch.tanh(candidate)
        h = torch.sigmoid(out) * torch.tanh(c)
        i = torch.sigmoid(self.input_gate(torch.cat([h, theta[..., None], i_prev[..., None]], -1)))[..., 0]
        f = torch.sigmoid(self.forget_gate(torch.cat([h, theta[..., None], f_prev[..., None]], -1)))[..., 0]
        return f * theta - i * grad, (h, c, i, f)


class MetaLSTMModule(torch.nn.Module):
    """The backbone (``network``) and the learned optimizer that adapts it (``optimizer_lstm``).

    Parameters
    ----------
    network : torch.nn.Module
        The backbone; its weights are the meta-learned starting point.
    hidden_size : int
        Units of the optimizer's LSTM cell.
    inner_lr : float
        The step size the optimizer starts at.

    Examples
    --------
    >>> import torch
    >>> module = MetaLSTMModule(torch.nn.Linear(2, 1), hidden_size=4, inner_lr=0.1)
    >>> module(torch.zeros(5, 2)).shape, module.optimizer_lstm.lstm_hidden.weight.shape
    (torch.Size([5, 1]), torch.Size([16, 4]))
    """

    def __init__(self, network, hidden_size, inner_lr):
        super().__init__()
        self.network = network
        self.optimizer_lstm = MetaLSTMOptimizer(hidden_size, inner_lr)

    def forward(self, X):
        return self.network(X)


def _flatten(params):
    return torch.cat([p.reshape(-1) for p in params.values()])


def _unflatten(flat, like):
    sizes = [p.numel() for p in like.values()]
    return {name: piece.view(p.shape)
            for (name, p), piece in zip(like.items(), flat.split(sizes), strict=True)}


def meta_lstm_inner_loop(module, params, optimizer, X, y, *, loss_fn, steps, first_order=False,
                         truncation=None, weight=None):
    """Adapt ``params`` to one support set by ``steps`` updates of the learned optimizer.

    Parameters
    ----------
    module : torch.nn.Module
        The backbone, called functionally with ``params``.
    params : dict of str to Tensor
        The starting point (the meta-learned weights).
    optimizer : MetaLSTMOptimizer
        The learned optimizer.
    X : Tensor of shape (n_support, n_features)
    y : Tensor of shape (n_support,)
    loss_fn : callable
        ``loss_fn(output, y)`` to a scalar.
    steps : int
        Number of updates.
    first_order : bool, default=False
        Take the gradients and the loss the optimizer reads as constants
        (no second derivatives), as Ravi and Larochelle do.
    truncation : int or None, default=None
        Back-propagate through the last ``truncation`` steps only: the
        optimizer's state and the weights' moves so far are detached before
        them; the weights keep the identity path to ``params`` (the first
        order of the steps before, as first-order MAML), so the starting
        point still gets a meta-gradient. None: through every step.
    weight : Tensor of shape (n_support,) or None, default=None
        Row weights, passed to ``loss_fn(output, y, weight)`` when given.

    Returns
    -------
    dict of str to Tensor
        The adapted weights, differentiable w.r.t. ``params`` and the
        optimizer's parameters.

    Examples
    --------
    >>> import torch
    >>> from torch.nn.functional import mse_loss
    >>> model = torch.nn.Linear(1, 1, bias=False)
    >>> optimizer = MetaLSTMOptimizer(hidden_size=4, inner_lr=0.25)
    >>> params = {"weight": torch.zeros(1, 1)}
    >>> X, y = torch.ones(4, 1), torch.full((4, 1), 2.0)
    >>> with torch.no_grad():
    ...     adapted = meta_lstm_inner_loop(model, params, optimizer, X, y, loss_fn=mse_loss, steps=1)
    >>> round(adapted["weight"].item(), 1)  # about one gradient step of 0.25
    1.0
    """

    def support_loss(flat):
        output = functional_call(module, _unflatten(flat, params), (X,))
        return loss_fn(output, y) if weight is None else loss_fn(output, y, weight)

    start = _flatten(params)
    theta, state = start, optimizer.initial_state(start)
    for step in range(steps):
        if truncation is not None and step == steps - truncation:
            theta = start + (theta - start).detach()
            state = tuple(s.detach() for s in state)
        grads, loss = grad_and_value(support_loss)(theta.detach() if first_order else theta)
        theta, state = optimizer(theta, grads, loss, state)
    return _unflatten(theta, params)


def meta_lstm_loss(module, params, optimizer, batch, *, loss_fn, steps, first_order=False,
                   truncation=None):
    """Mean query loss over a meta-batch after the learned optimizer adapts to each support set.

    Parameters
    ----------
    module : torch.nn.Module
    params : dict of str to Tensor
    optimizer : MetaLSTMOptimizer
    batch : EpisodeBatch
        Support and query tensors with a leading meta-batch axis.
    loss_fn, steps, first_order, truncation
        As in :func:`meta_lstm_inner_loop`.

    Returns
    -------
    loss : Tensor
        Scalar: the mean over episodes of the query loss (episodes of a
        padded batch weigh by their real query rows).
    outputs : Tensor of shape (n_episodes, n_queries, n_outputs)
        Query outputs of the adapted models.

    Examples
    --------
    >>> import torch
    >>> from torch.nn.functional import mse_loss
    >>> from skmeta.tasks import EpisodeBatch
    >>> module = MetaLSTMModule(torch.nn.Linear(1, 1), hidden_size=4, inner_lr=0.1)
    >>> batch = EpisodeBatch(torch.ones(2, 3, 1), torch.ones(2, 3, 1),
    ...                      torch.ones(2, 4, 1), torch.ones(2, 4, 1))
    >>> loss, outputs = meta_lstm_loss(module.network, dict(module.network.named_parameters()),
    ...                                module.optimizer_lstm, batch, loss_fn=mse_loss, steps=2)
    >>> loss.backward(); module.optimizer_lstm.input_gate.bias.grad.shape
    torch.Size([1])
    """

    def episode(X_support, y_support, X_query, y_query, support_weight=None, query_weight=None):
        adapted = meta_lstm_inner_loop(
            module, params, optimizer, X_support, y_support, loss_fn=loss_fn, steps=steps,
            first_order=first_order, truncation=truncation, weight=support_weight,
        )
        return query_loss(module, adapted, X_query, y_query, loss_fn=loss_fn, query_weight=query_weight)

    return vmap_episodes(episode, batch)


class _MetaLSTM(InnerLoopLearner):
    """What MetaLSTMClassifier and MetaLSTMRegressor share: the optimizer beside the backbone."""

    _parameter_constraints = {
        **InnerLoopLearner._parameter_constraints,
        "inner_lr": [Interval(Real, 0, 1, closed="neither")],
        "truncation": [Interval(Integral, 1, None, closed="left"), None],
        "first_order": ["boolean"],
        "lstm_hidden_size": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, module=MLP, *, inner_lr=0.1, inner_steps=5, adapt_steps=None, truncation=None,
                 first_order=False, lstm_hidden_size=20, **kwargs):
        self.truncation = truncation
        self.first_order = first_order
        self.lstm_hidden_size = lstm_hidden_size
        super().__init__(module, inner_lr=inner_lr, inner_steps=inner_steps, adapt_steps=adapt_steps,
                         **kwargs)

    def _prepare_fit(self, X, y, *, reset):
        if self.truncation is not None and self.truncation >= self.inner_steps:
            raise ValueError(
                f"truncation={self.truncation} with inner_steps={self.inner_steps} back-propagates "
                "through every inner step, as truncation=None does; pass truncation=None, or a "
                f"truncation below inner_steps (1 to {self.inner_steps - 1}) to back-propagate "
                "through the last steps only."
            )
        return super()._prepare_fit(X, y, reset=reset)

    def _initialize_module(self, reason=None):
        # The prior (if any) zeroes and wraps the network first; the optimizer
        # is built beside it, seeded from the estimator's torch seed.
        super()._initialize_module(reason=reason)
        device = next(iter(self.module_.parameters()), torch.empty(0)).device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(getattr(self, "_torch_seed", torch.initial_seed()) + 1)
            module = MetaLSTMModule(self.module_, self.lstm_hidden_size, self.inner_lr)
        self.module_ = module.to(device)
        return self

    def _backbone(self):
        return self.module_.network

    def _direction(self):
        optimizer, params = self.module_.optimizer_lstm, self._params()
        state = None

        def direction(current, grads, loss):
            # Called once per step: the LSTM's state advances once, whatever
            # halving of the step the guard then makes.
            nonlocal state
            theta = _flatten(current)
            if state is None:
                state = optimizer.initial_state(theta)
            new_theta, state = optimizer(theta, _flatten(grads), loss, state)
            return _unflatten(theta - new_theta, params)

        return direction

    def _episode_loss(self, batch, training):
        loss, outputs = meta_lstm_loss(
            self._backbone(), self._params(), self.module_.optimizer_lstm, batch, loss_fn=self._loss,
            steps=self._steps(training), first_order=self.first_order or not training,
            truncation=self.truncation if training else None,
        )
        return loss, self._outputs(outputs)

    @property
    def optimizer_lstm_(self):
        """The meta-learned optimizer (a :class:`MetaLSTMOptimizer`)."""
        if not isinstance(self.__dict__.get("module_"), MetaLSTMModule):
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet; call fit first.")
        return self.module_.optimizer_lstm


_OWN = """    inner_lr : float, default={inner_lr}
        The step size the learned optimizer starts at: the input gate's
        bias starts at ``logit(inner_lr)`` (and the forget gate near 1), so
        that before meta-training the updates are close to gradient steps
        of ``inner_lr``. It is meta-learned from there; changing it after
        ``fit`` has no effect until the next ``fit``. Between 0 and 1;
{lr_note}    inner_steps : int, default=5
        Updates of the learned optimizer per episode in meta-training, as
        in [1]_. The meta-gradient goes back through them (see
        ``truncation``), so meta-training time and memory grow with it.
    adapt_steps : int or None, default=None
        Updates when adapting to a new task (``adapt``, ``predict``,
        ``score``) and in meta-validation; None uses ``inner_steps``, the
        number the optimizer was trained for (its LSTM state tracks the
        step, so other counts are outside what it learned). An update that
        raises the support loss is halved, for it and later updates. Set it
        to 0 for the meta-learned initialisation's own predictions.
    truncation : int or None, default=None
        Back-propagate the query loss through the last ``truncation`` inner
        updates only: before them, the LSTM's state and the weights' moves
        are detached (the weights keep the identity path to the initial
        weights, the first-order approximation of the earlier updates, so
        those still learn). Saves memory and time for many ``inner_steps``;
        must be below ``inner_steps``. None: through every update.
    first_order : bool, default=False
        Treat the gradients and the support loss that the optimizer reads
        and applies as constants, as Ravi and Larochelle do: no second
        derivatives, cheaper in time and memory.
    lstm_hidden_size : int, default=20
        Units of the LSTM cell that every weight coordinate runs (shared
        by all of them): a larger cell can learn a richer update rule, at
        the cost of ``2 * lstm_hidden_size + 2`` numbers of state per weight
        in every episode.
"""

_OWN_ATTRIBUTES = """    module_ : MetaLSTMModule
        The meta-learned backbone (``module_.network``) and learned
        optimizer (``module_.optimizer_lstm``).
    optimizer_lstm_ : MetaLSTMOptimizer
        The learned optimizer (``module_.optimizer_lstm``).
"""

_REFERENCES = """
    References
    ----------
    .. [1] Ravi and Larochelle, "Optimization as a Model for Few-Shot
       Learning", ICLR 2017.
    .. [2] Andrychowicz et al., "Learning to learn by gradient descent by
       gradient descent", NeurIPS 2016 (the preprocessing of the inputs).
"""


class MetaLSTMClassifier(InnerLoopClassifier, _MetaLSTM):
    __doc__ = """Meta-LSTM, a learned optimizer, for few-shot classification.

    Meta-training learns initial weights of the backbone together with an
    optimizer: a small LSTM, shared by every weight coordinate, that reads
    the coordinate's gradient and the support loss and sets its update
    ``theta_t = f_t * theta_(t-1) - i_t * grad_t``, the input gate ``i_t``
    a learned step size and the forget gate ``f_t`` a learned decay. The
    inner loop is functional (``torch.func``) and the episodes of a
    meta-batch run batched with ``vmap``.
    """ + parameters_doc(
        _OWN.format(inner_lr="0.1", lr_note="        0.1 suits standardised features.\n"),
        classification=True, lr="1e-3", max_epochs="20",
    ) + fitted_attributes(classification=True, own=_OWN_ATTRIBUTES) + """
    See Also
    --------
    MetaLSTMRegressor : The same for regression.
    MAMLClassifier : Plain gradient steps of a fixed ``inner_lr``.
""" + _REFERENCES + """
    Examples
    --------
    >>> from skmeta import MetaLSTMClassifier
    >>> from skmeta.datasets import make_blob_tasks
    >>> tasks = make_blob_tasks(n_tasks=20, random_state=0)
    >>> meta = MetaLSTMClassifier(lr=3e-3, max_epochs=1, n_episodes=40, module__hidden_sizes=(32,),
    ...                           random_state=0).fit(tasks[:15])
    >>> meta.optimizer_lstm_.hidden_size
    20
    >>> round(meta.score(tasks[15:]), 2) > 0.6
    True
    """


class MetaLSTMRegressor(InnerLoopRegressor, _MetaLSTM):
    _parameter_constraints = {**_MetaLSTM._parameter_constraints, **STANDARDIZE_TARGETS_CONSTRAINT}

    def __init__(self, module=MLP, *, inner_lr=0.01, lr=0.01, max_epochs=60, standardize_targets=True,
                 **kwargs):
        self.standardize_targets = standardize_targets
        super().__init__(module, inner_lr=inner_lr, lr=lr, max_epochs=max_epochs, **kwargs)

    __doc__ = """Meta-LSTM, a learned optimizer, for few-shot regression.

    Meta-training learns initial weights of the backbone together with an
    optimizer: a small LSTM, shared by every weight coordinate, that reads
    the coordinate's gradient and the support loss and sets its update
    ``theta_t = f_t * theta_(t-1) - i_t * grad_t``, the input gate ``i_t``
    a learned step size and the forget gate ``f_t`` a learned decay.
    """ + parameters_doc(
        _OWN.format(inner_lr="0.01", lr_note=(
            "        the optimizer can learn larger steps from there. Five gradient\n"
            "        steps of 0.05 diverge on some sinusoids of\n"
            "        :func:`~skmeta.datasets.make_sinusoid_tasks` (features up to 5)\n"
            "        before meta-training, and meta-training then stops.\n")),
        classification=False, lr="0.01", max_epochs="60",
    ) + fitted_attributes(classification=False, own=_OWN_ATTRIBUTES) + """
    See Also
    --------
    MetaLSTMClassifier : The same for classification.
    MAMLRegressor : Plain gradient steps of a fixed ``inner_lr``.
""" + _REFERENCES + """
    Examples
    --------
    >>> from skmeta import MetaLSTMRegressor
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> tasks = make_sinusoid_tasks(n_tasks=50, random_state=0)
    >>> meta = MetaLSTMRegressor(n_shots=10, n_queries=10, max_epochs=1, n_episodes=40,
    ...                          module__hidden_sizes=(32,), random_state=0).fit(tasks)
    >>> meta.adapt(tasks[0].X[:10], tasks[0].y[:10]).predict(tasks[0].X[10:12]).shape
    (2,)
    """
