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
from sklearn.metrics import accuracy_score, r2_score
from skorch.callbacks import Callback
from torch.func import functional_call
from torch.nn import functional as F

from skmeta import TaskSplit
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

LEARNERS = all_learners()
WITH_REFERENCE = [pytest.param(name, learner, id=name) for name, learner in LEARNERS if name in REFERENCES]

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
    params = {**BASE, **REFERENCES[name].params, **overrides}
    if "standardize_targets" in learner().get_params():
        # The reference replays the mathematics on the targets as given.
        params.setdefault("standardize_targets", False)
    return params


def _fit(name, learner, tasks=None, **overrides):
    recorder = EpisodeRecorder()
    params = _params(name, learner, **overrides)
    meta = learner(**params, callbacks=[recorder]).fit(REFERENCES[name].tasks() if tasks is None else tasks)
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


def _largest_difference(left, right):
    return max((left[w].double() - right[w].double()).abs().max().item() for w in left)


# --------------------------------------------------------------- meta-steps


def test_every_learner_has_a_reference():
    missing = [name for name, _ in LEARNERS if name not in REFERENCES]
    assert not missing, f"add a hand-written replay of meta-training to REFERENCES for {missing}"


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


@pytest.mark.parametrize("name, learner", WITH_REFERENCE)
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


@pytest.mark.parametrize("name, learner, overrides", [
    pytest.param(name, learner, overrides, id=_case_id(name, overrides))
    for name, learner in LEARNERS if name in REFERENCES
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


# ------------------------------------------------------- meta-validation


@pytest.mark.parametrize("name, learner", WITH_REFERENCE)
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
    meta, _, _ = _fit(name, learner, n_shots=3, n_queries=2, **adapt_steps)
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


#: Where each parameter's effect is tested: test file and test function.
#: A parameter a learner gains must be added here, with its test.
PARAMETER_TESTS = {
    "module": ("test_parameters.py", "test_one_meta_step_matches_the_hand_written_reference"),
    "criterion": ("test_parameters.py", "test_one_meta_step_matches_the_hand_written_reference"),
    "optimizer": ("test_parameters.py", "test_one_meta_step_matches_the_hand_written_reference"),
    "lr": ("test_parameters.py", "test_one_meta_step_matches_the_hand_written_reference"),
    "inner_lr": ("test_parameters.py", "test_one_meta_step_matches_the_hand_written_reference"),
    "inner_steps": ("test_parameters.py", "test_one_meta_step_matches_the_hand_written_reference"),
    "first_order": ("test_parameters.py", "test_one_meta_step_matches_the_hand_written_reference"),
    "adapt_steps": ("optimization/test_maml.py", "test_adapt_takes_adapt_steps_gradient_steps_of_inner_lr"),
    "max_epochs": ("test_parameters.py", "test_epochs_and_meta_batches_are_the_steps_taken"),
    "n_episodes": ("test_parameters.py", "test_epochs_and_meta_batches_are_the_steps_taken"),
    "meta_batch_size": ("test_parameters.py", "test_epochs_and_meta_batches_are_the_steps_taken"),
    "n_ways": ("test_parameters.py", "test_episodes_follow_the_settings"),
    "n_shots": ("test_parameters.py", "test_score_adapts_on_n_shots_and_queries_all_other_rows"),
    "n_queries": ("test_parameters.py", "test_episodes_follow_the_settings"),
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
}


@pytest.mark.parametrize("name, learner", [pytest.param(*p, id=p[0]) for p in LEARNERS])
def test_every_parameter_has_a_test_of_its_effect(name, learner):
    missing = sorted(set(learner().get_params(deep=False)) - set(PARAMETER_TESTS))
    assert not missing, f"{name}: add a test of the effect of {missing} to PARAMETER_TESTS"
    here = Path(__file__).parent
    for parameter in learner().get_params(deep=False):
        test_file, test = PARAMETER_TESTS[parameter]
        assert f"def {test}(" in (here / test_file).read_text(), (parameter, test_file, test)
