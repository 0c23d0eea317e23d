"""FineTuneClassifier and FineTuneRegressor: pooled pre-training, then L2-SP fine-tuning.

The family where transfer should help: tasks share a linear (logistic) rule
up to a per-task perturbation of its slope and a per-task shift. The pooled
model knows the shared rule but not a task's shift; a model fitted on a few
support rows alone knows the shift but barely the rule; fine-tuning from the
pooled model should know both.
"""

import math

import numpy as np
import pytest
import torch
from _tiny import shifted_tasks
from scipy.special import softmax
from sklearn.linear_model import LogisticRegression, Ridge

from skmeta import FineTuneClassifier, FineTuneRegressor, TaskCollection
from skmeta.exceptions import AdaptationWarning

FAST = dict(max_epochs=10, train_split=None, device="cpu", random_state=0,
            module__hidden_sizes=(16,), lr=1e-2)


@pytest.fixture(scope="module")
def classifier():
    tasks = shifted_tasks(50, classification=True)
    return FineTuneClassifier(**FAST, n_shots=3).fit(tasks[:30]), tasks[30:]


@pytest.fixture(scope="module")
def regressor():
    tasks = shifted_tasks(50, classification=False)
    return FineTuneRegressor(**FAST, n_shots=3).fit(tasks[:30]), tasks[30:]


def test_fine_tuning_beats_the_pooled_model_and_the_support_set_alone(classifier, regressor,
                                                                      support_only_score):
    meta, held_out = classifier
    adapted = meta.score(held_out)
    pooled = meta.set_params(adapt_steps=0).score(held_out)
    alone = support_only_score(LogisticRegression(), held_out, like=meta)
    meta.set_params(adapt_steps=10)
    assert adapted > pooled + 0.03 and adapted > alone + 0.03, (adapted, pooled, alone)

    meta, held_out = regressor
    adapted = meta.score(held_out)
    pooled = meta.set_params(adapt_steps=0).score(held_out)
    alone = support_only_score(Ridge(alpha=1.0), held_out, like=meta)
    meta.set_params(adapt_steps=10)
    assert adapted > pooled + 0.03 and adapted > alone + 0.03, (adapted, pooled, alone)


def _support(task, n=5):
    rows = np.concatenate([np.flatnonzero(task.y == c)[:n] for c in np.unique(task.y)])
    return task.X[rows], task.y[rows]


def test_adapt_steps_zero_is_the_pooled_model(classifier):
    meta, held_out = classifier
    X, y = _support(held_out[0])
    adapted = meta.set_params(adapt_steps=0).adapt(X, y)
    meta.set_params(adapt_steps=10)
    with torch.no_grad():
        logits = meta.module_(torch.as_tensor(held_out[0].X, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(adapted.predict_proba(held_out[0].X), softmax(logits, axis=1), atol=1e-6)


def test_alpha_pulls_toward_the_pooled_model(classifier):
    meta, held_out = classifier
    X, y = _support(held_out[1])
    query = held_out[1].X
    pooled = meta.set_params(adapt_steps=0).adapt(X, y).predict_proba(query)
    distance = {}
    for alpha in (0.0, 1.0, 10.0):
        proba = meta.set_params(adapt_steps=10, alpha=alpha).adapt(X, y).predict_proba(query)
        distance[alpha] = np.abs(proba - pooled).max()
    assert distance[0.0] > distance[1.0] > distance[10.0] > 0, distance
    # A pull beyond what any step can overcome keeps the pooled model (the guard says so).
    with pytest.warns(AdaptationWarning, match="alpha=1000000.0"):
        stiff = meta.set_params(alpha=1e6).adapt(X, y)
    meta.set_params(alpha=1.0)
    np.testing.assert_allclose(stiff.predict_proba(query), pooled, atol=1e-6)


def test_finetune_head_moves_only_the_last_layer(classifier):
    meta, held_out = classifier
    X, y = _support(held_out[2])
    start = {name: p.detach() for name, p in meta.module_.named_parameters()}
    for mode, moved in (("head", {"layers.2.weight", "layers.2.bias"}), ("all", set(start))):
        state = meta.set_params(finetune=mode, alpha=0.0).adapt(X, y).state_
        changed = {name for name in start if not torch.equal(state[name], start[name])}
        assert changed == moved, mode
    meta.set_params(finetune="all", alpha=1.0)


def test_a_class_unseen_in_pre_training_starts_from_a_zero_row(classifier):
    meta, held_out = classifier
    X, y = _support(held_out[3])
    y = np.where(y == 1, 7, y)  # label 7 was never pre-trained on
    adapted = meta.set_params(adapt_steps=0).adapt(X, y)
    meta.set_params(adapt_steps=10)
    head_weight, head_bias = adapted.state_["layers.2.weight"], adapted.state_["layers.2.bias"]
    torch.testing.assert_close(head_weight[0], meta.module_.layers[2].weight[0].detach())
    assert not head_weight[1].any() and head_bias[1] == 0
    np.testing.assert_array_equal(adapted.classes_, [0, 7])


def test_labels_are_the_union_of_the_tasks_and_may_differ_in_number():
    rng = np.random.default_rng(0)
    tasks = TaskCollection([(rng.normal(size=(12, 3)), np.arange(12) % k) for k in (2, 3, 2, 3)])
    meta = FineTuneClassifier(**FAST).fit(tasks)
    np.testing.assert_array_equal(meta.classes_pooled_, [0, 1, 2])
    assert meta.module_.layers[-1].out_features == 3
    new = TaskCollection([(rng.normal(size=(12, 3)), np.arange(12) % 2 * 5)])
    with pytest.raises(ValueError, match=r"label\(s\) \[5\] that FineTuneClassifier was not pre-trained on"):
        meta.partial_fit(new)


def test_zero_weight_support_rows_count_as_dropped(regressor):
    meta, held_out = regressor
    task = held_out[0]
    X, y = task.X[:10], task.y[:10]
    weight = np.tile([1.0, 0.0], 5)
    weighted = meta.adapt(X, y, sample_weight=weight).predict(task.X)
    dropped = meta.adapt(X[weight > 0], y[weight > 0]).predict(task.X)
    np.testing.assert_allclose(weighted, dropped, rtol=1e-4, atol=1e-4)
    assert not np.allclose(weighted, meta.adapt(X, y).predict(task.X), atol=1e-3)


def test_a_step_that_raises_the_loss_is_shortened_and_reported(regressor):
    meta, held_out = regressor
    task = held_out[1]
    with pytest.warns(AdaptationWarning, match="inner_lr=50.0"):
        adapted = meta.set_params(inner_lr=50.0).adapt(task.X[:8], task.y[:8])
    meta.set_params(inner_lr=0.1)
    history = adapted.adapt_history_
    assert history["backtracked"] and all(step < 50.0 for step in history["step_sizes"])
    losses = history["support_loss"]
    assert all(b <= a * (1 + 1e-6) for a, b in zip(losses[:-1], losses[1:], strict=True))


def test_rows_per_batch_is_the_pre_training_batch(regressor):
    _, held_out = regressor
    n_rows = sum(task.n_rows for task in held_out)
    for rows in (16, 50):
        meta = FineTuneRegressor(**{**FAST, "max_epochs": 1}, rows_per_batch=rows).fit(held_out)
        sizes = [batch["train_batch_size"] for batch in meta.history_[-1]["batches"]]
        assert len(sizes) == math.ceil(n_rows / rows) and max(sizes) == rows
        assert meta.get_params()["batch_size"] == rows  # what skorch's ProgressBar reads
    with pytest.raises(ValueError, match="set rows_per_batch instead"):
        meta.set_params(batch_size=3)


def test_held_out_tasks_give_valid_loss_on_their_pooled_rows():
    from skmeta import TaskSplit

    tasks = shifted_tasks(10, classification=True)
    split = TaskSplit(3)
    meta = FineTuneClassifier(**{**FAST, "train_split": split, "max_epochs": 2}).fit(tasks)
    train, valid = split(tasks)
    for epoch in meta.history_:
        assert sum(b["valid_batch_size"] for b in epoch["batches"] if "valid_batch_size" in b) == sum(
            task.n_rows for task in valid)
        assert 0 <= epoch["valid_score"] <= 1 and np.isfinite(epoch["valid_loss"])


def test_standardize_targets_gives_predictions_in_the_targets_own_units(regressor):
    # Pre-trained on per-task standardised targets and adapted on the support's
    # standardised targets, a*y + c adapts exactly as y does.
    meta, held_out = regressor
    task = held_out[2]
    X, y = task.X[:10], task.y[:10]
    predicted = meta.adapt(X, y).predict(task.X)
    np.testing.assert_allclose(meta.adapt(X, 3 * y + 7).predict(task.X), 3 * predicted + 7,
                               rtol=1e-4, atol=1e-4)
    raw = FineTuneRegressor(**FAST, standardize_targets=False).fit(shifted_tasks(10, classification=False))
    unscaled = raw.adapt(X, 3 * y + 7).predict(task.X)
    assert np.abs(unscaled - (3 * raw.adapt(X, y).predict(task.X) + 7)).max() > 1e-2


@pytest.mark.parametrize("name, value", [("n_episodes", 50), ("meta_batch_size", 4)])
def test_episode_settings_are_not_parameters_and_are_refused(name, value):
    # Pooled pre-training draws no episodes: an episode setting would do nothing.
    assert name not in FineTuneClassifier().get_params()
    tasks = shifted_tasks(6, classification=True)
    with pytest.raises(ValueError, match=f"{name}={value}.*no effect"):
        FineTuneClassifier(**{**FAST, name: value}).fit(tasks)
