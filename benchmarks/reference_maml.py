"""MAML written the way learn2learn and higher run it: one task at a time.

The reference that :mod:`benchmarks.sinusoid` times skmeta against: a Python
loop over the tasks of a meta-batch, inner gradients by
``torch.autograd.grad(create_graph=True)``, fast weights updated by hand, a
hand-written functional forward of the MLP (the fastest form such a loop
takes, so the comparison flatters the reference rather than skmeta).
"""

import torch
from torch.nn.functional import linear, mse_loss, relu


def forward(weights, X):
    """The MLP ``Linear -> ReLU -> ... -> Linear`` on a list of (weight, bias)."""
    for i, (weight, bias) in enumerate(weights):
        X = linear(X, weight, bias)
        if i < len(weights) - 1:
            X = relu(X)
    return X.squeeze(-1)


def mlp_weights(module):
    """The (weight, bias) pairs of an :class:`skmeta.MLP`, as leaf tensors to train."""
    layers = [layer for layer in module.layers if isinstance(layer, torch.nn.Linear)]
    return [(layer.weight.detach().clone().requires_grad_(),
             layer.bias.detach().clone().requires_grad_()) for layer in layers]


def adapt(weights, X, y, *, inner_lr, steps, create_graph=False):
    """``steps`` gradient steps of squared error on one support set."""
    fast = list(weights)
    for _ in range(steps):
        flat = [t for pair in fast for t in pair]
        grads = torch.autograd.grad(mse_loss(forward(fast, X), y), flat, create_graph=create_graph)
        flat = [t - inner_lr * g for t, g in zip(flat, grads, strict=True)]
        fast = list(zip(flat[0::2], flat[1::2], strict=True))
    return fast


def meta_step(weights, optimizer, batch, *, inner_lr, steps, first_order=False):
    """One meta-update over an :class:`~skmeta.tasks.EpisodeBatch`, task by task.

    Returns
    -------
    float
        The mean query loss before the update.
    """
    optimizer.zero_grad()
    total = 0.0
    for i in range(len(batch)):
        fast = adapt(weights, batch.X_support[i], batch.y_support[i], inner_lr=inner_lr,
                     steps=steps, create_graph=not first_order)
        total = total + mse_loss(forward(fast, batch.X_query[i]), batch.y_query[i])
    loss = total / len(batch)
    loss.backward()
    optimizer.step()
    return loss.item()
