"""Adaptation never returns nonsense: the guarded inner loop (skmeta/_steps.py) and MAML's defaults."""

import warnings

import numpy as np
import pytest
import torch
from torch.func import functional_call

from skmeta import MAMLClassifier, MAMLRegressor
from skmeta._steps import guarded_inner_loop
from skmeta.datasets import make_blob_tasks, make_sinusoid_tasks
from skmeta.exceptions import AdaptationWarning
from skmeta.optimization._maml import inner_loop

SINUSOID = dict(max_epochs=2, n_episodes=64, meta_batch_size=8, n_shots=10, n_queries=10, inner_lr=0.01,
                train_split=None, random_state=0, device="cpu", standardize_targets=False,
                module__hidden_sizes=(20, 20))


@pytest.fixture(scope="module")
def sinusoid_meta():
    return MAMLRegressor(**SINUSOID).fit(make_sinusoid_tasks(100, n_rows=30, random_state=0))


def test_the_guard_changes_nothing_when_steps_help(sinusoid_meta):
    meta = sinusoid_meta
    for task in make_sinusoid_tasks(10, n_rows=30, random_state=1):
        adapted = meta.adapt(task.X[:10], task.y[:10])
        assert not adapted.adapt_history_["backtracked"]
        params = {name: p.detach() for name, p in meta.module_.named_parameters()}
        X, y = torch.as_tensor(task.X[:10]), torch.as_tensor(task.y[:10])
        plain = inner_loop(meta.module_, params, X, y, loss_fn=meta._loss, inner_lr=meta.inner_lr,
                           steps=meta.adapt_steps, first_order=True)
        with torch.no_grad():
            expected = functional_call(meta.module_, plain, (torch.as_tensor(task.X[10:]),)).squeeze(-1)
        np.testing.assert_allclose(adapted.predict(task.X[10:]), expected.numpy(), rtol=1e-4, atol=1e-5)
        losses = adapted.adapt_history_["support_loss"]
        assert len(losses) == meta.adapt_steps + 1 and all(np.diff(losses) <= 1e-6 * losses[0])
        assert adapted.adapt_history_["step_sizes"] == [meta.inner_lr] * meta.adapt_steps


def test_a_diverging_support_set_gives_finite_predictions_no_worse_than_unadapted(sinusoid_meta):
    meta = sinusoid_meta
    task = make_sinusoid_tasks(1, n_rows=30, random_state=2)[0]
    X, y = task.X[:10], task.y[:10] * 1e3
    meta.set_params(inner_lr=1.0)
    try:
        # The plain loop explodes on this support set ...
        params = {name: p.detach() for name, p in meta.module_.named_parameters()}
        plain = inner_loop(meta.module_, params, torch.as_tensor(X), torch.as_tensor(y), loss_fn=meta._loss,
                           inner_lr=1.0, steps=meta.adapt_steps, first_order=True)
        with torch.no_grad():
            exploded = functional_call(meta.module_, plain, (torch.as_tensor(X),)).squeeze(-1).numpy()
        unadapted = meta.set_params(adapt_steps=0).adapt(X, y).predict(X)
        meta.set_params(adapt_steps=SINUSOID.get("adapt_steps", 10))
        unadapted_mse = np.mean((unadapted - y) ** 2)
        assert not np.isfinite(exploded).all() or np.mean((exploded - y) ** 2) > 1e3 * unadapted_mse
        # ... the guarded one backtracks, says so once, and ends no worse than where it started.
        with pytest.warns(AdaptationWarning, match=r"inner_lr=1.0 raised the support loss") as record:
            adapted = meta.adapt(X, y)
        assert len([w for w in record if issubclass(w.category, AdaptationWarning)]) == 1
        # ... and the warning points at the line that called adapt, not into skmeta.
        assert [w.filename for w in record if issubclass(w.category, AdaptationWarning)] == [__file__]
    finally:
        meta.set_params(inner_lr=SINUSOID["inner_lr"], adapt_steps=10)
    prediction = adapted.predict(task.X)
    assert np.isfinite(prediction).all()
    history = adapted.adapt_history_
    assert history["backtracked"] and min(history["step_sizes"]) < 1.0
    assert np.mean((adapted.predict(X) - y) ** 2) <= np.mean((unadapted - y) ** 2)
    assert history["support_loss"][-1] <= history["support_loss"][0]


def test_score_warns_once_for_all_the_tasks_that_backtracked(sinusoid_meta):
    meta = sinusoid_meta
    tasks = make_sinusoid_tasks(4, n_rows=30, random_state=3)
    meta.set_params(inner_lr=5.0)
    try:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            score = meta.score(tasks)
    finally:
        meta.set_params(inner_lr=SINUSOID["inner_lr"])
    caught = [w for w in record if issubclass(w.category, AdaptationWarning)]
    assert len(caught) == 1 and "Adapting to 4 of 4 support set(s)" in str(caught[0].message)
    assert np.isfinite(score)


def test_guarded_loop_stops_when_no_step_helps():
    model = torch.nn.Linear(1, 1, bias=False)
    X, y = torch.ones(4, 1), torch.full((4, 1), 2.0)
    params, report = guarded_inner_loop(model, {"weight": torch.full((1, 1), 2.0)}, X, y,
                                        loss_fn=torch.nn.functional.mse_loss, inner_lr=0.1, steps=5)
    # Already at the minimum: every step is zero, the loss cannot go lower, nothing changes.
    assert params["weight"].item() == 2.0 and report["support_loss"][-1] == 0.0


def test_a_classifier_adapts_with_the_guard_and_records_it():
    tasks = make_blob_tasks(n_tasks=8, n_rows_per_class=10, n_features=4, random_state=0)
    meta = MAMLClassifier(max_epochs=1, n_episodes=8, n_shots=2, n_queries=3, train_split=None,
                          random_state=0, module__hidden_sizes=(8,), inner_lr=50.0).fit(tasks[:6])
    task = tasks[7]
    with pytest.warns(AdaptationWarning):
        adapted = meta.adapt(task.X, task.y)
    assert np.isfinite(adapted.predict_proba(task.X)).all()
    assert adapted.adapt_history_["support_loss"][-1] <= adapted.adapt_history_["support_loss"][0]


def _two_sine_tasks(n_tasks, n_rows, seed):
    """Each task a sum of two sines: amplitudes up to 2.5 each, phases up to pi."""
    from skmeta.tasks import Task, TaskCollection

    rng = np.random.default_rng(seed)
    tasks = []
    for index in range(n_tasks):
        X = rng.uniform(-5, 5, size=(n_rows, 1))
        (a1, a2), (p1, p2) = rng.uniform(0.1, 2.5, 2), rng.uniform(0, np.pi, 2)
        y = a1 * np.sin(X[:, 0] - p1) + a2 * np.sin(2 * X[:, 0] - p2)
        tasks.append(Task(X.astype(np.float32), y.astype(np.float32), name=f"two_sines_{index}"))
    return TaskCollection(tasks)


def test_default_regressor_adapts_a_family_it_was_not_tuned_on():
    # A new user's first try: 1,000 two-sine tasks, 10 support rows, the defaults.
    from sklearn.neighbors import KNeighborsRegressor

    meta = MAMLRegressor(n_shots=10, n_queries=10, random_state=0, device="cpu").fit(
        _two_sine_tasks(1000, 30, seed=0))
    errors, variances, knn = [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AdaptationWarning)  # shortened steps are fine here
        for task in _two_sine_tasks(100, 60, seed=1):
            X_s, y_s, X_q, y_q = task.X[:10], task.y[:10], task.X[10:], task.y[10:]
            errors.append(np.mean((meta.adapt(X_s, y_s).predict(X_q) - y_q) ** 2))
            variances.append(np.var(y_q))
            knn.append(np.mean((KNeighborsRegressor(3).fit(X_s, y_s).predict(X_q) - y_q) ** 2))
    mse = float(np.mean(errors))
    assert np.isfinite(mse)
    assert mse < 0.5 * np.mean(variances), (mse, np.mean(variances))
    assert mse < np.mean(knn), (mse, np.mean(knn))
