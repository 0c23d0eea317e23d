"""Tests of skmeta/_maml.py: inner_loop, maml_loss, MAMLClassifier, MAMLRegressor."""

import copy

import numpy as np
import pytest
import torch
from _tiny import classification_batch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from torch.func import functional_call
from torch.nn.functional import cross_entropy, mse_loss

from skmeta import MLP, MAMLClassifier, MAMLRegressor
from skmeta.datasets import make_blob_tasks, make_sinusoid_tasks
from skmeta.exceptions import AdaptationWarning
from skmeta.optimization._maml import inner_loop, maml_loss
from skmeta.tasks import EpisodeBatch

# ------------------------------------------------------------ functional core


def _leaf_params(module):
    return {name: p.detach().clone().requires_grad_() for name, p in module.named_parameters()}


def _reference_maml_loss(module, params, batch, *, loss_fn, inner_lr, steps, first_order):
    """MAML the learn2learn/higher way: a Python loop over the episodes and
    ``torch.autograd.grad(create_graph=True)``; first order detaches the
    inner gradients (``create_graph=False`` returns them without a graph)."""
    losses, outputs = [], []
    for i in range(len(batch)):
        adapted = dict(params)
        for _ in range(steps):
            support = loss_fn(functional_call(module, adapted, (batch.X_support[i],)), batch.y_support[i])
            grads = torch.autograd.grad(support, list(adapted.values()), create_graph=not first_order)
            adapted = {name: p - inner_lr * g for (name, p), g in zip(adapted.items(), grads, strict=True)}
        output = functional_call(module, adapted, (batch.X_query[i],))
        losses.append(loss_fn(output, batch.y_query[i]))
        outputs.append(output)
    return torch.stack(losses).mean(), torch.stack(outputs)


def _meta_gradient(loss, params):
    return torch.autograd.grad(loss, list(params.values()))


def _assert_same_meta_gradient(loss, expected_loss, params):
    got, expected = _meta_gradient(loss, params), _meta_gradient(expected_loss, params)
    for name, a, b in zip(params, got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.parametrize("steps", [1, 2])
def test_maml_loss_second_order_meta_gradient_matches_loop_reference(steps):
    module = MLP(3, 2, hidden_sizes=(6,)).double()
    params = _leaf_params(module)
    batch = classification_batch()
    options = dict(loss_fn=cross_entropy, inner_lr=0.5, steps=steps)

    loss, outputs = maml_loss(module, params, batch, **options)
    expected_loss, expected_outputs = _reference_maml_loss(
        module, params, batch, first_order=False, **options
    )
    torch.testing.assert_close(loss, expected_loss, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(outputs, expected_outputs, rtol=1e-10, atol=1e-12)
    assert outputs.shape == (3, 6, 2)
    _assert_same_meta_gradient(loss, expected_loss, params)


@pytest.mark.parametrize("steps", [1, 2])
def test_maml_loss_first_order_detaches_inner_gradients(steps):
    module = MLP(3, 2, hidden_sizes=(6,)).double()
    params = _leaf_params(module)
    batch = classification_batch()
    options = dict(loss_fn=cross_entropy, inner_lr=0.5, steps=steps)

    def first_order_loss():
        return maml_loss(module, params, batch, first_order=True, **options)[0]

    detached = _reference_maml_loss(module, params, batch, first_order=True, **options)[0]
    _assert_same_meta_gradient(first_order_loss(), detached, params)
    # ... and so it is not the second-order meta-gradient.
    second = _reference_maml_loss(module, params, batch, first_order=False, **options)[0]
    first, second = _meta_gradient(first_order_loss(), params), _meta_gradient(second, params)
    assert max((a - b).abs().max().item() for a, b in zip(first, second, strict=True)) > 1e-3


def test_maml_loss_regression_meta_gradient_matches_loop_reference():
    module = MLP(1, 1, hidden_sizes=(5, 5)).double()
    params = _leaf_params(module)
    g = torch.Generator().manual_seed(1)
    batch = EpisodeBatch(*(torch.randn(4, n, *shape, generator=g, dtype=torch.float64)
                           for n, shape in [(5, (1,)), (5, (1,)), (7, (1,)), (7, (1,))]))
    options = dict(loss_fn=mse_loss, inner_lr=0.1, steps=3, first_order=False)
    loss, _ = maml_loss(module, params, batch, **options)
    expected, _ = _reference_maml_loss(module, params, batch, **options)
    _assert_same_meta_gradient(loss, expected, params)


@pytest.mark.parametrize("first_order", [False, True])
def test_inner_loop_on_a_linear_model_takes_the_closed_form_gradient_steps(first_order):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 1))
    W, b = rng.normal(size=(1, 3)), rng.normal(size=(1,))
    module = torch.nn.Linear(3, 1).double()
    params = {"weight": torch.tensor(W, requires_grad=True), "bias": torch.tensor(b, requires_grad=True)}

    adapted = inner_loop(module, params, torch.tensor(X), torch.tensor(y), loss_fn=mse_loss,
                         inner_lr=0.1, steps=3, first_order=first_order)

    W0 = W.copy()
    for _ in range(3):  # gradient of mean((X W^T + b - y)^2)
        residual = X @ W.T + b - y
        W, b = W - 0.1 * 2 * residual.T @ X / 6, b - 0.1 * 2 * residual.sum(0) / 6
    np.testing.assert_allclose(adapted["weight"].detach().numpy(), W, rtol=1e-12)
    np.testing.assert_allclose(adapted["bias"].detach().numpy(), b, rtol=1e-12)
    assert adapted["weight"].requires_grad  # the path to the meta-parameters stays
    np.testing.assert_array_equal(params["weight"].detach().numpy(), W0)  # the start is kept


def test_inner_loop_with_zero_steps_returns_the_starting_point():
    module = torch.nn.Linear(2, 1)
    params = dict(module.named_parameters())
    adapted = inner_loop(module, params, torch.ones(3, 2), torch.ones(3, 1), loss_fn=mse_loss,
                         inner_lr=0.1, steps=0)
    assert all(adapted[name] is p for name, p in params.items())


# ------------------------------------------------------------------ adapting

#: Adapt on the targets as given, where the learner would standardise them:
#: these tests compare adapted predictions with the backbone's own outputs.
_RAW_TARGETS = (
    {"standardize_targets": False} if "standardize_targets" in MAMLRegressor().get_params() else {}
)


@pytest.fixture(scope="module")
def _regressor_fitted_once():
    """Meta-trained once for this module; tests get a copy (see fitted_regressor)."""
    tasks = make_sinusoid_tasks(8, n_rows=20, random_state=0)
    meta = MAMLRegressor(inner_lr=0.01, max_epochs=2, n_episodes=8, meta_batch_size=4, n_shots=10,
                         n_queries=10, train_split=None, device="cpu", random_state=0,
                         module__hidden_sizes=(16,), **_RAW_TARGETS)
    return meta.fit(tasks), make_sinusoid_tasks(1, n_rows=20, random_state=1)[0]


@pytest.fixture
def fitted_regressor(_regressor_fitted_once):
    """A meta-trained regressor of this test's own: set_params on it stays here."""
    meta, task = _regressor_fitted_once
    return copy.deepcopy(meta), task


def test_more_adapt_steps_fit_the_support_set_better(fitted_regressor):
    meta, task = fitted_regressor
    X, y = task.X[:10], task.y[:10]
    losses = []
    for steps in (0, 1, 5, 20):
        meta.set_params(adapt_steps=steps)
        losses.append(_mse(meta.adapt(X, y).predict(X), y))
    assert (np.diff(losses) < 0).all(), losses


def test_zero_adapt_steps_predict_with_the_meta_learned_weights(fitted_regressor):
    meta, task = fitted_regressor
    meta.set_params(adapt_steps=0)
    predicted = meta.predict(task.X[10:], task.X[:10], task.y[:10])
    with torch.no_grad():
        expected = meta.module_(torch.as_tensor(task.X[10:])).squeeze(-1).numpy()
    np.testing.assert_allclose(predicted, expected, rtol=1e-6)


# ------------------------------------------- adapting a linear model, by hand


def _softmax(z):
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _gradient_steps_by_hand(W, b, X, y, *, classification, inner_lr, steps):
    """Gradient descent on a linear model, the gradients written out: mean
    cross-entropy of softmax(X W^T + b), or mean squared error of X W^T + b.
    Returns the weights after each step and the support loss before it."""
    n = X.shape[0]
    path, losses = [(W, b)], []
    for _ in range(steps + 1):
        scores = X @ W.T + b
        if classification:
            P = _softmax(scores)
            losses.append(-np.log(P[np.arange(n), y]).mean())
            residual = (P - np.eye(W.shape[0])[y]) / n  # d loss / d scores
        else:
            losses.append(((scores[:, 0] - y) ** 2).mean())
            residual = 2 * (scores - y[:, None]) / n
        if len(path) > steps:
            break
        W, b = W - inner_lr * residual.T @ X, b - inner_lr * residual.sum(0)
        path.append((W, b))
    return path, losses


def _linear_task(classification, n_rows=24, n_features=3, random_state=5):
    """A task on which every gradient step of inner_lr <= 0.4 lowers the loss."""
    rng = np.random.default_rng(random_state)
    X = rng.normal(size=(n_rows, n_features)).astype(np.float32)
    if classification:
        return X, np.arange(n_rows) % 3
    return X, (X @ np.array([1.0, -0.5, 0.25]) + 0.1 * rng.normal(size=n_rows)).astype(np.float32)


@pytest.fixture(scope="module")
def _linear_meta_learners():
    """MAML on a linear backbone (MLP without hidden layers), meta-trained a little."""
    common = dict(module__hidden_sizes=(), max_epochs=1, n_episodes=4, meta_batch_size=2, n_shots=2,
                  n_queries=3, train_split=None, device="cpu", random_state=0)
    tasks = make_blob_tasks(n_tasks=4, n_classes=3, n_rows_per_class=6, n_features=3, random_state=0)
    return {
        True: MAMLClassifier(**common).fit(tasks),
        False: MAMLRegressor(**common, **_RAW_TARGETS).fit(
            [_linear_task(False, random_state=i) for i in range(4)]),
    }


@pytest.mark.parametrize("classification", [True, False], ids=["classifier", "regressor"])
@pytest.mark.parametrize("inner_lr, adapt_steps", [(0.05, 1), (0.2, 3), (0.4, 5), (0.2, 0)])
def test_adapt_takes_adapt_steps_gradient_steps_of_inner_lr(
    _linear_meta_learners, classification, inner_lr, adapt_steps
):
    meta = copy.deepcopy(_linear_meta_learners[classification])
    meta.set_params(inner_lr=inner_lr, adapt_steps=adapt_steps)
    (W, b) = (p.detach().double().numpy() for p in meta.module_.parameters())
    X, y = _linear_task(classification)
    X_support, y_support, X_query = X[:12], y[:12], X[12:]

    path, losses = _gradient_steps_by_hand(W, b, X_support.astype(np.float64), y_support,
                                           classification=classification, inner_lr=inner_lr,
                                           steps=adapt_steps)
    assert (np.diff(losses) < 0).all(), losses  # every step helps: nothing to backtrack
    W_k, b_k = path[-1]
    scores = X_query @ W_k.T + b_k
    adapted = meta.adapt(X_support, y_support)
    if classification:
        got, expected = adapted.predict_proba(X_query), _softmax(scores)
        np.testing.assert_array_equal(adapted.predict(X_query), scores.argmax(1))
    else:
        got, expected = adapted.predict(X_query), scores[:, 0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    if adapt_steps == 0:
        return
    # Half the step size, or one step fewer, ends elsewhere: both enter exactly.
    for other_lr, other_steps in ((inner_lr / 2, adapt_steps), (inner_lr, adapt_steps - 1)):
        other = _gradient_steps_by_hand(W, b, X_support, y_support, classification=classification,
                                        inner_lr=other_lr, steps=other_steps)[0][-1]
        assert np.abs(X_query @ other[0].T + other[1] - scores).max() > 1e-3


def test_adapt_encodes_the_support_labels_in_sorted_order(_linear_meta_learners):
    # Output unit k of the backbone is trained on the k-th smallest label.
    meta = copy.deepcopy(_linear_meta_learners[True]).set_params(adapt_steps=2)
    X, y = _linear_task(True)
    names = np.array(["cat", "ant", "bee"])[y]  # sorted: ant (1), bee (2), cat (0)
    by_name = meta.adapt(X[:12], names[:12])
    by_code = meta.adapt(X[:12], np.array([2, 0, 1])[y[:12]])
    np.testing.assert_array_equal(by_name.classes_, ["ant", "bee", "cat"])
    np.testing.assert_allclose(by_name.predict_proba(X[12:]), by_code.predict_proba(X[12:]))
    np.testing.assert_array_equal(by_name.predict(X[12:]), by_name.classes_[by_code.predict(X[12:])])


def test_adapt_steps_none_takes_inner_steps(fast_params, sinusoid_tasks):
    meta = MAMLRegressor(**{**fast_params, "inner_lr": 0.01, "inner_steps": 2}).fit(sinusoid_tasks)
    task = sinusoid_tasks[0]

    def predictions(adapt_steps):
        meta.set_params(adapt_steps=adapt_steps)
        return meta.predict(task.X[5:], task.X[:5], task.y[:5])

    np.testing.assert_array_equal(predictions(None), predictions(2))
    assert not np.array_equal(predictions(None), predictions(1))


@pytest.mark.parametrize("Estimator", [MAMLClassifier, MAMLRegressor])
def test_adapting_leaves_the_meta_learned_parameters_unchanged(
    Estimator, fast_params, blob_tasks, sinusoid_tasks
):
    tasks = blob_tasks if Estimator is MAMLClassifier else sinusoid_tasks
    meta = Estimator(**{**fast_params, "inner_lr": 0.01}).fit(tasks)
    before = {name: p.detach().clone() for name, p in meta.module_.named_parameters()}
    grads = {name: None if p.grad is None else p.grad.clone() for name, p in meta.module_.named_parameters()}

    task = tasks[0]
    adapted = meta.adapt(task.X[:8], task.y[:8])
    adapted.predict(task.X[8:])
    meta.predict(task.X[8:], task.X[:8], task.y[:8])
    meta.score(tasks)

    for name, p in meta.module_.named_parameters():
        assert torch.equal(p, before[name]), name
        assert (p.grad is None and grads[name] is None) or torch.equal(p.grad, grads[name]), name
    # The adapted weights are the estimator's own, and moved away from the start.
    assert any(not torch.equal(adapted.state_[name], before[name]) for name in before)


@pytest.mark.parametrize("Estimator", [MAMLClassifier, MAMLRegressor])
def test_same_random_state_gives_identical_predictions(Estimator, fast_params, blob_tasks, sinusoid_tasks):
    tasks = blob_tasks if Estimator is MAMLClassifier else sinusoid_tasks
    task = tasks[0]

    def predictions(random_state):
        meta = Estimator(**{**fast_params, "inner_lr": 0.01, "random_state": random_state}).fit(tasks)
        if Estimator is MAMLClassifier:
            return meta.predict_proba(task.X[8:], task.X[:8], task.y[:8])
        return meta.predict(task.X[8:], task.X[:8], task.y[:8])

    np.testing.assert_array_equal(predictions(0), predictions(0))
    assert not np.array_equal(predictions(0), predictions(1))


def test_defaults_take_one_inner_step_and_ten_adapt_steps():
    meta = MAMLClassifier()
    assert (meta.inner_lr, meta.inner_steps, meta.adapt_steps) == (0.1, 1, 10)
    assert meta._steps(training=True) == 1 and meta._steps(training=False) == 10


def test_a_step_that_raises_the_support_loss_is_halved_with_a_warning(fitted_regressor):
    meta, task = fitted_regressor
    X, y = task.X[:10], task.y[:10]
    start = _mse(meta.set_params(adapt_steps=0).adapt(X, y).predict(X), y)
    meta.set_params(inner_lr=10.0, adapt_steps=10)  # on this test's own copy
    with pytest.warns(AdaptationWarning, match=r"inner_lr=10.0 raised the support loss"):
        adapted = meta.adapt(X, y)
    history = adapted.adapt_history_
    assert history["backtracked"] and 0 < max(history["step_sizes"]) < 10
    losses = history["support_loss"]
    assert losses[0] == pytest.approx(start, rel=1e-5)
    assert (np.diff(losses) <= 1e-6 * np.abs(losses[:-1])).all(), losses  # never up
    assert _mse(adapted.predict(X), y) == pytest.approx(losses[-1], rel=1e-4) and losses[-1] < start


# ------------------------------------------------------------------ learning


def _mse(predicted, y):
    return float(np.mean((predicted - y) ** 2))


@pytest.mark.parametrize("first_order", [False, True])
def test_regressor_adaptation_lowers_the_query_error_of_the_meta_learned_start(first_order):
    # Seeds 0, 1, 2 while tuning (second order / first order), un-adapted MSE
    # over adapted: 5.4 / 3.6, 9.7 / 3.1, 5.3 / 3.9.
    train = make_sinusoid_tasks(200, random_state=0)
    new_tasks = make_sinusoid_tasks(20, random_state=100)
    meta = MAMLRegressor(inner_lr=0.01, lr=3e-3, max_epochs=20, n_shots=10, n_queries=10,
                         first_order=first_order, device="cpu", random_state=0).fit(train)
    adapted, start = [], []
    for task in new_tasks:
        support, query = slice(None, 10), slice(10, None)
        adapted.append(_mse(meta.adapt(task.X[support], task.y[support]).predict(task.X[query]),
                            task.y[query]))
        with torch.no_grad():  # the meta-learned initialisation, on the same query points
            start.append(_mse(meta.module_(torch.as_tensor(task.X[query])).squeeze(-1).numpy(),
                              task.y[query]))
    ratio = np.mean(start) / np.mean(adapted)
    assert ratio > 2.5, (np.mean(start), np.mean(adapted))


@pytest.fixture(scope="module")
def blob_split():
    """40 meta-training tasks and 20 new ones: 2 classes at random places in a
    2-d subspace of 20 features, so 10 support rows alone leave much to guess."""
    tasks = make_blob_tasks(n_tasks=60, random_state=0)
    return tasks[:40], tasks[40:]


def test_classifier_beats_models_fitted_on_the_support_set_alone(blob_split, support_only_score):
    # Seeds 0, 1, 2 while tuning: MAML 0.81, 0.82, 0.82; logistic regression
    # 0.71, 0.66, 0.74 and 3-nearest neighbours 0.65, 0.61, 0.68.
    train, new_tasks = blob_split
    meta = MAMLClassifier(max_epochs=10, device="cpu", random_state=0).fit(train)
    score = meta.score(new_tasks)
    for baseline in (LogisticRegression(), KNeighborsClassifier(3)):
        assert score > support_only_score(baseline, new_tasks, like=meta) + 0.05
