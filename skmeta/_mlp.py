"""The default backbone for tabular tasks."""

import torch
from torch import nn


class MLP(nn.Module):
    """A multilayer perceptron: ``Linear -> ReLU`` blocks, then an optional head.

    The meta-learners fill ``n_features`` (and ``n_outputs`` where the
    algorithm has a fixed output) from the data; the sizes are tuned as
    ``module__hidden_sizes``.

    Parameters
    ----------
    n_features : int
        Input width.
    n_outputs : int or None, default=None
        Width of a final linear layer. None ends on the last hidden layer,
        which is then the embedding (as for prototypical networks).
    hidden_sizes : tuple of int, default=(64, 64)
        Widths of the hidden layers.
    dropout : float, default=0.0
        Dropout after each hidden layer.

    Examples
    --------
    >>> import torch
    >>> from skmeta import MLP
    >>> MLP(3, 2, hidden_sizes=(8,))(torch.zeros(5, 3)).shape
    torch.Size([5, 2])
    """

    def __init__(self, n_features, n_outputs=None, hidden_sizes=(64, 64), dropout=0.0):
        super().__init__()
        for name, value, low in (("n_features", n_features, 1), ("n_outputs", n_outputs, 1)):
            if value is not None and not (isinstance(value, int) and value >= low):
                raise ValueError(f"{name} must be a positive int; got {value!r}.")
        sizes = tuple(hidden_sizes) if isinstance(hidden_sizes, (tuple, list)) else None
        if sizes is None or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sizes):
            raise ValueError(
                f"hidden_sizes must be a tuple of positive ints (one width per hidden layer, "
                f"() for none); got {hidden_sizes!r}."
            )
        if not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
            raise ValueError(f"dropout must be a float in [0, 1); got {dropout!r}.")
        layers, width = [], n_features
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = size
        if n_outputs is not None:
            layers.append(nn.Linear(width, n_outputs))
        self.layers = nn.Sequential(*layers)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.layers(X)
