"""Exceptions and warnings that skmeta raises."""

__all__ = ["AdaptationWarning", "DivergenceError"]


class DivergenceError(ValueError, ArithmeticError):
    """Meta-training produced a non-finite loss, gradient or weight.

    A ``ValueError`` (a setting is wrong: usually a learning rate) and an
    ``ArithmeticError``. The estimator is left as it was before the call.

    Examples
    --------
    >>> from skmeta.exceptions import DivergenceError
    >>> issubclass(DivergenceError, ValueError)
    True
    """


class AdaptationWarning(UserWarning):
    """A support set that adapting could not use as asked.

    Gradient steps had to be smaller than ``inner_lr``, or a neighbour vote
    took the whole support set.

    Examples
    --------
    >>> from skmeta.exceptions import AdaptationWarning
    >>> issubclass(AdaptationWarning, UserWarning)
    True
    """
