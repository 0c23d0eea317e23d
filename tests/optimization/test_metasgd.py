"""Tests of skmeta/optimization/_metasgd.py: MetaSGDModule, metasgd_loss and the estimators."""

import copy

import numpy as np
import pytest
import torch
from _tiny import classification_batch, unadapted_score
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsRegressor
from torch.nn.functional import cross_entropy

from skmeta import MLP, MAMLClassifier, MAMLRegressor, MetaSGDClassifier, MetaSGDRegressor
from skmeta.datasets import make_blob_tasks, make_sinusoid_tasks
from skmeta.optimization._maml import maml_loss
from skmeta.optimization._metasgd import MetaSGDModule, metasgd_loss

# ------------------------------------------------------- equal rates are MAML


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("steps", [1, 2])
def test_with_every_rate_at_inner_lr_the_meta_objective_is_mamls(steps, first_order):
    module = MetaSGDModule(MLP(3, 2, hidden_sizes=(6,)).double(), inner_lr=0.5)
    batch = classification_batch()
    loss, outputs = metasgd_loss(module, batch, loss_fn=cross_entropy, steps=steps, first_order=first_order)
    params = dict(module.network.named_parameters())
    expected, expected_outputs = maml_loss(module.network, params, batch, loss_fn=cross_entropy,
                                           inner_lr=0.5, steps=steps, first_order=first_order)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(outputs, expected_outputs, rtol=1e-12, atol=1e-12)
    got = torch.autograd.grad(loss, list(params.values()))
    want = torch.autograd.grad(expected, list(params.values()))
    for name, a, b in zip(params, got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)
    # Another starting rate is another objective.
    other = maml_loss(module.network, params, batch, loss_fn=cross_entropy, inner_lr=0.25, steps=steps,
                      first_order=first_order)[0]
    assert abs(other.item() - loss.item()) > 1e-4


def _new_task(classification):
    if classification:
        return make_blob_tasks(n_tasks=1, n_rows_per_class=10, n_features=4, random_state=7)[0]
    return make_sinusoid_tasks(1, n_rows=20, random_state=7)[0]


def _outputs(meta, X_query, X_support, y_support):
    if meta._classification:
        return meta.predict_proba(X_query, X_support, y_support)
    return meta.predict(X_query, X_support, y_support)


@pytest.mark.parametrize("Meta, MAML", [(MetaSGDClassifier, MAMLClassifier),
                                        (MetaSGDRegressor, MAMLRegressor)], ids=["classifier", "regressor"])
def test_with_every_rate_at_inner_lr_adapted_predictions_are_mamls(Meta, MAML, fast_params, blob_tasks,
                                                                  sinusoid_tasks):
    tasks = blob_tasks if Meta._classification else sinusoid_tasks
    settings = {**fast_params, "inner_lr": 0.05, "adapt_steps": 5}
    maml = MAML(**settings).fit(tasks)
    # A meta-step of ~1e-30 leaves every rate where it starts: at inner_lr.
    meta = Meta(**settings, optimizer=torch.optim.SGD, lr=1e-30).fit(tasks)
    for name, rate in meta.inner_lrs_.items():
        assert rate.shape == meta.module_.network.get_parameter(name).shape
        np.testing.assert_array_equal(rate, np.float32(0.05))
    meta.module_.network.load_state_dict(maml.module_.state_dict())
    task = _new_task(Meta._classification)
    X_support, y_support, X_query = task.X[::2], task.y[::2], task.X[1::2]
    got, want = _outputs(meta, X_query, X_support, y_support), _outputs(maml, X_query, X_support, y_support)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # ... and adapting moved away from the un-adapted start.
    unadapted = _outputs(maml.set_params(adapt_steps=0), X_query, X_support, y_support)
    assert np.abs(unadapted - want).max() > 1e-3


# ------------------------------------------------------------------ the rates


@pytest.mark.parametrize("first_order", [False, True])
def test_the_rates_get_a_meta_gradient(first_order):
    module = MetaSGDModule(MLP(3, 2, hidden_sizes=(6,)).double(), inner_lr=0.5)
    loss, _ = metasgd_loss(module, classification_batch(), loss_fn=cross_entropy, steps=1,
                           first_order=first_order)
    loss.backward()
    for key, rate in module.rates.items():
        assert rate.grad is not None and rate.grad.abs().max() > 0, key
    names = [name for name, _ in module.network.named_parameters()]
    assert sorted(module.rates) == sorted(name.replace(".", "-") for name in names)


@pytest.mark.parametrize("Meta", [MetaSGDClassifier, MetaSGDRegressor], ids=["classifier", "regressor"])
def test_the_rates_move_in_meta_training_and_adaptation_uses_them(Meta, fast_params, blob_tasks,
                                                                  sinusoid_tasks):
    tasks = blob_tasks if Meta._classification else sinusoid_tasks
    meta = Meta(**{**fast_params, "inner_lr": 0.05, "max_epochs": 3, "lr": 0.01}).fit(tasks)
    moved = max(np.abs(rate - np.float32(0.05)).max() for rate in meta.inner_lrs_.values())
    assert moved > 1e-3
    # Rates differ from weight to weight within a tensor: a rate per weight, not per layer.
    assert any(np.ptp(rate) > 1e-4 for rate in meta.inner_lrs_.values())
    # They are in the fitted module, so persistence keeps them ...
    assert any(key.startswith("rates.") for key in meta.module_.state_dict())
    # ... and adaptation steps with them: other rates, other predictions.
    task = _new_task(Meta._classification)
    X_support, y_support, X_query = task.X[::2], task.y[::2], task.X[1::2]
    before = _outputs(meta, X_query, X_support, y_support)
    other = copy.deepcopy(meta)
    with torch.no_grad():
        for rate in other.module_.rates.values():
            rate.fill_(0.05)
    assert np.abs(_outputs(other, X_query, X_support, y_support) - before).max() > 1e-4


def test_inner_lrs_before_fit_is_not_fitted():
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        _ = MetaSGDClassifier().inner_lrs_


# ------------------------------------------------------------------ learning


def test_regressor_adapted_beats_unadapted_and_a_support_only_model(support_only_score):
    # Seeds 0, 1 while tuning, R² adapted / un-adapted / 3-NN on the support:
    # 0.88 / 0.09 / 0.27 and 0.92 / -0.20 / 0.30.
    train = make_sinusoid_tasks(200, random_state=0)
    new_tasks = make_sinusoid_tasks(20, random_state=100)
    meta = MetaSGDRegressor(lr=3e-3, max_epochs=5, n_shots=10, n_queries=10, device="cpu",
                            random_state=0).fit(train)
    adapted, unadapted = meta.score(new_tasks), unadapted_score(meta, new_tasks)
    knn = support_only_score(KNeighborsRegressor(3), new_tasks, like=meta)
    assert adapted > unadapted + 0.3 and adapted > knn + 0.2, (adapted, unadapted, knn)


def test_classifier_adapted_beats_unadapted_and_a_support_only_model(support_only_score):
    # Seeds 0, 1 while tuning, accuracy adapted / un-adapted / logistic regression
    # on the support: 0.80 / 0.53 / 0.71 and 0.79 / 0.56 / 0.70.
    tasks = make_blob_tasks(n_tasks=60, random_state=0)
    train, new_tasks = tasks[:40], tasks[40:]
    meta = MetaSGDClassifier(max_epochs=6, device="cpu", random_state=0).fit(train)
    adapted, unadapted = meta.score(new_tasks), unadapted_score(meta, new_tasks)
    logistic = support_only_score(LogisticRegression(), new_tasks, like=meta)
    assert adapted > unadapted + 0.15 and adapted > logistic + 0.05, (adapted, unadapted, logistic)
