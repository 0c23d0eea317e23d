"""Multi-task learning: a shared trunk with one linear head per training task.

Functional core: :class:`SharedTrunk`, the module (trunk plus stacked head
weights of shape ``(n_tasks, n_hidden, n_outputs)``) whose rows go through
their own task's head, and :func:`linear_head`, a head as a function of its
weights. A new task's head starts at the mean of the task heads and takes
guarded gradient steps of its support loss plus ``alpha / 2 * ||W - W_mean||²``
(:func:`~skmeta._steps.guarded_inner_loop`). Estimators:
:class:`SharedTrunkClassifier`, :class:`SharedTrunkRegressor`, both trained
by :class:`~skmeta.tasks._pooled.PooledTrainingMixin`.
"""

import math
import warnings
from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval
from torch import nn

from .._base import MetaClassifierMixin, MetaLearner
from .._base._docs import EWC_PARAMETERS
from .._mlp import MLP
from .._steps import guarded_inner_loop
from ..exceptions import AdaptationWarning
from ..tasks._pooled import PooledTrainingMixin, select_rows
from ..utils._stacklevel import external_stacklevel


class SharedTrunk(nn.Module):
    """A trunk shared by all tasks and one linear head per task.

    Parameters
    ----------
    trunk : torch.nn.Module
        Maps rows of ``n_features`` to a hidden representation.
    n_features : int
        Input width (to find the trunk's output width).
    n_tasks : int
        Number of heads.
    n_outputs : int
        Output width of each head.

    Examples
    --------
    >>> import torch
    >>> from skmeta import MLP
    >>> from skmeta.multitask._shared_trunk import SharedTrunk
    >>> model = SharedTrunk(MLP(3, hidden_sizes=(8,)), n_features=3, n_tasks=4, n_outputs=2)
    >>> tuple(model.head_weight.shape), tuple(model(torch.zeros(5, 3), torch.arange(5) % 4).shape)
    ((4, 8, 2), (5, 2))
    """

    def __init__(self, trunk, *, n_features, n_tasks, n_outputs):
        super().__init__()
        self.trunk = trunk
        first = next(trunk.parameters(), None)  # a trunk given as an instance may sit on a GPU
        with torch.no_grad():
            probe = torch.zeros(1, n_features, device=None if first is None else first.device)
            n_hidden = trunk(probe).shape[-1]
        bound = 1 / math.sqrt(n_hidden)  # torch.nn.Linear's initialisation
        self.head_weight = nn.Parameter(torch.empty(n_tasks, n_hidden, n_outputs).uniform_(-bound, bound))
        self.head_bias = nn.Parameter(torch.empty(n_tasks, n_outputs).uniform_(-bound, bound))

    def mean_head(self):
        """The mean of the task heads: ``(weight (n_hidden, n_outputs), bias (n_outputs,))``."""
        return self.head_weight.mean(0), self.head_bias.mean(0)

    def forward(self, X, task_index=None):
        """Outputs of rows ``X``, each through its task's head (the mean head if None)."""
        hidden = self.trunk(X)
        if task_index is None:
            return linear_head(hidden, *self.mean_head())
        return (torch.einsum("nh,nho->no", hidden, self.head_weight[task_index])
                + self.head_bias[task_index])


def linear_head(hidden, weight, bias):
    """``hidden @ weight + bias``: a head of shape (n_hidden, n_outputs).

    Examples
    --------
    >>> import torch
    >>> linear_head(torch.ones(2, 3), torch.ones(3, 1), torch.zeros(1))
    tensor([[3.],
            [3.]])
    """
    return hidden @ weight + bias


class _Head(nn.Module):
    """A linear head called functionally with ``{"weight", "bias"}``; holds no weights of its own."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(0))
        self.bias = nn.Parameter(torch.empty(0))

    def forward(self, hidden):
        return linear_head(hidden, self.weight, self.bias)


class _SharedTrunkLearner(PooledTrainingMixin, MetaLearner):
    """What SharedTrunkClassifier and SharedTrunkRegressor share."""

    # Head i belongs to training task i: continued training may not add
    # past tasks (lifelong replay) to the ones given.
    _replays = False

    _parameter_constraints = {
        **MetaLearner._parameter_constraints,
        **PooledTrainingMixin._pooled_constraints,
        "alpha": [Interval(Real, 0, None, closed="left")],
        "inner_lr": [Interval(Real, 0, None, closed="neither")],
        "adapt_steps": [Interval(Integral, 0, None, closed="left")],
    }

    def __init__(self, module=MLP, *, alpha=1.0, inner_lr=0.1, adapt_steps=10, rows_per_batch=64,
                 **kwargs):
        self.alpha = alpha
        self.inner_lr = inner_lr
        self.adapt_steps = adapt_steps
        self.rows_per_batch = rows_per_batch
        super().__init__(module, **kwargs)

    def _head_outputs(self):
        return self.classes_pooled_.shape[0] if self._classification else 1

    def _check_split(self, train, *, reset):
        if reset:
            self.n_tasks_ = len(train)
        elif len(train) != self.n_tasks_:
            raise ValueError(
                f"{type(self).__name__} has one head per training task and was fitted with "
                f"{self.n_tasks_}; continued training (warm_start, partial_fit) got {len(train)} "
                "training tasks. Pass as many tasks, in the same order (the i-th trains head i), "
                "or refit from scratch with warm_start=False."
            )

    def initialize_module(self):
        """Build the trunk as the base builds a backbone, then its heads around it."""
        super().initialize_module()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(getattr(self, "_torch_seed", torch.initial_seed()) + 1)
            self.module_ = SharedTrunk(self.module_, n_features=self.n_features_in_,
                                       n_tasks=self.n_tasks_, n_outputs=self._head_outputs())
        return self

    def _pooled_output(self, X, task_index, training):
        return self.module_(X, task_index)

    def _adapt(self, X_support, y_support, n_classes, weight=None):
        with torch.no_grad():
            hidden = self.module_.trunk(X_support)
            mean_weight, mean_bias = (p.detach() for p in self.module_.mean_head())
        if self._classification:
            columns = self._support_columns(n_classes)
            mean_weight = select_rows(mean_weight.T, columns).T
            mean_bias = select_rows(mean_bias, columns)
        # Contiguous, as they will be once saved and loaded: the same sums, the same bits.
        start = {"weight": mean_weight.contiguous(), "bias": mean_bias.contiguous()}
        penalty = None
        if self.alpha:
            def penalty(params):
                return self.alpha / 2 * sum(((params[k] - start[k]) ** 2).sum() for k in start)
        return guarded_inner_loop(
            _Head(), start, hidden, y_support, loss_fn=self._output_loss, inner_lr=self.inner_lr,
            steps=self.adapt_steps, weight=weight, penalty=penalty,
        )

    def _predict_state(self, state, X):
        output = linear_head(self.module_.trunk(X), state["weight"], state["bias"])
        return output if self._classification else output.squeeze(-1)

    def _warn_backtracked(self, n_backtracked, n_tasks):
        warnings.warn(
            f"Adapting to {n_backtracked} of {n_tasks} support set(s), a gradient step of "
            f"inner_lr={self.inner_lr} raised the support loss plus the pull toward the mean "
            f"head (alpha={self.alpha}), so the step size was halved until steps helped (the "
            "adapted estimator's adapt_history_ has the step sizes and losses). Lower inner_lr "
            "(below about 2 / alpha), or standardise the features"
            f"{'' if self._classification else ' and targets'}.",
            AdaptationWarning,
            stacklevel=external_stacklevel(),
        )


_PARAMETERS = """
    Parameters
    ----------
    module : torch.nn.Module class or instance, default=MLP
        The shared trunk. A class is built in ``fit`` with its ``module__*``
        parameters, with ``n_features`` and with ``n_outputs=None`` if it
        accepts them (the default :class:`~skmeta.MLP` then ends on its last
        hidden layer); the heads take its output.
    alpha : float, default=1.0
        Strength of the pull of a new task's head toward the mean of the
        task heads while adapting, ``alpha / 2 * ||W - W_mean||²`` (weights
        and bias). 0 fits the head to the support set freely; a large value
        keeps the mean head. Chosen by leaving tasks out, as
        :class:`~skmeta.FineTuneClassifier`'s: for alpha = 0.01, 0.1, 1, 10,
        a shared logistic rule with per-task shifts .789, .786, .776, .710,
        contraception .629, .629, .630, .627, sinusoids (R²) .714, .713,
        .700, .570, hsb82 (R²) -.316, -.301, -.197, -.065: 1 has the best
        mean.
    inner_lr : float, default=0.1
        Step size of the adaptation steps (the name MAML gives it). A step
        that raises the support loss plus penalty is rejected and the step
        halved (an ``AdaptationWarning`` says so); keep it below about
        ``2 / alpha``.
    adapt_steps : int, default=10
        Gradient steps of a new task's head on its support set. 0 gives the
        mean head's predictions.
    rows_per_batch : int, default=64
        Pooled rows per training step (skorch's ``batch_size``, which is
        refused: set this instead).
    criterion : torch.nn.Module class or None, default=None
        The loss of training and adaptation; None is {criterion}.
    optimizer : torch.optim.Optimizer class, default=torch.optim.Adam
        The optimizer of the joint training; tune it with ``optimizer__*``.
    lr : float, default=1e-3
        Learning rate of the joint training.
    max_epochs : int, default=20
        Passes over the pooled training rows.
{ways}    n_shots : int, default=5
        Support rows {per} that ``score`` adapts on.
    n_queries : int, default=15
        Only with ``strict_episodes``: the rows {per} a task needs beyond
        ``n_shots`` to be used.
    class_balance : {{"balanced", "natural"}}, default="balanced"
        Classification only: how ``score`` draws a task's support set,
        ``n_shots`` rows per class ("balanced"), or ``n_shots * n_ways`` rows
        in the task's own class proportions, one per class at least
        ("natural"). Pre-training reads every row, and is the same either way.
    train_split : callable or None, default=TaskSplit(0.2)
        Splits the tasks into training tasks (one head each) and held-out
        tasks whose pooled rows, through the mean head, give
        ``valid_loss`` and ``valid_score``; None holds out nothing. It must
        split the same tasks the same way on every call for continued
        training.
    callbacks : list of skorch callbacks or None, default=None
        E.g. ``EarlyStopping()`` (on ``valid_loss``), ``ProgressBar()``.
    task_column : str or None, default=None
        In long format, the column of ``X`` that names each row's task.
    strict_episodes : bool, default=False
        Whether every task must hold ``n_shots + n_queries`` rows {per};
        by default only tasks that cannot give a support and a query row
        {per} are left out, with a warning.
{lifelong}    device : {{"auto", "cpu", "cuda"}} or torch.device, default="auto"
        "auto" uses CUDA when present.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights and the order of the rows.
    verbose : int, default=0
        1 prints one line per epoch.
    warm_start : bool, default=False
        Whether ``fit`` continues from the current weights. Continued
        training (and ``partial_fit``) must see as many training tasks as
        the first fit, in the same order: the i-th task trains head i. A
        different number is refused with a ValueError.
{extra}    **kwargs : dict
        Routed parameters: ``module__*``, ``optimizer__*``, ``callbacks__*``.
"""

_REFERENCES = """
    References
    ----------
    .. [1] Caruana, "Multitask Learning", Machine Learning 28, 41-75, 1997.
    .. [2] Li, Grandvalet and Davoine, "Explicit inductive bias for transfer
       learning with convolutional networks", ICML 2018 (the L2 pull toward
       a starting point).
"""

_ATTRIBUTES = """
    Attributes
    ----------
    module_ : SharedTrunk
        The trunk (``module_.trunk``) and the task heads
        (``module_.head_weight`` of shape (n_tasks_, n_hidden, n_outputs),
        ``module_.head_bias`` of shape (n_tasks_, n_outputs)).
    n_tasks_ : int
        Number of training tasks, and of heads.
{classes}    history_ : skorch.History
        Per epoch: ``train_loss``, ``valid_loss``, ``valid_score``
        ({score} on the pooled rows of the held-out tasks, through the
        mean head), ``dur``.
    n_features_in_ : int
        Number of features.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names, when the tasks had string column names.
"""


class SharedTrunkClassifier(MetaClassifierMixin, _SharedTrunkLearner):
    __doc__ = """Multi-task classification: a shared trunk with one head per training task.

    ``fit`` trains the trunk and one linear head per training task jointly
    on the pooled rows of the tasks [1]_, each row's loss through its own
    task's head, over the union of the tasks' labels (``classes_pooled_``,
    sorted as sklearn's ``LabelEncoder`` sorts). That suits tables whose
    groups share a label space (income yes/no in every occupation); where
    labels mean something else in each task, the episodic learners are the
    right choice. Tasks may have different numbers of classes.

    ``adapt`` gives a new task its own head: it starts at the mean of the
    task heads (a class unseen in training from a column of zeros) and
    takes ``adapt_steps`` guarded gradient steps of the support loss plus
    the pull toward the mean head; the trunk stays as trained.
    """ + _PARAMETERS.format(
        lifelong=EWC_PARAMETERS,
        criterion="``torch.nn.CrossEntropyLoss``",
        ways="""    n_ways : int or None, default=None
        Classes of the support sets ``score`` draws; None takes all of a
        task's classes. Training uses every class.
""",
        per="per class", extra="",
    ) + _ATTRIBUTES.format(
        classes="""    classes_pooled_ : ndarray of shape (n_pooled_classes,)
        The union of the labels of the tasks given to ``fit``: the heads' outputs.
""", score="accuracy",
    ) + """
    See Also
    --------
    SharedTrunkRegressor : The same for regression.
    FineTuneClassifier : One pooled model, fine-tuned to a new task.
    ProtoNetClassifier : Episodic; labels may mean something else per task.
    """ + _REFERENCES + """
    Examples
    --------
    >>> import numpy as np
    >>> from skmeta import SharedTrunkClassifier, TaskCollection
    >>> rng = np.random.default_rng(0)
    >>> def task(shift):
    ...     X = rng.normal(size=(40, 3))
    ...     return X, (X[:, 0] + shift > 0).astype(int)
    >>> tasks = TaskCollection([task(s) for s in rng.normal(size=12)])
    >>> meta = SharedTrunkClassifier(max_epochs=5, random_state=0).fit(tasks[:10])
    >>> meta.n_tasks_, tuple(meta.module_.head_weight.shape)
    (8, (8, 64, 2))
    >>> X, y = tasks[10].X, tasks[10].y
    >>> meta.adapt(X[:10], y[:10]).predict(X[10:13]).shape
    (3,)
    """


class SharedTrunkRegressor(_SharedTrunkLearner):
    _classification = False

    _parameter_constraints = {**_SharedTrunkLearner._parameter_constraints,
                              "standardize_targets": ["boolean"]}

    def __init__(self, module=MLP, *, standardize_targets=True, **kwargs):
        self.standardize_targets = standardize_targets
        super().__init__(module, **kwargs)

    __doc__ = """Multi-task regression: a shared trunk with one head per training task.

    ``fit`` trains the trunk and one linear head per training task jointly
    on the pooled rows of the tasks [1]_, each row's loss through its own
    task's head. ``adapt`` gives a new task its own head, started at the
    mean of the task heads and fitted to the support set by ``adapt_steps``
    guarded gradient steps with a pull toward that mean; the trunk stays
    as trained.
    """ + _PARAMETERS.format(
        lifelong=EWC_PARAMETERS,
        criterion="``torch.nn.MSELoss``", ways="", per="of the task",
        extra="""    standardize_targets : bool, default=True
        Standardise targets task by task: in training each task's by its own
        mean and standard deviation, when adapting the support set's
        (floored at a tenth of the training tasks' within-task scale);
        predictions come back in the targets' own units. False trains and
        adapts on the raw targets.
""",
    ) + _ATTRIBUTES.format(classes="", score="R² of each batch") + """
    See Also
    --------
    SharedTrunkClassifier : The same for classification.
    FineTuneRegressor : One pooled model, fine-tuned to a new task.
    """ + _REFERENCES + """
    Examples
    --------
    >>> from skmeta import SharedTrunkRegressor
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> tasks = make_sinusoid_tasks(30, n_rows=20, random_state=0)
    >>> meta = SharedTrunkRegressor(inner_lr=0.01, max_epochs=5, random_state=0).fit(tasks[:25])
    >>> X, y = tasks[25].X, tasks[25].y
    >>> meta.adapt(X[:10], y[:10]).predict(X[10:12]).shape
    (2,)
    """
