"""Tests of skmeta/memory/_task_memory.py: the memory of past tasks, written, evicted, recalled."""

import io

import numpy as np
import pytest
import torch

from skmeta.datasets import make_blob_tasks, make_sinusoid_tasks
from skmeta.io import dump, get_untrusted_types, load
from skmeta.memory import InContextNet, MemoryClassifier, MemoryRegressor
from skmeta.memory._task_memory import memory_codes, recall, write_tasks
from skmeta.tasks import Task

# ------------------------------------------------------------ functional core


def _tasks(names, n_rows=6):
    return [Task(np.full((n_rows, 2), i, dtype=np.float32), np.arange(n_rows) % 2, name=name)
            for i, name in enumerate(names)]


def test_the_memory_keeps_at_most_capacity_tasks_and_evicts_the_least_recently_used():
    entries, used = write_tasks([], np.zeros(0, int), _tasks("abc"), capacity=3, n_rows=4, clock=0,
                                seed=(0,))
    assert [e["name"] for e in entries] == ["a", "b", "c"]
    assert all(e["X"].shape == (4, 2) for e in entries)  # a sample of n_rows rows
    used = np.array([5, 1, 3])  # "b" is the least recently used
    entries, used = write_tasks(entries, used, _tasks("d"), capacity=3, n_rows=4, clock=6, seed=(0,))
    assert [e["name"] for e in entries] == ["a", "c", "d"] and used.tolist() == [5, 3, 6]
    # a task written again replaces what was kept of it, and evicts nothing else
    again = [Task(np.full((6, 2), 9, dtype=np.float32), np.arange(6) % 2, name="a")]
    entries, used = write_tasks(entries, used, again, capacity=3, n_rows=4, clock=7, seed=(0,))
    assert [e["name"] for e in entries] == ["c", "d", "a"] and (entries[-1]["X"] == 9).all()
    # capacity 0 keeps nothing
    assert write_tasks([], np.zeros(0, int), _tasks("ab"), capacity=0, n_rows=4, clock=0, seed=(0,))[0] == []


def test_past_labels_keep_their_meaning_and_past_targets_take_the_supports_scale():
    entries = [{"name": "a", "X": np.zeros((3, 1), np.float32), "y": np.array(["yes", "no", "maybe"])},
               {"name": "b", "X": np.zeros((2, 1), np.float32), "y": np.array(["no", "no"])}]
    # episode 0 reads "no" as 0, "yes" as 1; episode 1 reads "yes" as 0 and "maybe" as 1
    _, codes, weight = memory_codes(entries, classes=[np.array(["no", "yes"]), np.array(["yes", "maybe"])],
                                    n_ways=2)
    assert codes[0, 0].argmax(-1).tolist()[:2] == [1, 0] and weight[0, 0].tolist() == [1, 1, 0]
    assert codes[1, 0].argmax(-1).tolist()[::2] == [0, 1] and weight[1, 0].tolist() == [1, 0, 1]
    assert weight[1, 1].tolist() == [0, 0, 0]  # b has no row of episode 1's classes (and one pad)
    assert weight[0, 1].tolist() == [1, 1, 0]  # the third row of b is padding
    targets = [{"name": "a", "X": np.zeros((2, 1), np.float32), "y": np.array([1.0, 3.0])}]
    _, codes, weight = memory_codes(targets, mean=torch.tensor([[2.0]]), scale=torch.tensor([[0.5]]))
    assert codes[0, 0, :, 0].tolist() == [-2.0, 2.0] and weight.tolist() == [[[1.0, 1.0]]]


def _hand_loss(net, X_support, y_support, X_past, codes_past):
    """A past task's loss on one support set, written out: squared distance to its class means."""
    encoded, past = net.rows(X_support), net.rows(X_past)
    labels = codes_past.argmax(-1)
    loss = 0.0
    for row, label in zip(encoded, y_support.tolist(), strict=True):
        if not (labels == label).any():
            return np.inf
        loss += float(((row - past[labels == label].mean(0)) ** 2).sum().detach())
    return loss / X_support.shape[0]


def test_recall_chooses_the_past_tasks_of_smallest_loss_on_the_support_and_never_an_excluded_one():
    torch.manual_seed(0)
    net = InContextNet(3, n_outputs=2, width=8, n_heads=2)
    rng = np.random.default_rng(0)
    X_support = torch.tensor(rng.normal(size=(2, 4, 3)), dtype=torch.float32)
    y_support = torch.tensor([[0, 1, 0, 1], [1, 0, 1, 0]])
    codes = torch.nn.functional.one_hot(y_support, 2).float()
    X_past = torch.tensor(rng.normal(size=(5, 6, 3)), dtype=torch.float32)
    codes_past = torch.nn.functional.one_hot(torch.tensor(rng.integers(2, size=(2, 5, 6))), 2).float()
    chosen, usable, loss = recall(net, X_support, codes, None, X_past, codes_past, torch.ones(2, 5, 6),
                                  n_recalled=2, classification=True)
    for e in range(2):
        hand = [_hand_loss(net, X_support[e], y_support[e], X_past[m], codes_past[e, m]) for m in range(5)]
        np.testing.assert_allclose(loss[e].numpy(), hand, rtol=1e-5)
        assert chosen[e].tolist() == np.argsort(hand)[:2].tolist()
    assert usable.all()
    exclude = torch.zeros(2, 5, dtype=torch.bool)
    exclude[:, chosen[:, 0]] = True
    again, usable, _ = recall(net, X_support, codes, None, X_past, codes_past, torch.ones(2, 5, 6),
                              n_recalled=5, classification=True, exclude=exclude)
    for e in range(2):
        assert not exclude[e, again[e][usable[e]]].any()
        assert (~usable[e]).sum() == exclude[e].sum()  # the excluded come last, marked unusable


# ------------------------------------------------------------ the learner

RECURRING = dict(n_recurring=8, n_informative=16, n_features=20, class_sep=0.5, variation=0.25,
                 n_rows_per_class=20, noise=1.0)


@pytest.fixture(scope="module")
def recurring():
    tasks = make_blob_tasks(n_tasks=8 * 14, random_state=0, **RECURRING)
    return tasks[: 8 * 12], tasks[8 * 12 :]


def _fit(tasks, **params):
    settings = dict(width=16, n_heads=2, max_epochs=6, n_episodes=64, n_shots=(1, 5), n_queries=10,
                    train_split=None, device="cpu", random_state=0)
    return MemoryClassifier(**{**settings, **params}).fit(tasks)


@pytest.fixture(scope="module")
def with_memory(recurring):
    return _fit(recurring[0], task_memory=200)


def test_fit_writes_its_tasks_and_a_new_support_set_recalls_a_past_task_of_its_base(recurring, with_memory):
    train, test = recurring
    assert [e["name"] for e in with_memory.task_memory_] == [t.name for t in train]
    hits = []
    for task in test:
        support = np.concatenate([np.flatnonzero(task.y == c)[:3] for c in (0, 1)])
        recalled = with_memory.adapt(task.X[support], task.y[support]).state_["recalled"]
        assert len(recalled) == 1
        hits.append(int(recalled[0].split("_")[1]) % 8 == int(task.name.split("_")[1]) % 8)
    assert np.mean(hits) >= 0.5  # chance is 1/8


def test_the_prediction_reads_the_support_set_and_the_recalled_rows_as_by_hand(recurring, with_memory):
    task = recurring[1][0]
    support = np.concatenate([np.flatnonzero(task.y == c)[:2] for c in (0, 1)])
    adapted = with_memory.adapt(task.X[support], task.y[support])
    (name,) = adapted.state_["recalled"]
    entry = next(e for e in with_memory.task_memory_ if e["name"] == name)
    net = with_memory.module_
    X_support = torch.tensor(task.X[support])
    codes = torch.nn.functional.one_hot(torch.tensor(task.y[support]), 2).float()
    past_codes = torch.nn.functional.one_hot(torch.tensor(entry["y"]), 2).float()
    with torch.no_grad():
        tokens = torch.cat([net.rows(X_support) + net.labels(codes),
                            net.rows(torch.tensor(entry["X"])) + net.labels(past_codes) + net.recalled])
        memory = [tokens]
        for layer in net.layers:
            memory.append(layer.write(memory[-1]))
        queries = net.rows(torch.tensor(task.X))
        for layer, written in zip(net.layers, memory[1:], strict=True):
            queries = layer.read(queries, written)
        expected = torch.softmax(net.head(queries), -1).numpy()
    np.testing.assert_allclose(adapted.predict_proba(task.X), expected, rtol=1e-4, atol=1e-6)


def test_an_episode_never_recalls_its_own_task_in_meta_training(recurring, with_memory):
    from skmeta.tasks import EpisodeLoader

    loader = EpisodeLoader(recurring[0], with_memory._sampler(), n_episodes=8, meta_batch_size=8,
                           random_state=0)
    batch = next(iter(loader))
    codes = with_memory._codes(batch.y_support)
    _, _, names = with_memory._recalled(batch.X_support, codes, batch.support_weight, tasks=batch.tasks,
                                        classes=batch.classes, mean=None, scale=None, training=False)
    assert all(task not in recalled for task, recalled in zip(batch.tasks, names, strict=True))
    assert all(len(recalled) == 1 for recalled in names)


@pytest.mark.parametrize("write", [True, False])
def test_partial_fit_writes_its_tasks_only_when_write_on_partial_fit(write):
    tasks = make_blob_tasks(n_tasks=10, n_rows_per_class=10, n_features=4, random_state=0)
    meta = MemoryClassifier(width=8, n_heads=2, task_memory=6, memory_rows=5, write_on_partial_fit=write,
                            max_epochs=1, n_episodes=4, train_split=None, random_state=0).fit(tasks[:4])
    assert [e["name"] for e in meta.task_memory_] == [t.name for t in tasks[:4]]
    assert all(e["X"].shape[0] == 5 for e in meta.task_memory_)
    meta.partial_fit(tasks[4:8])
    names = [e["name"] for e in meta.task_memory_]
    if write:  # bounded: 8 tasks written, 6 kept
        assert len(names) == 6 and {t.name for t in tasks[4:8]} <= set(names)
    else:
        assert names == [t.name for t in tasks[:4]]
    # a warm-started fit goes on as partial_fit does
    meta.set_params(warm_start=True).fit(tasks[8:10])
    assert ({t.name for t in tasks[8:10]} <= {e["name"] for e in meta.task_memory_}) == write


def test_tasks_recalled_in_meta_training_outlive_those_never_recalled():
    tasks = make_blob_tasks(n_tasks=12, n_rows_per_class=10, n_features=4, random_state=0)
    meta = MemoryClassifier(width=8, n_heads=2, task_memory=8, max_epochs=1, n_episodes=16,
                            train_split=None, random_state=0).fit(tasks[:8])
    used = dict(zip([e["name"] for e in meta.task_memory_], meta._memory_used.tolist(), strict=True))
    recalled = {name for name, when in used.items() if when > 0}
    assert recalled and len(recalled) < 8
    meta.partial_fit(tasks[8:10])  # 2 written: the 2 least recently used go
    kept = {e["name"] for e in meta.task_memory_}
    never = sorted((when, name) for name, when in used.items())[:2]
    assert not kept & {name for _, name in never}


def test_a_regressor_reads_the_rows_of_the_past_task_it_recalls():
    tasks = make_sinusoid_tasks(n_tasks=40, random_state=0)
    settings = dict(width=8, n_heads=2, n_shots=5, n_queries=5, max_epochs=1, n_episodes=8,
                    train_split=None, random_state=0)
    meta = MemoryRegressor(task_memory=40, **settings).fit(tasks[:30])
    task = tasks[35]
    adapted = meta.adapt(task.X[:5], task.y[:5])
    assert len(adapted.state_["recalled"]) == 1
    assert adapted.state_["weight"].shape == (5 + meta.memory_rows,)
    predicted = adapted.predict(task.X[5:])
    assert np.isfinite(predicted).all()
    # without the memory, the same support set gives other predictions
    emptied = meta.__dict__.copy()
    meta.task_memory_ = []
    try:
        without = meta.adapt(task.X[:5], task.y[:5])
        assert without.state_["recalled"] == []
        assert np.abs(without.predict(task.X[5:]) - predicted).max() > 1e-3
    finally:
        meta.__dict__.update(emptied)


def test_the_memory_of_tasks_is_saved_and_loaded(recurring, with_memory):
    buffer = io.BytesIO()
    dump(with_memory, buffer)
    buffer.seek(0)
    loaded = load(buffer, trusted=get_untrusted_types(buffer))
    task = recurring[1][3]
    assert [e["name"] for e in loaded.task_memory_] == [e["name"] for e in with_memory.task_memory_]
    before = with_memory.adapt(task.X[:6], task.y[:6])
    after = loaded.adapt(task.X[:6], task.y[:6])
    assert after.state_["recalled"] == before.state_["recalled"]
    np.testing.assert_array_equal(after.predict_proba(task.X), before.predict_proba(task.X))


def test_a_network_that_cannot_read_recalled_rows_is_refused_with_the_fix():
    tasks = make_blob_tasks(n_tasks=4, n_rows_per_class=10, n_features=4, random_state=0)
    with pytest.raises(ValueError, match="recall=False"):
        MemoryClassifier(InContextNet(4, 2, width=8, n_heads=2), task_memory=4, max_epochs=1,
                         n_episodes=2).fit(tasks)


@pytest.mark.parametrize("n_recalled", [1, 3])
def test_each_support_set_recalls_n_recalled_past_tasks(recurring, with_memory, n_recalled):
    meta = with_memory.set_params(n_recalled=n_recalled)
    try:
        task = recurring[1][0]
        adapted = meta.adapt(task.X[:6], task.y[:6])
        assert len(adapted.state_["recalled"]) == n_recalled
        assert adapted.state_["weight"].shape == (6 + n_recalled * meta.memory_rows,)
    finally:
        with_memory.set_params(n_recalled=1)


@pytest.mark.parametrize("setting", [{"n_recalled": 3}, {"memory_rows": 8}, {"write_on_partial_fit": False}])
def test_a_memory_setting_without_a_memory_of_tasks_is_refused_with_the_fix(setting):
    tasks = make_blob_tasks(n_tasks=4, n_rows_per_class=10, n_features=4, random_state=0)
    (name, value), = setting.items()
    with pytest.raises(ValueError, match=f"{name}={value!r} has no effect with task_memory=0"):
        MemoryClassifier(max_epochs=1, n_episodes=2, **setting).fit(tasks)
    MemoryClassifier(width=8, n_heads=2, task_memory=4, max_epochs=1, n_episodes=2, **setting).fit(tasks)
