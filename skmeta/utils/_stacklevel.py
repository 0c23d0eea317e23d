"""Warnings that point at the user's line, not at skmeta's plumbing."""

import contextlib
import os
import sys

import sklearn
import skorch

#: Frames in these folders are skipped: skmeta itself, and the libraries that
#: call into it on the user's behalf (sklearn's fit wrappers and model
#: selection, skorch's training loop, contextlib's context managers).
_SKIPPED = (
    *(os.path.dirname(os.path.abspath(module.__file__)) + os.sep
      for module in (sys.modules[__name__.split(".")[0]], sklearn, skorch)),
    os.path.abspath(contextlib.__file__),
)


def external_stacklevel():
    """The ``stacklevel`` of ``warnings.warn`` that names the first frame outside skmeta.

    Call it in the argument list of ``warnings.warn``: level 1 is the
    function that warns, and each frame inside skmeta, sklearn, skorch or
    contextlib adds one.

    Returns
    -------
    int

    Examples
    --------
    >>> import warnings
    >>> from skmeta.utils._stacklevel import external_stacklevel
    >>> def inside():
    ...     warnings.warn("checked", UserWarning, stacklevel=external_stacklevel())
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     inside()
    >>> caught[0].filename.endswith("_stacklevel.py")  # a doctest runs in this module's folder
    False
    """
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_SKIPPED):
        frame, level = frame.f_back, level + 1
    return level
