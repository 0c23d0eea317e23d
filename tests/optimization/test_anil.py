"""Tests of skmeta/optimization/_anil.py: the head-only inner loop and the estimators."""

import numpy as np
import pytest
import torch
from _tiny import unadapted_score
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsRegressor
from torch.nn.functional import cross_entropy, mse_loss

from skmeta import MLP, ANILClassifier, ANILRegressor
from skmeta.datasets import make_blob_tasks, make_sinusoid_tasks
from skmeta.optimization._anil import anil_inner_loop, anil_loss, check_head_is_additive, head_names
from skmeta.tasks import EpisodeBatch


def _batch(classification, n_episodes=3, n_support=4, n_query=6, n_features=3):
    g = torch.Generator().manual_seed(0)
    X_support = torch.randn(n_episodes, n_support, n_features, generator=g, dtype=torch.float64)
    X_query = torch.randn(n_episodes, n_query, n_features, generator=g, dtype=torch.float64)
    if classification:
        y_support = (torch.arange(n_support) % 2).expand(n_episodes, -1).clone()
        y_query = (torch.arange(n_query) % 2).expand(n_episodes, -1).clone()
    else:
        y_support = torch.randn(n_episodes, n_support, 1, generator=g, dtype=torch.float64)
        y_query = torch.randn(n_episodes, n_query, 1, generator=g, dtype=torch.float64)
    return EpisodeBatch(X_support, y_support, X_query, y_query)


def _new_task(classification):
    if classification:
        return make_blob_tasks(n_tasks=1, n_rows_per_class=10, n_features=4, random_state=7)[0]
    return make_sinusoid_tasks(1, n_rows=20, random_state=7)[0]


def _outputs(meta, X_query, X_support, y_support):
    if meta._classification:
        return meta.predict_proba(X_query, X_support, y_support)
    return meta.predict(X_query, X_support, y_support)


# ------------------------------------------------------ cached or not: the same


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("classification", [True, False], ids=["classifier", "regressor"])
def test_caching_the_support_embedding_changes_nothing_but_time(classification, first_order, fast_params,
                                                               blob_tasks, sinusoid_tasks):
    # The meta-objective and its meta-gradient, w.r.t. body and head ...
    module = MLP(3, 2 if classification else 1, hidden_sizes=(6, 5)).double()
    params = {name: p.detach().clone().requires_grad_() for name, p in module.named_parameters()}
    batch, loss_fn = _batch(classification), cross_entropy if classification else mse_loss
    results = {}
    for cache in (True, False):
        loss, outputs = anil_loss(module, params, batch, loss_fn=loss_fn, inner_lr=0.3, steps=3,
                                  first_order=first_order, cache_support_embedding=cache)
        results[cache] = (loss, outputs, torch.autograd.grad(loss, list(params.values())))
    torch.testing.assert_close(results[True][0], results[False][0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(results[True][1], results[False][1], rtol=1e-12, atol=1e-12)
    for name, a, b in zip(params, results[True][2], results[False][2], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)
        assert a.abs().max() > 0, name  # the body gets a meta-gradient too

    # ... and, for the estimators, meta-training and the adapted predictions.
    Estimator = ANILClassifier if classification else ANILRegressor
    tasks = blob_tasks if classification else sinusoid_tasks
    settings = {**fast_params, "inner_lr": 0.05, "inner_steps": 2, "first_order": first_order,
                "max_epochs": 2}
    cached = Estimator(**settings, cache_support_embedding=True).fit(tasks)
    uncached = Estimator(**settings, cache_support_embedding=False).fit(tasks)
    for (name, a), b in zip(cached.module_.named_parameters(), uncached.module_.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    task = _new_task(classification)
    X_support, y_support, X_query = task.X[::2], task.y[::2], task.X[1::2]
    np.testing.assert_allclose(_outputs(cached, X_query, X_support, y_support),
                               _outputs(uncached, X_query, X_support, y_support), rtol=1e-5, atol=1e-6)


def test_the_inner_loop_moves_the_head_only():
    module = MLP(3, 2, hidden_sizes=(6,)).double()
    params = dict(module.named_parameters())
    batch = _batch(True)
    for cache in (True, False):
        adapted = anil_inner_loop(module, params, batch.X_support[0], batch.y_support[0],
                                  loss_fn=cross_entropy, inner_lr=0.5, steps=2,
                                  cache_support_embedding=cache)
        moved = [name for name in params if not torch.equal(adapted[name], params[name])]
        assert moved == list(head_names(module)) == ["layers.2.weight", "layers.2.bias"]


def test_the_inner_loop_takes_gradient_steps_on_the_head_of_a_fixed_embedding():
    # On a fixed embedding Z, a linear head's gradient steps have a closed form.
    module = MLP(3, 1, hidden_sizes=(4,)).double()
    params = {name: p.detach() for name, p in module.named_parameters()}
    g = torch.Generator().manual_seed(2)
    X = torch.randn(8, 3, generator=g, dtype=torch.float64)
    y = torch.randn(8, 1, generator=g, dtype=torch.float64)
    adapted = anil_inner_loop(module, params, X, y, loss_fn=mse_loss, inner_lr=0.1, steps=3)
    Z = torch.relu(X @ params["layers.0.weight"].T + params["layers.0.bias"])
    W, b = params["layers.2.weight"], params["layers.2.bias"]
    for _ in range(3):
        residual = Z @ W.T + b - y
        W, b = W - 0.1 * 2 * residual.T @ Z / 8, b - 0.1 * 2 * residual.sum(0) / 8
    torch.testing.assert_close(adapted["layers.2.weight"], W, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(adapted["layers.2.bias"], b, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------- adapting


@pytest.mark.parametrize("cache", [True, False])
@pytest.mark.parametrize("Estimator", [ANILClassifier, ANILRegressor], ids=["classifier", "regressor"])
def test_adapting_moves_the_head_and_leaves_the_body_as_meta_learned(Estimator, cache, fast_params,
                                                                     blob_tasks, sinusoid_tasks):
    tasks = blob_tasks if Estimator is ANILClassifier else sinusoid_tasks
    meta = Estimator(**{**fast_params, "inner_lr": 0.05, "cache_support_embedding": cache}).fit(tasks)
    before = {name: p.detach().clone() for name, p in meta.module_.named_parameters()}
    task = tasks[0]
    adapted = meta.adapt(task.X[:8], task.y[:8])
    head = set(head_names(meta.module_))
    for name, value in adapted.state_.items():
        if name in head:
            assert not torch.equal(value, before[name]), name
        else:
            assert torch.equal(value, before[name]), name
    for name, p in meta.module_.named_parameters():  # the meta-learned weights stay
        assert torch.equal(p, before[name]), name


class _TanhAfterHead(torch.nn.Module):
    """An MLP squashed by a tanh: its output is not its last Linear's plus a constant."""

    def __init__(self, n_features, n_outputs):
        super().__init__()
        self.mlp = MLP(n_features, n_outputs, hidden_sizes=(8,))

    def forward(self, X):
        return torch.tanh(self.mlp(X))


@pytest.mark.parametrize("Estimator", [ANILClassifier, ANILRegressor], ids=["classifier", "regressor"])
def test_a_module_not_additive_in_its_head_is_refused_when_caching(Estimator, fast_params, blob_tasks,
                                                                  sinusoid_tasks):
    tasks = blob_tasks if Estimator is ANILClassifier else sinusoid_tasks
    settings = {**fast_params, "module": _TanhAfterHead, "inner_lr": 0.05}
    settings.pop("module__hidden_sizes")
    with pytest.raises(ValueError, match="set cache_support_embedding=False"):
        Estimator(**settings).fit(tasks)
    meta = Estimator(**settings, cache_support_embedding=False).fit(tasks)
    task = tasks[0]
    assert np.isfinite(_outputs(meta, task.X[8:], task.X[:8], task.y[:8])).all()
    assert check_head_is_additive(MLP(4, 2, hidden_sizes=(3,)), torch.randn(5, 4))
    assert not check_head_is_additive(_TanhAfterHead(4, 2), torch.randn(5, 4))


# ------------------------------------------------------------------ learning


def test_regressor_adapted_beats_unadapted_and_a_support_only_model(support_only_score):
    # Seeds 0, 1 while tuning, R² adapted / un-adapted / 3-NN on the support:
    # 0.69 / 0.01 / 0.27 and 0.89 / -0.07 / 0.30.
    train = make_sinusoid_tasks(200, random_state=0)
    new_tasks = make_sinusoid_tasks(20, random_state=100)
    meta = ANILRegressor(lr=3e-3, max_epochs=5, n_shots=10, n_queries=10, device="cpu",
                         random_state=0).fit(train)
    adapted, unadapted = meta.score(new_tasks), unadapted_score(meta, new_tasks)
    knn = support_only_score(KNeighborsRegressor(3), new_tasks, like=meta)
    assert adapted > unadapted + 0.3 and adapted > knn + 0.2, (adapted, unadapted, knn)


def test_classifier_adapted_beats_unadapted_and_a_support_only_model(support_only_score):
    # Seeds 0, 1 while tuning, accuracy adapted / un-adapted / logistic regression
    # on the support: 0.82 / 0.53 / 0.71 and 0.82 / 0.54 / 0.70.
    tasks = make_blob_tasks(n_tasks=60, random_state=0)
    train, new_tasks = tasks[:40], tasks[40:]
    meta = ANILClassifier(max_epochs=6, device="cpu", random_state=0).fit(train)
    adapted, unadapted = meta.score(new_tasks), unadapted_score(meta, new_tasks)
    logistic = support_only_score(LogisticRegression(), new_tasks, like=meta)
    assert adapted > unadapted + 0.15 and adapted > logistic + 0.05, (adapted, unadapted, logistic)
