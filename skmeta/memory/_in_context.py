"""An in-context learner: query rows read the support set, held as a memory, by attention.

Each support row is written to memory as the encoding of its features plus
the encoding of its label (one hot) or target; through a few layers the
memory attends over itself and each query row attends over the memory, and
a linear head reads the query's last state. Adapting to a new task is
writing its support set to memory: one forward pass, no gradient step.
Meta-training on the user's own tasks teaches the network how to read a
support set, as a transformer pre-trained on synthetic tables would, but on
the tables at hand and small enough for a CPU.

With ``task_memory``, the learner also keeps a memory of past tasks
(:mod:`skmeta.memory._task_memory`): a new support set recalls the past
tasks that explain it best, and their rows join it in memory.

Functional core: :func:`attention`. Network: :class:`InContextNet`.
Estimators: :class:`MemoryClassifier`, :class:`MemoryRegressor`.
"""

import dataclasses
import math
from numbers import Integral

import numpy as np
import torch
from sklearn.utils._param_validation import Interval
from torch import nn

from .._attention import weighted_softmax
from .._base import MetaClassifierMixin, MetaLearner
from .._base._docs import episodic_parameters, fitted_attributes
from .._base._training import _support_statistics
from ..tasks import EpisodeBatch
from ._task_memory import memory_codes, recall, write_tasks


def attention(queries, keys, values, n_heads, weight=None):
    """Multi-head scaled dot-product attention, each key row counted ``weight`` times.

    Parameters
    ----------
    queries : Tensor of shape (..., n_queries, width)
    keys, values : Tensor of shape (..., n_keys, width)
        Already projected; ``width`` is split into ``n_heads`` heads.
    n_heads : int
    weight : Tensor of shape (..., n_keys) or None, default=None
        Key weights: a key of weight ``w`` counts as ``w`` copies of itself,
        and one of weight 0 (padding) is never read.

    Returns
    -------
    Tensor of shape (..., n_queries, width)

    Examples
    --------
    >>> import torch
    >>> keys = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> attention(torch.zeros(1, 2), keys, keys, n_heads=1, weight=torch.tensor([3.0, 1.0]))
    tensor([[0.7500, 0.2500]])
    """
    *lead, n_queries, width = queries.shape
    head = width // n_heads

    def split(t):
        return t.reshape(*t.shape[:-1], n_heads, head).transpose(-2, -3)

    scores = split(queries) @ split(keys).transpose(-1, -2) / math.sqrt(head)
    if weight is not None:  # one weight per key, for every head and query
        weight = weight.unsqueeze(-2).unsqueeze(-2)
    read = weighted_softmax(scores, weight) @ split(values)
    return read.transpose(-2, -3).reshape(*lead, n_queries, width)


class _Layer(nn.Module):
    """Memory attends over itself, then queries attend over the memory (pre-norm, residual)."""

    def __init__(self, width, n_heads):
        super().__init__()
        self.n_heads = n_heads
        self.memory_norm = nn.LayerNorm(width)
        self.memory_qkv = nn.Linear(width, 3 * width)
        self.memory_out = nn.Linear(width, width)
        self.memory_ff = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.GELU(),
                                       nn.Linear(2 * width, width))
        self.query_norm = nn.LayerNorm(width)
        self.query_q = nn.Linear(width, width)
        self.query_kv = nn.Linear(width, 2 * width)
        self.query_out = nn.Linear(width, width)
        self.query_ff = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.GELU(),
                                      nn.Linear(2 * width, width))

    def write(self, memory, weight=None):
        """The memory after it has read itself."""
        q, k, v = self.memory_qkv(self.memory_norm(memory)).chunk(3, dim=-1)
        memory = memory + self.memory_out(attention(q, k, v, self.n_heads, weight))
        return memory + self.memory_ff(memory)

    def read(self, queries, memory, weight=None):
        """The query rows after they have read the memory (as this layer wrote it)."""
        k, v = self.query_kv(self.memory_norm(memory)).chunk(2, dim=-1)
        read = attention(self.query_q(self.query_norm(queries)), k, v, self.n_heads, weight)
        queries = queries + self.query_out(read)
        return queries + self.query_ff(queries)


class InContextNet(nn.Module):
    """Rows and labels to memory; query rows read it through ``n_layers`` attention layers.

    Parameters
    ----------
    n_features : int
    n_outputs : int
        Width of the head, and of a support row's label code: the number of
        classes (a one-hot label), or 1 (a target).
    width : int, default=64
        Width of every token; a multiple of ``n_heads``.
    n_layers : int, default=2
    n_heads : int, default=4
    rows : torch.nn.Module or None, default=None
        An encoder of rows to use instead of the default two-layer one; its
        output (of width ``rows_width``) is projected to ``width``.
    rows_width : int or None, default=None
        Output width of ``rows``.
    recall : bool, default=False
        Whether rows recalled from past tasks may join a support set in
        memory; they are marked by a learned vector added to their tokens.

    Examples
    --------
    >>> import torch
    >>> net = InContextNet(3, n_outputs=2, width=8, n_heads=2)
    >>> memory = net.write(torch.zeros(5, 3), torch.zeros(5, 2))
    >>> [m.shape for m in memory], net.read(torch.zeros(4, 3), memory).shape
    ([torch.Size([5, 8]), torch.Size([5, 8]), torch.Size([5, 8])], torch.Size([4, 2]))
    """

    def __init__(self, n_features, n_outputs, width=64, n_layers=2, n_heads=4, rows=None, rows_width=None,
                 recall=False):
        super().__init__()
        if width % n_heads:
            raise ValueError(f"width={width} must be a multiple of n_heads={n_heads}.")
        if rows is None:
            self.rows = nn.Sequential(nn.Linear(n_features, width), nn.GELU(), nn.Linear(width, width))
        else:  # a given row encoder, then a projection to the tokens' width
            self.rows = nn.Sequential(rows, nn.Linear(rows_width, width))
        self.labels = nn.Linear(n_outputs, width)
        self.layers = nn.ModuleList(_Layer(width, n_heads) for _ in range(n_layers))
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, n_outputs))
        if recall:
            self.recalled = nn.Parameter(torch.zeros(width))

    def write(self, X_support, codes, weight=None, recalled=None):
        """The memory of a support set: its tokens as written, then after each layer has read itself.

        ``recalled`` is None or ``(X, codes)`` of rows recalled from past
        tasks: their tokens, marked as recalled, follow the support set's
        (``weight`` then covers both).
        """
        tokens = self.rows(X_support) + self.labels(codes)
        if recalled is not None:
            if not hasattr(self, "recalled"):
                raise ValueError("This InContextNet was built with recall=False: it cannot read "
                                 "recalled rows. Build it with recall=True.")
            X_recalled, codes_recalled = recalled
            tokens = torch.cat([tokens, self.rows(X_recalled) + self.labels(codes_recalled)
                                + self.recalled], dim=-2)
        memory = [tokens]
        for layer in self.layers:
            memory.append(layer.write(memory[-1], weight))
        return memory

    def read(self, X, memory, weight=None):
        """Outputs of query rows ``X``: in each layer they read the memory that layer wrote."""
        queries = self.rows(X)
        for layer, tokens in zip(self.layers, memory[1:], strict=True):
            queries = layer.read(queries, tokens, weight)
        return self.head(queries)


class _StandardizedBatch(EpisodeBatch):
    """A regression meta-batch standardised by its supports, with their means and scales."""

    def __init__(self, batch, mean, scale):
        super().__init__(**{f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)})
        self.target_mean, self.target_scale = mean, scale


class _Memory(MetaLearner):
    """What the classifier and the regressor share."""

    _parameter_constraints = {
        **MetaLearner._parameter_constraints,
        "width": [Interval(Integral, 1, None, closed="left")],
        "n_layers": [Interval(Integral, 1, None, closed="left")],
        "n_heads": [Interval(Integral, 1, None, closed="left")],
        "task_memory": [Interval(Integral, 0, None, closed="left")],
        "n_recalled": [Interval(Integral, 1, None, closed="left")],
        "memory_rows": [Interval(Integral, 1, None, closed="left")],
        "write_on_partial_fit": ["boolean"],
    }

    def __init__(self, module=InContextNet, *, width=64, n_layers=2, n_heads=4, task_memory=0,
                 n_recalled=1, memory_rows=32, write_on_partial_fit=True, **kwargs):
        self.width = width
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.task_memory = task_memory
        self.n_recalled = n_recalled
        self.memory_rows = memory_rows
        self.write_on_partial_fit = write_on_partial_fit
        super().__init__(module, **kwargs)

    #: The memory of tasks' settings, with their defaults: they act only with ``task_memory``.
    _MEMORY_SETTINGS = {"n_recalled": 1, "memory_rows": 32, "write_on_partial_fit": True}

    def _validate_params(self):
        super()._validate_params()
        if self.task_memory:
            return
        for name, default in self._MEMORY_SETTINGS.items():
            value = getattr(self, name)
            if value != default:
                raise ValueError(
                    f"{name}={value!r} has no effect with task_memory=0: there is no memory of "
                    f"past tasks to {'recall' if name == 'n_recalled' else 'write'}. Set "
                    f"task_memory to the most past tasks to keep, or leave {name} out."
                )

    def _is_in_context_net(self):
        module = self.module
        if isinstance(module, type):
            return issubclass(module, InContextNet)
        return isinstance(module, InContextNet)

    def _n_outputs(self):
        # A module that is not an InContextNet encodes rows: it ends on its own features.
        return self._label_width() if self._is_in_context_net() else None

    def get_params_for(self, prefix):
        """Routed parameters; the network's size comes from ``width``, ``n_layers``, ``n_heads``."""
        params = super().get_params_for(prefix)
        if prefix == "module" and isinstance(self.module, type) and issubclass(self.module, InContextNet):
            params = {"width": self.width, "n_layers": self.n_layers, "n_heads": self.n_heads,
                      "recall": self.task_memory > 0, **params}
        return params

    def initialize_module(self):
        """Build the network for the tasks' features and labels."""
        if self.width % self.n_heads:
            raise ValueError(
                f"width={self.width} is not a multiple of n_heads={self.n_heads}: each head "
                "reads an equal slice of every token. Pass e.g. width="
                f"{self.n_heads * max(1, round(self.width / self.n_heads))}."
            )
        super().initialize_module()
        if not isinstance(self.module_, InContextNet) and hasattr(self, "n_features_in_"):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(getattr(self, "_torch_seed", torch.initial_seed()))
                with torch.no_grad():
                    encoded = self.module_(torch.zeros(1, self.n_features_in_, device=self.device_)).shape[-1]
                self.module_ = InContextNet(
                    self.n_features_in_, self._label_width(), width=self.width, n_layers=self.n_layers,
                    n_heads=self.n_heads, rows=self.module_, rows_width=encoded,
                    recall=self.task_memory > 0,
                ).to(self.device_)
        if self.task_memory and not hasattr(self.module_, "recalled"):
            raise ValueError(
                f"task_memory={self.task_memory} needs a network that reads recalled rows, but the "
                "InContextNet given was built with recall=False. Pass the class InContextNet, "
                "an InContextNet(..., recall=True), or task_memory=0."
            )
        return self

    # ------------------------------------------------------ memory of tasks

    def _begin_stage(self, tasks, *, reset):
        tasks_to_train = super()._begin_stage(tasks, reset=reset)
        if reset:
            self.task_memory_, self._memory_used, self._memory_clock = [], np.zeros(0, np.int64), 0
        if reset or self.write_on_partial_fit:
            self.task_memory_, self._memory_used = write_tasks(
                self.task_memory_, self._memory_used, tasks, capacity=self.task_memory,
                n_rows=self.memory_rows, clock=self._memory_clock, seed=(self._torch_seed, 2, self.stage_),
            )
        return tasks_to_train

    def _standardized(self, batch):
        standardized = super()._standardized(batch)
        if self._classification or not self.__dict__.get("task_memory_"):
            return standardized
        mean, scale = _support_statistics(batch.y_support, batch.support_weight, self._pooled_target_scale)
        return _StandardizedBatch(standardized, mean, scale)

    def _recalled(self, X_support, codes, support_weight, *, tasks, classes, mean, scale, training):
        """Rows recalled from past tasks, the weights of support and recalled rows together,
        and the names of the tasks each episode recalled.

        ``(None, support_weight, None)`` while the memory is empty, or for a
        classification batch that does not say its tasks' labels.
        """
        entries = self.__dict__.get("task_memory_") or []
        if not entries or (self._classification and classes is None):
            return None, support_weight, None
        X_memory, codes_memory, weight_memory = memory_codes(
            entries, classes=classes, mean=mean, scale=scale,
            n_ways=self.n_ways_ if self._classification else None, device=X_support.device,
        )
        exclude = None
        if tasks is not None:  # in meta-training, an episode may not recall its own task
            exclude = torch.tensor([[entry["name"] == task for entry in entries] for task in tasks],
                                   device=X_support.device)
        chosen, usable, _ = recall(self.module_, X_support, codes, support_weight, X_memory, codes_memory,
                                   weight_memory, n_recalled=self.n_recalled,
                                   classification=self._classification, exclude=exclude)
        if training:  # recalled tasks are used: the last to be evicted
            used = self._memory_used.copy()
            used[chosen[usable].cpu().numpy()] = self._memory_clock + 1
            self._memory_used, self._memory_clock = used, self._memory_clock + 1
        episodes = torch.arange(chosen.shape[0], device=chosen.device).unsqueeze(-1)
        n_episodes = chosen.shape[0]
        X_recalled = X_memory[chosen].reshape(n_episodes, -1, X_memory.shape[-1])
        codes_recalled = codes_memory[episodes, chosen].reshape(n_episodes, -1, codes_memory.shape[-1])
        weight_recalled = (weight_memory[episodes, chosen] * usable.unsqueeze(-1)).reshape(n_episodes, -1)
        if support_weight is None:
            support_weight = torch.ones(X_support.shape[:2], device=X_support.device)
        weight = torch.cat([support_weight, weight_recalled.to(support_weight.dtype)], dim=-1)
        names = [[entries[m]["name"] for m, ok in zip(row.tolist(), fine.tolist(), strict=True) if ok]
                 for row, fine in zip(chosen, usable, strict=True)]
        return (X_recalled, codes_recalled), weight, names

    # ----------------------------------------------------------- the maths

    def _episode_loss(self, batch, training):
        codes = self._codes(batch.y_support)
        recalled, weight, _ = self._recalled(
            batch.X_support, codes, batch.support_weight, tasks=batch.tasks, classes=batch.classes,
            mean=getattr(batch, "target_mean", None), scale=getattr(batch, "target_scale", None),
            training=training,
        )
        memory = self.module_.write(batch.X_support, codes, weight, recalled)
        outputs = self._outputs(self.module_.read(batch.X_query, memory, weight))
        query_weight = None if batch.query_weight is None else batch.query_weight.reshape(-1)
        flat = outputs.reshape(-1, outputs.shape[-1]) if self._classification else outputs.reshape(-1)
        return self._weighted_loss(flat, batch.y_query.reshape(-1), query_weight), outputs

    def _adapt_task(self, X_support, y_support, n_classes=None, sample_weight=None, classes=None):
        # _adapt recalls past tasks by the support set's own labels (or targets' scale).
        with self._lock:
            self.__dict__["_adapting"] = (classes, y_support, sample_weight)
            try:
                return super()._adapt_task(X_support, y_support, n_classes, sample_weight, classes)
            finally:
                self.__dict__.pop("_adapting", None)

    def _adapt(self, X_support, y_support, n_classes, weight=None):
        classes, y_raw, sample_weight = self.__dict__.get("_adapting", (None, None, None))
        mean = scale = None
        if not self._classification and self.__dict__.get("task_memory_"):
            statistics = _support_statistics(
                torch.as_tensor(y_raw, dtype=torch.float64),
                None if sample_weight is None else torch.as_tensor(sample_weight),
                self._pooled_target_scale)
            mean, scale = (torch.as_tensor([[float(v)]], device=X_support.device) for v in statistics)
        with torch.no_grad():
            codes = self._codes(y_support).unsqueeze(0)
            recalled, combined, names = self._recalled(
                X_support.unsqueeze(0), codes, None if weight is None else weight.unsqueeze(0), tasks=None,
                classes=None if classes is None else (np.asarray(classes),), mean=mean, scale=scale,
                training=False,
            )
            if recalled is None:
                memory = self.module_.write(X_support, codes[0], weight)
                return {"memory": memory, "weight": weight, "recalled": []}, None
            memory = [m[0] for m in self.module_.write(X_support.unsqueeze(0), codes, combined, recalled)]
        return {"memory": memory, "weight": combined[0], "recalled": names[0]}, None

    def _predict_state(self, state, X):
        return self._outputs(self.module_.read(X, state["memory"], state["weight"]))

    def _outputs(self, outputs):
        return outputs


_OWN_ATTRIBUTES = """    module_ : InContextNet
        The meta-learned network.
    task_memory_ : list of dict
        The memory of past tasks: per task, its ``name`` and the ``X`` and
        ``y`` of the rows kept (empty with ``task_memory=0``). An adapted
        estimator's ``state_["recalled"]`` names the tasks it recalled.
"""

_PARAMETERS = """
    Parameters
    ----------
    module : torch.nn.Module class or instance, default=InContextNet
        The network; the class is built in ``fit`` for the tasks' features
        and labels, with ``width``, ``n_layers``, ``n_heads``. Another module
        encodes the rows instead of the default encoder: a class is built
        with ``n_features`` if it takes it, and its output is projected to
        ``width``.
    width : int, default=64
        Width of every token (a support row in memory, a query row); a
        multiple of ``n_heads``.
    n_layers : int, default=2
        Attention layers: in each, the memory reads itself, then the query
        rows read the memory.
    n_heads : int, default=4
        Attention heads of every layer.
    task_memory : int, default=0
        Most past tasks kept in a memory of tasks (0: none). ``fit`` writes
        its tasks to it (and ``partial_fit`` its own, see
        ``write_on_partial_fit``); when it is full, the least recently used
        task (written or recalled in meta-training) is evicted. A support
        set then recalls the ``n_recalled`` past tasks whose rows explain
        it best, and their rows join it in memory, marked as recalled.
        Meta-training episodes recall past tasks other than their own, so
        the network learns how far to trust them. Classification rows keep
        their tasks' own labels: recall helps where tasks share label
        meanings and recur with variations.
    n_recalled : int, default=1
        Past tasks a support set recalls.
    memory_rows : int, default=32
        Rows kept of each past task, a seeded random sample.
    write_on_partial_fit : bool, default=True
        Whether ``partial_fit`` writes its tasks to the memory of tasks;
        ``fit`` always does (with ``warm_start``, as ``partial_fit`` does).
        These three act only with ``task_memory``; other values than their
        defaults are refused without it.
{episodic}"""


class MemoryClassifier(MetaClassifierMixin, _Memory):
    __doc__ = """An in-context learner for few-shot classification: queries read the support set.

    The support set is written to memory, each row as the encoding of its
    features plus that of its label; through ``n_layers`` attention layers
    the memory reads itself and each query row reads the memory, and a
    linear head gives the class logits. Meta-training on the user's own
    tasks teaches the network how to read a support set; adapting to a new
    task is one forward pass. Query rows do not read each other, so a row's
    prediction does not depend on the other query rows.
    """ + _PARAMETERS.format(episodic=episodic_parameters(
        criterion="Loss on the query logits; None is ``torch.nn.CrossEntropyLoss``.",
        classification=True,
    )) + fitted_attributes(classification=True, own=_OWN_ATTRIBUTES, prior=False) + """
    See Also
    --------
    MemoryRegressor : The same for regression.
    MatchingNetClassifier : One attention read of the support set, a fixed kernel.

    References
    ----------
    .. [1] Lee, Lee, Kim, Kosiorek, Choi and Teh, "Set Transformer", ICML 2019.
    .. [2] Hollmann, Müller, Eggensperger and Hutter, "TabPFN: A Transformer That
       Solves Small Tabular Classification Problems in a Second", ICLR 2023.

    Examples
    --------
    >>> from skmeta import MemoryClassifier
    >>> from skmeta.datasets import make_blob_tasks
    >>> tasks = make_blob_tasks(n_tasks=20, random_state=0)
    >>> meta = MemoryClassifier(width=16, max_epochs=2, random_state=0).fit(tasks[:15])
    >>> meta.adapt(tasks[15].X[:10], tasks[15].y[:10]).predict_proba(tasks[15].X[10:12]).shape
    (2, 2)
    """

    def _label_width(self):
        return self.n_ways_

    def _codes(self, y):
        return nn.functional.one_hot(y, self.n_ways_).to(torch.float32)

    def _check_support_classes(self, classes):
        super()._check_support_classes(classes)
        if classes.shape[0] != self.n_ways_:
            raise ValueError(
                f"{type(self).__name__} was meta-trained on {self.n_ways_}-way tasks but this "
                f"support set has {classes.shape[0]} classes; pass a support set with exactly "
                f"{self.n_ways_} classes, or refit with n_ways={classes.shape[0]}."
            )


class MemoryRegressor(_Memory):
    _classification = False

    __doc__ = """An in-context learner for few-shot regression: queries read the support set.

    The support set is written to memory, each row as the encoding of its
    features plus that of its target (standardised by the support set's
    mean and deviation); through ``n_layers`` attention layers the memory
    reads itself and each query row reads the memory, and a linear head
    gives the standardised prediction, returned in the targets' units.
    Adapting to a new task is one forward pass.
    """ + _PARAMETERS.format(episodic=episodic_parameters(
        criterion="Loss on the query predictions; None is ``torch.nn.MSELoss``.",
        classification=False,
    )) + fitted_attributes(classification=False, own=_OWN_ATTRIBUTES, prior=False) + """
    See Also
    --------
    MemoryClassifier : The same for classification.
    MatchingNetRegressor : One attention read, predictions a weighted mean of the targets.

    Examples
    --------
    >>> from skmeta import MemoryRegressor
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> tasks = make_sinusoid_tasks(n_tasks=200, random_state=0)
    >>> meta = MemoryRegressor(width=16, n_shots=10, n_queries=10, max_epochs=2,
    ...                        random_state=0).fit(tasks)
    >>> meta.adapt(tasks[0].X[:10], tasks[0].y[:10]).predict(tasks[0].X[10:12]).shape
    (2,)
    """

    def _standardizes_targets(self):
        # The network reads the targets as inputs: standardised, every task's
        # targets are on the scale the network was trained on.
        return True

    def _label_width(self):
        return 1

    def _codes(self, y):
        return y.unsqueeze(-1)

    def _outputs(self, outputs):
        return outputs.squeeze(-1)
