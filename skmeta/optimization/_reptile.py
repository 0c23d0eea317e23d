"""Reptile: move the initialisation toward the weights that fit each task.

Reptile (Nichol, Achiam and Schulman, 2018) is first order by construction:
each episode's rows (support and query together) are fitted by a few plain
gradient steps from the current weights, and the initialisation moves toward
the mean of the adapted weights, ``theta += epsilon * (mean_e adapted_e -
theta)``. No gradient goes back through the inner steps.

Functional core: :func:`fit_episodes` adapts a parameter dict to every
episode of a meta-batch at once (``torch.func.vmap``, on detached copies);
:func:`reptile_loss` turns the mean adapted weights into a loss whose
gradient w.r.t. each parameter is ``p - mean_e adapted_e``, so that the
meta-optimizer steps it (plain SGD of rate ``lr`` is Reptile's update with
``epsilon = lr``). Adapting to a new task, and meta-validation, are
MAML's: guarded steps on the support set (meta-validation takes plain steps,
:func:`descent`, batched, and redoes guarded the episodes where a step raised
the support loss). Estimators: :class:`ReptileClassifier`,
:class:`ReptileRegressor`.
"""

import torch
from torch.func import functional_call, grad_and_value, vmap

from .._base._docs import fitted_attributes
from .._mlp import MLP
from ._base import (
    STANDARDIZE_TARGETS_CONSTRAINT,
    InnerLoopClassifier,
    InnerLoopLearner,
    InnerLoopRegressor,
    parameters_doc,
)
from ._maml import inner_loop


def _episode_rows(batch):
    """Support and query rows of each episode together, with row weights.

    Returns ``(X, y, weight, n_support)``: ``X`` of shape (n_episodes,
    n_support + n_query, n_features), ``y`` alike, ``weight`` of shape
    (n_episodes, n_rows) with 0 on padding (None when nothing is padded).
    """
    X = torch.cat([batch.X_support, batch.X_query], dim=1)
    y = torch.cat([batch.y_support, batch.y_query], dim=1)
    weight = None
    if batch.padded:
        weight = torch.cat([
            w if w is not None else torch.ones(y_part.shape, dtype=torch.float32, device=y_part.device)
            for w, y_part in ((batch.support_weight, batch.y_support), (batch.query_weight, batch.y_query))
        ], dim=1)
    return X, y, weight, batch.X_support.shape[1]


def fit_episodes(module, params, batch, *, loss_fn, inner_lr, steps):
    """Fit each episode's rows by ``steps`` gradient steps from ``params``.

    The steps start from detached copies of ``params``: nothing of them is
    differentiable w.r.t. ``params`` (Reptile is first order).

    Parameters
    ----------
    module : torch.nn.Module
        The backbone, called functionally with ``params``.
    params : dict of str to Tensor
        The starting point (the meta-learned initialisation).
    batch : EpisodeBatch
        Episodes with a leading meta-batch axis. Support and query rows are
        fitted together; padding rows (weight 0) do not count.
    loss_fn : callable
        ``loss_fn(output, y)`` to a scalar, or ``loss_fn(output, y, weight)``
        on padded batches.
    inner_lr : float
        Step size.
    steps : int
        Gradient steps per episode.

    Returns
    -------
    adapted : dict of str to Tensor
        Each parameter with a leading episode axis: the weights after the
        steps on each episode (detached).
    losses : Tensor of shape (n_episodes,)
        Each episode's loss on its rows with its adapted weights.
    outputs : Tensor of shape (n_episodes, n_rows, n_outputs)
        The adapted weights' outputs on each episode's rows (support first).
    n_rows : Tensor of shape (n_episodes,)
        Each episode's real (unpadded) rows.

    Examples
    --------
    >>> import torch
    >>> from torch.nn.functional import mse_loss
    >>> from skmeta.tasks import EpisodeBatch
    >>> model = torch.nn.Linear(1, 1, bias=False)
    >>> ones = torch.ones(2, 3, 1)  # two episodes of 3 support and 3 query rows
    >>> batch = EpisodeBatch(ones, 2 * ones, ones, 2 * ones)
    >>> adapted, losses, _, _ = fit_episodes(model, {"weight": torch.zeros(1, 1)}, batch,
    ...                                      loss_fn=mse_loss, inner_lr=0.25, steps=1)
    >>> adapted["weight"]
    tensor([[[1.]],
    <BLANKLINE>
            [[1.]]])
    >>> losses
    tensor([1., 1.])
    """
    X, y, weight, _ = _episode_rows(batch)
    start = {name: p.detach() for name, p in params.items()}

    def episode(X_rows, y_rows, row_weight=None):
        adapted = inner_loop(module, start, X_rows, y_rows, loss_fn=loss_fn, inner_lr=inner_lr,
                             steps=steps, weight=row_weight)
        outputs = functional_call(module, adapted, (X_rows,))
        loss = loss_fn(outputs, y_rows) if row_weight is None else loss_fn(outputs, y_rows, row_weight)
        return adapted, loss, outputs

    if weight is None:
        adapted, losses, outputs = vmap(episode, randomness="different")(X, y)
        n_rows = torch.full((X.shape[0],), X.shape[1], dtype=losses.dtype, device=X.device)
    else:
        adapted, losses, outputs = vmap(episode, randomness="different")(X, y, weight)
        n_rows = weight.sum(-1).to(losses.dtype)
    return adapted, losses, outputs, n_rows


def reptile_loss(module, params, batch, *, loss_fn, inner_lr, steps):
    """Reptile's meta-objective on a meta-batch: its gradient is ``p - mean adapted``.

    Parameters
    ----------
    module, params, batch, loss_fn, inner_lr, steps
        As in :func:`fit_episodes`.

    Returns
    -------
    loss : Tensor
        Scalar. Its value is the mean loss of the adapted weights on the
        episodes' rows (each episode weighted by its real rows); its
        gradient w.r.t. each ``params[name]`` is ``params[name] - mean_e
        adapted_e[name]``, the gradient of ``0.5 * sum ||p - mean
        adapted||^2``. A step of plain SGD with rate ``epsilon`` is then
        Reptile's ``theta += epsilon * (mean adapted - theta)``.
    outputs : Tensor of shape (n_episodes, n_query, n_outputs)
        The adapted weights' outputs on the query rows.

    Examples
    --------
    >>> import torch
    >>> from torch.nn.functional import mse_loss
    >>> from skmeta.tasks import EpisodeBatch
    >>> model = torch.nn.Linear(1, 1, bias=False)
    >>> ones = torch.ones(1, 3, 1)
    >>> weight = torch.zeros(1, 1, requires_grad=True)
    >>> loss, _ = reptile_loss(model, {"weight": weight}, EpisodeBatch(ones, 2 * ones, ones, 2 * ones),
    ...                        loss_fn=mse_loss, inner_lr=0.25, steps=1)
    >>> loss.backward()
    >>> float(loss.detach()), weight.grad  # adapted to 1: loss (1 - 2)^2, gradient 0 - 1
    (1.0, tensor([[-1.]]))
    """
    adapted, losses, outputs, n_rows = fit_episodes(
        module, params, batch, loss_fn=loss_fn, inner_lr=inner_lr, steps=steps)
    surrogate = 0.5 * sum(((p - adapted[name].mean(0)) ** 2).sum() for name, p in params.items())
    reported = (losses * n_rows).sum() / n_rows.sum()
    loss = reported if not torch.is_tensor(surrogate) else surrogate - surrogate.detach() + reported
    return loss, outputs[:, batch.X_support.shape[1]:]


def descent(module, params, X, y, *, loss_fn, inner_lr, steps, weight=None):
    """Plain gradient descent on one support set, with the loss at every step.

    Parameters
    ----------
    module, params, X, y, loss_fn, inner_lr, steps, weight
        As in :func:`~skmeta.optimization._maml.inner_loop`.

    Returns
    -------
    params : dict of str to Tensor
        The weights after ``steps`` steps.
    losses : Tensor of shape (steps + 1,)
        The support loss at the start and after each step.

    Examples
    --------
    >>> import torch
    >>> from torch.nn.functional import mse_loss
    >>> model = torch.nn.Linear(1, 1, bias=False)
    >>> X, y = torch.ones(4, 1), torch.full((4, 1), 2.0)
    >>> params, losses = descent(model, {"weight": torch.zeros(1, 1)}, X, y,
    ...                          loss_fn=mse_loss, inner_lr=0.25, steps=2)
    >>> params["weight"], losses
    (tensor([[1.5000]]), tensor([4.0000, 1.0000, 0.2500]))
    """

    def support_loss(p):
        output = functional_call(module, p, (X,))
        return loss_fn(output, y) if weight is None else loss_fn(output, y, weight)

    losses = []
    for _ in range(steps):
        grads, loss = grad_and_value(support_loss)(params)
        losses.append(loss)
        params = {name: p - inner_lr * grads[name] for name, p in params.items()}
    losses.append(support_loss(params))
    return params, torch.stack(losses)


class _Reptile(InnerLoopLearner):
    """What ReptileClassifier and ReptileRegressor share: the meta-objective and validation."""

    def __init__(self, module=MLP, *, inner_lr=0.1, inner_steps=5, adapt_steps=10, **kwargs):
        super().__init__(module, inner_lr=inner_lr, inner_steps=inner_steps, adapt_steps=adapt_steps,
                         **kwargs)

    def _episode_loss(self, batch, training):
        if training:
            loss, outputs = reptile_loss(self._backbone(), self._params(), batch, loss_fn=self._loss,
                                         inner_lr=self.inner_lr, steps=self._steps(training))
            return loss, self._outputs(outputs)
        return self._validation_loss(batch)

    def _validation_loss(self, batch):
        """Adapt to each support set as ``adapt`` does, score its query rows.

        The episodes take plain gradient steps together (``vmap``); where one
        of them raised an episode's support loss, ``adapt`` would have halved
        it, so that episode is adapted again by the guarded steps.
        """
        backbone, steps = self._backbone(), self._steps(training=False)
        start = {name: p.detach() for name, p in self._params().items()}

        def episode(X_support, y_support, X_query, support_weight=None):
            adapted, support_losses = descent(backbone, start, X_support, y_support, loss_fn=self._loss,
                                              inner_lr=self.inner_lr, steps=steps, weight=support_weight)
            return functional_call(backbone, adapted, (X_query,)), support_losses

        tensors = [batch.X_support, batch.y_support, batch.X_query]
        if batch.support_weight is not None:
            tensors.append(batch.support_weight)
        outputs, support_losses = vmap(episode, randomness="different")(*tensors)
        before, after = support_losses[:, :-1], support_losses[:, 1:]
        helped = (torch.isfinite(after) & (after <= before + _TOLERANCE * before.abs())).all(-1)
        helped &= support_losses[:, -1] <= support_losses[:, 0]
        losses, n_query = [], []
        for e in range(len(batch)):
            support_weight = None if batch.support_weight is None else batch.support_weight[e]
            query_weight = None if batch.query_weight is None else batch.query_weight[e]
            if not helped[e]:
                state, _ = self._adapt(batch.X_support[e], batch.y_support[e], None, support_weight)
                with torch.no_grad():
                    outputs[e] = functional_call(backbone, state, (batch.X_query[e],))
            losses.append(self._loss(outputs[e], batch.y_query[e], query_weight))
            n_query.append(batch.X_query.shape[1] if query_weight is None else query_weight.sum())
        losses = torch.stack(losses)
        n_query = torch.as_tensor(n_query, dtype=losses.dtype).to(losses.device)
        return (losses * n_query).sum() / n_query.sum(), self._outputs(outputs)


#: The relative rise of the support loss that the guarded steps still accept.
_TOLERANCE = 1e-6


_OWN = """    inner_lr : float, default={inner_lr}
        Step size of the inner gradient steps, in meta-training and when
        adapting. Too large a step makes adaptation oscillate or diverge
        (``adapt`` raises a ValueError when the weights overflow), too small
        a one leaves the support set unused.
    inner_steps : int, default=5
        Gradient steps that fit each training episode's rows (support and
        query together) before the initialisation moves toward the mean of
        the fitted weights. With one step, Reptile's update is only the
        gradient of the pooled loss (joint training); it needs several to
        learn an initialisation that adapts. Each step is a forward and
        backward pass, without a meta-gradient through the steps: time
        grows with it, memory does not. {steps_note}
    adapt_steps : int or None, default=10
        Steps when adapting to a new task (``adapt``, ``predict``, ``score``)
        and in meta-validation; None uses ``inner_steps``. Set it to 0 for
        the meta-learned initialisation's own predictions.
"""


_REPTILE_REFERENCE = """    References
    ----------
    .. [1] Nichol, Achiam and Schulman, "On First-Order Meta-Learning
       Algorithms", arXiv:1803.02999, 2018.
"""

_TRAINING_NOTES = """    Notes
    -----
    Each meta-training episode's rows, support and query together, are
    fitted by ``inner_steps`` gradient steps of ``inner_lr`` from the current
    weights ``theta`` (padding rows of mixed-size episodes weigh 0). The
    meta-optimizer is then given ``theta - mean_e adapted_e`` as the
    gradient; with ``optimizer=torch.optim.SGD`` and ``lr=epsilon`` a step is
    exactly Reptile's ``theta += epsilon * (mean_e adapted_e - theta)`` [1]_;
    with the default Adam, the difference is taken as a gradient by Adam, a
    variant [1]_ suggests. ``train_loss`` in ``history_`` is the loss of the
    adapted weights on the rows they were fitted to (the episodes' support
    and query rows, each episode weighted by its real rows): how well
    ``inner_steps`` steps from the initialisation fit a task. The held-out
    measure is ``valid_loss``/``valid_score``: adapted on the support by
    ``adapt_steps`` guarded steps, as ``adapt`` does, on the query rows.
"""


_OWN_ATTRIBUTES = """    module_ : torch.nn.Module
        The meta-learned backbone.
"""


class ReptileClassifier(InnerLoopClassifier, _Reptile):
    __doc__ = """Reptile for few-shot classification.

    Meta-training learns initial weights of the whole backbone by moving
    them, episode after episode, toward the weights that a few gradient
    steps fit to each training task; a few gradient steps on a new task's
    support set then give a good classifier for that task. First order by
    construction: no gradient goes through the inner steps, so an episode
    costs ``inner_steps`` forward and backward passes and the memory of
    one. The episodes of a meta-batch run batched with ``vmap``.
    """ + parameters_doc(
        _OWN.format(inner_lr="0.1", steps_note=(
            "On\n        :func:`~skmeta.datasets.make_blob_tasks` (40 training tasks, 10\n"
            "        epochs), adapted query accuracy on 20 held-out tasks was 0.65 with 1\n"
            "        step, 0.74 with 5 and 0.71 with 10.")),
        classification=True, lr="1e-3", max_epochs="20",
    ) + fitted_attributes(classification=True, own=_OWN_ATTRIBUTES) + """
    See Also
    --------
    ReptileRegressor : The same for regression.
    MAMLClassifier : Meta-learns the initialisation through the inner steps' gradient.

""" + _TRAINING_NOTES + "\n" + _REPTILE_REFERENCE + """
    Examples
    --------
    >>> from skmeta import ReptileClassifier
    >>> from skmeta.datasets import make_blob_tasks
    >>> tasks = make_blob_tasks(n_tasks=20, random_state=0)
    >>> meta = ReptileClassifier(lr=3e-3, max_epochs=2, n_episodes=80,
    ...                          random_state=0).fit(tasks[:15])
    >>> adapted = meta.adapt(tasks[15].X[:10], tasks[15].y[:10])
    >>> adapted.predict(tasks[15].X[10:13]).shape
    (3,)
    >>> 0.5 < meta.score(tasks[15:]) <= 1
    True
    """


_REGRESSOR_STEPS_NOTE = (
    "On\n        :func:`~skmeta.datasets.make_sinusoid_tasks` (200 training tasks, 10\n"
    "        shots, 20 epochs), the adapted query MSE on 20 held-out tasks was 1.12\n"
    "        with 1 step, 0.18 with 5 and 0.15 with 10."
)


class ReptileRegressor(InnerLoopRegressor, _Reptile):
    _parameter_constraints = {**_Reptile._parameter_constraints, **STANDARDIZE_TARGETS_CONSTRAINT}

    def __init__(self, module=MLP, *, inner_lr=0.05, lr=0.01, max_epochs=60, standardize_targets=True,
                 **kwargs):
        self.standardize_targets = standardize_targets
        super().__init__(module, inner_lr=inner_lr, lr=lr, max_epochs=max_epochs, **kwargs)

    __doc__ = """Reptile for few-shot regression.

    Meta-training learns initial weights by moving them toward the weights
    that a few gradient steps fit to each training task; a few gradient
    steps on a new task's support set then fit that task. First order by
    construction; the episodes of a meta-batch run batched with ``vmap``.
    """ + parameters_doc(
        _OWN.format(inner_lr="0.05", steps_note=_REGRESSOR_STEPS_NOTE),
        classification=False, lr="0.01", max_epochs="60",
    ) + fitted_attributes(classification=False, own=_OWN_ATTRIBUTES) + """
    See Also
    --------
    ReptileClassifier : The same for classification.
    MAMLRegressor : Meta-learns the initialisation through the inner steps' gradient.

""" + _TRAINING_NOTES + "\n" + _REPTILE_REFERENCE + """
    Examples
    --------
    >>> from skmeta import ReptileRegressor
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> tasks = make_sinusoid_tasks(n_tasks=50, random_state=0)
    >>> meta = ReptileRegressor(n_shots=10, n_queries=10, max_epochs=2, n_episodes=64,
    ...                         random_state=0).fit(tasks)
    >>> meta.adapt(tasks[0].X[:10], tasks[0].y[:10]).predict(tasks[0].X[10:12]).shape
    (2,)
    """
