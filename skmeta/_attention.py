"""The softmax every attention of skmeta takes: a key of weight ``w`` counts ``w`` times."""

import torch


def weighted_softmax(scores, weight=None):
    """Softmax over the last axis, each key counted as ``weight`` copies of itself.

    Parameters
    ----------
    scores : Tensor of shape (..., n_keys)
    weight : Tensor broadcastable to ``scores``, or None, default=None
        Key weights. A key of weight ``w`` gets the attention of ``w``
        copies of itself; one of weight 0 (padding) gets none.

    Returns
    -------
    Tensor of the shape of ``scores``
        Each row sums to one (NaN where every key weighs 0).

    Examples
    --------
    >>> import torch
    >>> weighted_softmax(torch.zeros(1, 3), torch.tensor([1.0, 3.0, 0.0]))
    tensor([[0.2500, 0.7500, 0.0000]])
    """
    if weight is not None:
        weight = weight.to(scores.dtype)
        scores = torch.where(weight > 0, scores + weight.clamp_min(1e-30).log(), -torch.inf)
    return torch.softmax(scores, dim=-1)
