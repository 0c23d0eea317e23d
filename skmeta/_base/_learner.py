"""The meta-learner: skorch's ``NeuralNet`` with the layers of this package.

:class:`MetaLearner` assembles the layers, each a mixin a reader can hold in
mind alone, and owns the parts every layer uses: the constructor and its
constraints, and the backbone and loss it builds.
"""

import contextlib
import inspect
from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval, Options, StrOptions
from skorch import NeuralNet

from .._mlp import MLP
from ..tasks import TaskSplit
from ._adaptation import AdaptationMixin
from ._devices import DevicesMixin
from ._lifelong import LIFELONG_CONSTRAINTS, LifelongMixin
from ._parameters import ParametersMixin
from ._prior import PriorMixin
from ._tasks import TasksMixin
from ._training import TrainingMixin


class _ShotCounts(Options):
    """Constraint: a non-empty tuple or list of shot counts, each an int >= 1.

    A subclass of sklearn's ``Options`` only because ``make_constraint``
    lets through sklearn's own constraint classes; it is checked, and named
    in the error message, like any of them.
    """

    def __init__(self):
        super().__init__((tuple, list), set())

    def is_satisfied_by(self, val):
        return (
            isinstance(val, (tuple, list)) and len(val) > 0
            and all(isinstance(v, Integral) and not isinstance(v, bool) and v >= 1 for v in val)
        )

    def __str__(self):
        return "a non-empty tuple or list of ints >= 1 (each episode draws one), such as (1, 5)"


class MetaLearner(
    PriorMixin, ParametersMixin, DevicesMixin, TasksMixin, LifelongMixin, TrainingMixin, AdaptationMixin,
    NeuralNet,
):
    """Base class of the meta-learners; not meant to be used directly.

    A skorch :class:`~skorch.NeuralNet` whose samples are tasks: ``fit``
    meta-trains on a task collection, one meta-batch of episodes per step,
    and ``adapt`` returns a fitted sklearn estimator for a new task.
    """

    _classification = True

    _parameter_constraints = {
        "lr": [Interval(Real, 0, None, closed="neither")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "n_episodes": [Interval(Integral, 1, None, closed="left")],
        "meta_batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_ways": [Interval(Integral, 2, None, closed="left"), None],
        "n_shots": [Interval(Integral, 1, None, closed="left"), _ShotCounts()],
        "n_queries": [Interval(Integral, 1, None, closed="left")],
        "class_balance": [StrOptions({"balanced", "natural"})],
        "task_column": [str, Integral, None],
        "device": [StrOptions({"auto", "cpu", "cuda"}), torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "train_split": [callable, None],
        "warm_start": ["boolean"],
        "strict_episodes": ["boolean"],
        **LIFELONG_CONSTRAINTS,
    }

    def __init__(
        self,
        module=MLP,
        *,
        criterion=None,
        optimizer=torch.optim.Adam,
        lr=1e-3,
        max_epochs=20,
        n_episodes=200,
        meta_batch_size=8,
        n_ways=None,
        n_shots=5,
        n_queries=15,
        class_balance="balanced",
        train_split=TaskSplit(0.2),
        callbacks=None,
        task_column=None,
        strict_episodes=False,
        replay_size=100,
        ewc=0.0,
        device="auto",
        random_state=None,
        verbose=0,
        warm_start=False,
        **kwargs,
    ):
        self.strict_episodes = strict_episodes
        self.replay_size = replay_size
        self.ewc = ewc
        self.n_episodes = n_episodes
        self.meta_batch_size = meta_batch_size
        self.n_ways = n_ways
        self.n_shots = n_shots
        self.n_queries = n_queries
        self.class_balance = class_balance
        self.task_column = task_column
        self.random_state = random_state
        super().__init__(
            module,
            criterion,
            optimizer=optimizer,
            lr=lr,
            max_epochs=max_epochs,
            train_split=train_split,
            callbacks=callbacks,
            warm_start=warm_start,
            verbose=verbose,
            device=device,
            **kwargs,
        )

    def _n_outputs(self):
        return None

    def initialize_criterion(self):
        """Build the loss; None means cross-entropy or squared error.

        A second instance with ``reduction="none"`` gives per-row losses
        where rows are weighted (padded episodes, ``sample_weight``).
        """
        criterion = self.criterion
        if criterion is None:
            criterion = torch.nn.CrossEntropyLoss if self._classification else torch.nn.MSELoss
        kwargs = self.get_params_for("criterion")
        self.criterion_ = self.initialized_instance(criterion, kwargs)
        per_row = None
        if not isinstance(criterion, torch.nn.Module):
            with contextlib.suppress(TypeError, ValueError):
                per_row = criterion(**{**kwargs, "reduction": "none"}).to(self.device_)
        # Not a registered component (skorch would save and route it): a helper.
        self.__dict__["_criterion_per_row"] = per_row
        return self

    def _weighted_loss(self, output, target, weight=None):
        """The criterion, or its weighted mean over rows when ``weight`` is given."""
        if weight is None:
            return self.criterion_(output, target)
        if self._criterion_per_row is None:
            raise ValueError(
                f"criterion={self.criterion!r} takes no reduction='none', so rows cannot be "
                "weighted (padded episodes of small tasks, sample_weight). Pass a criterion "
                "class such as torch.nn.CrossEntropyLoss, or set strict_episodes=True with an int n_shots."
            )
        per_row = self._criterion_per_row(output, target)
        weight = weight.to(per_row.dtype)
        return (per_row * weight).sum() / weight.sum()

    def get_params_for_optimizer(self, prefix, named_parameters):
        args, kwargs = super().get_params_for_optimizer(prefix, named_parameters)
        if not args[0]:
            # A backbone without parameters (a fixed embedding such as
            # torch.nn.Identity): torch refuses an empty list, not an empty group.
            args = ([{"params": []}], *args[1:])
        return args, kwargs

    def initialize_module(self):
        """Build the backbone, filling ``n_features``/``n_outputs`` it accepts."""
        kwargs = self.get_params_for("module")
        if not isinstance(self.module, torch.nn.Module) and hasattr(self, "n_features_in_"):
            accepted = inspect.signature(self.module).parameters
            dims = {"n_features": self.n_features_in_, "n_outputs": self._n_outputs()}
            for name, value in dims.items():
                if name in accepted and name not in kwargs:
                    kwargs[name] = value
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(getattr(self, "_torch_seed", torch.initial_seed()))
            try:
                self.module_ = self.initialized_instance(self.module, kwargs)
            except (TypeError, ValueError, RuntimeError) as exc:
                routed = {f"module__{k}": v for k, v in self.get_params_for("module").items()}
                raise ValueError(
                    f"Building the module {getattr(self.module, '__name__', self.module)!r} "
                    f"failed with {routed or 'no module__* parameters'}: {exc} Check the "
                    "module__* parameters."
                ) from exc
        return self
