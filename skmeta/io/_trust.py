"""The types a skmeta file may name without the user's say-so.

A file names a type (or function) wherever a parameter is a class, such as
``module=MLP`` or ``optimizer=torch.optim.Adam``, and wherever it holds an
object to rebuild, such as a ``TaskSplit`` or a ``Pipeline``. Loading calls
them, so only these are accepted by default: the classes defined in skmeta,
torch's layers, losses, optimizers and learning-rate schedulers, skorch's
callbacks that touch neither files nor the network, sklearn's ``Pipeline``
and ``FrozenEstimator``, and ``print`` (the default ``sink`` of skorch's
callbacks). Anything else must be named in ``load(..., trusted=[...])``.
"""

import functools
import importlib

import skorch.callbacks
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline

# Not Checkpoint, TrainEndCheckpoint, LoadInitState (they read and write files at
# paths the file would choose), the loggers (files, network), nor Freezer,
# Unfreezer, ParamMapper, Initializer, InputShapeSetter (they change parameters).
_SKORCH_CALLBACKS = (
    "BatchScoring",
    "EarlyStopping",
    "EpochScoring",
    "EpochTimer",
    "GradientNormClipping",
    "LRScheduler",
    "PassthroughScoring",
    "PrintLog",
    "ProgressBar",
    "WarmRestartLR",
)


def type_path(obj):
    """The name a file gives a class or function: ``module.qualname``."""
    return f"{obj.__module__}.{obj.__qualname__}"


def _classes_of(namespace, base):
    return [v for v in vars(namespace).values() if isinstance(v, type) and issubclass(v, base)]


def import_path(module, name):
    """The object ``name`` (a qualified name) of ``module``, imported."""
    obj = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def is_skmeta_class(path):
    """Whether ``path`` names a class defined in skmeta (imports only skmeta's modules).

    Examples
    --------
    >>> from skmeta.io._trust import is_skmeta_class
    >>> is_skmeta_class("skmeta._mlp.MLP"), is_skmeta_class("skmeta._base.np.random.RandomState")
    (True, False)
    """
    parts = path.split(".")
    if parts[0] != "skmeta":
        return False
    for split in range(len(parts) - 1, 0, -1):
        module, name = ".".join(parts[:split]), ".".join(parts[split:])
        try:
            obj = import_path(module, name)
        except (ImportError, AttributeError):
            continue
        return isinstance(obj, type) and type_path(obj) == path
    return False


def is_trusted(path, accepted):
    """Whether ``path`` may be imported: in ``accepted``, or a class of skmeta."""
    return path in accepted or is_skmeta_class(path)


@functools.cache
def default_trusted():
    """The names of the types that load accepts without ``trusted``, skmeta's aside.

    Returns
    -------
    frozenset of str

    Examples
    --------
    >>> from skmeta.io._trust import default_trusted
    >>> "torch.optim.adam.Adam" in default_trusted()
    True
    """
    scheduler = torch.optim.lr_scheduler
    classes = _classes_of(torch.nn, torch.nn.Module)
    classes += _classes_of(torch.optim, torch.optim.Optimizer)
    classes += _classes_of(scheduler, scheduler.LRScheduler) + [scheduler.ReduceLROnPlateau]
    classes += [getattr(skorch.callbacks, name) for name in _SKORCH_CALLBACKS]
    classes += [Pipeline, FrozenEstimator]
    names = {type_path(c) for c in classes if isinstance(c, type)}
    return frozenset(names | {type_path(print)})
