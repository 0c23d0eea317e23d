"""What the gradient-step learners of this family share.

MAML, Meta-SGD, ANIL, Reptile and the learned optimizer all adapt to a new
task by steps on its support set, starting from meta-learned weights.
:class:`InnerLoopLearner` holds their common parameters (``inner_lr``,
``inner_steps``, ``adapt_steps``, ``prior``) and the adaptation itself: guarded
steps (:func:`~skmeta._steps.guarded_inner_loop`) on the backbone's
parameters. An algorithm overrides what differs:

- ``_backbone()``: the network called on rows (the module, or the part of a
  container module that is the network; Meta-SGD keeps its rates beside it);
- ``_params()``: the backbone's parameters by name;
- ``_direction()``: what a step of size 1 subtracts, given the gradients
  (None: the gradient itself, scaled by ``inner_lr``);
- ``_episode_loss(batch, training)``: the meta-objective.

:class:`InnerLoopClassifier` and :class:`InnerLoopRegressor` add the output
width and the target handling of each kind of task; :data:`PARAMETERS` is the
docstring of the parameters they share, with a slot for each algorithm's own.
"""

import warnings
from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval
from torch.func import functional_call, vmap

from .._base import MetaClassifierMixin, MetaLearner
from .._base._docs import episodic_parameters
from .._base._prior import PRIOR_CONSTRAINTS
from .._mlp import MLP
from .._steps import guarded_inner_loop
from ..exceptions import AdaptationWarning
from ..utils._stacklevel import external_stacklevel


def vmap_episodes(episode, batch):
    """Mean query loss of a meta-batch, ``episode`` run on every episode at once with ``vmap``.

    ``episode(X_support, y_support, X_query, y_query, support_weight=None,
    query_weight=None)`` returns an episode's query loss and outputs. Padded
    episodes get row weights (0 on padding) and weigh by their real query
    rows, as unpadded ones do.

    Returns
    -------
    loss : Tensor
        Scalar: the mean over episodes of the query loss.
    outputs : Tensor of shape (n_episodes, n_queries, n_outputs)
    """
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


def query_loss(module, adapted, X_query, y_query, *, loss_fn, query_weight=None):
    """The query loss of adapted weights, and the query outputs.

    Parameters
    ----------
    module : torch.nn.Module
    adapted : dict of str to Tensor
        The weights after the inner steps, for ``functional_call``.
    X_query, y_query : Tensor
    loss_fn : callable
        ``loss_fn(output, y)``, or ``loss_fn(output, y, weight)`` with weights.
    query_weight : Tensor or None, default=None
        Query row weights (0 on padding).

    Returns
    -------
    loss : Tensor
    outputs : Tensor

    Examples
    --------
    >>> import torch
    >>> from torch.nn.functional import mse_loss
    >>> model = torch.nn.Linear(1, 1, bias=False)
    >>> loss, outputs = query_loss(model, {"weight": torch.tensor([[2.0]])}, torch.ones(3, 1),
    ...                            torch.ones(3, 1), loss_fn=mse_loss)
    >>> float(loss), outputs.shape
    (1.0, torch.Size([3, 1]))
    """
    outputs = functional_call(module, adapted, (X_query,))
    if query_weight is None:
        return loss_fn(outputs, y_query), outputs
    return loss_fn(outputs, y_query, query_weight), outputs


class InnerLoopLearner(MetaLearner):
    """A meta-learner that adapts by guarded gradient steps on the support set."""

    _parameter_constraints = {
        **MetaLearner._parameter_constraints,
        "inner_lr": [Interval(Real, 0, None, closed="neither")],
        "inner_steps": [Interval(Integral, 1, None, closed="left")],
        "adapt_steps": [Interval(Integral, 0, None, closed="left"), None],
        **PRIOR_CONSTRAINTS,
    }

    # prior=: see skmeta/_base/_prior.py. With it, module_ wraps the backbone
    # (_WithOffsets), so _params() names gain a "module." prefix; the
    # functional calls take whatever names the backbone has.
    _accepts_prior = True

    def __init__(self, module=MLP, *, inner_lr=0.1, inner_steps=1, adapt_steps=10, prior=None,
                 prior_cv=5, **kwargs):
        # The base's parameters (lr, n_shots, ...) pass through **kwargs.
        self.inner_lr = inner_lr
        self.inner_steps = inner_steps
        self.adapt_steps = adapt_steps
        self.prior = prior
        self.prior_cv = prior_cv
        super().__init__(module, **kwargs)

    # ---------------------------------------------------------------- hooks

    def _backbone(self):
        """The network, called functionally on rows with :meth:`_params`."""
        return self.module_

    def _params(self):
        return dict(self._backbone().named_parameters())

    def _direction(self):
        """``direction(params, grads, loss)`` for the guarded steps, or None for the gradient."""
        return None

    # ---------------------------------------------------------------- shared

    def _loss(self, outputs, y, weight=None):
        return self._weighted_loss(outputs, y, weight)

    def _steps(self, training):
        if training or self.adapt_steps is None:
            return self.inner_steps
        return self.adapt_steps

    def _adapt(self, X_support, y_support, n_classes, weight=None):
        direction = self._direction()
        return guarded_inner_loop(
            self._backbone(), self._params(), X_support, y_support, loss_fn=self._loss,
            inner_lr=self.inner_lr if direction is None else 1.0, direction=direction,
            steps=self._steps(training=False), weight=weight,
        )

    def _warn_backtracked(self, n_backtracked, n_tasks):
        step = (f"a gradient step of inner_lr={self.inner_lr}" if self._direction() is None
                else "a step of the meta-learned update")
        warnings.warn(
            f"Adapting to {n_backtracked} of {n_tasks} support set(s), {step} raised the "
            "support loss, so the step size was halved until steps helped (the adapted "
            "estimator's adapt_history_ has the step sizes and support losses). Lower "
            "inner_lr, or standardise the features"
            f"{'' if self._classification else ' and targets'}.",
            AdaptationWarning,
            stacklevel=external_stacklevel(),
        )

    def _predict_state(self, state, X):
        return self._outputs(functional_call(self._backbone(), state, (X,)))

    def _outputs(self, outputs):
        return outputs


class InnerLoopClassifier(MetaClassifierMixin):
    """Classification: an output per way, and support sets of exactly ``n_ways_`` classes."""

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


class InnerLoopRegressor:
    """Regression: one output, and targets standardised per task (``standardize_targets``)."""

    _classification = False

    def _n_outputs(self):
        return 1

    def _loss(self, outputs, y, weight=None):
        return self._weighted_loss(outputs.squeeze(-1), y, weight)

    def _outputs(self, outputs):
        return outputs.squeeze(-1)


#: ``standardize_targets`` for every regressor of the family.
STANDARDIZE_TARGETS_CONSTRAINT = {"standardize_targets": ["boolean"]}

#: The ``Parameters`` section shared by the family. ``{own}`` holds the
#: algorithm's own parameters (after ``module``); ``{episodic}`` those of
#: every episodic learner; both are filled by :func:`parameters_doc`.
PARAMETERS = """
    Parameters
    ----------
    module : torch.nn.Module class or instance, default=MLP
        The backbone. A class is built in ``fit`` with its ``module__*``
        parameters, and with ``n_features`` and ``n_outputs`` if it accepts
        them.
{own}    prior : sklearn estimator or None, default=None
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
{episodic}"""

_CLASSIFIER_PRIOR = (
    "its log-probabilities (``predict_proba``, clipped at\n"
    "        1e-7) of a task's classes are added to the network's logits. It\n"
    "        needs ``n_ways=None``, and a support set whose labels the prior\n"
    "        saw in ``fit``."
)
_REGRESSOR_PRIOR = (
    "the network models the residual ``y - prior(x)``\n"
    "        (standardised per task with ``standardize_targets``, so that\n"
    "        unadapted the prediction is the prior's plus the support set's\n"
    "        mean residual), and predictions are ``prior(x)`` plus the\n"
    "        adapted correction; ``valid_score`` is R² of the residuals."
)
_STANDARDIZE_TARGETS = """    standardize_targets : bool, default=True
        Standardise each task's targets by its support set's mean and
        standard deviation (floored at a tenth of the training tasks'
        within-task scale) before inner steps, in meta-training and when
        adapting; predictions come back in the targets' own units. Targets in
        the hundreds then adapt as stably as targets of unit scale. False
        adapts on the raw targets.
"""


def parameters_doc(own, *, classification, lr, max_epochs):
    """The family's ``Parameters`` section, with ``own`` (indented entries) after ``module``."""
    loss = "``torch.nn.CrossEntropyLoss``" if classification else "``torch.nn.MSELoss``"
    return PARAMETERS.format(
        own=own, prior_note=_CLASSIFIER_PRIOR if classification else _REGRESSOR_PRIOR,
        episodic=episodic_parameters(
            criterion=f"The loss of inner and outer steps; None is {loss}.",
            classification=classification, lr=lr, max_epochs=max_epochs,
            extra="" if classification else _STANDARDIZE_TARGETS,
        ),
    )
