"""A pooled sklearn model as the prior that a meta-learned correction adds to.

On group tables where groups differ mostly in base rate or level, a model
pooled over all training rows is hard to beat. With ``prior`` set to an
sklearn estimator, a learner meta-learns a *correction* of that model:

- **fit** cross-fits the prior by task: the tasks are split into
  ``prior_cv`` folds of whole tasks (``GroupKFold`` on the task index), a
  clone is fitted on the pooled rows of the other folds, and its
  predictions are each row's *offset*, so that no offset comes from a model
  that saw its task. A clone fitted on all pooled rows is kept as
  ``prior_`` and gives the offsets when adapting and predicting.
- **classification**: offsets are the prior's log-probabilities
  (``predict_proba`` clipped at 1e-7) of the task's classes, added to the
  backbone's logits. They travel through episodes as extra feature columns
  of a private task collection; :class:`_WithOffsets` wraps the backbone so
  that it sees only the real features and adds the offset columns to its
  output. Episode label ``k`` is the task's ``k``-th sorted class, so a task
  takes the prior's columns of its own classes; this needs ``n_ways=None``.
- **regression**: the learner models the residual ``y - prior(x)``: targets
  are replaced by residuals before episodes (and before per-task
  standardisation), and predictions are ``prior(x) + correction``.
- The backbone's last ``torch.nn.Linear`` starts at zero weight and bias,
  so an un-trained, un-adapted learner predicts what the prior predicts.

Opting in
---------
A learner takes ``prior`` when it:

1. sets the class attribute ``_accepts_prior = True``;
2. declares ``prior=None, prior_cv=5`` as keyword-only ``__init__``
   parameters, stores them as ``self.prior``/``self.prior_cv``, and adds
   :data:`PRIOR_CONSTRAINTS` to its ``_parameter_constraints``;
3. has an additive output: logits of the episode's classes (classifiers)
   or one value (regressors), from a backbone built by ``initialize_module``
   whose last ``torch.nn.Linear`` is its output layer, run by its
   ``_episode_loss``/``_adapt``/``_predict_state`` on the feature tensors it
   is given (the offset columns ride along as the last ``n_ways_``
   columns, and the wrapped ``module_`` strips them);
4. documents ``prior``, ``prior_cv`` and ``prior_``.

Everything else (fitting and cross-fitting the prior, offsets in fit,
adapt, predict and score, persistence) is done here and in the base class.
:class:`~skmeta.ProtoNetClassifier` does not opt in: its logits are negative
squared distances to prototypes, and adding log-probabilities to them would
change which prototype is nearest in a way the embedding cannot learn to
undo; its class means have no output layer to start at zero, so it could not
start from the prior's predictions either.
"""

import warnings
from numbers import Integral

import numpy as np
import torch
from sklearn.base import clone, is_classifier
from sklearn.model_selection import GroupKFold
from sklearn.utils._param_validation import HasMethods, Interval

from ..tasks import Task
from ..utils._stacklevel import external_stacklevel
from ._tasks import _CheckedTasks, _pooled_target_scale

#: The smallest probability whose log is an offset.
PROBABILITY_FLOOR = 1e-7

#: The constraints of ``prior`` and ``prior_cv``, for learners that opt in.
PRIOR_CONSTRAINTS = {
    "prior": [HasMethods(["fit", "predict"]), None],
    "prior_cv": [Interval(Integral, 2, None, closed="left")],
}


class _WithOffsets(torch.nn.Module):
    """A backbone whose input may end in offset columns that it adds to its output.

    The backbone sees the first ``n_features`` columns; any columns after
    them are offsets, as many as its outputs. Their number may change from
    call to call (every pooled class in pre-training, a support set's classes
    when adapting), and a call without them is the backbone alone.

    Parameters
    ----------
    module : torch.nn.Module
        The backbone.
    n_features : int
        How many leading columns of the input are features.
    """

    def __init__(self, module, n_features):
        super().__init__()
        self.module = module
        self.n_features = n_features

    def forward(self, X):
        out = self.module(X[..., : self.n_features])
        return out + X[..., self.n_features :] if X.shape[-1] > self.n_features else out


class PriorMixin:
    """``prior``: fitting, cross-fitting and the offsets of a pooled sklearn model."""

    _accepts_prior = False

    def _uses_prior(self):
        """Whether ``prior`` is set on a learner that accepts one."""
        return self._accepts_prior and getattr(self, "prior", None) is not None

    @property
    def _fitted_prior(self):
        return self.__dict__.get("prior_")

    def set_params(self, **params):
        """Set parameters: routed ones (``module__*``, ``optimizer__*``), and
        ``prior__*`` ones, which go to the ``prior`` estimator as in sklearn.

        Parameters
        ----------
        **params : dict
            Estimator parameters.

        Returns
        -------
        self : object
        """
        if not self._accepts_prior:
            return super().set_params(**params)
        nested = {key: params.pop(key) for key in [k for k in params if k.startswith("prior__")]}
        super().set_params(**params)
        if nested:
            if getattr(self, "prior", None) is None:
                raise ValueError(
                    f"{sorted(nested)} set parameters of prior, but prior=None; set prior to an "
                    "estimator first (or in the same call)."
                )
            self.prior.set_params(**{key.removeprefix("prior__"): value for key, value in nested.items()})
        return self

    # ------------------------------------------------------------ building

    def _initialize_module(self, reason=None):
        super()._initialize_module(reason=reason)
        if self._uses_prior():
            _zero_last_linear(self.module_, self.prior)
            if self._classification and hasattr(self, "n_features_in_"):
                self.module_ = _WithOffsets(self.module_, self.n_features_in_)
        return self

    # ------------------------------------------------------------ fitting

    def _prepare_fit(self, X, y, *, reset):
        tasks = super()._prepare_fit(X, y, reset=reset)
        if not reset and self._uses_prior() != (self._fitted_prior is not None):
            raise ValueError(
                f"prior={getattr(self, 'prior', None)!r} differs from the fitted model, which was "
                f"meta-trained {'without' if self._fitted_prior is None else 'with'} a prior; "
                "continuing cannot change that. Fit again with warm_start=False."
            )
        if not self._uses_prior():
            self.__dict__.pop("prior_", None)
            return tasks
        self._check_prior_use(tasks)
        X_pool = np.concatenate([np.asarray(task.X, dtype=np.float64) for task in tasks])
        y_pool = np.concatenate([task.y for task in tasks])
        if reset:
            self.prior_ = clone(self.prior).fit(X_pool, y_pool)
        offsets = self._cross_fitted_offsets(tasks, X_pool, y_pool)
        tasks = self._with_offsets(tasks, offsets)
        if reset and not self._classification:
            self._pooled_target_scale = _pooled_target_scale(tasks, classification=False)
        return tasks

    def _check_prior_use(self, tasks):
        """Raise if ``prior`` cannot work with these settings and tasks."""
        prior = self.prior
        if self._classification:
            if self.n_ways is not None:
                raise ValueError(
                    f"prior={prior!r} needs n_ways=None: its log-probabilities are added to the "
                    "logits of each task's own classes, so every episode must take all classes "
                    f"of its task, not n_ways={self.n_ways} of them. Set n_ways=None or prior=None."
                )
            if not hasattr(prior, "predict_proba"):
                raise ValueError(
                    f"prior={prior!r} has no predict_proba; the prior of a classifier gives class "
                    "probabilities. Pass a classifier such as LogisticRegression()."
                )
        elif is_classifier(prior):
            raise ValueError(
                f"prior={prior!r} is a classifier; the prior of a regressor predicts the target. "
                "Pass a regressor such as Ridge()."
            )
        if len(tasks) < 2:
            raise ValueError(
                f"prior={prior!r} is cross-fitted by task (each task's offsets come from a clone "
                f"fitted on other tasks), which needs 2 tasks at least; got {len(tasks)}. Pass "
                "more tasks, or set prior=None."
            )

    def _cross_fitted_offsets(self, tasks, X_pool, y_pool):
        """Each pooled row's offsets from a clone of ``prior`` fitted on the other folds."""
        groups = np.repeat(np.arange(len(tasks)), [task.n_rows for task in tasks])
        folds = GroupKFold(n_splits=min(self.prior_cv, len(tasks)))
        width = self.prior_.classes_.shape[0] if self._classification else None
        offsets = np.empty((y_pool.shape[0], width) if width else y_pool.shape[0])
        unseen = set()
        for train, test in folds.split(X_pool, y_pool, groups):
            fold = clone(self.prior).fit(X_pool[train], y_pool[train])
            if self._classification:
                offsets[test] = np.log(PROBABILITY_FLOOR)
                columns = self._prior_columns(fold.classes_)
                offsets[np.ix_(test, columns)] = _log_proba(fold, X_pool[test])
                unseen |= set(np.setdiff1d(self.prior_.classes_, fold.classes_).tolist())
            else:
                offsets[test] = fold.predict(X_pool[test])
        if unseen:
            warnings.warn(
                f"Class(es) {sorted(unseen)} occur in the tasks of one fold of prior_cv only, so "
                f"the prior fitted without those tasks never saw them: their offsets there are "
                f"log({PROBABILITY_FLOOR}). Lower prior_cv, or pass more tasks with those classes.",
                UserWarning, stacklevel=external_stacklevel(),
            )
        return offsets

    def _with_offsets(self, tasks, offsets):
        """The tasks with offset columns (classification) or residual targets (regression)."""
        augmented, start = [], 0
        for task in tasks:
            rows = slice(start, start + task.n_rows)
            start += task.n_rows
            if self._classification:
                columns = self._prior_columns(np.unique(task.y), task=task.name)
                X = np.hstack([task.X, offsets[rows][:, columns]]).astype(np.float32)
                augmented.append(Task(X, task.y, name=task.name))
            else:
                augmented.append(Task(task.X, task.y - offsets[rows], name=task.name))
        return _CheckedTasks(augmented)

    # ------------------------------------------------------------ offsets

    def _prior_columns(self, classes, task=None):
        """The positions of ``classes`` among the fitted prior's classes."""
        known = self.prior_.classes_
        positions = np.searchsorted(known, classes).clip(0, known.shape[0] - 1)
        missing = classes[known[positions] != classes]
        if missing.size:
            where = "the support set" if task is None else f"task {task!r}"
            raise ValueError(
                f"{where.capitalize()} has label(s) {missing.tolist()} that prior_ "
                f"({self.prior!r}) never saw: it knows {known.tolist()}. With prior set, a "
                "label must be one of the meta-training tasks' labels; pass such a support "
                "set, or refit with prior=None to adapt to new labels."
            )
        return positions

    def _prior_offsets(self, X, classes=None):
        """What the fitted prior adds to the learner's output for rows ``X`` (float64)."""
        X = np.asarray(X, dtype=np.float64)
        if not self._classification:
            return self.prior_.predict(X).astype(np.float64)
        return _log_proba(self.prior_, X)[:, self._prior_columns(np.asarray(classes))]

    def _prior_support(self, X_support, y_support, classes):
        """A support set as the learner adapts to it: offsets appended, or residuals."""
        if self._fitted_prior is None:
            return X_support, y_support
        if self._classification:
            offsets = self._prior_offsets(X_support, classes)
            return np.hstack([X_support, offsets]).astype(np.float32), y_support
        return X_support, y_support - self._prior_offsets(X_support)

    def _prior_query(self, X):
        """Query rows as the backbone takes them: zero offset columns for a classifier.

        The offsets themselves are added to the output in float64, by
        :meth:`_add_prior`, so that a zero correction gives the prior exactly.
        """
        if self._fitted_prior is None or not self._classification:
            return X
        return np.hstack([X, np.zeros((X.shape[0], self.n_ways_), dtype=X.dtype)])

    def _add_prior(self, out, X, classes):
        if self._fitted_prior is None:
            return out
        return out + self._prior_offsets(X, classes)


def _log_proba(model, X):
    return np.log(np.clip(model.predict_proba(X), PROBABILITY_FLOOR, None))


def _zero_last_linear(module, prior):
    """Zero the weight and bias of the last ``torch.nn.Linear`` of ``module``."""
    linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise ValueError(
            f"prior={prior!r} needs a backbone whose output layer is a torch.nn.Linear, to "
            f"start it at zero so that the learner starts at the prior's predictions; "
            f"{type(module).__name__} has none. Use skmeta's MLP or end the module in a Linear."
        )
    with torch.no_grad():
        linears[-1].weight.zero_()
        if linears[-1].bias is not None:
            linears[-1].bias.zero_()
