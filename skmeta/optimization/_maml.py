"""MAML: meta-learn an initialisation that a few gradient steps adapt to a task.

Functional core: :func:`inner_loop` adapts a parameter dict to one support
set with ``torch.func.grad``; :func:`maml_loss` runs it for every episode of
a meta-batch at once with ``torch.func.vmap`` and returns the query loss,
through which the meta-gradient flows (second order, or first order when
the inner gradients are detached). :func:`guarded_inner_loop` is the
adaptation of a new task: plain gradient steps on leaf tensors, a step
that raises the support loss rejected and the step size halved.
Estimators: :class:`MAMLClassifier`, :class:`MAMLRegressor`.
"""

from torch.func import functional_call, grad

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


def inner_loop(module, params, X, y, *, loss_fn, inner_lr, steps, first_order=False, weight=None):
    """Adapt ``params`` to one support set by ``steps`` gradient steps.

    Parameters
    ----------
    module : torch.nn.Module
        The backbone, called functionally with ``params``.
    params : dict of str to Tensor
        The starting point (the meta-learned parameters).
    X : Tensor of shape (n_support, n_features)
    y : Tensor of shape (n_support,)
    loss_fn : callable
        ``loss_fn(output, y)`` to a scalar.
    inner_lr : float or dict of str to Tensor
        Step size, or one per parameter (a tensor of its shape, as
        Meta-SGD learns them).
    steps : int
        Number of steps.
    first_order : bool, default=False
        Treat the inner gradients as constants (first-order MAML).
    weight : Tensor of shape (n_support,) or None, default=None
        Row weights, passed to ``loss_fn(output, y, weight)`` when given.

    Returns
    -------
    dict of str to Tensor
        The adapted parameters, differentiable w.r.t. ``params`` unless
        ``first_order``.

    Examples
    --------
    >>> import torch
    >>> from torch.nn.functional import mse_loss
    >>> model = torch.nn.Linear(1, 1, bias=False)
    >>> params = {"weight": torch.zeros(1, 1)}
    >>> X, y = torch.ones(4, 1), torch.full((4, 1), 2.0)
    >>> inner_loop(model, params, X, y, loss_fn=mse_loss, inner_lr=0.25, steps=1)
    {'weight': tensor([[1.]])}
    """

    def support_loss(p):
        output = functional_call(module, p, (X,))
        return loss_fn(output, y) if weight is None else loss_fn(output, y, weight)

    for _ in range(steps):
        if first_order:
            # The gradient is a constant: take it on detached copies, so the
            # outer graph records only the update, not the inner forward pass.
            grads = grad(support_loss)({name: p.detach() for name, p in params.items()})
        else:
            grads = grad(support_loss)(params)
        params = {name: p - (inner_lr[name] if isinstance(inner_lr, dict) else inner_lr) * grads[name]
                  for name, p in params.items()}
    return params


def maml_loss(module, params, batch, *, loss_fn, inner_lr, steps, first_order=False):
    """Mean query loss over a meta-batch after adapting to each support set.

    Parameters
    ----------
    module : torch.nn.Module
    params : dict of str to Tensor
    batch : EpisodeBatch
        Support and query tensors with a leading meta-batch axis.
    loss_fn, inner_lr, steps, first_order
        As in :func:`inner_loop`.

    Returns
    -------
    loss : Tensor
        Scalar: the mean over episodes of the query loss.
    outputs : Tensor of shape (n_episodes, n_queries, n_outputs)
        Query outputs of the adapted models.
    """

    def episode(X_support, y_support, X_query, y_query, support_weight=None, query_weight=None):
        adapted = inner_loop(
            module, params, X_support, y_support, loss_fn=loss_fn, inner_lr=inner_lr,
            steps=steps, first_order=first_order, weight=support_weight,
        )
        return query_loss(module, adapted, X_query, y_query, loss_fn=loss_fn, query_weight=query_weight)

    return vmap_episodes(episode, batch)


class _MAML(InnerLoopLearner):
    """What MAMLClassifier and MAMLRegressor share: ``first_order`` and the episode loss."""

    _parameter_constraints = {**InnerLoopLearner._parameter_constraints, "first_order": ["boolean"]}

    def __init__(self, module=MLP, *, inner_lr=0.1, inner_steps=1, adapt_steps=10, first_order=False,
                 **kwargs):
        self.first_order = first_order
        super().__init__(module, inner_lr=inner_lr, inner_steps=inner_steps, adapt_steps=adapt_steps,
                         **kwargs)

    def _episode_loss(self, batch, training):
        loss, outputs = maml_loss(
            self._backbone(), self._params(), batch, loss_fn=self._loss,
            inner_lr=self.inner_lr, steps=self._steps(training),
            first_order=self.first_order or not training,
        )
        return loss, self._outputs(outputs)


_OWN = """    inner_lr : float, default={inner_lr}
        Step size of the inner (adaptation) gradient steps, in meta-training
        and when adapting. Too large a step makes adaptation oscillate or
        diverge (``adapt`` raises a ValueError when the weights overflow),
        too small a one leaves the support set unused;
{lr_note}    inner_steps : int, default=1
        Inner steps per episode in meta-training. The meta-gradient goes
        back through every one, so meta-training time and memory grow with
        it.
    adapt_steps : int or None, default=10
        Steps when adapting to a new task (``adapt``, ``predict``, ``score``)
        and in meta-validation; None uses ``inner_steps``. Taking more steps
        at test time than in training is cheap (no meta-gradient) and, as in
        [1]_, usually better: on :func:`~skmeta.datasets.make_blob_tasks`,
        10 steps score about 0.04 to 0.07 higher than 1. Set it to 0 for the
        meta-learned initialisation's own predictions.
    first_order : bool, default=False
        First-order MAML: treat the inner gradients as constants, so the
        meta-gradient has no second derivatives. Cheaper in time and memory;
        it learns too, usually somewhat less per meta-training step.
"""

_REGRESSOR_LR_NOTE = (
    "        the defaults (``inner_lr=0.05``, ``lr=0.01``, ``max_epochs=60``)\n"
    "        were chosen on five regression families with 10 shots and\n"
    "        1,000 training tasks (one sine, a sum of two sines, a linear\n"
    "        model of 5 features, a quadratic, sines at levels 100-1,000),\n"
    "        with standardised targets: every family then adapts to a query\n"
    "        error below half its variance and below a 3-nearest-neighbour\n"
    "        regressor on the support; 10 steps of 0.1 overshoot and are cut\n"
    "        back by the guard on most tasks. Without ``standardize_targets``,\n"
    "        scale ``inner_lr`` to the targets: 0.01 for the sinusoids of\n"
    "        :func:`~skmeta.datasets.make_sinusoid_tasks` (amplitudes up to 5).\n"
)


_OWN_ATTRIBUTES = """    module_ : torch.nn.Module
        The meta-learned backbone.
"""


class MAMLClassifier(InnerLoopClassifier, _MAML):
    __doc__ = """Model-agnostic meta-learning (MAML) for few-shot classification.

    Meta-training learns initial weights of the whole backbone such that a
    few gradient steps on a new task's support set give a good classifier
    for that task. The inner loop is functional (``torch.func``) and the
    episodes of a meta-batch run batched with ``vmap``.
    """ + parameters_doc(
        _OWN.format(inner_lr="0.1", lr_note="        0.1 suits standardised features.\n"),
        classification=True, lr="1e-3", max_epochs="20",
    ) + fitted_attributes(classification=True, own=_OWN_ATTRIBUTES) + """
    See Also
    --------
    MAMLRegressor : The same for regression.
    ProtoNetClassifier : Adapts by class means in a learned embedding.

    Notes
    -----
    Episode settings on grouped classification tables (adult, bank,
    contraception; "Episode settings on group tables" in docs/benchmarks.md):
    ``class_balance="natural"`` lowered the mean log-loss on held-out groups
    from 0.513 to 0.482 (0.512 to 0.471 with a LogisticRegression prior) at
    the same ROC-AUC (0.739 against 0.737), so consider it for group tables;
    ``n_shots=(1, 5, 10, 20)`` scored about as well as 5 with natural
    episodes (log-loss 0.477 against 0.482, ROC-AUC 0.738 against 0.739).

    References
    ----------
    .. [1] Finn, Abbeel and Levine, "Model-Agnostic Meta-Learning for Fast
       Adaptation of Deep Networks", ICML 2017.

    Examples
    --------
    >>> from skmeta import MAMLClassifier
    >>> from skmeta.datasets import make_blob_tasks
    >>> tasks = make_blob_tasks(n_tasks=20, random_state=0)
    >>> meta = MAMLClassifier(lr=3e-3, max_epochs=2, random_state=0).fit(tasks[:15])
    >>> # the same initial weights, left as they were: adapting from them alone
    >>> start = MAMLClassifier(lr=1e-9, max_epochs=1, n_episodes=8, random_state=0).fit(tasks[:15])
    >>> meta.score(tasks[15:]) > start.score(tasks[15:]) + 0.05
    True
    """


class MAMLRegressor(InnerLoopRegressor, _MAML):
    _parameter_constraints = {**_MAML._parameter_constraints, **STANDARDIZE_TARGETS_CONSTRAINT}

    def __init__(self, module=MLP, *, inner_lr=0.05, lr=0.01, max_epochs=60, standardize_targets=True,
                 **kwargs):
        self.standardize_targets = standardize_targets
        super().__init__(module, inner_lr=inner_lr, lr=lr, max_epochs=max_epochs, **kwargs)

    __doc__ = """Model-agnostic meta-learning (MAML) for few-shot regression.

    Meta-training learns initial weights such that a few gradient steps on a
    new task's support set fit that task; ``first_order=True`` gives
    first-order MAML. The inner loop is functional (``torch.func``) and the
    episodes of a meta-batch run batched with ``vmap``.
    """ + parameters_doc(
        _OWN.format(inner_lr="0.05", lr_note=_REGRESSOR_LR_NOTE),
        classification=False, lr="0.01", max_epochs="60",
    ) + fitted_attributes(classification=False, own=_OWN_ATTRIBUTES) + """
    See Also
    --------
    MAMLClassifier : The same for classification.

    References
    ----------
    .. [1] Finn, Abbeel and Levine, "Model-Agnostic Meta-Learning for Fast
       Adaptation of Deep Networks", ICML 2017.

    Examples
    --------
    >>> from skmeta import MAMLRegressor
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> tasks = make_sinusoid_tasks(n_tasks=200, random_state=0)
    >>> meta = MAMLRegressor(inner_lr=0.01, n_shots=10, n_queries=10,
    ...                      max_epochs=2, random_state=0).fit(tasks)
    >>> meta.adapt(tasks[0].X[:10], tasks[0].y[:10]).predict(tasks[0].X[10:12]).shape
    (2,)

    With ``prior``, the network corrects a pooled model; its output layer
    starts at zero, so before training and adaptation it predicts as the
    prior does:

    >>> from sklearn.linear_model import Ridge
    >>> start = MAMLRegressor(prior=Ridge(), standardize_targets=False, adapt_steps=0,
    ...                       lr=1e-30, max_epochs=1, n_episodes=1, random_state=0).fit(tasks)
    >>> X, y = tasks[0].X, tasks[0].y
    >>> float(abs(start.predict(X, X[:10], y[:10]) - start.prior_.predict(X)).max()) < 1e-6
    True
    """
