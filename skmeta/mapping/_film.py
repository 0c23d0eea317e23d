"""Task-conditioned networks: adapt to a task in one forward pass (FiLM).

A set encoder (Deep Sets) reads the whole support set, each row's features
with its label, and gives a task representation; the representation sets
the scales and shifts (FiLM) of every hidden layer of a shared network, and
the output layer is read from codes of the support set too: one code per
class (the mean encoding of its rows) for classification, one code of the
whole support set for regression. Adapting to a new task is one forward
pass of the encoder, without a gradient step.

Functional core: :func:`group_means`, :func:`film`, :func:`encode_task` and
:func:`conditioned_outputs`, pure functions on tensors with any leading
(meta-batch) axes. Network: :class:`FiLMNet`. Estimators:
:class:`FiLMClassifier`, :class:`FiLMRegressor`.
"""

import torch
from torch import nn

from .._base import MetaClassifierMixin, MetaLearner
from .._base._docs import LIFELONG_PARAMETERS
from .._base._prior import PRIOR_CONSTRAINTS, _WithOffsets


def group_means(values, groups, weight=None):
    """Mean of the rows of each group, weighted by ``weight`` if given.

    Parameters
    ----------
    values : Tensor of shape (..., n_rows, n_values)
    groups : Tensor of shape (..., n_rows, n_groups)
        Membership of each row in each group (a one-hot of class labels, or
        a column of ones for one group of every row).
    weight : Tensor of shape (..., n_rows) or None, default=None
        Row weights (0 for padding); None weighs rows alike.

    Returns
    -------
    Tensor of shape (..., n_groups, n_values)

    Examples
    --------
    >>> import torch
    >>> values = torch.tensor([[0.0], [2.0], [5.0]])
    >>> group_means(values, torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    tensor([[1.],
            [5.]])
    >>> group_means(values, torch.ones(3, 1), weight=torch.tensor([1.0, 1.0, 0.0]))
    tensor([[1.]])
    """
    groups = groups.to(values.dtype)
    if weight is not None:
        groups = groups * weight.to(values.dtype).unsqueeze(-1)
    return (groups.transpose(-1, -2) @ values) / groups.sum(-2).unsqueeze(-1)


def film(hidden, scale, shift):
    """Feature-wise linear modulation: ``scale * hidden + shift`` for every row.

    Parameters
    ----------
    hidden : Tensor of shape (..., n_rows, width)
    scale, shift : Tensor of shape (..., width)
        One per task, shared by the task's rows.

    Returns
    -------
    Tensor of shape (..., n_rows, width)

    Examples
    --------
    >>> import torch
    >>> film(torch.ones(2, 3), torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, 0.0, -1.0]))
    tensor([[1., 2., 2.],
            [1., 2., 2.]])
    """
    return hidden * scale.unsqueeze(-2) + shift.unsqueeze(-2)


def encode_task(network, X_support, labels, groups, weight=None):
    """The state of a task: its representation and its output codes, one pass.

    Each support row, its features concatenated with its label code, is
    embedded by the encoder φ; the weighted mean over all rows, mapped by ρ,
    is the task representation (Deep Sets), and the weighted mean over the
    rows of each group is that group's code.

    Parameters
    ----------
    network : FiLMNet
    X_support : Tensor of shape (..., n_support, n_features)
    labels : Tensor of shape (..., n_support, n_labels)
        Label codes: one-hot episode labels, or standardised targets.
    groups : Tensor of shape (..., n_support, n_groups)
        Row membership of the output groups (classes; one for regression).
    weight : Tensor of shape (..., n_support) or None, default=None
        Row weights (0 for padding).

    Returns
    -------
    dict
        ``"representation"``: Tensor of shape (..., task_dim);
        ``"codes"``: Tensor of shape (..., n_groups, n_encoding).
    """
    rows = network.encoder(torch.cat([X_support, labels.to(X_support.dtype)], dim=-1))
    pooled = group_means(rows, torch.ones_like(groups[..., :1], dtype=rows.dtype), weight)
    return {"representation": network.rho(pooled.squeeze(-2)), "codes": group_means(rows, groups, weight)}


def conditioned_outputs(network, state, X):
    """Outputs of the shared network for rows ``X``, conditioned on a task state.

    Every hidden layer is modulated by the scales and shifts generated from
    the task representation; output ``k`` is the last hidden layer times
    the weights read from code ``k``, plus the bias read from it.

    Parameters
    ----------
    network : FiLMNet
    state : dict
        As :func:`encode_task` returns, with the leading axes of ``X``
        except its rows.
    X : Tensor of shape (..., n_rows, n_features)

    Returns
    -------
    Tensor of shape (..., n_rows, n_groups)
    """
    modulations = network.modulations(state["representation"])
    if network.body is not None:
        hidden = network.body(X.reshape(-1, X.shape[-1])).reshape(*X.shape[:-1], -1)
        if modulations:
            hidden = film(hidden, *modulations[0])
    else:
        hidden = X
        for layer, (scale, shift) in zip(network.hidden, modulations, strict=True):
            hidden = torch.relu(film(layer(hidden), scale, shift))
    codes = state["codes"]
    weights, bias = network.code_weight(codes), network.code_bias(codes).squeeze(-1)
    return hidden @ weights.transpose(-1, -2) + bias.unsqueeze(-2)


def _positive_ints(name, value, *, allow_empty):
    sizes = tuple(value) if isinstance(value, (tuple, list)) else None
    if sizes is None or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sizes) \
            or (not sizes and not allow_empty):
        raise ValueError(
            f"{name} must be a tuple of positive ints (one width per layer"
            f"{', () for none' if allow_empty else ''}); got {value!r}."
        )
    return sizes


def _mlp(widths):
    layers = []
    for width_in, width_out in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(width_in, width_out), nn.ReLU()]
    return nn.Sequential(*layers)


class FiLMNet(nn.Module):
    """A shared network with task-conditioned (FiLM) hidden layers and outputs.

    It holds the parameters that :func:`encode_task` and
    :func:`conditioned_outputs` use: the set encoder φ (``encoder``) and ρ
    (``rho``), the generator of the FiLM scales and shifts (``film``,
    initialised to zero, so that every scale starts at 1 and every shift at
    0), the shared hidden layers (``hidden``) and the maps from a code to
    the output layer (``code_weight``, ``code_bias``).

    Parameters
    ----------
    n_features : int
        Input width.
    n_outputs : int
        Width of the label code read with each support row: ``n_ways`` (a
        one-hot of the episode label) for classification, 1 (the target)
        for regression. The meta-learners fill it; a classifier with a
        ``prior`` reads ``2 * n_ways``: the one-hot, then the prior's
        log-probabilities of the task's classes.
    hidden_sizes : tuple of int, default=(64, 64)
        Widths of the shared network's hidden layers, each modulated.
    task_dim : int, default=32
        Width of the task representation.
    encoder_sizes : tuple of int, default=(64, 64)
        Widths of the layers of the row encoder φ; the last is the width of
        the codes.
    body : torch.nn.Module or None, default=None
        A network to use in place of the hidden layers: its output, of any
        width, is modulated as one hidden layer. The meta-learners put a
        ``module`` that is not a FiLMNet here.

    Examples
    --------
    >>> import torch
    >>> from skmeta.mapping import FiLMNet
    >>> net = FiLMNet(3, 2, hidden_sizes=(8,), task_dim=4, encoder_sizes=(6,))
    >>> X, labels = torch.zeros(2, 5, 3), torch.nn.functional.one_hot(torch.arange(5) % 2).repeat(2, 1, 1)
    >>> net(torch.zeros(2, 7, 3), X, labels, labels).shape
    torch.Size([2, 7, 2])
    """

    def __init__(self, n_features, n_outputs, hidden_sizes=(64, 64), task_dim=32, encoder_sizes=(64, 64),
                 body=None):
        super().__init__()
        for name, value in (("n_features", n_features), ("n_outputs", n_outputs), ("task_dim", task_dim)):
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"{name} must be a positive int; got {value!r}.")
        hidden_sizes = _positive_ints("hidden_sizes", hidden_sizes, allow_empty=True)
        encoder_sizes = _positive_ints("encoder_sizes", encoder_sizes, allow_empty=False)
        if body is not None and not isinstance(body, nn.Module):
            raise ValueError(f"body must be a torch.nn.Module or None; got {body!r}.")
        self.body = body
        if body is None:
            self.hidden = nn.ModuleList(
                nn.Linear(width_in, width_out)
                for width_in, width_out in zip((n_features, *hidden_sizes), hidden_sizes, strict=False)
            )
            self.widths = hidden_sizes
            last = hidden_sizes[-1] if hidden_sizes else n_features
        else:
            self.hidden = nn.ModuleList()
            with torch.no_grad():
                last = int(body(torch.zeros(1, n_features)).shape[-1])
            self.widths = (last,)
        self.encoder = _mlp((n_features + n_outputs, *encoder_sizes))
        self.rho = nn.Sequential(nn.Linear(encoder_sizes[-1], task_dim), nn.ReLU(),
                                 nn.Linear(task_dim, task_dim))
        self.film = nn.Linear(task_dim, 2 * sum(self.widths)) if self.widths else None
        if self.film is not None:  # scales 1 + 0, shifts 0: the unconditioned network
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)
        self.code_weight = nn.Linear(encoder_sizes[-1], last)
        self.code_bias = nn.Linear(encoder_sizes[-1], 1)

    def modulations(self, representation):
        """``(scale, shift)`` of each modulated layer, from a task representation."""
        if self.film is None:
            return []
        out = self.film(representation)
        total = sum(self.widths)
        scales = (1 + out[..., :total]).split(self.widths, dim=-1)
        shifts = out[..., total:].split(self.widths, dim=-1)
        return list(zip(scales, shifts, strict=True))

    def forward(self, X, X_support, labels, groups, weight=None):
        """Outputs for rows ``X`` of the task given by a support set (see :func:`encode_task`)."""
        return conditioned_outputs(self, encode_task(self, X_support, labels, groups, weight), X)


class _FiLM(MetaLearner):
    """What FiLMClassifier and FiLMRegressor share."""

    _parameter_constraints = {**MetaLearner._parameter_constraints, **PRIOR_CONSTRAINTS}

    # prior=: see skmeta/_base/_prior.py. FiLMNet reads the support set as
    # well as the query rows, so module_ stays a FiLMNet (not _WithOffsets):
    # a classifier's offset columns, the last n_ways_ of X_support and X, are
    # stripped here before the encoder and the network see them as features;
    # the query rows' offsets are added to the logits, and the support rows'
    # are read by the encoder with their labels (the prior's log-probabilities
    # beside each one-hot label, as a regressor's encoder reads residuals), so
    # that the task code says where the labels depart from the prior.
    _accepts_prior = True

    def __init__(self, module=FiLMNet, *, prior=None, prior_cv=5, **kwargs):
        self.prior = prior
        self.prior_cv = prior_cv
        # The base's parameters pass through: only the default network differs.
        super().__init__(module, **kwargs)

    def _is_film_module(self):
        module = self.module
        return isinstance(module, FiLMNet) or (isinstance(module, type) and issubclass(module, FiLMNet))

    def _n_outputs(self):
        # A module that is not a FiLMNet is a body: it ends on its own features.
        return self._code_width() if self._is_film_module() else None

    def _code_width(self):
        """Width of the code read with each support row: its label, then its offsets with a prior."""
        with_offsets = self._classification and self._fitted_prior is not None
        return self._label_width() + (self.n_ways_ if with_offsets else 0)

    def initialize_module(self):
        """Build the network; a ``module`` that is not a FiLMNet becomes its body."""
        super().initialize_module()
        if not isinstance(self.module_, FiLMNet) and hasattr(self, "n_features_in_"):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(getattr(self, "_torch_seed", torch.initial_seed()))
                self.module_ = FiLMNet(self.n_features_in_, self._code_width(), body=self.module_)
        return self

    def _initialize_module(self, reason=None):
        super()._initialize_module(reason=reason)
        if isinstance(self.module_, _WithOffsets):  # the offsets are handled by the hooks below
            self.module_ = self.module_.module
        if self._uses_prior() and isinstance(self.module_, FiLMNet):
            width = self.module_.encoder[0].in_features - getattr(self, "n_features_in_", 0)
            if self._fitted_prior is not None and width != self._code_width():
                raise ValueError(
                    f"prior={self.prior!r} makes the set encoder read {self._code_width()} label "
                    f"columns with each support row, but the module given reads {width}; pass "
                    "module=FiLMNet (a class), which the learner builds to fit."
                )
            # The output h(x) . W(c_k) + b(c_k) starts at exactly 0: the prior's.
            with torch.no_grad():
                for layer in (self.module_.code_weight, self.module_.code_bias):
                    layer.weight.zero_()
                    layer.bias.zero_()
        return self

    def _split_offsets(self, X):
        """``X`` without a classifier's offset columns, and those columns (or None)."""
        if not (self._classification and self._fitted_prior is not None):
            return X, None
        k = self.n_ways_
        return X[..., :-k], X[..., -k:]

    def _conditioned(self, state, X):
        X, offsets = self._split_offsets(X)
        outputs = conditioned_outputs(self.module_, state, X)
        return outputs if offsets is None else outputs + offsets

    def _state(self, X_support, y_support, n_groups, weight=None):
        labels, groups = self._codes(y_support, n_groups)
        X_support, offsets = self._split_offsets(X_support)
        if offsets is not None:  # the prior's log-probabilities, read with the labels
            labels = torch.cat([labels, offsets], dim=-1)
        return encode_task(self.module_, X_support, labels, groups, weight)

    def _episode_loss(self, batch, training):
        state = self._state(batch.X_support, batch.y_support, self._label_width(), batch.support_weight)
        outputs = self._outputs(self._conditioned(state, batch.X_query))
        weight = None if batch.query_weight is None else batch.query_weight.reshape(-1)
        flat = outputs.reshape(-1, outputs.shape[-1]) if self._classification else outputs.reshape(-1)
        return self._weighted_loss(flat, batch.y_query.reshape(-1), weight), outputs

    def _adapt(self, X_support, y_support, n_classes, weight=None):
        with torch.no_grad():
            return self._state(X_support, y_support, n_classes, weight), None

    def _predict_state(self, state, X):
        return self._outputs(self._conditioned(state, X))


_FILM_PARAMETERS = """
    Parameters
    ----------
    module : torch.nn.Module class or instance, default=FiLMNet
        The network. A class is built in ``fit`` with its ``module__*``
        parameters (``hidden_sizes=(64, 64)``, ``task_dim=32``,
        ``encoder_sizes=(64, 64)``; see :class:`~skmeta.mapping.FiLMNet`), and
        with ``n_features`` and ``n_outputs`` if it accepts them. A module
        that is not a FiLMNet is built without ``n_outputs`` and becomes
        the body of a FiLMNet: its output is the one modulated layer.
    prior : sklearn estimator or None, default=None
        A model pooled over all training rows, which the task-conditioned
        network corrects: {prior_note}
        It is cross-fitted by task in ``fit``: each training row's offset
        comes from a clone fitted on the other ``prior_cv`` folds of tasks,
        never on its own task; a clone fitted on all rows is ``prior_``,
        used when adapting and predicting. The maps from a code to the
        output layer (``code_weight`` and ``code_bias``) start at zero, so
        before meta-training the learner predicts what the prior predicts.
        Where tasks differ mostly in base rate or level, this keeps the
        pooled model's strength and adapts from it. None: no prior.
    prior_cv : int, default=5
        Folds of whole tasks (``GroupKFold`` on the task) for cross-fitting
        ``prior``; at most the number of tasks, and 2 at least.
    criterion : torch.nn.Module class or None, default=None
        Loss on the query outputs; None is {criterion}.
    optimizer : torch.optim.Optimizer class, default=torch.optim.Adam
        The meta-optimizer; tune it with ``optimizer__*`` parameters.
    lr : float, default=1e-3
        Meta learning rate.
    max_epochs : int, default=20
        Passes of meta-training.
    n_episodes : int, default=200
        Episodes per epoch.
    meta_batch_size : int, default=8
        Episodes per meta-gradient step, encoded together.
{ways}    n_shots : int, default=5
        Support rows {per} in an episode.
    n_queries : int, default=15
        Query rows {per} in a training episode.
    class_balance : {{"balanced", "natural"}}, default="balanced"
        Classification only. "balanced" draws ``n_shots`` support and
        ``n_queries`` query rows per class; "natural" draws ``n_shots *
        n_ways`` and ``n_queries * n_ways`` rows in all, in each task's own
        class proportions (one support row per class at least). ``score``
        draws its support sets alike.
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
        out (weight 0 in the encoder's means and in the loss), and tasks
        that cannot give an episode at all are left out with a warning.
{lifelong}    device : {{"auto", "cpu", "cuda"}} or torch.device, default="auto"
        "auto" uses CUDA when present.
    random_state : int, RandomState instance or None, default=None
        Seeds the network's initial weights and the episodes.
    verbose : int, default=0
        1 prints one line per epoch.
    warm_start : bool, default=False
        Whether ``fit`` continues from the current weights.
{extra}    **kwargs : dict
        Routed parameters: ``module__*``, ``optimizer__*``, ``callbacks__*``.
"""

_FILM_REFERENCES = """
    References
    ----------
    .. [1] Perez, Strub, de Vries, Dumoulin and Courville, "FiLM: Visual
       Reasoning with a General Conditioning Layer", AAAI 2018.
    .. [2] Zaheer, Kottur, Ravanbakhsh, Poczos, Salakhutdinov and Smola,
       "Deep Sets", NeurIPS 2017.
    .. [3] Requeima, Gordon, Bronskill, Nowozin and Turner, "Fast and
       Flexible Multi-Task Classification Using Conditional Neural Adaptive
       Processes", NeurIPS 2019.
"""


class FiLMClassifier(MetaClassifierMixin, _FiLM):
    __doc__ = """Task-conditioned network (FiLM) for few-shot classification.

    A set encoder reads the support rows with their one-hot episode labels
    and gives a task representation, which sets the scale and shift of
    every hidden layer of a shared network; the logit of class ``k`` is the
    last hidden layer times weights read from the mean encoding of class
    ``k``'s support rows, as in CNAPs [3]_. Meta-training learns the encoder
    and the network together; adapting to a new task is one forward pass,
    without a gradient step, and does not depend on the order of the
    support rows.
    """ + _FILM_PARAMETERS.format(
        lifelong=LIFELONG_PARAMETERS,
        criterion="``torch.nn.CrossEntropyLoss``",
        ways="""    n_ways : int or None, default=None
        Classes per episode, and the width of the label code; None takes
        all classes of each task (then every task must have as many). A
        support set must have exactly ``n_ways_`` classes.
""",
        per="per class", extra="",
        prior_note=(
            "its log-probabilities (``predict_proba``, clipped at\n"
            "        1e-7) of a task's classes are added to the logits of the query\n"
            "        rows, and the set encoder reads those of each support row beside\n"
            "        its one-hot label. It needs ``n_ways=None``, and a support set\n"
            "        whose labels the prior saw in ``fit``."
        ),
    ) + """
    Attributes
    ----------
    module_ : FiLMNet
        The meta-learned encoder and network.
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
    FiLMRegressor : The same for regression.
    ProtoNetClassifier : Class means in a learned embedding, unconditioned.
    MAMLClassifier : Adapts the whole network by gradient steps.
    """ + _FILM_REFERENCES + """
    Examples
    --------
    >>> from skmeta import FiLMClassifier
    >>> from skmeta.datasets import make_blob_tasks
    >>> tasks = make_blob_tasks(n_tasks=20, random_state=0)
    >>> meta = FiLMClassifier(lr=3e-3, max_epochs=2, random_state=0).fit(tasks[:15])
    >>> # the same initial weights, left as they were
    >>> start = FiLMClassifier(lr=1e-9, max_epochs=1, n_episodes=8, random_state=0).fit(tasks[:15])
    >>> meta.score(tasks[15:]) > start.score(tasks[15:]) + 0.1
    True
    """

    def _label_width(self):
        return self.n_ways_

    def _codes(self, y, n_classes):
        one_hot = nn.functional.one_hot(y, self.n_ways_).to(torch.float32)
        return one_hot, one_hot[..., :n_classes]

    def _outputs(self, outputs):
        return outputs

    def _check_support_classes(self, classes):
        super()._check_support_classes(classes)
        n_classes = classes.shape[0]
        if n_classes != self.n_ways_:
            raise ValueError(
                f"{type(self).__name__} was meta-trained on {self.n_ways_}-way tasks "
                f"but this support set has {n_classes} classes; pass a support set "
                f"with exactly {self.n_ways_} classes, or refit with n_ways={n_classes}."
            )


class FiLMRegressor(_FiLM):
    _classification = False

    _parameter_constraints = {**_FiLM._parameter_constraints, "standardize_targets": ["boolean"]}

    def __init__(self, module=FiLMNet, *, standardize_targets=True, **kwargs):
        self.standardize_targets = standardize_targets
        super().__init__(module, **kwargs)

    __doc__ = """Task-conditioned network (FiLM) for few-shot regression.

    A set encoder reads the support rows with their (standardised) targets
    and gives a task representation, which sets the scale and shift of
    every hidden layer of a shared network; the output layer's weights are
    read from the mean encoding of the support set. Meta-training learns
    the encoder and the network together; adapting to a new task is one
    forward pass, without a gradient step, and does not depend on the order
    of the support rows.
    """ + _FILM_PARAMETERS.format(
        lifelong=LIFELONG_PARAMETERS,
        criterion="``torch.nn.MSELoss``", ways="", per="of the task",
        prior_note=(
            "the network models the residual ``y - prior(x)``:\n"
            "        the set encoder reads the support rows' residuals (standardised\n"
            "        per task with ``standardize_targets``, so that untrained the\n"
            "        prediction is the prior's plus the support set's mean residual),\n"
            "        and predictions are ``prior(x)`` plus the conditioned correction;\n"
            "        ``valid_score`` is R² of the residuals."
        ),
        extra="""    standardize_targets : bool, default=True
        Standardise each task's targets by its support set's mean and
        standard deviation (floored at a tenth of the training tasks'
        within-task scale) before they are encoded and the loss taken, in
        meta-training and when adapting; predictions come back in the
        targets' own units, and targets ``a * y + c`` give predictions
        ``a * prediction + c``. False encodes the raw targets.
""",
    ) + """
    Attributes
    ----------
    module_ : FiLMNet
        The meta-learned encoder and network.
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
    FiLMClassifier : The same for classification.
    MAMLRegressor : Adapts the whole network by gradient steps.
    """ + _FILM_REFERENCES + """
    Examples
    --------
    >>> from skmeta import FiLMRegressor
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> tasks = make_sinusoid_tasks(n_tasks=200, random_state=0)
    >>> meta = FiLMRegressor(n_shots=10, n_queries=10, max_epochs=2, random_state=0).fit(tasks)
    >>> meta.adapt(tasks[0].X[:10], tasks[0].y[:10]).predict(tasks[0].X[10:12]).shape
    (2,)
    """

    def _label_width(self):
        return 1

    def _codes(self, y, n_groups=None):
        labels = y.unsqueeze(-1).to(torch.float32)
        return labels, torch.ones_like(labels)

    def _outputs(self, outputs):
        return outputs.squeeze(-1)
