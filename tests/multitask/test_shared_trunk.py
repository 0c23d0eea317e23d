"""SharedTrunkClassifier and SharedTrunkRegressor: one head per task on a shared trunk.

The family where multi-task learning should help: tasks share a linear
(logistic) rule up to a per-task perturbation of its slope and a per-task
shift. The trunk learns the shared features, each task's head its shift; a
new task's head fitted on a few support rows from the mean head should beat
the mean head alone and a model fitted on the support rows alone.
"""

import pickle

import numpy as np
import pytest
import torch
from _tiny import shifted_tasks
from sklearn.linear_model import LogisticRegression, Ridge

from skmeta import SharedTrunkClassifier, SharedTrunkRegressor
from skmeta.exceptions import AdaptationWarning

FAST = dict(max_epochs=10, train_split=None, device="cpu", random_state=0,
            module__hidden_sizes=(16,), lr=1e-2)


@pytest.fixture(scope="module")
def classifier():
    tasks = shifted_tasks(50, classification=True)
    return SharedTrunkClassifier(**FAST, n_shots=3).fit(tasks[:30]), tasks[30:]


@pytest.fixture(scope="module")
def regressor():
    tasks = shifted_tasks(50, classification=False)
    return SharedTrunkRegressor(**FAST, n_shots=3).fit(tasks[:30]), tasks[30:]


def test_a_fitted_head_beats_the_mean_head_and_the_support_set_alone(classifier, regressor,
                                                                     support_only_score):
    meta, held_out = classifier
    adapted = meta.score(held_out)
    mean_head = meta.set_params(adapt_steps=0).score(held_out)
    alone = support_only_score(LogisticRegression(), held_out, like=meta)
    meta.set_params(adapt_steps=10)
    assert adapted > mean_head + 0.03 and adapted > alone + 0.03, (adapted, mean_head, alone)

    meta, held_out = regressor
    adapted = meta.score(held_out)
    mean_head = meta.set_params(adapt_steps=0).score(held_out)
    alone = support_only_score(Ridge(alpha=1.0), held_out, like=meta)
    meta.set_params(adapt_steps=10)
    assert adapted > mean_head + 0.03 and adapted > alone + 0.03, (adapted, mean_head, alone)


def test_each_row_goes_through_its_own_tasks_head(classifier):
    meta, held_out = classifier
    model = meta.module_
    assert meta.n_tasks_ == 30 and tuple(model.head_weight.shape) == (30, 16, 2)
    X = torch.as_tensor(held_out[0].X[:6], dtype=torch.float32)
    index = torch.tensor([0, 3, 3, 29, 7, 0])
    with torch.no_grad():
        hidden = model.trunk(X)
        expected = torch.stack([hidden[i] @ model.head_weight[k] + model.head_bias[k]
                                for i, k in enumerate(index)])
        torch.testing.assert_close(model(X, index), expected)
        # Heads were trained apart: the tasks' shifts differ.
        assert model.head_bias[:, 1].std() > 0.1


def _support(task, n=5):
    rows = np.concatenate([np.flatnonzero(task.y == c)[:n] for c in np.unique(task.y)])
    return task.X[rows], task.y[rows]


def test_alpha_pulls_a_new_head_toward_the_mean_head(classifier):
    meta, held_out = classifier
    X, y = _support(held_out[1])
    mean_weight, mean_bias = (p.detach() for p in meta.module_.mean_head())
    start = meta.set_params(adapt_steps=0).adapt(X, y)
    torch.testing.assert_close(start.state_["weight"], mean_weight)
    torch.testing.assert_close(start.state_["bias"], mean_bias)
    distance = {}
    for alpha in (0.0, 1.0, 10.0):
        state = meta.set_params(adapt_steps=10, alpha=alpha).adapt(X, y).state_
        distance[alpha] = (state["weight"] - mean_weight).norm().item()
    assert distance[0.0] > distance[1.0] > distance[10.0] > 0, distance
    with pytest.warns(AdaptationWarning, match="alpha=1000000.0"):
        stiff = meta.set_params(alpha=1e6).adapt(X, y)
    meta.set_params(alpha=1.0)
    np.testing.assert_allclose(stiff.predict_proba(held_out[1].X), start.predict_proba(held_out[1].X),
                               atol=1e-6)


def test_a_class_unseen_in_training_starts_from_a_zero_column(classifier):
    meta, held_out = classifier
    X, y = _support(held_out[2])
    adapted = meta.set_params(adapt_steps=0).adapt(X, np.where(y == 0, 9, y))  # 9: never trained on
    meta.set_params(adapt_steps=10)
    np.testing.assert_array_equal(adapted.classes_, [1, 9])
    mean_weight = meta.module_.mean_head()[0].detach()
    torch.testing.assert_close(adapted.state_["weight"][:, 0], mean_weight[:, 1])
    assert not adapted.state_["weight"][:, 1].any() and adapted.state_["bias"][1] == 0


def test_continued_training_needs_as_many_tasks(regressor):
    meta, held_out = regressor
    tasks = shifted_tasks(30, classification=False, random_state=1)
    continued = pickle.loads(pickle.dumps(meta)).set_params(warm_start=True, max_epochs=1)
    before = continued.module_.head_weight.detach().clone()
    continued.fit(tasks)  # 30 tasks, as in the first fit: head i goes on with task i
    assert continued.n_tasks_ == 30 and not torch.equal(continued.module_.head_weight, before)
    with pytest.raises(ValueError, match="fitted with 30; continued training .* got 29 training tasks"):
        continued.fit(tasks[:29])
    with pytest.raises(ValueError, match="got 20 training tasks"):
        continued.partial_fit(held_out)
    # A failed call leaves the learner as it was.
    assert continued.n_tasks_ == 30 and continued.module_.head_weight.shape[0] == 30


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


def test_standardize_targets_gives_predictions_in_the_targets_own_units(regressor):
    meta, held_out = regressor
    task = held_out[2]
    X, y = task.X[:10], task.y[:10]
    predicted = meta.adapt(X, y).predict(task.X)
    np.testing.assert_allclose(meta.adapt(X, 3 * y + 7).predict(task.X), 3 * predicted + 7,
                               rtol=1e-4, atol=1e-4)
    raw = SharedTrunkRegressor(**FAST, standardize_targets=False).fit(shifted_tasks(10, classification=False))
    unscaled = raw.adapt(X, 3 * y + 7).predict(task.X)
    assert np.abs(unscaled - (3 * raw.adapt(X, y).predict(task.X) + 7)).max() > 1e-2
