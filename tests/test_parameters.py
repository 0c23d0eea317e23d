"""Every parameter of every learner changes the result the way it should.

The tests iterate over :func:`skmeta.utils.all_learners`. For each learner,
meta-training with plain SGD is replayed step by step from the episodes it
drew and its initial weights, by reference code written apart from skmeta's
functional cores: a Python loop over episodes, class means by boolean masks,
``torch.autograd.grad`` for the inner steps, all in float64. The replayed
weights must match the learner's, and must differ from a replay with the
parameter under test set otherwise (so that each case can tell the two
apart). The episodes are checked against the tasks and the settings
(``n_ways``, ``n_shots``, ``n_queries``, ``meta_batch_size``,
``n_episodes``, ``max_epochs``, ``train_split``); ``valid_score`` and the
episodic ``score`` are recomputed from their documented definitions with
sklearn's metrics.

The pooled learners (fine-tuning, a shared trunk) pre-train on the rows of
the training tasks pooled, in batches ``(X, y, task_index)``, not on
episodes: their replay takes each epoch's rows in the order drawn, cuts them
into batches of ``rows_per_batch`` and steps on the loss of each batch,
computed row by row from the tasks themselves (labels as positions in the
sorted union of the tasks' labels, targets standardised per task). Tests
about episodes select the episodic learners; the pooled ones have their own
checks of the batches, the steps and ``valid_score``.

A new learner needs an entry in :data:`REFERENCES`:
``test_every_learner_has_a_reference`` says so.
"""

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from _tiny import module_takes
from sklearn.metrics import accuracy_score, r2_score
from skorch.callbacks import Callback
from torch.func import functional_call
from torch.nn import functional as F

from skmeta import TaskCollection, TaskSplit
from skmeta.datasets import make_blob_tasks, make_sinusoid_tasks
from skmeta.tasks import EpisodeSampler
from skmeta.utils import all_learners

# ---------------------------------------------------------------- recording


class EpisodeRecorder(Callback):
    """Keeps the initial weights and every meta-batch a learner draws.

    ``valid_states`` holds the weights each meta-validation pass ran with
    (one per epoch), ``valid_batches`` that pass's meta-batches.
    """

    def initialize(self):
        self.initial = None
        self.train_batches, self.valid_batches, self.valid_states = [], [], []
        return self

    def on_train_begin(self, net, **kwargs):
        if self.initial is None:
            self.initial = _weights(net.module_)

    def on_epoch_begin(self, net, **kwargs):
        self.train_batches.append([])
        self.valid_batches.append([])
        self.valid_states.append(None)

    def on_batch_begin(self, net, batch=None, training=None, **kwargs):
        if training:
            self.train_batches[-1].append(batch)
            return
        self.valid_batches[-1].append(batch)
        if self.valid_states[-1] is None:
            self.valid_states[-1] = copy.deepcopy(net.module_.state_dict())


class PooledRecorder(EpisodeRecorder):
    """The same for pooled learners: each batch is ``(X, y, task_index)``, kept as copies."""

    def on_batch_begin(self, net, batch=None, training=None, **kwargs):
        X, y, task_index = batch
        batch = (X.detach().clone(), y.detach().clone(), task_index.detach().clone())
        super().on_batch_begin(net, batch=batch, training=training, **kwargs)


def _weights(module):
    return {name: p.detach().clone() for name, p in module.named_parameters()}


# ---------------------------------------------------------- reference losses


def _cross_entropy(label_smoothing=0.0):
    return lambda logits, y: F.cross_entropy(logits, y, label_smoothing=label_smoothing)


def _squared_error(output, y):
    return ((output.squeeze(-1) - y) ** 2).mean()


def _absolute_error(output, y):
    return (output.squeeze(-1) - y).abs().mean()


def protonet_meta_loss(module, params, batch, settings):
    """Query loss of prototypical networks, one episode at a time."""
    loss_fn, losses = settings["loss"], []
    for e in range(len(batch)):
        support = functional_call(module, params, (batch.X_support[e],))
        query = functional_call(module, params, (batch.X_query[e],))
        labels = batch.y_support[e]
        centres = torch.stack([support[labels == k].mean(0) for k in range(int(labels.max()) + 1)])
        distances = ((query[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
        losses.append(loss_fn(-distances, batch.y_query[e]))
    return torch.stack(losses).mean()


def matching_meta_loss(module, params, batch, settings):
    """Query loss of matching networks, one episode at a time: the embedding by
    ``functional_call``, the context reads and the kernel written out, the
    attention-weighted vote over the support set's labels (or targets)."""
    embedding = {name[len("embedding."):]: p for name, p in params.items() if name.startswith("embedding.")}

    def linear(name, X):
        return X @ params[f"{name}.weight"].T + params[f"{name}.bias"]

    def read(prefix, rows, keys):
        scores = linear(f"{prefix}.0", rows) @ linear(f"{prefix}.1", keys).T / rows.shape[-1] ** 0.5
        return rows + torch.softmax(scores, dim=-1) @ linear(f"{prefix}.2", keys)

    losses = []
    for e in range(len(batch)):
        support = functional_call(module.embedding, embedding, (batch.X_support[e],))
        queries = functional_call(module.embedding, embedding, (batch.X_query[e],))
        if settings["full_context"]:
            support = read("support_context", support, support)
            queries = read("query_context", queries, support)
        if settings["kernel"] == "learned":
            kernel = queries @ params["weight_matrix"] @ support.T
        else:
            unit_queries = queries / queries.norm(dim=-1, keepdim=True)
            kernel = unit_queries @ (support / support.norm(dim=-1, keepdim=True)).T
        attention = torch.softmax(params["log_scale"].exp() * kernel, dim=-1)
        # Weights the settings leave unused (the context layers, W) get a zero gradient.
        unused = sum(p.sum() for p in params.values()) * 0.0
        y = batch.y_support[e]
        if settings["classification"]:
            probabilities = attention @ F.one_hot(y, int(y.max()) + 1).double()
            losses.append(settings["loss"](probabilities.clamp_min(1e-12).log(), batch.y_query[e]) + unused)
        else:  # targets standardised by the support set's mean and deviation (floored)
            mean, scale = y.mean(), y.std(unbiased=False).clamp_min(0.1 * settings["pooled_scale"])
            losses.append(settings["loss"]((attention @ ((y - mean) / scale))[:, None],
                                           (batch.y_query[e] - mean) / scale) + unused)
    return torch.stack(losses).mean()


def memory_meta_loss(module, params, batch, settings):
    """Query loss of the in-context network, one episode at a time: every layer
    written out (layer norms, each attention head by its own softmax, GELU
    feed-forward), memory tokens = encoded rows + encoded labels (or targets)."""
    def linear(name, X):
        return X @ params[f"{name}.weight"].T + params[f"{name}.bias"]

    def norm(name, X):
        return F.layer_norm(X, X.shape[-1:], params[f"{name}.weight"], params[f"{name}.bias"])

    def feed_forward(name, X):
        return linear(f"{name}.3", F.gelu(linear(f"{name}.1", norm(f"{name}.0", X))))

    def heads(q, k, v, n_heads):
        size = q.shape[-1] // n_heads
        return torch.cat([torch.softmax(q[:, h * size:(h + 1) * size] @ k[:, h * size:(h + 1) * size].T
                                        / size ** 0.5, dim=-1) @ v[:, h * size:(h + 1) * size]
                          for h in range(n_heads)], dim=-1)

    n_layers = sum(1 for name in params if name.endswith("memory_out.weight"))
    losses = []
    for e in range(len(batch)):
        y = batch.y_support[e]
        if settings["classification"]:
            codes = F.one_hot(y, int(y.max()) + 1).double()
        else:  # targets standardised by the support set's mean and deviation (floored)
            mean, scale = y.mean(), y.std(unbiased=False).clamp_min(0.1 * settings["pooled_scale"])
            codes = ((y - mean) / scale)[:, None]
        memory = linear("rows.2", F.gelu(linear("rows.0", batch.X_support[e]))) + linear("labels", codes)
        queries = linear("rows.2", F.gelu(linear("rows.0", batch.X_query[e])))
        for i in range(n_layers):
            layer = f"layers.{i}"
            q, k, v = linear(f"{layer}.memory_qkv", norm(f"{layer}.memory_norm", memory)).chunk(3, dim=-1)
            written = memory + linear(f"{layer}.memory_out", heads(q, k, v, settings["n_heads"]))
            written = written + feed_forward(f"{layer}.memory_ff", written)
            k, v = linear(f"{layer}.query_kv", norm(f"{layer}.memory_norm", written)).chunk(2, dim=-1)
            q = linear(f"{layer}.query_q", norm(f"{layer}.query_norm", queries))
            queries = queries + linear(f"{layer}.query_out", heads(q, k, v, settings["n_heads"]))
            queries = queries + feed_forward(f"{layer}.query_ff", queries)
            memory = written
        output = linear("head.1", norm("head.0", queries))
        if settings["classification"]:
            losses.append(settings["loss"](output, batch.y_query[e]))
        else:
            losses.append(settings["loss"](output, (batch.y_query[e] - mean) / scale))
    return torch.stack(losses).mean()


def adapt_by_hand(module, params, X, y, *, loss, inner_lr, steps, first_order):
    """``steps`` gradient steps of ``inner_lr`` on the support loss."""
    for _ in range(steps):
        support_loss = loss(functional_call(module, params, (X,)), y)
        grads = torch.autograd.grad(support_loss, list(params.values()), create_graph=not first_order)
        params = {name: p - inner_lr * g for (name, p), g in zip(params.items(), grads, strict=True)}
    return params


def maml_meta_loss(module, params, batch, settings):
    """MAML's query loss after adapting to each support set, one episode at a time."""
    losses = []
    for e in range(len(batch)):
        adapted = adapt_by_hand(
            module, params, batch.X_support[e], batch.y_support[e], loss=settings["loss"],
            inner_lr=settings["inner_lr"], steps=settings["inner_steps"],
            first_order=settings["first_order"],
        )
        output = functional_call(module, adapted, (batch.X_query[e],))
        losses.append(settings["loss"](output, batch.y_query[e]))
    return torch.stack(losses).mean()


def reptile_meta_loss(module, params, batch, settings):
    """Reptile, one episode at a time: ``inner_steps`` first-order steps on the
    episode's support and query rows together, from a detached copy of the
    weights; the loss ``0.5 * sum ||p - mean adapted||^2`` has the gradient
    ``p - mean adapted``, so that an SGD step of ``lr`` is Reptile's update."""
    adapted = []
    for e in range(len(batch)):
        X = torch.cat([batch.X_support[e], batch.X_query[e]])
        y = torch.cat([batch.y_support[e], batch.y_query[e]])
        start = {name: p.detach().clone().requires_grad_() for name, p in params.items()}
        adapted.append(adapt_by_hand(module, start, X, y, loss=settings["loss"],
                                     inner_lr=settings["inner_lr"], steps=settings["inner_steps"],
                                     first_order=True))
    return 0.5 * sum(((p - torch.stack([a[name].detach() for a in adapted]).mean(0)) ** 2).sum()
                     for name, p in params.items())


def metasgd_meta_loss(module, params, batch, settings):
    """Meta-SGD's query loss, one episode at a time: each inner step subtracts
    ``rate * gradient``, the rate ``rates.<name with '-' for '.'>`` of the
    container module, a tensor of the weight's shape meta-learned with it."""
    network = {name.removeprefix("network."): p for name, p in params.items()
               if name.startswith("network.")}
    rates = {name: params["rates." + name.replace(".", "-")] for name in network}
    losses = []
    for e in range(len(batch)):
        adapted = dict(network)
        for _ in range(settings["inner_steps"]):
            support = settings["loss"](functional_call(module.network, adapted, (batch.X_support[e],)),
                                       batch.y_support[e])
            grads = torch.autograd.grad(support, list(adapted.values()),
                                        create_graph=not settings["first_order"])
            adapted = {name: p - rates[name] * g for (name, p), g in zip(adapted.items(), grads, strict=True)}
        output = functional_call(module.network, adapted, (batch.X_query[e],))
        losses.append(settings["loss"](output, batch.y_query[e]))
    return torch.stack(losses).mean()


def anil_meta_loss(module, params, batch, settings):
    """ANIL's query loss, one episode at a time: the inner steps move only the
    weight and bias of the last ``torch.nn.Linear``; the body takes none."""
    last = [name for name, m in module.named_modules() if isinstance(m, torch.nn.Linear)][-1]
    head = [f"{last}.weight", f"{last}.bias"]
    losses = []
    for e in range(len(batch)):
        adapted = dict(params)
        for _ in range(settings["inner_steps"]):
            support = settings["loss"](functional_call(module, adapted, (batch.X_support[e],)),
                                       batch.y_support[e])
            grads = torch.autograd.grad(support, [adapted[name] for name in head],
                                        create_graph=not settings["first_order"])
            adapted = {**adapted, **{name: adapted[name] - settings["inner_lr"] * g
                                     for name, g in zip(head, grads, strict=True)}}
        output = functional_call(module, adapted, (batch.X_query[e],))
        losses.append(settings["loss"](output, batch.y_query[e]))
    return torch.stack(losses).mean()


def _log_and_sign(x):
    """Andrychowicz et al.'s inputs, p = 10: ``(log|x| / 10, sign x)``, or ``(-1, e^10 x)``
    where ``|x| < e^-10``."""
    small = x.abs() < np.exp(-10)
    log_part = torch.where(small, torch.full_like(x, -1.0), torch.log(x.abs().clamp_min(np.exp(-10))) / 10)
    return torch.stack([log_part, torch.where(small, np.exp(10) * x, torch.sign(x))], dim=-1)


def meta_lstm_meta_loss(module, params, batch, settings):
    """The learned optimizer's (Meta-LSTM's) query loss, one episode at a time.

    For each weight tensor of ``network.*`` and each step: ``torch.autograd.grad``
    of the support loss; an LSTM cell (``optimizer_lstm.lstm_input``/``lstm_hidden``,
    gates in the order input, forget, cell, output) reads the gradient's and the
    loss's log-magnitude and sign; then ``i = sigmoid(W_I [h, theta, i_prev] + b_I)``,
    ``f = sigmoid(W_F [h, theta, f_prev] + b_F)`` (``i_prev = f_prev = 0`` at first)
    and ``theta <- f * theta - i * grad``. First order: the gradient and the loss
    are constants. ``truncation`` k: before the last k steps, the LSTM state and
    the moves of the weights are detached, their identity path to the start kept.
    """
    start = {name.removeprefix("network."): p for name, p in params.items() if name.startswith("network.")}
    lstm = {name.removeprefix("optimizer_lstm."): p for name, p in params.items()
            if name.startswith("optimizer_lstm.")}
    W_x, b_x, W_h = lstm["lstm_input.weight"], lstm["lstm_input.bias"], lstm["lstm_hidden.weight"]
    (W_I,), (b_I,) = lstm["input_gate.weight"], lstm["input_gate.bias"]
    (W_F,), (b_F,) = lstm["forget_gate.weight"], lstm["forget_gate.bias"]
    H = W_h.shape[1]
    steps, k, first_order = settings["inner_steps"], settings["truncation"], settings["first_order"]
    losses = []
    for e in range(len(batch)):
        theta = dict(start)
        h = {name: p.new_zeros(p.shape + (H,)) for name, p in start.items()}
        c = dict(h)
        i_prev = {name: torch.zeros_like(p) for name, p in start.items()}
        f_prev = dict(i_prev)
        for t in range(steps):
            if k is not None and t == steps - k:
                theta = {name: start[name] + (p - start[name]).detach() for name, p in theta.items()}
                h, c, i_prev, f_prev = ({name: v.detach() for name, v in s.items()}
                                        for s in (h, c, i_prev, f_prev))
            support = settings["loss"](functional_call(module.network, theta, (batch.X_support[e],)),
                                       batch.y_support[e])
            grads = torch.autograd.grad(support, list(theta.values()), create_graph=not first_order)
            if first_order:
                support = support.detach()
            updated = {}
            for (name, p), g in zip(theta.items(), grads, strict=True):
                x = torch.cat([_log_and_sign(g), _log_and_sign(support).expand(g.shape + (2,))], dim=-1)
                z = x @ W_x.T + b_x + h[name] @ W_h.T
                c[name] = (torch.sigmoid(z[..., H:2 * H]) * c[name]
                           + torch.sigmoid(z[..., :H]) * torch.tanh(z[..., 2 * H:3 * H]))
                h[name] = torch.sigmoid(z[..., 3 * H:]) * torch.tanh(c[name])
                i = torch.sigmoid(h[name] @ W_I[:H] + W_I[H] * p + W_I[H + 1] * i_prev[name] + b_I)
                f = torch.sigmoid(h[name] @ W_F[:H] + W_F[H] * p + W_F[H + 1] * f_prev[name] + b_F)
                i_prev[name], f_prev[name] = i, f
                updated[name] = f * p - i * g
            theta = updated
        output = functional_call(module.network, theta, (batch.X_query[e],))
        losses.append(settings["loss"](output, batch.y_query[e]))
    return torch.stack(losses).mean()


def film_meta_loss(module, params, batch, settings):
    """Query loss of a task-conditioned (FiLM) network, one episode at a time:
    encoder means over rows and, by boolean masks, over classes; each hidden
    layer scaled by 1 + and shifted by its slice of the generator's output."""
    def linear(name, X):
        return X @ params[f"{name}.weight"].T + params[f"{name}.bias"]

    n_encoder = sum(1 for name in params if name.startswith("encoder.") and name.endswith(".weight"))
    n_hidden = sum(1 for name in params if name.startswith("hidden.") and name.endswith(".weight"))
    widths = [params[f"hidden.{i}.weight"].shape[0] for i in range(n_hidden)]
    losses = []
    for e in range(len(batch)):
        X, y = batch.X_support[e], batch.y_support[e]
        if settings["classification"]:
            n_ways = int(y.max()) + 1
            code, masks = F.one_hot(y, n_ways).double(), [y == k for k in range(n_ways)]
        else:
            code, masks = y[:, None], [torch.ones_like(y, dtype=torch.bool)]
        rows = torch.cat([X, code], dim=1)
        for i in range(n_encoder):
            rows = torch.relu(linear(f"encoder.{2 * i}", rows))
        task = linear("rho.2", torch.relu(linear("rho.0", rows.mean(0))))
        modulation = linear("film", task)
        hidden, start = batch.X_query[e], 0
        for i, width in enumerate(widths):
            scale = 1 + modulation[start:start + width]
            shift = modulation[sum(widths) + start:sum(widths) + start + width]
            hidden = torch.relu(scale * linear(f"hidden.{i}", hidden) + shift)
            start += width
        codes = torch.stack([rows[mask].mean(0) for mask in masks])
        output = hidden @ linear("code_weight", codes).T + linear("code_bias", codes).T
        losses.append(settings["loss"](output, batch.y_query[e]))
    return torch.stack(losses).mean()


# ------------------------------------------------------- reference pooled losses


def _mlp_by_hand(params, prefix, X, *, head):
    """The linear layers ``{prefix}layers.{i}`` in order, a ReLU after each (but the last if ``head``)."""
    start = f"{prefix}layers."
    indices = sorted(int(name[len(start):].split(".")[0]) for name in params
                     if name.startswith(start) and name.endswith(".weight"))
    for n, i in enumerate(indices):
        X = X @ params[f"{start}{i}.weight"].T + params[f"{start}{i}.bias"]
        if not (head and n == len(indices) - 1):
            X = torch.relu(X)
    return X


def finetune_output(params, X, task=None):
    """The pooled model (an MLP ending on a linear head) on rows ``X``."""
    return _mlp_by_hand(params, "", X, head=True)


def shared_trunk_output(params, X, task=None):
    """The trunk, then row by row its own task's head (the mean of the heads if ``task`` is None)."""
    hidden = _mlp_by_hand(params, "trunk.", X, head=False)
    if task is None:
        return hidden @ params["head_weight"].mean(0) + params["head_bias"].mean(0)
    return torch.stack([hidden[r] @ params["head_weight"][t] + params["head_bias"][t]
                        for r, t in enumerate(task)])


def pooled_loss(output_fn):
    """The mean over rows of the criterion on each row's output, one task at a time."""
    def loss(params, X, y, task, settings):
        total = 0.0
        for t in np.unique(task):
            rows = np.flatnonzero(task == t)
            total = total + settings["loss"](output_fn(params, X[rows], task[rows]), y[rows])
        return total / len(y)
    return loss


def _pooled_settings(classification):
    """Summed losses over rows: cross-entropy (label smoothing if set) or squared / absolute error."""
    def settings(params):
        if classification:
            smoothing = (params.get("criterion__label_smoothing", 0.0)
                         if params.get("criterion") is torch.nn.CrossEntropyLoss else 0.0)
            return {"loss": lambda logits, y: F.cross_entropy(logits, y, label_smoothing=smoothing,
                                                               reduction="sum")}
        if params.get("criterion") is torch.nn.L1Loss:
            return {"loss": lambda output, y: (output.squeeze(-1) - y).abs().sum()}
        return {"loss": lambda output, y: ((output.squeeze(-1) - y) ** 2).sum()}
    return settings


def _pooled_targets_by_hand(tasks, fitted_tasks, *, classification, standardize, classes=None):
    """``(task, row) -> target``: a label's position among ``classes`` (by default the
    sorted union of the labels of ``tasks``); or a regression target, standardised if
    ``standardize`` by its task's mean and standard deviation, the latter floored at a
    tenth of the root mean within-task variance of the fitted tasks."""
    if classification:
        if classes is None:
            classes = sorted(set().union(*(np.asarray(task.y).tolist() for task in tasks)))
        position = {label: k for k, label in enumerate(list(classes))}
        return {(t, i): position[label] for t, task in enumerate(tasks)
                for i, label in enumerate(np.asarray(task.y).tolist())}
    pooled = np.sqrt(np.mean([np.var(np.asarray(task.y, dtype=np.float64)) for task in fitted_tasks]))
    targets = {}
    for t, task in enumerate(tasks):
        y = np.asarray(task.y, dtype=np.float64)
        mean, scale = (y.mean(), max(y.std(), 0.1 * pooled)) if standardize else (0.0, 1.0)
        targets.update({(t, i): (value - mean) / scale for i, value in enumerate(y)})
    return targets


# ------------------------------------------------------------------ learners


def _blob_tasks(n_tasks=4, n_rows_per_class=8, random_state=0):
    return make_blob_tasks(n_tasks=n_tasks, n_classes=3, n_rows_per_class=n_rows_per_class,
                           n_features=4, random_state=random_state)


def _sinusoid_tasks(n_tasks=4, n_rows=12, random_state=0):
    return make_sinusoid_tasks(n_tasks, n_rows=n_rows, random_state=random_state)


@dataclass
class Reference:
    """How to replay one learner's meta-training by hand.

    ``settings(params)`` turns the learner's parameters into what
    ``meta_loss`` needs; ``cases`` are ``(overrides, contrast)`` pairs: the
    learner is fitted with ``overrides``, and the replay with ``contrast``
    instead must end elsewhere.
    """

    meta_loss: object
    settings: object
    tasks: object
    params: dict = field(default_factory=dict)
    cases: list = field(default_factory=list)
    #: Pre-trains on pooled rows, not episodes: ``meta_loss(params, X, y, task, settings)``
    #: is the loss of a batch of rows, ``output(params, X, task)`` the model's outputs.
    pooled: bool = False
    output: object = None


def _classifier_loss(params):
    if params.get("criterion") is torch.nn.CrossEntropyLoss:
        return _cross_entropy(params.get("criterion__label_smoothing", 0.0))
    return _cross_entropy()


def _maml_settings(loss):
    def settings(params):
        return {
            "loss": loss(params), "inner_lr": params.get("inner_lr", 0.1),
            "inner_steps": params.get("inner_steps", 1), "first_order": params.get("first_order", False),
        }
    return settings


def _regressor_loss(params):
    return _absolute_error if params.get("criterion") is torch.nn.L1Loss else _squared_error


_SHARED_CASES = [
    ({}, {"lr": 0.05}),
    ({"lr": 0.3}, {"lr": 0.1}),
]
_CLASSIFIER_CASES = [
    ({"criterion": torch.nn.CrossEntropyLoss, "criterion__label_smoothing": 0.3},
     {"criterion": None}),
]
_MAML_CASES = [
    ({"first_order": True}, {"first_order": False}),
    ({"first_order": False}, {"first_order": True}),
    ({"inner_steps": 2}, {"inner_steps": 1}),
    ({"inner_steps": 2, "first_order": True}, {"inner_steps": 1}),
    ({"inner_lr": 0.3}, {"inner_lr": 0.15}),
]

REFERENCES = {
    "FiLMClassifier": Reference(
        film_meta_loss, lambda params: {"loss": _classifier_loss(params), "classification": True},
        _blob_tasks, cases=_SHARED_CASES + _CLASSIFIER_CASES,
    ),
    "FiLMRegressor": Reference(
        film_meta_loss, lambda params: {"loss": _regressor_loss(params), "classification": False},
        # Raw targets (standardize_targets=False) up to 5 enter the encoder and the
        # output layer's weights: six SGD steps of 0.1 diverge.
        _sinusoid_tasks, params={"lr": 0.02},
        cases=_SHARED_CASES + [({"criterion": torch.nn.L1Loss}, {"criterion": None})],
    ),
    "ProtoNetClassifier": Reference(
        protonet_meta_loss, lambda params: {"loss": _classifier_loss(params)}, _blob_tasks,
        cases=_SHARED_CASES + _CLASSIFIER_CASES,
    ),
    "MAMLClassifier": Reference(
        maml_meta_loss, _maml_settings(_classifier_loss), _blob_tasks,
        params={"adapt_steps": 2}, cases=_SHARED_CASES + _CLASSIFIER_CASES + _MAML_CASES,
    ),
    "MAMLRegressor": Reference(
        maml_meta_loss, _maml_settings(_regressor_loss), _sinusoid_tasks,
        params={"inner_lr": 0.05, "adapt_steps": 2},
        cases=_SHARED_CASES + [
            ({"criterion": torch.nn.L1Loss}, {"criterion": None}),
            ({"first_order": True}, {"first_order": False}),
            ({"first_order": False}, {"first_order": True}),
            ({"inner_steps": 2}, {"inner_steps": 1}),
            ({"inner_steps": 2, "first_order": True}, {"inner_steps": 1}),
            ({"inner_lr": 0.1}, {"inner_lr": 0.05}),
        ],
    ),
}

#: Meta-SGD's rates start at inner_lr and are part of the recorded initial weights,
#: so a replay cannot contrast inner_lr (tests/optimization/test_metasgd.py does).
_METASGD_CASES = [case for case in _MAML_CASES if "inner_lr" not in case[0]]
_REGRESSOR_CASES = [({"criterion": torch.nn.L1Loss}, {"criterion": None})]
REFERENCES.update({
    "MetaSGDClassifier": Reference(
        metasgd_meta_loss, _maml_settings(_classifier_loss), _blob_tasks,
        params={"adapt_steps": 2}, cases=_SHARED_CASES + _CLASSIFIER_CASES + _METASGD_CASES,
    ),
    "MetaSGDRegressor": Reference(
        # Raw targets up to 5 move the rates fast: six SGD steps of 0.1 diverge.
        metasgd_meta_loss, _maml_settings(_regressor_loss), _sinusoid_tasks,
        params={"inner_lr": 0.05, "adapt_steps": 2, "lr": 0.02},
        cases=_SHARED_CASES + _REGRESSOR_CASES + _METASGD_CASES,
    ),
    "ANILClassifier": Reference(
        anil_meta_loss, _maml_settings(_classifier_loss), _blob_tasks,
        params={"adapt_steps": 2}, cases=_SHARED_CASES + _CLASSIFIER_CASES + _MAML_CASES + [
            ({"cache_support_embedding": False, "inner_steps": 2}, {"inner_steps": 1}),
        ],
    ),
    "ANILRegressor": Reference(
        anil_meta_loss, _maml_settings(_regressor_loss), _sinusoid_tasks,
        params={"inner_lr": 0.05, "adapt_steps": 2},
        cases=_SHARED_CASES + _REGRESSOR_CASES + [
            case for case in _MAML_CASES if "inner_lr" not in case[0]] + [
            ({"inner_lr": 0.1}, {"inner_lr": 0.05}),
            ({"cache_support_embedding": False, "inner_steps": 2}, {"inner_steps": 1}),
        ],
    ),
})


def _reptile_settings(loss):
    def settings(params):
        return {"loss": loss(params), "inner_lr": params.get("inner_lr", 0.1),
                "inner_steps": params.get("inner_steps", 5)}
    return settings


_REPTILE_CASES = [({"inner_steps": 2}, {"inner_steps": 5}), ({"inner_lr": 0.3}, {"inner_lr": 0.15})]
REFERENCES.update({
    "ReptileClassifier": Reference(
        reptile_meta_loss, _reptile_settings(_classifier_loss), _blob_tasks,
        params={"adapt_steps": 2}, cases=_SHARED_CASES + _CLASSIFIER_CASES + _REPTILE_CASES,
    ),
    "ReptileRegressor": Reference(
        reptile_meta_loss, _reptile_settings(_regressor_loss), _sinusoid_tasks,
        params={"inner_lr": 0.05, "adapt_steps": 2},
        cases=_SHARED_CASES + [({"criterion": torch.nn.L1Loss}, {"criterion": None}),
                               ({"inner_steps": 2}, {"inner_steps": 5}),
                               ({"inner_lr": 0.1}, {"inner_lr": 0.05})],
    ),
})

def _meta_lstm_settings(loss):
    def settings(params):
        return {"loss": loss(params), "inner_steps": params.get("inner_steps", 5),
                "first_order": params.get("first_order", False), "truncation": params.get("truncation")}
    return settings


#: The learned optimizer's rate starts at inner_lr in the recorded initial weights (the
#: input gate's bias), so a replay cannot contrast inner_lr (test_meta_lstm.py does).
_META_LSTM_CASES = [
    ({"first_order": True}, {"first_order": False}),
    ({"first_order": False}, {"first_order": True}),
    ({"inner_steps": 2}, {"inner_steps": 3}),
    ({"inner_steps": 3, "truncation": 1}, {"truncation": None}),
    ({"inner_steps": 3, "truncation": 2}, {"truncation": 1}),
    ({"inner_steps": 3, "truncation": 1, "first_order": True}, {"truncation": None}),
]
REFERENCES.update({
    "MetaLSTMClassifier": Reference(
        meta_lstm_meta_loss, _meta_lstm_settings(_classifier_loss), _blob_tasks,
        params={"adapt_steps": 2}, cases=_SHARED_CASES + _CLASSIFIER_CASES + _META_LSTM_CASES,
    ),
    "MetaLSTMRegressor": Reference(
        meta_lstm_meta_loss, _meta_lstm_settings(_regressor_loss), _sinusoid_tasks,
        params={"inner_lr": 0.05, "adapt_steps": 2},
        cases=_SHARED_CASES + [({"criterion": torch.nn.L1Loss}, {"criterion": None})] + _META_LSTM_CASES,
    ),
})

# ``scale`` is the kernel's starting inverse temperature: it sets the initial
# weights the replay starts from, so its witness is a test of that start.
_MATCHING_CASES = [
    ({"kernel": "learned"}, {"kernel": "cosine"}),
    ({"full_context": True}, {"full_context": False}),
    ({"full_context": True, "kernel": "learned"}, {"full_context": False}),
]


def _matching_settings(loss, classification):
    def settings(params):
        # The regressor standardises targets by task; the floor of the scale is a
        # tenth of the root mean within-task variance of the (all) training tasks.
        pooled = np.sqrt(np.mean([np.var(task.y.astype(np.float64)) for task in _sinusoid_tasks()]))
        return {"loss": loss(params), "classification": classification, "pooled_scale": pooled,
                "kernel": params.get("kernel", "cosine"), "full_context": params.get("full_context", False)}
    return settings


REFERENCES.update({
    "MatchingNetClassifier": Reference(
        matching_meta_loss, _matching_settings(_classifier_loss, True), _blob_tasks,
        cases=_SHARED_CASES + _CLASSIFIER_CASES + _MATCHING_CASES,
    ),
    # One feature through 5 ReLUs: the cosines of most rows are 1 (a flat
    # kernel, no gradient), and steps of 0.1 leave every unit dead for some
    # rows; the learned kernel sees the embeddings' lengths too.
    "MatchingNetRegressor": Reference(
        matching_meta_loss, _matching_settings(_regressor_loss, False), _sinusoid_tasks,
        params={"kernel": "learned", "lr": 0.02},
        cases=_SHARED_CASES + [({"full_context": True}, {"full_context": False}),
                               ({"criterion": torch.nn.L1Loss}, {"criterion": None})],
    ),
    # Trained as prototypical networks are: the same replay.
    "EmbeddingKNNClassifier": Reference(
        protonet_meta_loss, lambda params: {"loss": _classifier_loss(params)}, _blob_tasks,
        cases=_SHARED_CASES + _CLASSIFIER_CASES,
    ),
})

def _memory_settings(loss, classification):
    def settings(params):
        pooled = np.sqrt(np.mean([np.var(task.y.astype(np.float64)) for task in _sinusoid_tasks()]))
        return {"loss": loss(params), "classification": classification, "pooled_scale": pooled,
                "n_heads": params.get("n_heads", 4)}
    return settings


# The network's shape (width, n_layers) sets the weights the replay starts
# from: the replay reads it from them; n_heads splits the same weights.
_MEMORY_PARAMS = {"width": 8, "n_heads": 2}
_MEMORY_CASES = [({"n_heads": 4}, {"n_heads": 2}), ({"n_heads": 1}, {"n_heads": 2})]
REFERENCES.update({
    "MemoryClassifier": Reference(
        memory_meta_loss, _memory_settings(_classifier_loss, True), _blob_tasks,
        params=_MEMORY_PARAMS, cases=_SHARED_CASES + _CLASSIFIER_CASES + _MEMORY_CASES,
    ),
    "MemoryRegressor": Reference(
        memory_meta_loss, _memory_settings(_regressor_loss, False), _sinusoid_tasks,
        params={**_MEMORY_PARAMS, "lr": 0.02},
        cases=_SHARED_CASES + _MEMORY_CASES + [({"criterion": torch.nn.L1Loss}, {"criterion": None})],
    ),
})

#: ``rows_per_batch`` that holds every row of the reference tasks (96 or 48): one step an epoch.
_ONE_BATCH = {"rows_per_batch": 100}
_POOLED_CASES = [({"rows_per_batch": 100}, {"rows_per_batch": 40})]
_POOLED_REGRESSOR_CASES = [
    ({"criterion": torch.nn.L1Loss}, {"criterion": None}),
    ({"standardize_targets": True}, {"standardize_targets": False}),
]


def _pooled_reference(output_fn, classification):
    tasks = _blob_tasks if classification else _sinusoid_tasks
    cases = _SHARED_CASES + _POOLED_CASES + (_CLASSIFIER_CASES if classification else _POOLED_REGRESSOR_CASES)
    return Reference(pooled_loss(output_fn), _pooled_settings(classification), tasks,
                     params=dict(_ONE_BATCH), cases=cases, pooled=True, output=output_fn)


REFERENCES.update({
    "FineTuneClassifier": _pooled_reference(finetune_output, classification=True),
    "FineTuneRegressor": _pooled_reference(finetune_output, classification=False),
    "SharedTrunkClassifier": _pooled_reference(shared_trunk_output, classification=True),
    "SharedTrunkRegressor": _pooled_reference(shared_trunk_output, classification=False),
})

LEARNERS = all_learners()
WITH_REFERENCE = [pytest.param(name, learner, id=name) for name, learner in LEARNERS if name in REFERENCES]
#: Learners that meta-train on episodes: the tests of episodes, meta-batches and
#: validation episodes are about them only.
EPISODIC = [pytest.param(name, learner, id=name) for name, learner in LEARNERS
            if name in REFERENCES and not REFERENCES[name].pooled]
#: Learners that pre-train on pooled rows: their batches are checked instead.
POOLED = [pytest.param(name, learner, id=name) for name, learner in LEARNERS
          if name in REFERENCES and REFERENCES[name].pooled]

#: Plain SGD, so that a meta-step is ``weights - lr * meta-gradient``.
BASE = dict(
    optimizer=torch.optim.SGD,
    lr=0.1,
    max_epochs=1,
    n_episodes=3,
    meta_batch_size=3,
    n_shots=2,
    n_queries=3,
    train_split=None,
    device="cpu",
    random_state=0,
    module__hidden_sizes=(5,),
)


def _params(name, learner, **overrides):
    taken = learner().get_params(deep=False)
    # The pooled learners take (and accept) no episode settings: n_episodes,
    # meta_batch_size, n_queries are left out for them.
    base = {key: value for key, value in BASE.items()
            if (module_takes(learner, key) if key.startswith("module__") else "__" in key or key in taken)}
    params = {**base, **REFERENCES[name].params, **overrides}
    if "standardize_targets" in taken:
        # The reference replays the mathematics on the targets as given.
        params.setdefault("standardize_targets", False)
    return params


def _fit(name, learner, tasks=None, **overrides):
    recorder = PooledRecorder() if REFERENCES[name].pooled else EpisodeRecorder()
    params = _params(name, learner, **overrides)
    tasks = REFERENCES[name].tasks() if tasks is None else tasks
    meta = learner(**params, callbacks=[recorder]).fit(tasks)
    # What a pooled replay reads its rows and targets from.
    recorder.tasks = tasks
    split = params.get("train_split")
    recorder.train_tasks = tasks if split is None else split(tasks)[0]
    return meta, recorder, params


def _double(batch):
    batch = copy.copy(batch)
    batch.X_support, batch.X_query = batch.X_support.double(), batch.X_query.double()
    if batch.y_support.is_floating_point():
        batch.y_support, batch.y_query = batch.y_support.double(), batch.y_query.double()
    return batch


def replay(name, meta, recorder, params):
    """The weights after meta-training, recomputed by hand from the same start and episodes."""
    reference = REFERENCES[name]
    if reference.pooled:
        return replay_pooled(name, meta, recorder, params)
    module = copy.deepcopy(meta.module_).double()
    settings = reference.settings(params)
    weights = {weight: p.double() for weight, p in recorder.initial.items()}
    for batch in (batch for epoch in recorder.train_batches for batch in epoch):
        leaves = {weight: p.clone().requires_grad_() for weight, p in weights.items()}
        loss = reference.meta_loss(module, leaves, _double(batch), settings)
        grads = torch.autograd.grad(loss, list(leaves.values()))
        weights = {
            weight: (p - params["lr"] * g).detach()
            for (weight, p), g in zip(leaves.items(), grads, strict=True)
        }
    return weights


def replay_pooled(name, meta, recorder, params):
    """The weights after pooled pre-training, recomputed by hand: each epoch's rows in
    the order drawn, in batches of ``rows_per_batch``, targets taken from the tasks."""
    reference = REFERENCES[name]
    settings = reference.settings(params)
    tasks = recorder.train_tasks
    index = _row_index(tasks)
    targets = _pooled_targets_by_hand(tasks, recorder.tasks, classification=meta._classification,
                                      standardize=params.get("standardize_targets", False))
    weights = {weight: p.double() for weight, p in recorder.initial.items()}
    k = params["rows_per_batch"]
    for epoch in recorder.train_batches:
        if not epoch:
            continue
        drawn = torch.cat([X for X, _, _ in epoch])
        places = [index[row.tobytes()] for row in drawn.numpy()]
        X = drawn.double()
        for start in range(0, len(places), k):
            rows = places[start:start + k]
            y = torch.tensor([targets[place] for place in rows],
                             dtype=torch.int64 if meta._classification else torch.float64)
            task = np.array([t for t, _ in rows])
            leaves = {weight: p.clone().requires_grad_() for weight, p in weights.items()}
            loss = reference.meta_loss(leaves, X[start:start + k], y, task, settings)
            grads = torch.autograd.grad(loss, list(leaves.values()))
            weights = {
                weight: (p - params["lr"] * g).detach()
                for (weight, p), g in zip(leaves.items(), grads, strict=True)
            }
    return weights


def _largest_difference(left, right):
    return max((left[w].double() - right[w].double()).abs().max().item() for w in left)


# --------------------------------------------------------------- meta-steps


def test_every_learner_has_a_reference():
    missing = [name for name, _ in LEARNERS if name not in REFERENCES]
    assert not missing, f"add a hand-written replay of meta-training to REFERENCES for {missing}"
    # A replay of episodes for a learner that takes episode settings, of pooled rows otherwise.
    for name, learner in LEARNERS:
        params = learner().get_params(deep=False)
        assert REFERENCES[name].pooled == ("rows_per_batch" in params), name
        assert REFERENCES[name].pooled == ("n_episodes" not in params), name


def _case_id(name, overrides):
    shown = [f"{k}={getattr(v, '__name__', v)}" for k, v in overrides.items()]
    return "-".join([name, *shown]) if shown else f"{name}-defaults"


CASES = [
    pytest.param(name, learner, overrides, contrast, id=_case_id(name, overrides))
    for name, learner in LEARNERS if name in REFERENCES
    for overrides, contrast in REFERENCES[name].cases
]


@pytest.mark.parametrize("name, learner, overrides, contrast", CASES)
def test_one_meta_step_matches_the_hand_written_reference(name, learner, overrides, contrast):
    meta, recorder, params = _fit(name, learner, **overrides)
    assert len(recorder.train_batches) == 1 and len(recorder.train_batches[0]) == 1  # one meta-step

    expected = replay(name, meta, recorder, params)
    got = _weights(meta.module_)
    for weight in expected:
        torch.testing.assert_close(got[weight].double(), expected[weight], rtol=1e-4, atol=1e-6,
                                   msg=weight)
    # The parameter under test makes a difference this test can see.
    other = replay(name, meta, recorder, {**params, **contrast})
    assert _largest_difference(expected, other) > 1e-3, (overrides, contrast)
    assert _largest_difference(expected, recorder.initial) > 1e-3  # the step moved the weights


@pytest.mark.parametrize("name, learner", EPISODIC)
def test_epochs_and_meta_batches_are_the_steps_taken(name, learner):
    # 2 epochs of 5 episodes in meta-batches of 2: 3 steps per epoch (2, 2, 1 episodes).
    meta, recorder, params = _fit(name, learner, max_epochs=2, n_episodes=5, meta_batch_size=2)
    assert [[len(batch) for batch in epoch] for epoch in recorder.train_batches] == [[2, 2, 1]] * 2
    expected = replay(name, meta, recorder, params)
    got = _weights(meta.module_)
    for weight in expected:
        torch.testing.assert_close(got[weight].double(), expected[weight], rtol=1e-4, atol=1e-6,
                                   msg=weight)
    # Each step counts: replaying all but the last one ends elsewhere.
    recorder.train_batches[-1].pop()
    assert _largest_difference(expected, replay(name, meta, recorder, params)) > 1e-4


def _batch_sizes(n_rows, k):
    return [k] * (n_rows // k) + ([n_rows % k] if n_rows % k else [])


@pytest.mark.parametrize("name, learner", POOLED)
def test_epochs_and_rows_per_batch_are_the_steps_taken(name, learner):
    # 2 epochs of the 96 (48) pooled rows in batches of 20: 5 (3) steps per epoch.
    tasks = REFERENCES[name].tasks()
    n_rows = sum(task.n_rows for task in tasks)
    meta, recorder, params = _fit(name, learner, tasks=tasks, max_epochs=2, rows_per_batch=20)
    sizes = _batch_sizes(n_rows, 20)
    assert len(sizes) == -(-n_rows // 20)
    assert [[len(X) for X, _, _ in epoch] for epoch in recorder.train_batches] == [sizes] * 2
    assert [len(epoch["batches"]) for epoch in meta.history_] == [len(sizes)] * 2
    expected = replay(name, meta, recorder, params)
    got = _weights(meta.module_)
    for weight in expected:
        torch.testing.assert_close(got[weight].double(), expected[weight], rtol=1e-4, atol=1e-6,
                                   msg=weight)
    # rows_per_batch is what cuts the rows into steps: other batches end elsewhere.
    other_batches = replay(name, meta, recorder, {**params, "rows_per_batch": 21})
    assert _largest_difference(expected, other_batches) > 1e-4
    # Each epoch draws its own order of the rows ...
    first, second = (torch.cat([X for X, _, _ in epoch]) for epoch in recorder.train_batches)
    assert not torch.equal(first, second)
    # ... and each step counts: replaying all but the last one ends elsewhere.
    recorder.train_batches[-1].pop()
    assert _largest_difference(expected, replay(name, meta, recorder, params)) > 1e-4


# ------------------------------------------------------------------ episodes


def _row_index(tasks):
    """Where each row of ``tasks`` is: its bytes as float32 -> (task, row)."""
    index = {}
    for t, task in enumerate(tasks):
        for i, row in enumerate(np.asarray(task.X, dtype=np.float32)):
            index[row.tobytes()] = (t, i)
    return index


def _locate(rows, index):
    places = [index[row.tobytes()] for row in rows.numpy()]
    return {t for t, _ in places}, np.array([i for _, i in places])


def check_episodes(batches, tasks, *, classification, n_ways, n_shots, n_queries):
    """Each episode is one task's rows: ``n_shots`` (per class) in support,
    ``n_queries`` others in query, labels consistent with the task's."""
    index, used = _row_index(tasks), set()
    for batch in batches:
        for e in range(len(batch)):
            support_tasks, support = _locate(batch.X_support[e], index)
            query_tasks, query = _locate(batch.X_query[e], index)
            assert len(support_tasks | query_tasks) == 1, "an episode mixes tasks"
            (t,) = support_tasks
            used.add(t)
            task_y = np.asarray(tasks[t].y)
            assert len(set(support) | set(query)) == len(support) + len(query), "rows repeat"
            y_support, y_query = batch.y_support[e].numpy(), batch.y_query[e].numpy()
            if not classification:
                assert (len(support), len(query)) == (n_shots, n_queries)
                np.testing.assert_allclose(y_support, task_y[support], rtol=1e-6)
                np.testing.assert_allclose(y_query, task_y[query], rtol=1e-6)
                continue
            ways = n_ways or np.unique(task_y).shape[0]
            np.testing.assert_array_equal(np.unique(y_support), np.arange(ways))
            for k in range(ways):
                (label,) = set(task_y[support[y_support == k]])  # one class behind label k
                assert set(task_y[query[y_query == k]]) == {label}
                assert (y_support == k).sum() == n_shots and (y_query == k).sum() == n_queries
    return used


#: (overrides, for classifiers only)
EPISODE_CASES = [
    ({}, False),
    ({"n_shots": 3, "n_queries": 1}, False),
    ({"n_ways": 2}, True),
    ({"meta_batch_size": 2, "n_episodes": 4}, False),
]


@pytest.mark.parametrize("name, learner, overrides", [  # episodes: the episodic learners only
    pytest.param(name, learner, overrides, id=_case_id(name, overrides))
    for name, learner in LEARNERS if name in REFERENCES and not REFERENCES[name].pooled
    for overrides, classifiers_only in EPISODE_CASES
    if learner._classification or not classifiers_only
])
def test_episodes_follow_the_settings(name, learner, overrides):
    tasks = REFERENCES[name].tasks()
    meta, recorder, params = _fit(name, learner, tasks=tasks, **overrides)
    batches = recorder.train_batches[0]
    assert [len(b) for b in batches] == [params["meta_batch_size"]] * (
        params["n_episodes"] // params["meta_batch_size"])
    check_episodes(batches, tasks, classification=learner._classification,
                   n_ways=params.get("n_ways"), n_shots=params["n_shots"],
                   n_queries=params["n_queries"])
    if "n_ways" in overrides:
        assert meta.n_ways_ == overrides["n_ways"]


def check_pooled_batches(batches, tasks, targets, *, classification):
    """Each row of ``tasks`` once, with its task's position as ``task_index`` and its
    target as ``y``; returns the ``(task, row)`` of each row in the order drawn."""
    index, places = _row_index(tasks), []
    for X, y, task_index in batches:
        assert len(X) == len(y) == len(task_index)
        batch = [index[row.tobytes()] for row in X.numpy()]
        np.testing.assert_array_equal(task_index.numpy(), [t for t, _ in batch])
        expected = [targets[place] for place in batch]
        if classification:
            assert y.dtype == torch.int64
            np.testing.assert_array_equal(y.numpy(), expected)
        else:
            np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-6)
        places += batch
    assert sorted(places) == [(t, i) for t, task in enumerate(tasks) for i in range(task.n_rows)]
    return places


def _pooled_fit_with_held_out_tasks(name, learner, **overrides):
    tasks = REFERENCES[name].tasks(n_tasks=6)
    if not learner._classification:  # other sizes and levels, so that standardising shows
        tasks = TaskCollection([(task.X, (t + 1) * task.y + 3 * t) for t, task in enumerate(tasks)])
    split = TaskSplit(2)
    meta, recorder, params = _fit(name, learner, tasks=tasks, train_split=split, max_epochs=2,
                                  rows_per_batch=10, optimizer=torch.optim.Adam, lr=0.01, **overrides)
    return meta, recorder, params, tasks, *split(tasks)


@pytest.mark.parametrize("name, learner, overrides", [
    pytest.param(name, learner, overrides, id=_case_id(name, overrides))
    for name, learner in LEARNERS if name in REFERENCES and REFERENCES[name].pooled
    for overrides in ([{}] if learner._classification else
                      [{"standardize_targets": False}, {"standardize_targets": True}])
])
def test_pooled_batches_are_each_training_row_once_per_epoch(name, learner, overrides):
    meta, recorder, params, tasks, train_tasks, valid_tasks = _pooled_fit_with_held_out_tasks(
        name, learner, **overrides)
    classification = learner._classification
    classes = None
    if classification:
        classes = sorted(set().union(*(np.asarray(task.y).tolist() for task in train_tasks)))
        np.testing.assert_array_equal(meta.classes_pooled_, classes)
    standardize = params.get("standardize_targets", False)
    targets = _pooled_targets_by_hand(train_tasks, tasks, classification=classification,
                                      standardize=standardize)
    orders = []
    for epoch in recorder.train_batches:
        assert [len(X) for X, _, _ in epoch] == _batch_sizes(sum(t.n_rows for t in train_tasks), 10)
        orders.append(check_pooled_batches(epoch, train_tasks, targets, classification=classification))
    assert orders[0] != orders[1], "each epoch draws a new order"
    # The held-out tasks' rows, in task order, labels encoded against the training classes.
    valid_targets = _pooled_targets_by_hand(valid_tasks, tasks, classification=classification,
                                            standardize=standardize, classes=classes)
    for epoch in recorder.valid_batches:
        order = check_pooled_batches(epoch, valid_tasks, valid_targets, classification=classification)
        assert order == sorted(order)
    if not classification:  # standardised per task, or as given: the targets tell apart
        other = _pooled_targets_by_hand(train_tasks, tasks, classification=False,
                                        standardize=not standardize)
        assert max(abs(other[place] - targets[place]) for place in targets) > 1e-2


@pytest.mark.parametrize("name, learner", POOLED)
def test_pooled_valid_score_is_the_score_of_the_held_out_rows(name, learner):
    meta, recorder, _, _, _, valid_tasks = _pooled_fit_with_held_out_tasks(name, learner)
    scores = np.asarray(meta.history_[:, "valid_score"], dtype=float)
    assert scores.shape == (2,)
    output = REFERENCES[name].output
    for epoch, (batches, state) in enumerate(zip(recorder.valid_batches, recorder.valid_states,
                                                 strict=True)):
        state = {weight: value.double() for weight, value in state.items()}
        per_batch, sizes = [], []
        for X, y, _ in batches:
            # Rows of tasks never trained on: the pooled model, or the mean of the task heads.
            with torch.no_grad():
                out = output(state, X.double())
            if learner._classification:
                per_batch.append(accuracy_score(y.numpy(), out.argmax(-1).numpy()))
            else:
                per_batch.append(r2_score(y.numpy(), out.squeeze(-1).numpy()))
            sizes.append(len(X))
        assert scores[epoch] == pytest.approx(np.average(per_batch, weights=sizes), abs=1e-5)


# ------------------------------------------------------- meta-validation


@pytest.mark.parametrize("name, learner", EPISODIC)
def test_valid_score_is_the_mean_query_score_of_the_validation_episodes(name, learner):
    tasks = REFERENCES[name].tasks(n_tasks=6)
    split = TaskSplit(2)
    meta, recorder, _ = _fit(name, learner, tasks=tasks, train_split=split, max_epochs=2,
                             n_episodes=4, meta_batch_size=2, optimizer=torch.optim.Adam, lr=0.01)
    train_tasks, valid_tasks = split(tasks)
    scores = np.asarray(meta.history_[:, "valid_score"], dtype=float)
    assert scores.shape == (2,)
    for epoch, (batches, state) in enumerate(zip(recorder.valid_batches, recorder.valid_states,
                                                 strict=True)):
        # Meta-validation draws its episodes from the held-out tasks only ...
        check_episodes(batches, valid_tasks, classification=learner._classification,
                       n_ways=None, n_shots=BASE["n_shots"], n_queries=BASE["n_queries"])
        check_episodes(recorder.train_batches[epoch], train_tasks,
                       classification=learner._classification,
                       n_ways=None, n_shots=BASE["n_shots"], n_queries=BASE["n_queries"])
        # ... and scores them as adapt() would, with the weights of that epoch.
        at_epoch = copy.deepcopy(meta)
        at_epoch.module_.load_state_dict(state)
        metric = accuracy_score if learner._classification else r2_score
        expected = np.mean([
            metric(batch.y_query[e].numpy(),
                   at_epoch.adapt(batch.X_support[e].numpy(), batch.y_support[e].numpy())
                   .predict(batch.X_query[e].numpy()))
            for batch in batches for e in range(len(batch))
        ])
        assert scores[epoch] == pytest.approx(expected, abs=1e-5)


# ----------------------------------------------------------- episodic score


def _score_by_hand(meta, tasks, *, n_queries=None):
    """The documented episodic score: per task, ``n_shots`` support rows per
    class drawn with the seed ``random_state``; the rest of the task (or,
    with ``n_queries``, only that many of the rest per class) is queried."""
    sampler = EpisodeSampler(n_ways=meta.n_ways, n_shots=meta.n_shots, n_queries=meta.n_queries,
                             classification=meta._classification)
    rng = np.random.default_rng(meta.random_state)
    scores = []
    for task in tasks:
        rows = np.arange(task.n_rows)[:, None]
        episode = sampler.sample(rows, task.y, rng, query="sampled" if n_queries else "rest")
        support = episode.X_support[:, 0]
        query = episode.X_query[:, 0] if n_queries else np.setdiff1d(rows[:, 0], support)
        adapted = meta.adapt(task.X[support], task.y[support])
        scores.append(adapted.score(task.X[query], task.y[query]))
    return float(np.mean(scores))


@pytest.mark.parametrize("name, learner", WITH_REFERENCE)
def test_score_adapts_on_n_shots_and_queries_all_other_rows(name, learner):
    adapt_steps = {"adapt_steps": 10} if "adapt_steps" in learner().get_params() else {}
    # The pooled learners take no n_queries (the contrast below then samples their default 15).
    queries = {"n_queries": 2} if "n_queries" in learner().get_params() else {}
    meta, _, _ = _fit(name, learner, n_shots=3, **queries, **adapt_steps)
    # More rows than one episode takes, so "the rest" is not n_queries rows.
    if learner._classification:
        new_tasks = _blob_tasks(n_tasks=3, n_rows_per_class=20, random_state=1)
    else:
        new_tasks = _sinusoid_tasks(n_tasks=3, n_rows=40, random_state=1)
    expected = _score_by_hand(meta, new_tasks)
    assert meta.score(new_tasks) == pytest.approx(expected, abs=1e-6)
    # What the test tells apart: only n_queries of the rest, or other support sets.
    assert abs(expected - _score_by_hand(meta, new_tasks, n_queries=True)) > 1e-3
    other_shots = copy.deepcopy(meta).set_params(n_shots=5)
    assert abs(expected - _score_by_hand(other_shots, new_tasks)) > 1e-3


# ----------------------------------------------------------- the other ones


def _long_format(tasks):
    columns = [f"x{i}" for i in range(tasks[0].X.shape[1])]
    frame = pd.concat([pd.DataFrame(task.X, columns=columns).assign(task=task.name) for task in tasks],
                      ignore_index=True)
    return frame, np.concatenate([task.y for task in tasks])


@pytest.mark.parametrize("name, learner", WITH_REFERENCE)
def test_task_column_reads_long_format_as_the_same_tasks(name, learner):
    tasks = REFERENCES[name].tasks()
    from_tasks, _, _ = _fit(name, learner, tasks=tasks)
    frame, y = _long_format(tasks)
    recorder = EpisodeRecorder()
    from_frame = learner(**_params(name, learner, task_column="task"), callbacks=[recorder]).fit(frame, y)
    for weight, value in _weights(from_tasks.module_).items():
        torch.testing.assert_close(_weights(from_frame.module_)[weight], value, rtol=0, atol=0)
    np.testing.assert_array_equal(from_frame.feature_names_in_, frame.columns[:-1])


@pytest.mark.parametrize("verbose", [0, 1])
def test_verbose_prints_one_line_per_epoch(verbose, capsys):
    name, learner = LEARNERS[0]
    _fit(name, learner, verbose=verbose, max_epochs=3)
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [int(row.split()[0]) for row in rows] == ([1, 2, 3] if verbose else [])
    assert ("train_loss" in out) == bool(verbose)


@pytest.mark.parametrize("name, learner", [
    pytest.param(name, learner, id=name) for name, learner in LEARNERS
    if "standardize_targets" in learner().get_params()
])
def test_standardize_targets_gives_predictions_in_the_targets_own_units(name, learner):
    # Standardised by the support set's mean and deviation, the targets a*y + c
    # adapt exactly as y does: predictions come back as a*prediction + c.
    meta, _, _ = _fit(name, learner, standardize_targets=True)
    task = _sinusoid_tasks(n_tasks=1, n_rows=20, random_state=3)[0]
    X_support, y_support, X_query = task.X[:10], task.y[:10], task.X[10:]
    predicted = meta.adapt(X_support, y_support).predict(X_query)
    scaled = meta.adapt(X_support, 3 * y_support + 7).predict(X_query)
    np.testing.assert_allclose(scaled, 3 * predicted + 7, rtol=1e-4, atol=1e-4)
    # Adapting on the targets as given does not have that property.
    raw = copy.deepcopy(meta).set_params(standardize_targets=False)
    unscaled = raw.adapt(X_support, 3 * y_support + 7).predict(X_query)
    assert np.abs(unscaled - (3 * raw.adapt(X_support, y_support).predict(X_query) + 7)).max() > 1e-2


#: Where each parameter's effect is tested: test file and test function (or a
#: list of them, where learners use the parameter in different ways).
#: A parameter a learner gains must be added here, with its test.
PARAMETER_TESTS = {
    # Matching networks: the kernel and the context layers by the replay; the
    # kernel's scale is its starting inverse temperature.
    "kernel": ("test_parameters.py", "test_one_meta_step_matches_the_hand_written_reference"),
    "full_context": [
        ("test_parameters.py", "test_one_meta_step_matches_the_hand_written_reference"),
        ("metric/test_matching.py", "test_full_context_conditions_each_row_on_the_whole_support_set"),
    ],
    "scale": ("metric/test_matching.py",
              "test_with_an_identity_embedding_the_classifier_is_a_cosine_kernel_vote"),
    # Lifelong meta-learning: what partial_fit trains on, and the pull toward past weights.
    "replay_size": [
        ("test_lifelong.py", "test_partial_fit_trains_on_the_new_tasks_and_the_reservoir"),
        ("test_lifelong.py", "test_naive_partial_fit_forgets_and_replay_and_the_penalty_forget_less"),
    ],
    "ewc": [
        ("test_lifelong.py", "test_the_penalty_pulls_each_weight_by_its_relative_importance"),
        ("test_lifelong.py", "test_naive_partial_fit_forgets_and_replay_and_the_penalty_forget_less"),
    ],
    # The in-context network: heads by the replay, its size by the network built.
    "n_heads": ("test_parameters.py", "test_one_meta_step_matches_the_hand_written_reference"),
    "width": ("memory/test_in_context.py", "test_the_network_is_built_with_width_and_n_layers"),
    "n_layers": ("memory/test_in_context.py", "test_the_network_is_built_with_width_and_n_layers"),
    # The memory of tasks: written, bounded and evicted; recalled, and read.
    "task_memory": [("memory/test_task_memory.py",
                     "test_fit_writes_its_tasks_and_a_new_support_set_recalls_a_past_task_of_its_base"),
                    ("memory/test_task_memory.py",
                     "test_the_prediction_reads_the_support_set_and_the_recalled_rows_as_by_hand")],
    "n_recalled": ("memory/test_task_memory.py", "test_each_support_set_recalls_n_recalled_past_tasks"),
    "memory_rows": ("memory/test_task_memory.py",
                    "test_partial_fit_writes_its_tasks_only_when_write_on_partial_fit"),
    "write_on_partial_fit": ("memory/test_task_memory.py",
                             "test_partial_fit_writes_its_tasks_only_when_write_on_partial_fit"),
    # k nearest neighbours in an embedding: the vote is sklearn's.
    "n_neighbors": ("metric/test_neighbors.py",
                    "test_with_an_identity_embedding_the_learner_is_sklearns_knn"),
    "weights": ("metric/test_neighbors.py", "test_with_an_identity_embedding_the_learner_is_sklearns_knn"),
    "embedding": ("metric/test_neighbors.py",
                  "test_with_a_matching_network_the_neighbours_are_taken_in_its_embedding"),
    "module": ("test_parameters.py", "test_one_meta_step_matches_the_hand_written_reference"),
    "criterion": ("test_parameters.py", "test_one_meta_step_matches_the_hand_written_reference"),
    "optimizer": ("test_parameters.py", "test_one_meta_step_matches_the_hand_written_reference"),
    "lr": ("test_parameters.py", "test_one_meta_step_matches_the_hand_written_reference"),
    "inner_lr": ("test_parameters.py", "test_one_meta_step_matches_the_hand_written_reference"),
    "inner_steps": ("test_parameters.py", "test_one_meta_step_matches_the_hand_written_reference"),
    "first_order": ("test_parameters.py", "test_one_meta_step_matches_the_hand_written_reference"),
    "prior": [("test_prior.py",
               "test_an_untrained_unadapted_inner_loop_classifier_predicts_the_prior_exactly"),
              ("test_prior.py", "test_an_untrained_film_classifier_predicts_the_prior_exactly"),
              ("test_prior.py",
               "test_an_untrained_unadapted_finetune_classifier_predicts_the_prior_exactly")],
    "prior_cv": ("test_prior.py", "test_classification_offsets_come_from_a_prior_fitted_without_the_task"),
    "adapt_steps": ("optimization/test_maml.py", "test_adapt_takes_adapt_steps_gradient_steps_of_inner_lr"),
    "max_epochs": ("test_parameters.py", "test_epochs_and_meta_batches_are_the_steps_taken"),
    "n_episodes": ("test_parameters.py", "test_epochs_and_meta_batches_are_the_steps_taken"),
    "meta_batch_size": ("test_parameters.py", "test_epochs_and_meta_batches_are_the_steps_taken"),
    "n_ways": ("test_parameters.py", "test_episodes_follow_the_settings"),
    "n_shots": ("test_parameters.py", "test_score_adapts_on_n_shots_and_queries_all_other_rows"),
    "n_queries": ("test_parameters.py", "test_episodes_follow_the_settings"),
    "class_balance": ("test_episodes.py", "test_natural_episodes_keep_the_tasks_class_proportions"),
    "train_split": ("test_parameters.py",
                    "test_valid_score_is_the_mean_query_score_of_the_validation_episodes"),
    "task_column": ("test_parameters.py", "test_task_column_reads_long_format_as_the_same_tasks"),
    "verbose": ("test_parameters.py", "test_verbose_prints_one_line_per_epoch"),
    "standardize_targets": ("test_parameters.py",
                            "test_standardize_targets_gives_predictions_in_the_targets_own_units"),
    "callbacks": ("test_base.py", "test_early_stopping_on_valid_score_stops_early"),
    "device": ("test_base.py", "test_device_auto_resolves_to_what_is_there"),
    "random_state": ("test_base.py", "test_same_random_state_gives_same_history_and_predictions"),
    "warm_start": ("test_base.py", "test_warm_start_continues_training"),
    "strict_episodes": ("test_validation.py",
                        "test_strict_episodes_refuse_a_task_smaller_than_an_episode"),
    # Adaptation only: the pull toward the pooled model (fine-tuning) and toward the
    # mean head (a shared trunk), each shown to shrink the move as alpha grows.
    "alpha": [("transfer/test_finetune.py", "test_alpha_pulls_toward_the_pooled_model"),
              ("multitask/test_shared_trunk.py", "test_alpha_pulls_a_new_head_toward_the_mean_head")],
    "finetune": ("transfer/test_finetune.py", "test_finetune_head_moves_only_the_last_layer"),
    # ANIL: the same inner steps and adapted predictions with the embedding cached or not.
    "cache_support_embedding": ("optimization/test_anil.py",
                                "test_caching_the_support_embedding_changes_nothing_but_time"),
    # The learned optimizer (Meta-LSTM): the meta-gradient against a hand-written truncated
    # unroll, and the width of its LSTM cell.
    "truncation": [("optimization/test_meta_lstm.py",
                    "test_truncation_back_propagates_through_the_last_steps_only"),
                   ("test_parameters.py", "test_one_meta_step_matches_the_hand_written_reference")],
    "lstm_hidden_size": ("optimization/test_meta_lstm.py",
                         "test_lstm_hidden_size_is_the_width_of_the_optimizers_cell"),
    # Every pooled learner: batch sizes, step count, and a replay with other batches ending elsewhere.
    "rows_per_batch": [("test_parameters.py", "test_epochs_and_rows_per_batch_are_the_steps_taken"),
                       ("test_parameters.py", "test_one_meta_step_matches_the_hand_written_reference")],
}


@pytest.mark.parametrize("name, learner", [pytest.param(*p, id=p[0]) for p in LEARNERS])
def test_every_parameter_has_a_test_of_its_effect(name, learner):
    missing = sorted(set(learner().get_params(deep=False)) - set(PARAMETER_TESTS))
    assert not missing, f"{name}: add a test of the effect of {missing} to PARAMETER_TESTS"
    here = Path(__file__).parent
    for parameter in learner().get_params(deep=False):
        witnesses = PARAMETER_TESTS[parameter]
        for test_file, test in witnesses if isinstance(witnesses, list) else [witnesses]:
            assert f"def {test}(" in (here / test_file).read_text(), (parameter, test_file, test)
