"""Fine-tuning: pre-train on the pooled rows of many tasks, then adapt by L2-SP steps.

Functional core: :func:`l2_sp_penalty`, the pull ``alpha / 2 * ||θ - θ_0||²``
toward the pre-trained weights of Li, Grandvalet and Davoine (2018), which
:func:`~skmeta._steps.guarded_inner_loop` adds to the support loss.
Estimators: :class:`FineTuneClassifier`, :class:`FineTuneRegressor`, both
pre-trained by :class:`~skmeta.tasks._pooled.PooledTrainingMixin`.
"""

import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch.func import functional_call

from .._base import MetaClassifierMixin, MetaLearner
from .._base._docs import LIFELONG_PARAMETERS
from .._base._prior import PRIOR_CONSTRAINTS
from .._mlp import MLP
from .._steps import guarded_inner_loop
from ..exceptions import AdaptationWarning
from ..tasks._pooled import PooledTrainingMixin, select_rows
from ..utils._stacklevel import external_stacklevel


def l2_sp_penalty(start, alpha):
    """The L2-SP penalty ``alpha / 2 * sum ||p - start||²`` as a function of ``p``.

    Parameters
    ----------
    start : dict of str to Tensor
        The starting point (pre-trained weights); a key of ``p`` missing
        from it is not penalised.
    alpha : float
        Strength; 0 gives None (no penalty).

    Returns
    -------
    callable or None
        ``penalty(params)`` to a scalar tensor.

    Examples
    --------
    >>> import torch
    >>> penalty = l2_sp_penalty({"w": torch.zeros(2)}, alpha=2.0)
    >>> penalty({"w": torch.tensor([1.0, 2.0])})
    tensor(5.)
    """
    if alpha == 0:
        return None

    def penalty(params):
        return alpha / 2 * sum(((p - start[name]) ** 2).sum() for name, p in params.items()
                               if name in start)

    return penalty


class _FineTune(PooledTrainingMixin, MetaLearner):
    """What FineTuneClassifier and FineTuneRegressor share."""

    _parameter_constraints = {
        **MetaLearner._parameter_constraints,
        **PooledTrainingMixin._pooled_constraints,
        "alpha": [Interval(Real, 0, None, closed="left")],
        "finetune": [StrOptions({"head", "all"})],
        "inner_lr": [Interval(Real, 0, None, closed="neither")],
        "adapt_steps": [Interval(Integral, 0, None, closed="left")],
        **PRIOR_CONSTRAINTS,
    }

    # prior=: see skmeta/_base/_prior.py. Regression needs nothing here: the
    # base makes the targets residuals before pooling, and adds prior_ back.
    # A classifier's offset columns (after the n_features_in_ real ones) are
    # as wide as the output they are added to, which differs between
    # pre-training (every pooled class) and adapting (the support's classes);
    # the base's _WithOffsets adds whatever columns follow the features.
    # Every training task must hold every pooled class, so that a task's
    # offset columns (its own sorted classes) are the head's.
    _accepts_prior = True

    def __init__(self, module=MLP, *, alpha=1.0, finetune="all", inner_lr=0.1, adapt_steps=10,
                 rows_per_batch=64, prior=None, prior_cv=5, **kwargs):
        self.alpha = alpha
        self.finetune = finetune
        self.inner_lr = inner_lr
        self.adapt_steps = adapt_steps
        self.rows_per_batch = rows_per_batch
        self.prior = prior
        self.prior_cv = prior_cv
        super().__init__(module, **kwargs)

    def _check_prior_use(self, tasks):
        super()._check_prior_use(tasks)
        if not self._classification:
            return
        pooled = np.unique(np.concatenate([np.asarray(task.y) for task in tasks]))
        if self.warm_start and getattr(self, "initialized_", False) and hasattr(self, "classes_pooled_"):
            pooled = self.classes_pooled_
        for task in tasks:
            classes = np.unique(task.y)
            if classes.shape[0] != pooled.shape[0] or (classes != pooled).any():
                raise ValueError(
                    f"prior={self.prior!r} with pooled pre-training needs every task to hold "
                    f"every pooled class ({pooled.tolist()[:10]}): the prior's log-probabilities "
                    f"of a task's classes are added to the head's outputs, one per pooled class; "
                    f"task {task.name!r} has {classes.tolist()[:10]}. Pass tasks that share one "
                    "label set (or drop the rare labels), or set prior=None."
                )

    def _prior_query(self, X):
        # Query rows go without offset columns: _add_prior adds the offsets.
        return X

    def _n_outputs(self):
        return self.classes_pooled_.shape[0] if self._classification else 1

    def _pooled_output(self, X, task_index, training):
        return self.module_(X)

    def _head_names(self):
        """Names of the weights of the backbone's last ``torch.nn.Linear`` layer: the head."""
        linear = [name for name, sub in self.module_.named_modules() if isinstance(sub, torch.nn.Linear)]
        if not linear:
            raise ValueError(
                f"{type(self).__name__} fine-tunes the last torch.nn.Linear layer of the module "
                f"as the head, but {type(self.module_).__name__} has none; end the module on one."
            )
        prefix = f"{linear[-1]}." if linear[-1] else ""
        return [prefix + name for name, _ in self.module_.get_submodule(linear[-1]).named_parameters()]

    def _start(self, n_classes):
        """The pre-trained weights, the head's rows following the support's classes.

        A support class among the pooled classes starts from its pre-trained
        row; a class not seen in pre-training from a row of zeros (logit 0).
        """
        params = {name: p.detach() for name, p in self.module_.named_parameters()}
        if self._classification:
            columns = self._support_columns(n_classes)
            for name in self._head_names():
                params[name] = select_rows(params[name], columns)
        return params

    def _adapt(self, X_support, y_support, n_classes, weight=None):
        params = self._start(n_classes)
        tuned = params if self.finetune == "all" else {name: params[name] for name in self._head_names()}
        adapted, report = guarded_inner_loop(
            self.module_, tuned, X_support, y_support, loss_fn=self._output_loss,
            inner_lr=self.inner_lr, steps=self.adapt_steps, weight=weight,
            penalty=l2_sp_penalty(tuned, self.alpha),
        )
        return {**params, **adapted}, report

    def _predict_state(self, state, X):
        output = functional_call(self.module_, state, (X,))
        return output if self._classification else output.squeeze(-1)

    def _warn_backtracked(self, n_backtracked, n_tasks):
        warnings.warn(
            f"Adapting to {n_backtracked} of {n_tasks} support set(s), a gradient step of "
            f"inner_lr={self.inner_lr} raised the support loss plus the L2-SP penalty "
            f"(alpha={self.alpha}), so the step size was halved until steps helped (the adapted "
            "estimator's adapt_history_ has the step sizes and losses). Lower inner_lr (below "
            "about 2 / alpha), or standardise the features"
            f"{'' if self._classification else ' and targets'}.",
            AdaptationWarning,
            stacklevel=external_stacklevel(),
        )


_PARAMETERS = """
    Parameters
    ----------
    module : torch.nn.Module class or instance, default=MLP
        The backbone, ending on a ``torch.nn.Linear`` layer: the head. A
        class is built in ``fit`` with its ``module__*`` parameters, and with
        ``n_features`` and ``n_outputs`` ({outputs}) if it accepts them.
    alpha : float, default=1.0
        Strength of the L2-SP pull toward the pre-trained weights while
        adapting, ``alpha / 2 * ||θ - θ_pretrained||²`` [1]_. 0 is plain
        fine-tuning; a large value keeps the pre-trained (pooled) model.
        The default was chosen by leaving tasks out (pre-trained on some
        tasks, 30 epochs; episodic score of the others, 3 support draws;
        ``finetune="all"``, 10 steps) for alpha = 0.01, 0.1, 1, 10: tasks
        of a shared logistic rule with a per-task shift (5 shots, accuracy)
        .761, .761, .731, .650; the contraception districts of
        ``/work/shared/data/groups`` (5 shots, accuracy) .615, .611, .626,
        .594; :func:`~skmeta.datasets.make_sinusoid_tasks` (10 shots, R²)
        .537, .537, .529, .448; the hsb82 schools (10 shots, R²) -.183,
        -.174, -.117, -.062. 1 has the best mean and is never more than
        0.03 below the best alpha of a family.
    finetune : {{"head", "all"}}, default="all"
        Adapt the last linear layer only, or every weight of the backbone.
    inner_lr : float, default=0.1
        Step size of the adaptation steps (the name MAML gives it). A step
        that raises the support loss plus penalty is rejected and the step
        halved (an ``AdaptationWarning`` says so); keep it below about
        ``2 / alpha``.
    adapt_steps : int, default=10
        Gradient steps on the support set when adapting (``adapt``,
        ``predict``, ``score``). 0 gives the pre-trained model's own
        predictions.
    rows_per_batch : int, default=64
        Pooled rows per pre-training step (skorch's ``batch_size``, which
        is refused: set this instead).
    criterion : torch.nn.Module class or None, default=None
        The loss of pre-training and adaptation; None is {criterion}.
    optimizer : torch.optim.Optimizer class, default=torch.optim.Adam
        The pre-training optimizer; tune it with ``optimizer__*`` parameters.
    lr : float, default=1e-3
        Pre-training learning rate.
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
        Splits the tasks into pre-training tasks and held-out tasks whose
        pooled rows give ``valid_loss`` and ``valid_score``; None holds
        out nothing.
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
        Seeds the backbone's initial weights and the order of the rows.
    verbose : int, default=0
        1 prints one line per epoch.
    warm_start : bool, default=False
        Whether ``fit`` continues from the current weights.
    prior : sklearn estimator or None, default=None
        A model pooled over all training rows, which the pre-trained and
        fine-tuned network corrects: {prior_note}
        It is cross-fitted by task in ``fit``: each training row's offset
        comes from a clone fitted on the other ``prior_cv`` folds of tasks,
        never on its own task; a clone fitted on all rows is ``prior_``,
        used when adapting and predicting. The backbone's last
        ``torch.nn.Linear`` starts at zero, so before pre-training and
        adaptation the learner predicts what the prior predicts. None: no
        prior.
    prior_cv : int, default=5
        Folds of whole tasks (``GroupKFold`` on the task) for cross-fitting
        ``prior``; at most the number of tasks, and 2 at least.
{extra}    **kwargs : dict
        Routed parameters: ``module__*``, ``optimizer__*``, ``callbacks__*``.
"""

_REFERENCES = """
    References
    ----------
    .. [1] Li, Grandvalet and Davoine, "Explicit inductive bias for transfer
       learning with convolutional networks", ICML 2018 (L2-SP).
    .. [2] Kornblith, Shlens and Le, "Do Better ImageNet Models Transfer
       Better?", CVPR 2019 (fine-tuning a pre-trained network as a baseline
       for transfer).
"""


class FineTuneClassifier(MetaClassifierMixin, _FineTune):
    __doc__ = """Pre-train a classifier on the pooled rows of many tasks, then fine-tune it.

    ``fit`` trains the backbone as one supervised classifier on the rows of
    all training tasks together, over the union of their labels
    (``classes_pooled_``, sorted as sklearn's ``LabelEncoder`` sorts). That
    suits tables whose groups share a label space (income yes/no in every
    occupation); where labels mean something else in each task, the
    episodic learners (:class:`~skmeta.ProtoNetClassifier`,
    :class:`~skmeta.MAMLClassifier`) are the right choice. Tasks may have
    different numbers of classes.

    ``adapt`` starts from the pre-trained weights and takes ``adapt_steps``
    guarded gradient steps of the support loss plus the L2-SP penalty, on
    the head or on every layer. The head's rows follow the support's
    classes: a class seen in pre-training starts from its pre-trained row,
    a new class from a row of zeros. With ``adapt_steps=0``, or a very
    large ``alpha``, the adapted classifier is the pre-trained one
    restricted to the support's classes.
    """ + _PARAMETERS.format(
        lifelong=LIFELONG_PARAMETERS,
        outputs="the number of pooled classes", criterion="``torch.nn.CrossEntropyLoss``",
        ways="""    n_ways : int or None, default=None
        Classes of the support sets ``score`` draws; None takes all of a
        task's classes. Pre-training uses every class.
""",
        per="per class", extra="",
        prior_note=(
            "its log-probabilities (``predict_proba``, clipped at\n"
            "        1e-7) of the classes are added to the network's logits. It needs\n"
            "        ``n_ways=None``, training tasks that all hold every pooled class,\n"
            "        and a support set whose labels the prior saw in ``fit``."
        ),
    ) + """
    Attributes
    ----------
    module_ : torch.nn.Module
        The pre-trained backbone (with ``prior``, wrapped: it reads the
        features and adds the offset columns that follow them).
    classes_pooled_ : ndarray of shape (n_pooled_classes,)
        The union of the labels of the tasks given to ``fit``: the head's rows.
    prior_ : sklearn estimator
        ``prior`` fitted on all training rows; only when ``prior`` is set.
    history_ : skorch.History
        Per epoch: ``train_loss``, ``valid_loss``, ``valid_score``
        (accuracy on the pooled rows of the held-out tasks), ``dur``.
    n_features_in_ : int
        Number of features.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names, when the tasks had string column names.

    See Also
    --------
    FineTuneRegressor : The same for regression.
    SharedTrunkClassifier : One head per training task on a shared trunk.
    MAMLClassifier : Meta-learns the starting point of the steps instead.
    """ + _REFERENCES + """
    Examples
    --------
    >>> import numpy as np
    >>> from skmeta import FineTuneClassifier, TaskCollection
    >>> rng = np.random.default_rng(0)
    >>> def task(shift):
    ...     X = rng.normal(size=(40, 3))
    ...     return X, (X[:, 0] + shift > 0).astype(int)
    >>> tasks = TaskCollection([task(s) for s in rng.normal(size=12)])
    >>> meta = FineTuneClassifier(max_epochs=5, random_state=0).fit(tasks[:10])
    >>> meta.classes_pooled_
    array([0, 1])
    >>> X, y = tasks[10].X, tasks[10].y
    >>> meta.adapt(X[:10], y[:10]).predict(X[10:13]).shape
    (3,)
    """


class FineTuneRegressor(_FineTune):
    _classification = False

    _parameter_constraints = {**_FineTune._parameter_constraints, "standardize_targets": ["boolean"]}

    def __init__(self, module=MLP, *, standardize_targets=True, **kwargs):
        self.standardize_targets = standardize_targets
        super().__init__(module, **kwargs)

    __doc__ = """Pre-train a regressor on the pooled rows of many tasks, then fine-tune it.

    ``fit`` trains the backbone as one supervised regressor on the rows of
    all training tasks together; ``adapt`` starts from the pre-trained
    weights and takes ``adapt_steps`` guarded gradient steps of the support
    loss plus the L2-SP penalty, on the head or on every layer. With
    ``adapt_steps=0``, or a very large ``alpha``, the adapted regressor is
    the pre-trained one.
    """ + _PARAMETERS.format(
        lifelong=LIFELONG_PARAMETERS,
        outputs="1", criterion="``torch.nn.MSELoss``", ways="", per="of the task",
        prior_note=(
            "the network models the residual ``y - prior(x)``\n"
            "        (standardised per task with ``standardize_targets``, so that\n"
            "        unadapted the prediction is the prior's plus the support set's\n"
            "        mean residual), and predictions are ``prior(x)`` plus the\n"
            "        adapted correction; ``valid_score`` is R² of the residuals."
        ),
        extra="""    standardize_targets : bool, default=True
        Standardise targets task by task: in pre-training each task's by its
        own mean and standard deviation, when adapting the support set's
        (floored at a tenth of the training tasks' within-task scale);
        predictions come back in the targets' own units. The pre-trained
        model then learns the shape that tasks share, and the support set
        gives the level and scale. False trains and adapts on the raw
        targets, where the level is shared across tasks.
""",
    ) + """
    Attributes
    ----------
    module_ : torch.nn.Module
        The pre-trained backbone.
    history_ : skorch.History
        Per epoch: ``train_loss``, ``valid_loss``, ``valid_score`` (R² of
        each batch of pooled rows of the held-out tasks, averaged), ``dur``.
    n_features_in_ : int
        Number of features.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names, when the tasks had string column names.
    prior_ : sklearn estimator
        ``prior`` fitted on all training rows; only when ``prior`` is set.

    See Also
    --------
    FineTuneClassifier : The same for classification.
    SharedTrunkRegressor : One head per training task on a shared trunk.
    MAMLRegressor : Meta-learns the starting point of the steps instead.
    """ + _REFERENCES + """
    Examples
    --------
    >>> from skmeta import FineTuneRegressor
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> tasks = make_sinusoid_tasks(30, n_rows=20, random_state=0)
    >>> meta = FineTuneRegressor(inner_lr=0.01, max_epochs=5, random_state=0).fit(tasks[:25])
    >>> X, y = tasks[25].X, tasks[25].y
    >>> meta.adapt(X[:10], y[:10]).predict(X[10:12]).shape
    (2,)
    """
