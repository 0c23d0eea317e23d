"""Tests of skmeta/tasks/_episodes.py: EpisodeSampler, EpisodeBatch, EpisodeLoader."""

import re

import numpy as np
import pytest
import torch

from skmeta import MAMLClassifier, ProtoNetClassifier
from skmeta.tasks import Episode, EpisodeBatch, EpisodeLoader, EpisodeSampler, Task, TaskCollection


def _task(labels, n_per_class, n_features=3):
    """Rows whose first feature is the row number, so rows can be traced back."""
    y = np.repeat(np.asarray(labels), n_per_class)
    rng = np.random.default_rng(1)
    y = y[rng.permutation(y.shape[0])]
    X = np.column_stack([np.arange(y.shape[0], dtype=float), rng.normal(size=(y.shape[0], n_features - 1))])
    return X, y


def _rows(X_part):
    return X_part[:, 0].astype(int)


def _same(a, b):
    return all(np.array_equal(getattr(a, f), getattr(b, f))
               for f in ("X_support", "y_support", "X_query", "y_query"))


# --------------------------------------------------------------- seeding


def test_same_seed_same_episode_other_seed_other_episode():
    X, y = _task([0, 1, 2], 20)
    sampler = EpisodeSampler(n_shots=2, n_queries=3)
    first = sampler.sample(X, y, np.random.default_rng(5))
    assert _same(first, sampler.sample(X, y, np.random.default_rng(5)))
    assert not _same(first, sampler.sample(X, y, np.random.default_rng(6)))


# ------------------------------------------------------------ classification


def test_support_and_query_hold_n_shots_and_n_queries_per_class_disjointly():
    X, y = _task(["a", "b", "c"], 12)
    episode = EpisodeSampler(n_shots=3, n_queries=4).sample(X, y, np.random.default_rng(0))
    assert episode.X_support.shape == (9, 3) and episode.X_query.shape == (12, 3)
    np.testing.assert_array_equal(np.bincount(episode.y_support), [3, 3, 3])
    np.testing.assert_array_equal(np.bincount(episode.y_query), [4, 4, 4])
    support, query = _rows(episode.X_support), _rows(episode.X_query)
    assert len(set(support)) == 9 and len(set(query)) == 12
    assert not set(support) & set(query)
    # X and y rows stay together: each row's episode label names its own label.
    np.testing.assert_array_equal(episode.classes[episode.y_support], y[support])
    np.testing.assert_array_equal(episode.classes[episode.y_query], y[query])


def test_n_ways_none_takes_every_class():
    X, y = _task([3, 1, 2, 0], 5)
    episode = EpisodeSampler(n_ways=None, n_shots=1, n_queries=1).sample(X, y, np.random.default_rng(0))
    np.testing.assert_array_equal(episode.classes, [0, 1, 2, 3])
    assert EpisodeSampler().ways(y) == 4


def test_integer_n_ways_draws_that_many_of_a_tasks_classes():
    X, y = _task(list(range(10)), 4)
    sampler = EpisodeSampler(n_ways=3, n_shots=1, n_queries=2)
    rng = np.random.default_rng(0)
    drawn = set()
    for _ in range(10):
        episode = sampler.sample(X, y, rng)
        assert episode.classes.shape == (3,)
        assert set(episode.classes) <= set(range(10))
        np.testing.assert_array_equal(np.sort(episode.y_support), [0, 1, 2])
        np.testing.assert_array_equal(episode.classes[episode.y_query], y[_rows(episode.X_query)])
        drawn.add(tuple(episode.classes))
    assert len(drawn) > 1  # the classes are drawn, not always the first three
    assert sampler.ways(y) == 3


@pytest.mark.parametrize("cls", [ProtoNetClassifier, MAMLClassifier])
def test_meta_learners_train_on_n_way_episodes_of_one_many_class_task(cls, fast_params):
    X, y = _task([f"c{i}" for i in range(10)], 6, n_features=4)
    meta = cls(**{**fast_params, "n_ways": 3}).fit([Task(X, y, name="many")])
    assert meta.n_ways_ == 3
    if cls is MAMLClassifier:
        assert meta.module_(torch.zeros(1, 4)).shape == (1, 3)  # one output per way
    support = np.isin(y, ["c1", "c4", "c7"])
    adapted = meta.adapt(X[support], y[support])
    np.testing.assert_array_equal(adapted.classes_, ["c1", "c4", "c7"])
    assert set(adapted.predict(X[:5])) <= {"c1", "c4", "c7"}


def test_n_ways_skips_classes_too_small_for_an_episode():
    X, y = _task(["big1", "big2", "tiny"], 10)
    y[np.flatnonzero(y == "tiny")[2:]] = "big1"  # "tiny" keeps 2 rows
    sampler = EpisodeSampler(n_ways=2, n_shots=2, n_queries=2, strict=True)
    sampler.check(y)  # two classes are large enough
    for seed in range(5):
        episode = sampler.sample(X, y, np.random.default_rng(seed))
        np.testing.assert_array_equal(episode.classes, ["big1", "big2"])


@pytest.mark.parametrize(
    "labels",
    [["cat", "dog", "emu"], [-7, 10, 42], [False, True], [0.5, 1.5]],
    ids=["strings", "ints", "bools", "floats"],
)
def test_labels_are_remapped_to_0_n_ways_and_classes_gives_them_back(labels):
    X, y = _task(labels, 6)
    episode = EpisodeSampler(n_shots=2, n_queries=2).sample(X, y, np.random.default_rng(0))
    np.testing.assert_array_equal(episode.classes, np.sort(np.asarray(labels)))
    assert episode.classes.dtype == y.dtype
    assert episode.y_support.dtype.kind == "i" and episode.y_query.dtype.kind == "i"
    assert set(episode.y_support) == set(range(len(labels)))
    np.testing.assert_array_equal(episode.classes[episode.y_support], y[_rows(episode.X_support)])
    np.testing.assert_array_equal(episode.classes[episode.y_query], y[_rows(episode.X_query)])


def test_query_rest_gives_all_other_rows_of_the_episode_classes():
    X, y = _task(["a", "b"], 9)
    episode = EpisodeSampler(n_shots=2, n_queries=3).sample(
        X, y, np.random.default_rng(0), query="rest", task="t")
    assert episode.task == "t"
    support, query = _rows(episode.X_support), _rows(episode.X_query)
    assert not set(support) & set(query)
    assert sorted(np.concatenate([support, query])) == list(range(18))
    np.testing.assert_array_equal(np.bincount(episode.y_query), [7, 7])


def test_query_must_be_sampled_or_rest():
    X, y = _task([0, 1], 5)
    with pytest.raises(ValueError, match="query must be 'sampled' or 'rest'; got 'all'"):
        EpisodeSampler(n_shots=1, n_queries=1).sample(X, y, np.random.default_rng(0), query="all")


# ---------------------------------------------------------------- regression


def test_regression_draws_n_shots_and_n_queries_rows():
    X = np.column_stack([np.arange(30.0), np.zeros(30)])
    y = np.arange(30.0) * 2
    sampler = EpisodeSampler(n_ways=4, n_shots=5, n_queries=7, classification=False)
    episode = sampler.sample(X, y, np.random.default_rng(0), task="sin")
    assert episode.classes is None and episode.task == "sin"
    assert episode.X_support.shape == (5, 2) and episode.X_query.shape == (7, 2)
    support, query = _rows(episode.X_support), _rows(episode.X_query)
    assert not set(support) & set(query)
    np.testing.assert_array_equal(episode.y_support, y[support])  # targets, not re-mapped
    np.testing.assert_array_equal(episode.y_query, y[query])
    assert not np.array_equal(support, np.arange(5))  # drawn, not the first rows
    rest = sampler.sample(X, y, np.random.default_rng(0), query="rest")
    assert rest.X_query.shape == (25, 2)
    assert sorted(np.concatenate([_rows(rest.X_support), _rows(rest.X_query)])) == list(range(30))


# --------------------------------------------------------------------- check


@pytest.mark.parametrize("dtype", [str, object])
def test_strict_check_names_the_short_class_and_task(dtype):
    y = np.array(["a"] * 20 + ["b"] * 4, dtype=dtype)
    with pytest.raises(ValueError, match=r"Class 'b' of task 'store_7' has 4 row\(s\) but an episode needs "
                                         r"n_shots \+ n_queries = 8; lower n_shots or n_queries"):
        EpisodeSampler(n_shots=3, n_queries=5, strict=True).check(y, task="store_7")


def test_check_needs_enough_classes():
    with pytest.raises(ValueError, match=r"Task 'x' has 1 class\(es\) \['a'\] but episodes need 2"):
        EpisodeSampler(n_shots=1, n_queries=1).check(np.array(["a"] * 10), task="x")
    with pytest.raises(ValueError, match=r"has 3 class\(es\) \[0, 1, 2\] but episodes need 5 \(n_ways=5\)"):
        EpisodeSampler(n_ways=5, n_shots=1, n_queries=1).check(np.repeat([0, 1, 2], 5), task="x")


def test_strict_check_with_n_ways_needs_that_many_large_enough_classes():
    y = np.array([0] * 10 + [1] * 10 + [2] * 3 + [3] * 2)
    EpisodeSampler(n_ways=2, n_shots=2, n_queries=2, strict=True).check(y)
    with pytest.raises(ValueError, match=r"has 3 row\(s\) but an episode needs n_shots \+ n_queries = 4, so "
                                         r"2 of its classes can give an episode but n_ways=3; lower n_shots"):
        EpisodeSampler(n_ways=3, n_shots=2, n_queries=2, strict=True).check(y, task="t")
    # Without strict, a class of two rows gives a shot and a query.
    EpisodeSampler(n_ways=4, n_shots=2, n_queries=2).check(y, task="t")


def test_strict_check_regression_counts_rows():
    sampler = EpisodeSampler(n_shots=5, n_queries=10, classification=False, strict=True)
    sampler.check(np.zeros(15))
    with pytest.raises(ValueError, match=r"Task 'sin_3' has 14 row\(s\) but an episode needs n_shots \+ "
                                         r"n_queries = 15"):
        sampler.check(np.zeros(14), task="sin_3")
    lenient = EpisodeSampler(n_shots=5, n_queries=10, classification=False)
    episode = lenient.sample(np.arange(3.0)[:, None], np.arange(3.0), np.random.default_rng(0))
    assert episode.y_support.shape == (2,) and episode.y_query.shape == (1,)
    with pytest.raises(ValueError, match=r"Task 'one' has 1 row\(s\) but an episode needs 2"):
        lenient.check(np.zeros(1), task="one")


@pytest.mark.parametrize("n_rows, shots, queries", [(2, 1, 1), (3, 2, 1), (6, 3, 3), (12, 3, 5)])
def test_small_classes_give_smaller_episodes_of_disjoint_rows(n_rows, shots, queries):
    X, y = _task(["big", "small"], 12)
    keep = np.r_[np.flatnonzero(y == "big"), np.flatnonzero(y == "small")[:n_rows]]
    X, y = X[keep], y[keep]
    episode = EpisodeSampler(n_shots=3, n_queries=5).sample(X, y, np.random.default_rng(0))
    np.testing.assert_array_equal(np.bincount(episode.y_support), [3, shots])
    np.testing.assert_array_equal(np.bincount(episode.y_query), [5, queries])
    support, query = _rows(episode.X_support), _rows(episode.X_query)
    assert not set(support) & set(query)
    label_of_row = dict(zip(_rows(X), y, strict=True))
    np.testing.assert_array_equal(episode.classes[episode.y_query], [label_of_row[r] for r in query])


def test_full_episodes_are_drawn_as_the_strict_sampler_draws_them():
    X, y = _task(["a", "b", "c"], 12)
    lenient, strict = (
        EpisodeSampler(n_shots=3, n_queries=4, strict=strict).sample(X, y, np.random.default_rng(3))
        for strict in (False, True)
    )
    assert _same(lenient, strict)


def test_padded_batches_weight_real_rows_one_and_padding_zero():
    sampler = EpisodeSampler(n_shots=3, n_queries=4)
    X, y = _task(["a", "b"], 10)
    small = np.r_[np.flatnonzero(y == "a"), np.flatnonzero(y == "b")[:3]]
    rng = np.random.default_rng(0)
    episodes = [sampler.sample(X, y, rng), sampler.sample(X[small], y[small], rng)]
    batch = EpisodeBatch.stack(episodes)
    assert batch.padded and tuple(batch.X_support.shape) == (2, 6, 3)
    np.testing.assert_array_equal(batch.support_weight.numpy(), [[1] * 6, [1, 1, 1, 1, 1, 0]])
    np.testing.assert_array_equal(batch.query_weight.numpy(), [[1] * 8, [1] * 5 + [0] * 3])
    real = batch.support_weight[1].bool()
    np.testing.assert_array_equal(batch.X_support[1][real].numpy(), episodes[1].X_support.astype(np.float32))
    assert not EpisodeBatch.stack(episodes[:1]).padded


# ------------------------------------------------------- EpisodeBatch, Loader


def test_episode_batch_stacks_with_target_dtypes():
    episode = Episode(np.zeros((4, 3)), np.array([0, 0, 1, 1]), np.ones((2, 3)), np.array([1, 0]))
    batch = EpisodeBatch.stack([episode, episode])
    assert len(batch) == 2
    assert batch.X_support.shape == (2, 4, 3) and batch.X_support.dtype == torch.float32
    assert batch.y_query.shape == (2, 2) and batch.y_query.dtype == torch.long
    assert EpisodeBatch.stack([episode], classification=False).y_support.dtype == torch.float32


def _tasks(n_tasks=3, n_features=2):
    rng = np.random.default_rng(0)
    return TaskCollection(
        Task(rng.normal(size=(12, n_features)), np.repeat(["a", "b", "c"], 4), name=f"t{i}")
        for i in range(n_tasks)
    )


def test_loader_yields_batches_of_the_right_shapes_and_its_len_is_n_episodes():
    loader = EpisodeLoader(_tasks(), EpisodeSampler(n_shots=1, n_queries=2), n_episodes=7,
                           meta_batch_size=3, random_state=0)
    assert len(loader) == 7 and loader.n_meta_batches == 3
    batches = list(loader)
    assert [len(batch) for batch in batches] == [3, 3, 1]
    for batch in batches:
        assert isinstance(batch, EpisodeBatch)
        n = len(batch)
        assert batch.X_support.shape == (n, 3, 2) and batch.y_support.shape == (n, 3)
        assert batch.X_query.shape == (n, 6, 2) and batch.y_query.shape == (n, 6)
        assert batch.y_support.dtype == torch.long
        assert set(batch.y_query.unique().tolist()) == {0, 1, 2}


def test_loader_regression_batches():
    sampler = EpisodeSampler(n_shots=4, n_queries=5, classification=False)
    tasks = TaskCollection([Task(np.zeros((10, 1)), np.arange(10.0)), Task(np.ones((10, 1)), np.ones(10))])
    (batch,) = list(EpisodeLoader(tasks, sampler, n_episodes=2, meta_batch_size=2, random_state=0))
    assert batch.y_support.shape == (2, 4) and batch.y_query.shape == (2, 5)
    assert batch.y_query.dtype == torch.float32


def _first_support(loader):
    return [batch.X_support.clone() for batch in loader]


def test_loader_int_seed_repeats_passes_and_a_generator_advances():
    sampler = EpisodeSampler(n_shots=1, n_queries=1)
    fixed = EpisodeLoader(_tasks(), sampler, n_episodes=4, meta_batch_size=2, random_state=3)
    first, second = _first_support(fixed), _first_support(fixed)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))

    moving = EpisodeLoader(_tasks(), sampler, n_episodes=4, meta_batch_size=2,
                           random_state=np.random.default_rng(3))
    first, second = _first_support(moving), _first_support(moving)
    assert not all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize("params", [
    dict(n_shots=2, n_queries=3),
    dict(n_shots=(1, 2, 3), n_queries=2),
    dict(n_ways=2, n_shots=2, n_queries=2),
    dict(n_ways=2, n_shots=2, n_queries=2, class_balance="natural"),
    dict(n_shots=3, n_queries=4, classification=False),
])
def test_loader_draws_the_episodes_that_sample_draws_one_by_one(params):
    # The loader checks and scans each task's targets once per pass; the
    # episodes must be those of calling sample per episode with its generator.
    sampler = EpisodeSampler(**params)
    labels = ["a", "b", "c"] if sampler.classification else [0.5, 1.5, 2.5]
    tasks = TaskCollection([Task(*_task(labels, 9), name=i) for i in range(4)])
    batches = list(EpisodeLoader(tasks, sampler, n_episodes=11, meta_batch_size=4, random_state=5))
    rng = np.random.default_rng(5)
    order = rng.integers(len(tasks), size=11)
    for batch, start in zip(batches, range(0, 11, 4), strict=True):
        episodes = [sampler.sample(tasks[i].X, tasks[i].y, rng, task=tasks[i].name)
                    for i in order[start:start + 4]]
        expected = EpisodeBatch.stack(episodes, classification=sampler.classification)
        assert all(torch.equal(getattr(batch, f), getattr(expected, f))
                   for f in ("X_support", "y_support", "X_query", "y_query"))


def test_loader_without_shuffle_cycles_through_tasks_in_order():
    tasks = TaskCollection(Task(np.full((4, 1), float(i)), [0, 1, 0, 1], name=i) for i in range(3))
    loader = EpisodeLoader(tasks, EpisodeSampler(n_shots=1, n_queries=1), n_episodes=5,
                           meta_batch_size=5, random_state=0, shuffle=False)
    (batch,) = list(loader)
    assert batch.X_support[:, 0, 0].tolist() == [0.0, 1.0, 2.0, 0.0, 1.0]


# ------------------------------------------------ natural class proportions


def _skewed_task(counts, n_features=2):
    """Rows numbered in the first feature; ``counts`` rows of labels 0, 1, ..."""
    y = np.repeat(np.arange(len(counts)), counts)
    y = y[np.random.default_rng(2).permutation(y.shape[0])]
    X = np.column_stack([np.arange(y.shape[0], dtype=float), np.zeros((y.shape[0], n_features - 1))])
    return X, y


def test_natural_episodes_keep_the_tasks_class_proportions():
    X, y = _skewed_task([450, 50])  # a 90/10 task
    fractions = {}
    for balance in ("balanced", "natural"):
        sampler = EpisodeSampler(n_shots=25, n_queries=5, class_balance=balance)
        rng = np.random.default_rng(0)
        episodes = [sampler.sample(X, y, rng) for _ in range(300)]
        assert {e.y_support.shape[0] for e in episodes} == {50}
        assert {e.y_query.shape[0] for e in episodes} == {10}
        fractions[balance] = (np.mean([e.y_support.mean() for e in episodes]),
                              np.mean([e.y_query.mean() for e in episodes]))
    assert fractions["balanced"] == (0.5, 0.5)
    # One row of each class is drawn first: (1 + 48 * 49/498) / 50 = 0.114 expected.
    assert fractions["natural"][0] == pytest.approx(0.1, abs=0.03)
    assert fractions["natural"][1] == pytest.approx(0.1, abs=0.03)
    # The learners' parameter reaches their sampler.
    natural = ProtoNetClassifier(n_shots=25, n_queries=5, class_balance="natural")._sampler()
    assert _same(natural.sample(X, y, np.random.default_rng(1)),
                 EpisodeSampler(n_shots=25, n_queries=5, class_balance="natural")
                 .sample(X, y, np.random.default_rng(1)))


@pytest.mark.parametrize("n_ways", [None, 2])
def test_natural_episodes_give_every_class_a_support_row_and_disjoint_repeatable_sets(n_ways):
    X, y = _skewed_task([40, 3, 3, 30])
    sampler = EpisodeSampler(n_ways=n_ways, n_shots=1, n_queries=2, class_balance="natural")
    rng = np.random.default_rng(0)
    for _ in range(50):
        episode = sampler.sample(X, y, rng)
        ways = episode.classes.shape[0]
        assert ways == (n_ways or 4)
        np.testing.assert_array_equal(np.bincount(episode.y_support, minlength=ways), [1] * ways)
        assert episode.y_query.shape[0] == 2 * ways
        support, query = _rows(episode.X_support), _rows(episode.X_query)
        assert len(set(support)) == len(support) and len(set(query)) == len(query)
        assert not set(support) & set(query)
        np.testing.assert_array_equal(episode.classes[episode.y_support], y[support])
        np.testing.assert_array_equal(episode.classes[episode.y_query], y[query])
    rest = sampler.sample(X, y, np.random.default_rng(4), query="rest")
    in_classes = np.flatnonzero(np.isin(y, rest.classes))
    np.testing.assert_array_equal(np.sort(np.r_[_rows(rest.X_support), _rows(rest.X_query)]), in_classes)
    assert _same(sampler.sample(X, y, np.random.default_rng(5)),
                 sampler.sample(X, y, np.random.default_rng(5)))
    assert not _same(sampler.sample(X, y, np.random.default_rng(5)),
                     sampler.sample(X, y, np.random.default_rng(6)))


def test_natural_episodes_of_a_small_task_keep_a_query_row():
    X, y = _skewed_task([2, 2])
    episode = EpisodeSampler(n_shots=5, n_queries=5, class_balance="natural").sample(
        X, y, np.random.default_rng(0))
    assert episode.y_support.shape[0] == 3 and episode.y_query.shape[0] == 1
    np.testing.assert_array_equal(np.unique(episode.y_support), [0, 1])


def test_class_balance_does_not_change_regression_episodes():
    X, y = np.arange(30.0).reshape(-1, 1), np.arange(30.0)
    episodes = [EpisodeSampler(n_shots=4, n_queries=5, classification=False, class_balance=balance)
                .sample(X, y, np.random.default_rng(0)) for balance in ("balanced", "natural")]
    assert _same(*episodes)


def test_protonet_on_natural_episodes_of_skewed_tasks_stays_finite(fast_params):
    tasks = TaskCollection(Task(*_skewed_task([27, 3], n_features=3), name=i) for i in range(4))
    meta = ProtoNetClassifier(**{**fast_params, "n_shots": 1, "class_balance": "natural"}).fit(tasks)
    assert np.isfinite(meta.history_[:, "train_loss"]).all()


# ------------------------------------------------------- mixed shot counts


def test_a_tuple_of_shot_counts_draws_each_of_them_and_rest_takes_the_largest():
    X, y = _task(["a", "b"], 12)
    sampler = EpisodeSampler(n_shots=(1, 3, 5), n_queries=2)
    rng = np.random.default_rng(0)
    shots = [np.bincount(sampler.sample(X, y, rng).y_support) for _ in range(60)]
    assert {tuple(s) for s in shots} == {(1, 1), (3, 3), (5, 5)}
    assert _same(sampler.sample(X, y, np.random.default_rng(1)),
                 sampler.sample(X, y, np.random.default_rng(1)))
    for seed in range(5):
        rest = sampler.sample(X, y, np.random.default_rng(seed), query="rest")
        np.testing.assert_array_equal(np.bincount(rest.y_support), [5, 5])
    assert sampler.rows_needed == 7
    regression = EpisodeSampler(n_shots=[2, 4], n_queries=3, classification=False)
    sizes = {regression.sample(X, y, rng).y_support.shape[0] for _ in range(30)}
    assert sizes == {2, 4}


def test_meta_batches_of_mixed_shot_counts_are_padded_and_the_padding_masked():
    sampler = EpisodeSampler(n_shots=(1, 3), n_queries=1)
    loader = EpisodeLoader(_tasks(n_tasks=3), sampler, n_episodes=16, meta_batch_size=8, random_state=0)
    for batch in loader:  # 3 classes: 1 or 3 shots each
        assert batch.padded and batch.X_support.shape[1] == 9
        assert set(batch.support_weight.sum(1).tolist()) == {3.0, 9.0}
        assert batch.query_weight is None  # one query per class either way
        # Real rows first, then padding; the padding's labels are real labels.
        for weights in batch.support_weight:
            n = int(weights.sum())
            assert weights[:n].eq(1).all() and weights[n:].eq(0).all()


@pytest.mark.parametrize("cls", [ProtoNetClassifier, MAMLClassifier])
def test_meta_learners_fit_on_mixed_shot_counts(cls, fast_params, blob_tasks):
    meta = cls(**{**fast_params, "n_shots": (1, 5), "max_epochs": 2, "meta_batch_size": 4,
                  "n_episodes": 8}).fit(blob_tasks)
    assert np.isfinite(meta.history_[:, "train_loss"]).all()


def test_score_with_a_tuple_of_shot_counts_adapts_on_the_largest(fast_params):
    from skmeta.datasets import make_blob_tasks

    train = make_blob_tasks(n_tasks=6, n_rows_per_class=10, n_features=4, random_state=0)
    new = make_blob_tasks(n_tasks=4, n_rows_per_class=12, n_features=4, random_state=1)
    meta = ProtoNetClassifier(**{**fast_params, "n_shots": (1, 4)}).fit(train)
    score = meta.score(new)
    assert score == meta.score(new)
    largest = ProtoNetClassifier(**{**fast_params, "n_shots": 4}).fit(train)
    largest.module_.load_state_dict(meta.module_.state_dict())
    assert score == pytest.approx(largest.score(new), abs=1e-12)
    smallest = ProtoNetClassifier(**{**fast_params, "n_shots": 1}).fit(train)
    smallest.module_.load_state_dict(meta.module_.state_dict())
    assert abs(score - smallest.score(new)) > 1e-3


@pytest.mark.parametrize("param, value", [("n_shots", ()), ("n_shots", (0, 5)), ("n_shots", 2.5),
                                          ("n_shots", [2, True]), ("class_balance", "natural-ish")])
def test_bad_shot_counts_and_class_balance_are_refused_by_name(param, value, fast_params, blob_tasks):
    with pytest.raises(ValueError, match=rf"The '{param}' parameter of ProtoNetClassifier must be .*"
                                         rf"Got {re.escape(repr(value))} instead"):
        ProtoNetClassifier(**{**fast_params, param: value}).fit(blob_tasks)
