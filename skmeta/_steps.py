"""Gradient steps at adaptation time, guarded so that they never make things worse.

Every learner that adapts to a new task by gradient steps on its support set
(MAML, fine-tuning, ...) takes them here: each step is checked, a step that
raises the support loss is rejected and the step size halved. Meta-training
keeps each algorithm's own differentiable inner loop.
"""

import torch
from torch.func import functional_call


def _shares_tensors(module):
    """Whether two names of ``module`` hold one tensor (tied weights).

    ``functional_call`` unties such names on every call by default, a walk
    over the module that costs about as much as a small network's forward
    pass; without tied weights it is safely skipped.
    """
    seen = set()
    for _, tensor in (*module.named_parameters(remove_duplicate=False),
                      *module.named_buffers(remove_duplicate=False)):
        if id(tensor) in seen:
            return True
        seen.add(id(tensor))
    return False


def guarded_inner_loop(module, params, X, y, *, loss_fn, inner_lr, steps, weight=None,
                       penalty=None, direction=None, tolerance=1e-6, max_halvings=12):
    """Adapt ``params`` by gradient steps that never raise the support loss.

    Each step is taken with plain ``torch.autograd`` on leaf tensors (no
    graph is kept for a meta-gradient). A step that raises the support loss
    by more than ``tolerance`` (relative) or makes it non-finite is rejected
    and the step size halved, for this and later steps; adaptation stops when
    ``max_halvings`` halvings find no step that helps. When every step helps,
    the result is that of plain gradient descent (MAML's
    :func:`~skmeta.optimization._maml.inner_loop`).

    Parameters
    ----------
    module : torch.nn.Module
        The backbone, called functionally with ``params``.
    params : dict of str to Tensor
        The starting point (the meta-learned or pre-trained parameters).
    X : Tensor of shape (n_support, n_features)
    y : Tensor of shape (n_support,)
    loss_fn : callable
        ``loss_fn(output, y)`` to a scalar, or ``loss_fn(output, y, weight)``
        when ``weight`` is given.
    inner_lr : float
        The first step size tried.
    steps : int
        Most steps taken.
    weight : Tensor of shape (n_support,) or None, default=None
        Row weights of the support loss.
    penalty : callable or None, default=None
        ``penalty(params)`` to a scalar added to the support loss (e.g. an
        L2 pull toward the starting weights); the guard watches the sum.
    direction : callable or None, default=None
        ``direction(params, grads, loss)`` to a dict of tensors, the update
        a step of size 1 subtracts (called once per step, before any
        halving): per-parameter learned rates times the gradient
        (Meta-SGD), or a learned optimizer's update. None: the gradient.
    tolerance : float, default=1e-6
        Relative rise of the support loss still accepted (rounding).
    max_halvings : int, default=12
        Halvings of the step size tried before adaptation stops.

    Returns
    -------
    params : dict of str to Tensor
        The adapted parameters (detached): the last accepted step's, or the
        starting ones if no step lowered the support loss below its start.
    report : dict
        ``step_sizes`` (one per accepted step), ``support_loss`` (at the
        start and after each accepted step) and ``backtracked`` (whether
        a step was rejected).

    Examples
    --------
    >>> import torch
    >>> from torch.nn.functional import mse_loss
    >>> model = torch.nn.Linear(1, 1, bias=False)
    >>> X, y = torch.ones(4, 1), torch.full((4, 1), 2.0)
    >>> from skmeta._steps import guarded_inner_loop
    >>> params, report = guarded_inner_loop(model, {"weight": torch.zeros(1, 1)}, X, y,
    ...                                     loss_fn=mse_loss, inner_lr=3.0, steps=1)
    >>> params["weight"], report["step_sizes"], report["backtracked"]
    (tensor([[3.]]), [0.75], True)
    """

    tie_weights = _shares_tensors(module)

    def support_loss(p):
        output = functional_call(module, p, (X,), tie_weights=tie_weights)
        loss = loss_fn(output, y) if weight is None else loss_fn(output, y, weight)
        return loss if penalty is None else loss + penalty(p)

    start = {name: p.detach().requires_grad_() for name, p in params.items()}
    with torch.enable_grad():
        current, loss = start, support_loss(start)
        losses, step_sizes, step_size, backtracked = [loss.item()], [], inner_lr, False
        for _ in range(steps):
            names, values = list(current), list(current.values())
            grads = torch.autograd.grad(loss, values)
            if direction is not None:
                with torch.no_grad():
                    update = direction(current, dict(zip(names, grads, strict=True)), loss.detach())
                grads = [update[name] for name in names]
            for _ in range(max_halvings + 1):
                with torch.no_grad():  # p - step_size * g, one batched call per operation
                    moved = torch._foreach_sub(values, torch._foreach_mul(grads, step_size))
                candidate = {name: p.requires_grad_() for name, p in zip(names, moved, strict=True)}
                candidate_loss = support_loss(candidate)
                value = candidate_loss.item()
                if value == value and value <= losses[-1] + tolerance * abs(losses[-1]):
                    break
                backtracked, step_size = True, step_size / 2
            else:
                break  # no step size helps: stop here
            current, loss = candidate, candidate_loss
            losses.append(value)
            step_sizes.append(step_size)
    if losses[-1] > losses[0]:  # only rounding-sized rises were taken: keep the start
        current = start
    report = {"step_sizes": step_sizes, "support_loss": losses, "backtracked": backtracked}
    return {name: p.detach() for name, p in current.items()}, report
