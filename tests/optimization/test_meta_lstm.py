"""Tests of skmeta/optimization/_meta_lstm.py: the learned optimizer (Meta-LSTM)."""

import copy
import math
import pickle

import numpy as np
import pytest
import torch
from _tiny import classification_batch, unadapted_score
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsRegressor
from test_parameters import meta_lstm_meta_loss
from torch.nn.functional import cross_entropy

from skmeta import MLP, MAMLRegressor, MetaLSTMClassifier, MetaLSTMRegressor
from skmeta.datasets import make_blob_tasks, make_sinusoid_tasks
from skmeta.exceptions import AdaptationWarning
from skmeta.optimization._maml import maml_loss
from skmeta.optimization._meta_lstm import (
    MetaLSTMModule,
    MetaLSTMOptimizer,
    meta_lstm_loss,
    preprocess,
)

FAST = dict(max_epochs=1, n_episodes=4, meta_batch_size=2, n_shots=2, n_queries=3,
            train_split=None, device="cpu", random_state=0, module__hidden_sizes=(8,))


def _gradient_descent(optimizer, inner_lr):
    """Gates that make the optimizer gradient descent of ``inner_lr`` exactly: the
    gate weights zero, ``i = sigmoid(logit(inner_lr))`` and ``f = sigmoid(50) = 1``."""
    with torch.no_grad():
        optimizer.input_gate.weight.zero_()
        optimizer.input_gate.bias.fill_(math.log(inner_lr / (1 - inner_lr)))
        optimizer.forget_gate.weight.zero_()
        optimizer.forget_gate.bias.fill_(50.0)
    return optimizer


def _double_module(hidden_size=6, inner_lr=0.3, seed=0):
    torch.manual_seed(seed)
    return MetaLSTMModule(MLP(3, 2, hidden_sizes=(6,)), hidden_size, inner_lr).double()


def _leaves(module):
    return {name: p.detach().clone().requires_grad_() for name, p in module.named_parameters()}


def _split(module, leaves):
    """The network's leaves by its own names, and the optimizer's parameters set to its leaves."""
    network = {name.removeprefix("network."): p for name, p in leaves.items() if name.startswith("network.")}
    optimizer = {name.removeprefix("optimizer_lstm."): p for name, p in leaves.items()
                 if name.startswith("optimizer_lstm.")}
    return network, optimizer


def _core_loss(module, leaves, batch, **options):
    """meta_lstm_loss with the optimizer's parameters taken from ``leaves``."""
    network, optimizer_params = _split(module, leaves)
    optimizer = copy.deepcopy(module.optimizer_lstm)
    for name, p in optimizer_params.items():
        layer, attribute = name.split(".")
        delattr(getattr(optimizer, layer), attribute)
        setattr(getattr(optimizer, layer), attribute, p)
    return meta_lstm_loss(module.network, network, optimizer, batch, loss_fn=cross_entropy, **options)


def _gradients(loss, leaves):
    return dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()), retain_graph=True),
                    strict=True))


# ------------------------------------------------------------ functional core


def test_preprocess_is_log_magnitude_and_sign_with_a_linear_part_below_exp_minus_p():
    x = torch.tensor([-100.0, 1.0, 1e-3, 1e-5, -1e-5, 0.0], dtype=torch.float64, requires_grad=True)
    out = preprocess(x)
    expected = torch.tensor([[math.log(100) / 10, -1], [0, 1], [math.log(1e-3) / 10, 1],
                             [-1, math.exp(10) * 1e-5], [-1, -math.exp(10) * 1e-5], [-1, 0]],
                            dtype=torch.float64)
    torch.testing.assert_close(out, expected)
    (gradient,) = torch.autograd.grad(out.sum(), x)
    assert torch.isfinite(gradient).all()  # at 0 too: the log's branch is clamped
    torch.testing.assert_close(gradient[:3], torch.tensor([-1 / 1000, 1 / 10, 1 / 1e-2], dtype=torch.float64))


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("steps", [1, 3])
def test_an_untrained_optimizer_at_rate_inner_lr_without_decay_is_maml(first_order, steps):
    # i = inner_lr and f = 1 at every step: theta_t = theta_(t-1) - inner_lr * grad_t.
    module = _double_module(inner_lr=0.3)
    _gradient_descent(module.optimizer_lstm, 0.3)
    leaves = _leaves(module)
    network, _ = _split(module, leaves)
    batch = classification_batch()
    loss, outputs = _core_loss(module, leaves, batch, steps=steps, first_order=first_order)
    expected, expected_outputs = maml_loss(module.network, network, batch, loss_fn=cross_entropy,
                                           inner_lr=0.3, steps=steps, first_order=first_order)
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(outputs, expected_outputs, rtol=1e-10, atol=1e-12)
    got, want = _gradients(loss, network), _gradients(expected, network)
    for name in network:
        torch.testing.assert_close(got[name], want[name], rtol=1e-8, atol=1e-10, msg=name)
    # ... and the meta-gradient reaches the optimizer's gates.
    assert _gradients(loss, leaves)["optimizer_lstm.input_gate.bias"].abs().item() > 1e-6


@pytest.mark.parametrize("first_order", [False, True])
def test_the_functional_core_matches_the_hand_written_replay(first_order):
    module = _double_module(inner_lr=0.3)
    leaves = _leaves(module)
    batch = classification_batch()
    loss, _ = _core_loss(module, leaves, batch, steps=3, first_order=first_order)
    settings = {"loss": cross_entropy, "inner_steps": 3, "first_order": first_order, "truncation": None}
    expected = meta_lstm_meta_loss(module, leaves, batch, settings)
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
    got, want = _gradients(loss, leaves), _gradients(expected, leaves)
    for name in leaves:
        torch.testing.assert_close(got[name], want[name], rtol=1e-8, atol=1e-10, msg=name)


@pytest.mark.parametrize("truncation", [1, 2])
def test_truncation_back_propagates_through_the_last_steps_only(truncation):
    module = _double_module(inner_lr=0.3)
    leaves = _leaves(module)
    batch = classification_batch()
    loss, _ = _core_loss(module, leaves, batch, steps=4, truncation=truncation)
    settings = {"loss": cross_entropy, "inner_steps": 4, "first_order": False, "truncation": truncation}
    expected = meta_lstm_meta_loss(module, leaves, batch, settings)
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)  # the forward pass is the same
    got, want = _gradients(loss, leaves), _gradients(expected, leaves)
    for name in leaves:
        torch.testing.assert_close(got[name], want[name], rtol=1e-8, atol=1e-10, msg=name)
    # It is not the full meta-gradient, for the weights nor for the optimizer.
    full = _gradients(_core_loss(module, leaves, batch, steps=4)[0], leaves)
    for name in ("network.layers.0.weight", "optimizer_lstm.lstm_input.weight",
                 "optimizer_lstm.input_gate.bias"):
        assert (got[name] - full[name]).abs().max() > 1e-6, name
    # The initial weights still learn (through the identity path of the earlier steps).
    assert got["network.layers.0.weight"].abs().max() > 1e-4


def test_truncation_from_the_first_step_is_the_full_meta_gradient():
    module = _double_module()
    leaves = _leaves(module)
    batch = classification_batch()
    truncated = _gradients(_core_loss(module, leaves, batch, steps=3, truncation=3)[0], leaves)
    full = _gradients(_core_loss(module, leaves, batch, steps=3)[0], leaves)
    for name in leaves:
        torch.testing.assert_close(truncated[name], full[name], rtol=1e-12, atol=1e-14, msg=name)


def test_the_optimizer_starts_near_gradient_descent_of_inner_lr():
    optimizer = MetaLSTMOptimizer(hidden_size=20, inner_lr=0.05).double()
    torch.manual_seed(0)
    theta, grad = torch.randn(50, dtype=torch.float64), torch.randn(50, dtype=torch.float64)
    new_theta, (_, _, i, f) = optimizer(theta, grad, torch.tensor(0.7, dtype=torch.float64),
                                        optimizer.initial_state(theta))
    assert ((i - 0.05).abs() < 0.05 * 0.1).all()  # the input gate: about inner_lr
    assert ((f - 1 / (1 + math.exp(-6))).abs() < 0.01).all()  # the forget gate: about 0.9975
    torch.testing.assert_close(new_theta, f * theta - i * grad)


# ------------------------------------------------------------------ estimator


@pytest.fixture(scope="module")
def _frozen_regressor():
    """Meta-trained with a step of 1e-30: the initial weights and optimizer."""
    tasks = make_sinusoid_tasks(6, n_rows=12, random_state=0)
    meta = MetaLSTMRegressor(inner_lr=0.02, inner_steps=3, standardize_targets=False,
                             optimizer=torch.optim.SGD, lr=1e-30, **FAST).fit(tasks)
    return meta


def _new_sinusoid(random_state=1):
    task = make_sinusoid_tasks(1, n_rows=20, random_state=random_state)[0]
    return task.X[:10], task.y[:10], task.X[10:]


@pytest.mark.parametrize("adapt_steps", [1, 3])
def test_an_untrained_learner_at_rate_inner_lr_without_decay_adapts_as_maml(_frozen_regressor, adapt_steps):
    meta = copy.deepcopy(_frozen_regressor).set_params(adapt_steps=adapt_steps)
    _gradient_descent(meta.module_.optimizer_lstm, 0.02)
    maml = MAMLRegressor(inner_lr=0.02, adapt_steps=adapt_steps, standardize_targets=False,
                         optimizer=torch.optim.SGD, lr=1e-30,
                         **FAST).fit(make_sinusoid_tasks(6, n_rows=12, random_state=0))
    maml.module_.load_state_dict(meta.module_.network.state_dict())
    X_support, y_support, X_query = _new_sinusoid()
    adapted = meta.adapt(X_support, y_support)
    assert not adapted.adapt_history_["backtracked"]
    np.testing.assert_allclose(adapted.predict(X_query), maml.predict(X_query, X_support, y_support),
                               rtol=1e-5, atol=1e-5)
    start = meta.set_params(adapt_steps=0).predict(X_query, X_support, y_support)
    assert np.abs(adapted.predict(X_query) - start).max() > 1e-2  # the steps moved the weights


def test_inner_lr_is_the_step_size_the_learned_optimizer_starts_at(_frozen_regressor):
    # Untrained, a step is f * theta - i * grad with i about inner_lr: raising
    # inner_lr from 0.01 to 0.02 adds what a gradient step of 0.01 moves.
    X_support, y_support, X_query = _new_sinusoid()
    tasks = make_sinusoid_tasks(6, n_rows=12, random_state=0)
    frozen = dict(adapt_steps=1, standardize_targets=False, optimizer=torch.optim.SGD, lr=1e-30, **FAST)

    def predictions(cls, inner_lr):
        meta = cls(inner_lr=inner_lr, **frozen).fit(tasks)
        if cls is MAMLRegressor:  # the learned optimizer's initial weights
            meta.module_.load_state_dict(_frozen_regressor.module_.network.state_dict())
        return meta.predict(X_query, X_support, y_support)

    learned = predictions(MetaLSTMRegressor, 0.02) - predictions(MetaLSTMRegressor, 0.01)
    gradient = predictions(MAMLRegressor, 0.02) - predictions(MAMLRegressor, 0.01)
    assert np.abs(gradient).max() > 1e-3
    np.testing.assert_allclose(learned, gradient, rtol=0.1, atol=0.1 * np.abs(gradient).max())


def test_adapt_steps_none_takes_inner_steps(_frozen_regressor):
    meta = copy.deepcopy(_frozen_regressor)
    X_support, y_support, X_query = _new_sinusoid()

    def predictions(adapt_steps):
        return meta.set_params(adapt_steps=adapt_steps).predict(X_query, X_support, y_support)

    assert MetaLSTMRegressor().adapt_steps is None and MetaLSTMRegressor().inner_steps == 5
    np.testing.assert_array_equal(predictions(None), predictions(3))
    assert not np.allclose(predictions(None), predictions(2))
    with torch.no_grad():  # 0 steps: the meta-learned initial weights
        expected = meta.module_(torch.as_tensor(X_query)).squeeze(-1).numpy()
    np.testing.assert_allclose(predictions(0), expected, rtol=1e-6)


def test_adaptation_advances_the_lstm_once_per_step_and_halves_a_bad_step(_frozen_regressor):
    meta = copy.deepcopy(_frozen_regressor).set_params(adapt_steps=4)
    with torch.no_grad():  # a rate of 0.9: far too large for raw sinusoid targets
        meta.module_.optimizer_lstm.input_gate.bias.fill_(math.log(0.9 / 0.1))
    calls = []
    meta.module_.optimizer_lstm.register_forward_hook(lambda *args: calls.append(1))
    X_support, y_support, _ = _new_sinusoid()
    with pytest.warns(AdaptationWarning, match="a step of the meta-learned update raised"):
        adapted = meta.adapt(X_support, y_support)
    history = adapted.adapt_history_
    assert history["backtracked"] and min(history["step_sizes"]) < 1
    assert len(history["step_sizes"]) == len(calls) == 4  # halvings do not advance the LSTM
    losses = history["support_loss"]
    assert (np.diff(losses) <= 1e-6 * np.abs(losses[:-1])).all(), losses


def test_truncation_must_be_below_inner_steps():
    tasks = make_sinusoid_tasks(4, n_rows=12, random_state=0)
    with pytest.raises(ValueError, match=r"truncation=3 with inner_steps=3 .* truncation=None"):
        MetaLSTMRegressor(inner_steps=3, truncation=3, **FAST).fit(tasks)
    MetaLSTMRegressor(inner_lr=0.01, inner_steps=3, truncation=2, **FAST).fit(tasks)
    with pytest.raises(ValueError, match="inner_lr"):
        MetaLSTMRegressor(inner_lr=1.5, **FAST).fit(tasks)  # a gate is a rate in (0, 1)


def test_lstm_hidden_size_is_the_width_of_the_optimizers_cell():
    tasks = make_sinusoid_tasks(4, n_rows=12, random_state=0)
    X_support, y_support, X_query = _new_sinusoid()
    predictions = {}
    for size in (3, 7):
        meta = MetaLSTMRegressor(inner_lr=0.01, lstm_hidden_size=size, **FAST).fit(tasks)
        optimizer = meta.optimizer_lstm_
        assert optimizer.lstm_hidden.weight.shape == (4 * size, size)
        assert optimizer.input_gate.weight.shape == optimizer.forget_gate.weight.shape == (1, size + 2)
        theta = torch.zeros(5)
        assert optimizer.initial_state(theta)[0].shape == (5, size)
        predictions[size] = meta.predict(X_query, X_support, y_support)
    assert np.abs(predictions[3] - predictions[7]).max() > 1e-4


def test_meta_training_moves_the_optimizer_and_saves_it():
    tasks = make_blob_tasks(n_tasks=6, n_rows_per_class=10, n_features=4, random_state=0)
    meta = MetaLSTMClassifier(**{**FAST, "lr": 0.01}).fit(tasks)
    start = MetaLSTMClassifier(**{**FAST, "lr": 1e-30, "optimizer": torch.optim.SGD}).fit(tasks)
    for name, p in start.module_.optimizer_lstm.named_parameters():
        assert (dict(meta.module_.optimizer_lstm.named_parameters())[name] - p).abs().max() > 1e-4, name
    # The optimizer is in the fitted state: a pickle and a parameter file keep it.
    restored = pickle.loads(pickle.dumps(meta))
    for name, p in meta.module_.state_dict().items():
        assert torch.equal(restored.module_.state_dict()[name], p), name
    task = tasks[0]
    np.testing.assert_array_equal(restored.predict_proba(task.X, task.X[:8], task.y[:8]),
                                  meta.predict_proba(task.X, task.X[:8], task.y[:8]))
    assert any(name.startswith("optimizer_lstm.") for name in meta.module_.state_dict())


def test_optimizer_lstm_is_refused_before_fit():
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError, match="fit"):
        MetaLSTMClassifier().optimizer_lstm_  # noqa: B018


# ------------------------------------------------------------------ learning


def _mse(predicted, y):
    return float(np.mean((predicted - y) ** 2))


def test_regressor_beats_its_start_and_nearest_neighbours_on_new_sinusoids():
    # Five shots: MSE on 20 new tasks, adapted 3.40, un-adapted (the meta-learned
    # start) 4.01, 3-nearest neighbours on the support 4.48 (about 20 s of one core).
    train, new_tasks = make_sinusoid_tasks(200, random_state=0), make_sinusoid_tasks(20, random_state=100)
    meta = MetaLSTMRegressor(inner_lr=0.01, lr=3e-3, max_epochs=4, n_episodes=128, meta_batch_size=16,
                             n_shots=5, n_queries=10, module__hidden_sizes=(40, 40), device="cpu",
                             random_state=0).fit(train)
    adapted, start, neighbours = [], [], []
    for task in new_tasks:
        X_support, y_support, X_query, y_query = task.X[:5], task.y[:5], task.X[5:], task.y[5:]
        meta.set_params(adapt_steps=None)
        adapted.append(_mse(meta.predict(X_query, X_support, y_support), y_query))
        meta.set_params(adapt_steps=0)
        start.append(_mse(meta.predict(X_query, X_support, y_support), y_query))
        neighbours.append(_mse(KNeighborsRegressor(3).fit(X_support, y_support).predict(X_query), y_query))
    assert np.mean(adapted) < 0.9 * np.mean(start), (np.mean(adapted), np.mean(start))
    assert np.mean(adapted) < 0.85 * np.mean(neighbours), (np.mean(adapted), np.mean(neighbours))


def test_classifier_beats_its_start_and_logistic_regression_on_new_blob_tasks(support_only_score):
    # Accuracy on 20 new tasks, 5 shots: adapted 0.787, un-adapted (the
    # meta-learned start) 0.526, logistic regression on the support 0.708.
    tasks = make_blob_tasks(n_tasks=60, random_state=0)
    train, new_tasks = tasks[:40], tasks[40:]
    meta = MetaLSTMClassifier(lr=3e-3, max_epochs=6, n_episodes=100, module__hidden_sizes=(32,),
                              device="cpu", random_state=0).fit(train)
    score = meta.score(new_tasks)
    start = unadapted_score(meta, new_tasks)
    logistic = support_only_score(LogisticRegression(), new_tasks, like=meta)
    assert score > start + 0.15, (score, start)
    assert score > logistic + 0.05, (score, logistic)
