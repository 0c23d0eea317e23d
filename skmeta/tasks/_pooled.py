"""Pooled rows: the training tasks as one supervised problem.

The transfer family (fine-tuning) and the multi-task family (a shared trunk
with one head per task) pre-train on the *rows* of the training tasks, pooled,
rather than on episodes. :class:`PooledRowLoader` draws shuffled mini-batches
``(X, y, task_index)`` of those rows; :class:`PooledTrainingMixin` feeds them
to skorch's loop in place of the episode loaders of
:class:`~skmeta._base.MetaLearner` and keeps what the pooled learners share:

- classification labels are encoded over the union of the labels of the
  tasks given to ``fit`` (``classes_pooled_``, sklearn's ``LabelEncoder`` order). That is
  right where the tasks share a label space (a group table: income yes/no in
  every group); where a label means something else in each task, the
  episodic learners (ProtoNet, MAML) are the right choice;
- regression targets are standardised per task (its own mean and standard
  deviation) in pre-training when ``standardize_targets`` is set, as a
  support set is when adapting;
- meta-validation scores the pooled rows of the tasks held out by
  ``train_split``, so ``EarlyStopping`` on ``valid_loss`` watches tasks
  never trained on;
- a support set's labels reach the algorithm's ``_adapt``, so that its
  classes map onto the pooled classes.
"""

import functools
import inspect
from numbers import Integral

import numpy as np
import torch
from sklearn.utils._param_validation import Interval

from .._base._tasks import _CheckedTasks
from .._base._training import _support_statistics


def pooled_targets(tasks, *, classes=None, target_scale=None):
    """The targets of ``tasks`` as one array, encoded or standardised.

    Parameters
    ----------
    tasks : TaskCollection
        Validated tasks.
    classes : ndarray or None, default=None
        Sorted labels: classification targets become their positions in it.
    target_scale : float or None, default=None
        Regression: standardise each task's targets by its mean and standard
        deviation, the latter floored at a tenth of ``target_scale`` (as a
        support set is standardised when adapting); None keeps them as given.

    Returns
    -------
    ndarray of shape (n_rows,)
        int64 labels or float32 targets.
    """
    parts = []
    for task in tasks:
        y = np.asarray(task.y)
        if classes is not None:
            parts.append(np.searchsorted(classes, y).astype(np.int64))
            continue
        y = y.astype(np.float64)
        if target_scale is not None:
            mean, scale = _support_statistics(torch.as_tensor(y), None, target_scale)
            y = (y - float(mean)) / float(scale)
        parts.append(y.astype(np.float32))
    return np.concatenate(parts)


class PooledRowLoader:
    """Shuffled mini-batches of the pooled rows of a task collection.

    To skorch it is both the dataset (``len`` counts rows, so skorch's
    ``ProgressBar`` works) and the iterator: iterating yields tuples
    ``(X, y, task_index)`` of tensors on ``device``, ``rows_per_batch`` rows
    each (the last batch may be smaller); ``task_index`` is the position of
    each row's task in ``tasks``.

    Parameters
    ----------
    tasks : TaskCollection
        Validated tasks (numeric ``X`` arrays).
    rows_per_batch : int
        Rows per mini-batch.
    random_state : numpy.random.Generator or int
        A Generator is shared and advances, so each pass draws a new order;
        an int gives every pass the same order.
    shuffle : bool, default=True
        Shuffle the rows; otherwise keep them in task order.
    classes : ndarray or None, default=None
        Sorted labels to encode classification targets by; None for
        regression.
    target_scale : float or None, default=None
        Standardise regression targets per task; see :func:`pooled_targets`.
    device : str or torch.device, default="cpu"

    Examples
    --------
    >>> import numpy as np
    >>> from skmeta.datasets import make_blob_tasks
    >>> from skmeta.tasks._pooled import PooledRowLoader
    >>> tasks = make_blob_tasks(n_tasks=3, n_rows_per_class=5, n_features=4, random_state=0)
    >>> loader = PooledRowLoader(tasks, rows_per_batch=8, random_state=0, classes=np.array([0, 1]))
    >>> len(loader), [tuple(X.shape) for X, y, task_index in loader]
    (30, [(8, 4), (8, 4), (8, 4), (6, 4)])
    """

    def __init__(self, tasks, *, rows_per_batch, random_state, shuffle=True, classes=None,
                 target_scale=None, device="cpu"):
        self.tasks = tasks
        self.rows_per_batch = rows_per_batch
        self.random_state = random_state
        self.shuffle = shuffle
        self.device = device
        self.X = np.concatenate([np.asarray(task.X, dtype=np.float32) for task in tasks])
        self.y = pooled_targets(tasks, classes=classes, target_scale=target_scale)
        self.task_index = np.repeat(np.arange(len(tasks)), [task.n_rows for task in tasks])

    def __len__(self):
        return self.X.shape[0]

    def __iter__(self):
        rng = self.random_state
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        order = rng.permutation(len(self)) if self.shuffle else np.arange(len(self))
        for start in range(0, len(self), self.rows_per_batch):
            rows = order[start : start + self.rows_per_batch]
            yield (
                torch.as_tensor(self.X[rows], device=self.device),
                torch.as_tensor(self.y[rows], device=self.device),
                torch.as_tensor(self.task_index[rows], device=self.device),
            )


class PooledTrainingMixin:
    """skorch's loop fed with pooled rows instead of episodes.

    Put before :class:`~skmeta._base.MetaLearner` in the bases. A learner
    implements ``_pooled_output(X, task_index, training)`` (outputs of the
    pre-trained model for rows of the training tasks, ``task_index`` None for
    rows of other tasks) and the base's ``_adapt`` / ``_predict_state``.
    """

    _training_name = "pre-training"

    _pooled_constraints = {"rows_per_batch": [Interval(Integral, 1, None, closed="left")]}

    # ------------------------------------------------------------ fitted state

    def _check_tasks(self, X, y=None, *, purpose="meta-training"):
        """As the base's, but tasks may have different numbers of classes.

        Pre-training sees rows, not episodes: nothing needs one shape.
        """
        tasks, n_features, feature_names, long_format = self._validated_tasks(X, y)
        tasks = self._usable_tasks(tasks, purpose)
        return _CheckedTasks(tasks), n_features, feature_names, None, long_format

    def _prepare_fit(self, X, y, *, reset):
        tasks = super()._prepare_fit(X, y, reset=reset)
        if self._classification:
            try:
                classes = np.unique(np.concatenate([np.asarray(task.y) for task in tasks]))
            except TypeError as exc:
                raise ValueError(
                    f"The tasks' labels are of several types that cannot be ordered ({exc}); "
                    "pooled pre-training encodes the union of the labels: pass labels of one type."
                ) from exc
            if reset:
                self.classes_pooled_ = classes
            else:
                unseen = [c for c in classes.tolist() if c not in set(self.classes_pooled_.tolist())]
                if unseen:
                    raise ValueError(
                        f"These tasks have label(s) {unseen[:5]} that {type(self).__name__} was "
                        f"not pre-trained on (classes_pooled_={self.classes_pooled_.tolist()[:10]}); "
                        "its output layer has one unit per pre-training class. Refit from "
                        "scratch (warm_start=False) on tasks with every label."
                    )
        train, valid = self._split_tasks(tasks)
        self._check_split(train, reset=reset)
        self.__dict__["_pending_split"] = (tasks, train, valid)
        return tasks

    def _check_split(self, train, *, reset):
        """Hook: a learner refuses a split it cannot train on (e.g. another task count)."""

    # -------------------------------------------------------- skorch's loop

    def get_split_datasets(self, X, y=None, **fit_params):
        """Pooled rows of the training tasks, and of the held-out ones (or None)."""
        pending = self.__dict__.pop("_pending_split", None)
        train, valid = pending[1:] if pending is not None and pending[0] is X else self._split_tasks(X)
        options = dict(
            rows_per_batch=self.rows_per_batch,
            classes=getattr(self, "classes_pooled_", None) if self._classification else None,
            target_scale=self._pooled_target_scale if self._standardizes_targets() else None,
            device=self.device_,
        )
        train_loader = PooledRowLoader(train, random_state=self._episode_rng, **options)
        if valid is None:
            return train_loader, None
        return train_loader, PooledRowLoader(valid, random_state=self._valid_seed, shuffle=False,
                                             **options)

    def _training_loss(self, batch):
        """The loss of a batch of pooled rows, and their outputs."""
        X, y, task_index = batch
        output = self._pooled_output(X, task_index, training=True)
        return self._output_loss(output, y), output

    def validation_step(self, batch, **fit_params):
        self._set_training(False)
        X, y, _ = batch
        with torch.no_grad():
            output = self._pooled_output(X, None, training=False)
            loss = self._output_loss(output, y)
        self.history.record_batch("valid_score", self._rows_score(output, y))
        return {"loss": loss, "y_pred": output}

    def _output_loss(self, output, y, weight=None):
        """The criterion on outputs of rows (per-row weights when given)."""
        if not self._classification:
            output = output.squeeze(-1)
        return self._weighted_loss(output, y, weight)

    def _rows_score(self, output, y):
        """Accuracy (classification) or R² of a batch of rows."""
        if self._classification:
            return (output.argmax(-1) == y).float().mean().item()
        residual = ((y - output.squeeze(-1)) ** 2).sum()
        total = ((y - y.mean()) ** 2).sum().clamp_min(1e-12)
        return (1 - residual / total).item()

    # ---------------------------------------------------------- parameters

    #: The base's parameters that shape training episodes, which pooled
    #: pre-training has none of: not parameters of a pooled learner, and
    #: refused. (``n_queries`` stays: with ``strict_episodes`` it says which
    #: tasks are large enough to use.)
    _episode_only = ("n_episodes", "meta_batch_size")

    def _get_param_names(self):
        return [name for name in super()._get_param_names() if name not in self._episode_only]

    def _validate_params(self):
        defaults = _signature_defaults()
        given = [name for name in self._episode_only
                 if name in vars(self) and vars(self)[name] != defaults[name]]
        if given:
            raise ValueError(
                f"{type(self).__name__} pre-trains on pooled rows, not on episodes: "
                f"{given[0]}={vars(self)[given[0]]!r} would have no effect. Leave it out; set "
                "rows_per_batch (rows per step) and max_epochs (passes over the rows) instead."
            )
        if "batch_size" in vars(self) and self.batch_size != 128:
            raise ValueError(
                f"{type(self).__name__} does not take batch_size: pooled rows are drawn by "
                "skmeta's PooledRowLoader, not by a torch DataLoader; set rows_per_batch instead."
            )
        super()._validate_params()

    def get_params(self, deep=True, **kwargs):
        params = super().get_params(deep=deep, **kwargs)
        if deep:
            # skorch's ProgressBar reads "batch_size": here a batch is of rows.
            params["batch_size"] = self.rows_per_batch
        return params

    def set_params(self, **params):
        if "batch_size" in params:
            rows = params.get("rows_per_batch", self.rows_per_batch)
            if params["batch_size"] != rows:
                raise ValueError(
                    f"batch_size={params['batch_size']!r} is not a parameter of "
                    f"{type(self).__name__}: it pre-trains on batches of pooled rows; set "
                    "rows_per_batch instead."
                )
            params = {key: value for key, value in params.items() if key != "batch_size"}
        return super().set_params(**params)

    # ------------------------------------------------------------ adapting

    def _adapt_task(self, X_support, y_support, n_classes=None, sample_weight=None, classes=None):
        # _adapt maps the support labels onto the pooled classes: it reads
        # them here, under the lock that serialises adaptation on this learner.
        with self._lock:
            self.__dict__["_support_labels"] = None if classes is None else np.asarray(classes)
            try:
                return super()._adapt_task(X_support, y_support, n_classes, sample_weight, classes=classes)
            finally:
                self.__dict__.pop("_support_labels", None)

    def _support_columns(self, n_classes):
        """Per support class (episode label), its pooled class's position, or -1.

        The labels are those ``_adapt_task`` was given (the sorted support
        labels); without them every class counts as new.
        """
        labels = self.__dict__.get("_support_labels")
        if labels is None or labels.shape[0] != n_classes:
            return np.full(n_classes, -1)
        position = {label: i for i, label in enumerate(self.classes_pooled_.tolist())}
        return np.array([position.get(label, -1) for label in labels.tolist()])


@functools.cache
def _signature_defaults():
    """The defaults of the base class's parameters."""
    from .._base import MetaLearner

    return {name: p.default for name, p in inspect.signature(MetaLearner.__init__).parameters.items()}


def select_rows(weight, columns):
    """Rows ``columns`` of ``weight`` (first axis); zeros where a column is -1.

    Parameters
    ----------
    weight : Tensor of shape (n_pooled, ...)
    columns : ndarray of shape (n_classes,)

    Returns
    -------
    Tensor of shape (n_classes, ...)

    Examples
    --------
    >>> import numpy as np, torch
    >>> select_rows(torch.tensor([[1.0], [2.0]]), np.array([1, -1]))
    tensor([[2.],
            [0.]])
    """
    columns = torch.as_tensor(columns, device=weight.device)
    rows = weight[columns.clamp_min(0)]
    known = (columns >= 0).reshape(-1, *([1] * (weight.dim() - 1)))
    return torch.where(known, rows, torch.zeros_like(rows))
