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
    """Adapting to a support set needed smaller steps than ``inner_lr``.

    Examples
    --------
    >>> from skmeta.exceptions import AdaptationWarning
    >>> issubclass(AdaptationWarning, UserWarning)
    True
    """
