"""MAML: meta-learn an initialisation that a few gradient steps adapt to a task.

Functional core: :func:`inner_loop` adapts a parameter dict to one support
set with ``torch.func.grad``; :func:`maml_loss` runs it for every episode of
a meta-batch at once with ``torch.func.vmap`` and returns the query loss,
through which the meta-gradient flows (second order, or first order when
the inner gradients are detached). :func:`guarded_inner_loop` is the
adaptation of a new task: plain gradient steps on leaf tensors, a step
that raises the support loss rejected and the step size halved.
Estimators: :class:`MAMLClassifier`, :class:`MAMLRegressor`.
"""

import warnings
from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval
from torch.func import functional_call, grad, vmap

from .._base import MetaClassifierMixin, MetaLearner
from .._base._prior import PRIOR_CONSTRAINTS
from .._mlp import MLP
from .._steps import guarded_inner_loop
from ..exceptions import AdaptationWarning
from ..utils._stacklevel import external_stacklevel


def inner_loop(module, params, X, y, *, loss_fn, inner_lr, steps, first_order=False, weight=None):
    """Adapt ``params`` to one support set by ``steps`` gradient steps.

    Parameters
    ----------
    module : torch.nn.Module
        The backbone, called functionally with ``params``.
    params : dict of str to Tensor
        The starting point (the meta-learned parameters).
    X : Tensor of shape (n_support, n_features)
    y : Tensor of shape (n_support,)
    loss_fn : callable
        ``loss_fn(output, y)`` to a scalar.
    inner_lr : float
        Step size.
    steps : int
        Number of steps.
    first_order : bool, default=False
        Treat the inner gradients as constants (first-order MAML).
    weight : Tensor of shape (n_support,) or None, default=None
        Row weights, passed to ``loss_fn(output, y, weight)`` when given.

    Returns
    -------
    dict of str to Tensor
        The adapted parameters, differentiable w.r.t. ``params`` unless
        ``first_order``.

    Examples
    --------
    >>> import torch
    >>> from torch.nn.functional import mse_loss
    >>> model = torch.nn.Linear(1, 1, bias=False)
    >>> params = {"weight": torch.zeros(1, 1)}
    >>> X, y = torch.ones(4, 1), torch.full((4, 1), 2.0)
    >>> inner_loop(model, params, X, y, loss_fn=mse_loss, inner_lr=0.25, steps=1)
    {'weight': tensor([[1.]])}
    """

    def support_loss(p):
        output = functional_call(module, p, (X,))
        return loss_fn(output, y) if weight is None else loss_fn(output, y, weight)

    for _ in range(steps):
        if first_order:
            # The gradient is a constant: take it on detached copies, so the
            # outer graph records only the update, not the inner forward pass.
            grads = grad(support_loss)({name: p.detach() for name, p in params.items()})
        else:
            grads = grad(support_loss)(params)
        params = {name: p - inner_lr * grads[name] for name, p in params.items()}
    return params


def maml_loss(module, params, batch, *, loss_fn, inner_lr, steps, first_order=False):
    """Mean query loss over a meta-batch after adapting to each support set.

    Parameters
    ----------
    module : torch.nn.Module
    params : dict of str to Tensor
    batch : EpisodeBatch
        Support and query tensors with a leading meta-batch axis.
    loss_fn, inner_lr, steps, first_order
        As in :func:`inner_loop`.

    Returns
    -------
    loss : Tensor
        Scalar: the mean over episodes of the query loss.
    outputs : Tensor of shape (n_episodes, n_queries, n_outputs)
        Query outputs of the adapted models.
    """

    def episode(X_support, y_support, X_query, y_query, support_weight=None, query_weight=None):
        adapted = inner_loop(
            module, params, X_support, y_support, loss_fn=loss_fn, inner_lr=inner_lr,
            steps=steps, first_order=first_order, weight=support_weight,
        )
        outputs = functional_call(module, adapted, (X_query,))
        if query_weight is None:
            return loss_fn(outputs, y_query), outputs
        return loss_fn(outputs, y_query, query_weight), outputs

    tensors = [batch.X_support, batch.y_support, batch.X_query, batch.y_query]
    if batch.padded:  # episodes of several sizes: padding rows weigh 0
        ones = [torch.ones(t.shape[:2], dtype=t.dtype, device=t.device) for t in tensors[::2]]
        tensors += [w if w is not None else one
                    for w, one in zip((batch.support_weight, batch.query_weight), ones, strict=True)]
    losses, outputs = vmap(episode, randomness="different")(*tensors)
    if batch.padded:  # episodes weigh by their real query rows, as unpadded ones do
        n_query = tensors[5].sum(-1)
        return (losses * n_query).sum() / n_query.sum(), outputs
    return losses.mean(), outputs


class _MAML(MetaLearner):
    """What MAMLClassifier and MAMLRegressor share."""

    _parameter_constraints = {
        **MetaLearner._parameter_constraints,
        "inner_lr": [Interval(Real, 0, None, closed="neither")],
        "inner_steps": [Interval(Integral, 1, None, closed="left")],
        "adapt_steps": [Interval(Integral, 0, None, closed="left"), None],
        "first_order": ["boolean"],
        **PRIOR_CONSTRAINTS,
    }

    # prior=: see skmeta/_base/_prior.py. With it, module_ wraps the backbone
    # (_WithOffsets), so _params() names gain a "module." prefix; the
    # functional calls below take whatever names module_ has.
    _accepts_prior = True

    def __init__(self, module=MLP, *, inner_lr=0.1, inner_steps=1, adapt_steps=10, first_order=False,
                 prior=None, prior_cv=5, **kwargs):
        # The base's parameters (lr, n_shots, ...) pass through **kwargs.
        self.inner_lr = inner_lr
        self.inner_steps = inner_steps
        self.adapt_steps = adapt_steps
        self.first_order = first_order
        self.prior = prior
        self.prior_cv = prior_cv
        super().__init__(module, **kwargs)

    def _loss(self, outputs, y, weight=None):
        return self._weighted_loss(outputs, y, weight)

    def _steps(self, training):
        if training or self.adapt_steps is None:
            return self.inner_steps
        return self.adapt_steps

    def _params(self):
        return dict(self.module_.named_parameters())

    def _episode_loss(self, batch, training):
        loss, outputs = maml_loss(
            self.module_, self._params(), batch, loss_fn=self._loss,
            inner_lr=self.inner_lr, steps=self._steps(training),
            first_order=self.first_order or not training,
        )
        return loss, self._outputs(outputs)

    def _adapt(self, X_support, y_support, n_classes, weight=None):
        return guarded_inner_loop(
            self.module_, self._params(), X_support, y_support, loss_fn=self._loss,
            inner_lr=self.inner_lr, steps=self._steps(training=False), weight=weight,
        )

    def _warn_backtracked(self, n_backtracked, n_tasks):
        warnings.warn(
            f"Adapting to {n_backtracked} of {n_tasks} support set(s), a gradient step of "
            f"inner_lr={self.inner_lr} raised the support loss, so the step size was halved "
            "until steps helped (the adapted estimator's adapt_history_ has the step sizes "
            "and support losses). Lower inner_lr, or standardise the features"
            f"{'' if self._classification else ' and targets'}.",
            AdaptationWarning,
            stacklevel=external_stacklevel(),
        )

    def _predict_state(self, state, X):
        return self._outputs(functional_call(self.module_, state, (X,)))

    def _outputs(self, outputs):
        return outputs


_MAML_PARAMETERS = """
    Parameters
    ----------
    module : torch.nn.Module class or instance, default=MLP
        The backbone. A class is built in ``fit`` with its ``module__*``
        parameters, and with ``n_features`` and ``n_outputs`` if it accepts
        them.
    inner_lr : float, default={inner_lr}
        Step size of the inner (adaptation) gradient steps, in meta-training
        and when adapting. Too large a step makes adaptation oscillate or
        diverge (``adapt`` raises a ValueError when the weights overflow),
        too small a one leaves the support set unused;
{lr_note}    inner_steps : int, default=1
        Inner steps per episode in meta-training. The meta-gradient goes
        back through every one, so meta-training time and memory grow with
        it.
    adapt_steps : int or None, default=10
        Steps when adapting to a new task (``adapt``, ``predict``, ``score``)
        and in meta-validation; None uses ``inner_steps``. Taking more steps
        at test time than in training is cheap (no meta-gradient) and, as in
        [1]_, usually better: on :func:`~skmeta.datasets.make_blob_tasks`,
        10 steps score about 0.04 to 0.07 higher than 1. Set it to 0 for the
        meta-learned initialisation's own predictions.
    first_order : bool, default=False
        First-order MAML: treat the inner gradients as constants, so the
        meta-gradient has no second derivatives. Cheaper in time and memory;
        it learns too, usually somewhat less per meta-training step.
    prior : sklearn estimator or None, default=None
        A model pooled over all training rows, which the meta-learned
        network corrects: {prior_note}
        It is cross-fitted by task in ``fit``: each training row's offset
        comes from a clone fitted on the other ``prior_cv`` folds of tasks,
        never on its own task; a clone fitted on all rows is ``prior_``,
        used when adapting and predicting. The backbone's last
        ``torch.nn.Linear`` starts at zero, so before meta-training and
        adaptation the learner predicts what the prior predicts. Where tasks
        differ mostly in base rate or level, this keeps the pooled model's
        strength and adapts from it. None: no prior.
    prior_cv : int, default=5
        Folds of whole tasks (``GroupKFold`` on the task) for cross-fitting
        ``prior``; at most the number of tasks, and 2 at least.
    criterion : torch.nn.Module class or None, default=None
        The loss of inner and outer steps; None is {criterion}.
    optimizer : torch.optim.Optimizer class, default=torch.optim.Adam
        The meta-optimizer; tune it with ``optimizer__*`` parameters.
    lr : float, default={lr}
        Meta learning rate.
    max_epochs : int, default={max_epochs}
        Passes of meta-training.
    n_episodes : int, default=200
        Episodes per epoch.
    meta_batch_size : int, default=8
        Episodes per meta-gradient step, run together with ``vmap``.
{ways}    n_shots : int or tuple of int, default=5
        Support rows {per} in an episode. A tuple or list such as ``(1, 5,
        10)`` draws one shot count per training episode, uniformly (seeded);
        a meta-batch of mixed shot counts is padded to the largest and the
        padding masked out. ``score`` and the episodic scorers adapt on the
        largest. On grouped classification tables (adult, bank,
        contraception; "Episode settings on group tables" in
        docs/benchmarks.md), ``(1, 5, 10, 20)`` scored about as well as 5 with
        natural episodes: mean log-loss 0.477 against 0.482, ROC-AUC 0.738
        against 0.739 on held-out groups.
    n_queries : int, default=15
        Query rows {per} in a training episode.
    class_balance : {{"balanced", "natural"}}, default="balanced"
        Classification only (regression episodes are never stratified).
        "balanced" draws ``n_shots`` support and ``n_queries`` query rows
        per class; "natural" draws ``n_shots * n_ways`` and ``n_queries *
        n_ways`` rows in all, in each task's own class proportions, so that
        the base rate learnt is the tasks' own. Every class still gets one
        support row at least. ``score`` draws its support sets alike. On
        grouped classification tables (docs/benchmarks.md, "Episode
        settings on group tables"), "natural" lowered MAMLClassifier's mean
        log-loss on held-out groups from 0.513 to 0.482 (0.512 to 0.471
        with a LogisticRegression prior) at the same ROC-AUC (0.739 against
        0.737): consider it for group tables. (ProtoNetClassifier's
        log-loss fell too, 0.599 to 0.582, but its ROC-AUC from 0.717 to
        0.701.)
    train_split : callable or None, default=TaskSplit(0.2)
        Splits the tasks into meta-training and meta-validation tasks;
        None meta-validates on nothing.
    callbacks : list of skorch callbacks or None, default=None
        E.g. ``EarlyStopping(monitor="valid_score", lower_is_better=False)``,
        ``ProgressBar()``, ``Checkpoint()``, ``LRScheduler()``.
    task_column : str or None, default=None
        In long format, the column of ``X`` that names each row's task.
    strict_episodes : bool, default=False
        Whether every task must fill whole episodes (``n_shots + n_queries``
        rows {per}). By default a smaller class gives fewer shots and
        queries, episodes of a meta-batch are padded and the padding masked
        out, and tasks that cannot give an episode at all are left out with
        a warning.
    device : {{"auto", "cpu", "cuda"}} or torch.device, default="auto"
        "auto" uses CUDA when present.
    random_state : int, RandomState instance or None, default=None
        Seeds the backbone's initial weights and the episodes.
    verbose : int, default=0
        1 prints one line per epoch.
    warm_start : bool, default=False
        Whether ``fit`` continues from the current weights.
{extra}    **kwargs : dict
        Routed parameters: ``module__*``, ``optimizer__*``, ``callbacks__*``.
"""


class MAMLClassifier(MetaClassifierMixin, _MAML):
    __doc__ = """Model-agnostic meta-learning (MAML) for few-shot classification.

    Meta-training learns initial weights of the whole backbone such that a
    few gradient steps on a new task's support set give a good classifier
    for that task. The inner loop is functional (``torch.func``) and the
    episodes of a meta-batch run batched with ``vmap``.
    """ + _MAML_PARAMETERS.format(
        criterion="``torch.nn.CrossEntropyLoss``", inner_lr="0.1", lr="1e-3", max_epochs="20",
        lr_note="        0.1 suits standardised features.\n",
        ways="""    n_ways : int or None, default=None
        Classes per episode, and the width of the output layer; None takes
        all classes of each task (then every task must have as many).
""",
        per="per class", extra="",
        prior_note=(
            "its log-probabilities (``predict_proba``, clipped at\n"
            "        1e-7) of a task's classes are added to the network's logits. It\n"
            "        needs ``n_ways=None``, and a support set whose labels the prior\n"
            "        saw in ``fit``."
        ),
    ) + """
    Attributes
    ----------
    module_ : torch.nn.Module
        The meta-learned backbone.
    history_ : skorch.History
        Per epoch: ``train_loss``, ``valid_loss``, ``valid_score`` (query
        accuracy of meta-validation episodes), ``dur``.
    n_features_in_ : int
        Number of features.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names, when the tasks had string column names.
    n_ways_ : int
        Classes per episode; a support set must have exactly as many.
    prior_ : sklearn estimator
        ``prior`` fitted on all training rows; only when ``prior`` is set.

    See Also
    --------
    MAMLRegressor : The same for regression.
    ProtoNetClassifier : Adapts by class means in a learned embedding.

    References
    ----------
    .. [1] Finn, Abbeel and Levine, "Model-Agnostic Meta-Learning for Fast
       Adaptation of Deep Networks", ICML 2017.

    Examples
    --------
    >>> from skmeta import MAMLClassifier
    >>> from skmeta.datasets import make_blob_tasks
    >>> tasks = make_blob_tasks(n_tasks=20, random_state=0)
    >>> meta = MAMLClassifier(lr=3e-3, max_epochs=2, random_state=0).fit(tasks[:15])
    >>> # the same initial weights, left as they were: adapting from them alone
    >>> start = MAMLClassifier(lr=1e-9, max_epochs=1, n_episodes=8, random_state=0).fit(tasks[:15])
    >>> meta.score(tasks[15:]) > start.score(tasks[15:]) + 0.05
    True
    """

    def _n_outputs(self):
        return self.n_ways_

    def _check_support_classes(self, classes):
        super()._check_support_classes(classes)
        n_classes = classes.shape[0]
        if n_classes != self.n_ways_:
            raise ValueError(
                f"{type(self).__name__} was meta-trained on {self.n_ways_}-way tasks "
                f"but this support set has {n_classes} classes; pass a support set "
                f"with exactly {self.n_ways_} classes, or refit with n_ways={n_classes}."
            )


class MAMLRegressor(_MAML):
    _classification = False

    _parameter_constraints = {**_MAML._parameter_constraints, "standardize_targets": ["boolean"]}

    def __init__(self, module=MLP, *, inner_lr=0.05, lr=0.01, max_epochs=60, standardize_targets=True,
                 **kwargs):
        self.standardize_targets = standardize_targets
        super().__init__(module, inner_lr=inner_lr, lr=lr, max_epochs=max_epochs, **kwargs)

    __doc__ = """Model-agnostic meta-learning (MAML) for few-shot regression.

    Meta-training learns initial weights such that a few gradient steps on a
    new task's support set fit that task; ``first_order=True`` gives
    first-order MAML. The inner loop is functional (``torch.func``) and the
    episodes of a meta-batch run batched with ``vmap``.
    """ + _MAML_PARAMETERS.format(
        criterion="``torch.nn.MSELoss``", ways="", per="of the task",
        inner_lr="0.05", lr="0.01", max_epochs="60",
        prior_note=(
            "the network models the residual ``y - prior(x)``\n"
            "        (standardised per task with ``standardize_targets``, so that\n"
            "        unadapted the prediction is the prior's plus the support set's\n"
            "        mean residual), and predictions are ``prior(x)`` plus the\n"
            "        adapted correction; ``valid_score`` is R² of the residuals."
        ),
        extra="""    standardize_targets : bool, default=True
        Standardise each task's targets by its support set's mean and
        standard deviation (floored at a tenth of the training tasks'
        within-task scale) before inner steps, in meta-training and when
        adapting; predictions come back in the targets' own units. Targets in
        the hundreds then adapt as stably as targets of unit scale. False
        adapts on the raw targets.
""",
        lr_note=(
            "        the defaults (``inner_lr=0.05``, ``lr=0.01``, ``max_epochs=60``)\n"
            "        were chosen on five regression families with 10 shots and\n"
            "        1,000 training tasks (one sine, a sum of two sines, a linear\n"
            "        model of 5 features, a quadratic, sines at levels 100-1,000),\n"
            "        with standardised targets: every family then adapts to a query\n"
            "        error below half its variance and below a 3-nearest-neighbour\n"
            "        regressor on the support; 10 steps of 0.1 overshoot and are cut\n"
            "        back by the guard on most tasks. Without ``standardize_targets``,\n"
            "        scale ``inner_lr`` to the targets: 0.01 for the sinusoids of\n"
            "        :func:`~skmeta.datasets.make_sinusoid_tasks` (amplitudes up to 5).\n"
        ),
    ) + """
    Attributes
    ----------
    module_ : torch.nn.Module
        The meta-learned backbone.
    history_ : skorch.History
        Per epoch: ``train_loss``, ``valid_loss``, ``valid_score`` (query
        R² of meta-validation episodes), ``dur``.
    n_features_in_ : int
        Number of features.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names, when the tasks had string column names.
    prior_ : sklearn estimator
        ``prior`` fitted on all training rows; only when ``prior`` is set.

    See Also
    --------
    MAMLClassifier : The same for classification.

    References
    ----------
    .. [1] Finn, Abbeel and Levine, "Model-Agnostic Meta-Learning for Fast
       Adaptation of Deep Networks", ICML 2017.

    Examples
    --------
    >>> from skmeta import MAMLRegressor
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> tasks = make_sinusoid_tasks(n_tasks=200, random_state=0)
    >>> meta = MAMLRegressor(inner_lr=0.01, n_shots=10, n_queries=10,
    ...                      max_epochs=2, random_state=0).fit(tasks)
    >>> meta.adapt(tasks[0].X[:10], tasks[0].y[:10]).predict(tasks[0].X[10:12]).shape
    (2,)

    With ``prior``, the network corrects a pooled model; its output layer
    starts at zero, so before training and adaptation it predicts as the
    prior does:

    >>> from sklearn.linear_model import Ridge
    >>> start = MAMLRegressor(prior=Ridge(), standardize_targets=False, adapt_steps=0,
    ...                       lr=1e-30, max_epochs=1, n_episodes=1, random_state=0).fit(tasks)
    >>> X, y = tasks[0].X, tasks[0].y
    >>> float(abs(start.predict(X, X[:10], y[:10]) - start.prior_.predict(X)).max()) < 1e-6
    True
    """

    def _n_outputs(self):
        return 1

    def _loss(self, outputs, y, weight=None):
        return self._weighted_loss(outputs.squeeze(-1), y, weight)

    def _outputs(self, outputs):
        return outputs.squeeze(-1)
