"""Tests of skmeta/optimization/_reptile.py: reptile_loss, ReptileClassifier, ReptileRegressor."""

import copy
import warnings

import numpy as np
import pytest
import torch
from _tiny import classification_batch, unadapted_score
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from skorch.callbacks import Callback
from torch.func import functional_call
from torch.nn.functional import cross_entropy

from skmeta import MLP, ReptileClassifier, ReptileRegressor
from skmeta.datasets import make_blob_tasks, make_sinusoid_tasks
from skmeta.exceptions import AdaptationWarning
from skmeta.optimization._reptile import reptile_loss
from skmeta.tasks import Episode, EpisodeBatch

# ------------------------------------------------------------ reference


def _rows_by_hand(batch, e):
    """Episode ``e``'s real rows, support then query: padding (weight 0) dropped by masks."""
    parts = []
    for side in ("support", "query"):
        X, y = getattr(batch, f"X_{side}")[e], getattr(batch, f"y_{side}")[e]
        weight = getattr(batch, f"{side}_weight")
        keep = torch.ones(len(y), dtype=torch.bool) if weight is None else weight[e] > 0
        parts.append((X[keep], y[keep]))
    return torch.cat([parts[0][0], parts[1][0]]), torch.cat([parts[0][1], parts[1][1]])


def _reptile_step_by_hand(module, weights, batch, *, loss_fn, inner_lr, inner_steps, lr):
    """Reptile the paper's way, one task at a time: ``inner_steps`` SGD steps on each
    episode's rows by ``torch.autograd.grad``, then ``theta - lr * (theta - mean adapted)``.
    Also returns the adapted weights' mean loss on the rows, episodes weighted by their rows."""
    adapted_all, losses, sizes = [], [], []
    for e in range(len(batch)):
        X, y = _rows_by_hand(batch, e)
        adapted = {name: p.detach().clone().requires_grad_() for name, p in weights.items()}
        for _ in range(inner_steps):
            loss = loss_fn(functional_call(module, adapted, (X,)), y)
            grads = torch.autograd.grad(loss, list(adapted.values()))
            adapted = {name: (p - inner_lr * g).detach().requires_grad_()
                       for (name, p), g in zip(adapted.items(), grads, strict=True)}
        with torch.no_grad():
            losses.append(loss_fn(functional_call(module, adapted, (X,)), y))
        adapted_all.append(adapted)
        sizes.append(len(y))
    new = {}
    for name, p in weights.items():
        mean = torch.stack([adapted[name].detach() for adapted in adapted_all]).mean(0)
        new[name] = p - lr * (p - mean)
    sizes = torch.tensor(sizes, dtype=torch.float64)
    return new, float((torch.stack(losses).double() * sizes).sum() / sizes.sum())


def _squared_error(output, y):
    return ((output.squeeze(-1) - y) ** 2).mean()


def _leaf_params(module):
    return {name: p.detach().clone().requires_grad_() for name, p in module.named_parameters()}


def _step_with_the_gradient(params, loss, lr):
    grads = torch.autograd.grad(loss, list(params.values()))
    return {name: p.detach() - lr * g for (name, p), g in zip(params.items(), grads, strict=True)}


def _assert_same(got, expected, rtol=1e-9, atol=1e-12):
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=rtol, atol=atol, msg=name)


# ------------------------------------------------------------ functional core


@pytest.mark.parametrize("inner_steps", [1, 3])
def test_reptile_loss_gradient_step_is_the_per_task_loop(inner_steps):
    module = MLP(3, 2, hidden_sizes=(6,)).double()
    params, batch = _leaf_params(module), classification_batch()
    options = dict(loss_fn=cross_entropy, inner_lr=0.5, steps=inner_steps)
    loss, outputs = reptile_loss(module, params, batch, **options)
    got = _step_with_the_gradient(params, loss, lr=0.3)
    expected, reported = _reptile_step_by_hand(module, params, batch, loss_fn=cross_entropy,
                                               inner_lr=0.5, inner_steps=inner_steps, lr=0.3)
    _assert_same(got, expected)
    assert float(loss.detach()) == pytest.approx(reported, rel=1e-10)
    assert outputs.shape == (3, 6, 2)  # the adapted weights' outputs on the query rows
    # The gradient is first order: the inner steps start from detached copies.
    grads = torch.autograd.grad(reptile_loss(module, params, batch, **options)[0], list(params.values()))
    mean = _reptile_step_by_hand(module, params, batch, loss_fn=cross_entropy, inner_lr=0.5,
                                 inner_steps=inner_steps, lr=1.0)[0]  # lr=1: the mean adapted
    for (name, p), g in zip(params.items(), grads, strict=True):
        torch.testing.assert_close(g, p.detach() - mean[name], rtol=1e-9, atol=1e-12)


def test_reptile_loss_regression_matches_the_per_task_loop():
    module = MLP(1, 1, hidden_sizes=(5, 5)).double()
    params = _leaf_params(module)
    g = torch.Generator().manual_seed(1)
    batch = EpisodeBatch(*(torch.randn(4, n, 1, generator=g, dtype=torch.float64).squeeze(-1) if i % 2
                           else torch.randn(4, n, 1, generator=g, dtype=torch.float64)
                           for i, n in enumerate((5, 5, 7, 7))))
    loss, _ = reptile_loss(module, params, batch, loss_fn=_squared_error, inner_lr=0.1, steps=4)
    expected, reported = _reptile_step_by_hand(module, params, batch, loss_fn=_squared_error,
                                               inner_lr=0.1, inner_steps=4, lr=0.2)
    _assert_same(_step_with_the_gradient(params, loss, lr=0.2), expected)
    assert float(loss.detach()) == pytest.approx(reported, rel=1e-10)


def _episode(rng, n_support, n_query, n_features=3):
    return Episode(rng.normal(size=(n_support, n_features)), rng.normal(size=n_support),
                   rng.normal(size=(n_query, n_features)), rng.normal(size=n_query))


def test_padded_episodes_give_the_update_of_the_episodes_alone():
    # Episodes of 1, 4 and 2 support rows (and 3, 2, 3 query rows), padded to 4 and 3.
    rng = np.random.default_rng(0)
    episodes = [_episode(rng, 1, 3), _episode(rng, 4, 2), _episode(rng, 2, 3)]
    padded = EpisodeBatch.stack(episodes, classification=False)
    assert padded.padded
    module = MLP(3, 1, hidden_sizes=(4,))
    params = _leaf_params(module)

    def loss_fn(output, y, weight=None):
        per_row = (output.squeeze(-1) - y) ** 2
        return per_row.mean() if weight is None else (per_row * weight).sum() / weight.sum()

    loss, _ = reptile_loss(module, params, padded, loss_fn=loss_fn, inner_lr=0.1, steps=3)
    got = _step_with_the_gradient(params, loss, lr=0.5)
    # Each episode alone, unpadded, in the per-task loop.
    alone = [EpisodeBatch.stack([episode], classification=False) for episode in episodes]
    adapted, losses = [], []
    for batch in alone:
        assert not batch.padded
        new, reported = _reptile_step_by_hand(module, params, batch, loss_fn=loss_fn, inner_lr=0.1,
                                               inner_steps=3, lr=1.0)
        adapted.append(new)
        losses.append(reported)
    expected = {name: p.detach() - 0.5 * (p.detach() - torch.stack([a[name] for a in adapted]).mean(0))
                for name, p in params.items()}
    _assert_same(got, expected, rtol=1e-5, atol=1e-6)
    rows = np.array([4, 6, 5])  # each episode's real rows
    assert float(loss.detach()) == pytest.approx(np.average(losses, weights=rows), rel=1e-5)
    # Padding rows taken as real ones would move elsewhere.
    unmasked = EpisodeBatch(padded.X_support, padded.y_support, padded.X_query, padded.y_query)
    other = _step_with_the_gradient(params, reptile_loss(module, params, unmasked, loss_fn=loss_fn,
                                                         inner_lr=0.1, steps=3)[0], lr=0.5)
    assert max((other[name] - got[name]).abs().max().item() for name in got) > 1e-4


# ------------------------------------------------------------ estimators


class Recorder(Callback):
    """The initial weights and every training meta-batch drawn."""

    def initialize(self):
        self.initial, self.batches = None, []
        return self

    def on_train_begin(self, net, **kwargs):
        if self.initial is None:
            self.initial = {name: p.detach().clone() for name, p in net.module_.named_parameters()}

    def on_batch_begin(self, net, batch=None, training=None, **kwargs):
        if training:
            self.batches.append(batch)


def _double(batch):
    cast = (lambda t: t.double()) if batch.y_support.is_floating_point() else (lambda t: t)
    return EpisodeBatch(batch.X_support.double(), cast(batch.y_support), batch.X_query.double(),
                        cast(batch.y_query), batch.support_weight, batch.query_weight)


_SGD = dict(optimizer=torch.optim.SGD, lr=0.3, max_epochs=1, meta_batch_size=3, n_queries=3,
            train_split=None, device="cpu", random_state=0, module__hidden_sizes=(5,))


def _fit_and_replay(Estimator, tasks, loss_fn, **params):
    recorder = Recorder()
    meta = Estimator(**{**_SGD, **params}, callbacks=[recorder]).fit(tasks)
    module = copy.deepcopy(meta.module_).double()
    weights = {name: p.double() for name, p in recorder.initial.items()}
    reported = []
    for batch in recorder.batches:
        weights, loss = _reptile_step_by_hand(module, weights, _double(batch), loss_fn=loss_fn,
                                              inner_lr=meta.inner_lr, inner_steps=meta.inner_steps,
                                              lr=meta.lr)
        reported.append(loss)
    return meta, recorder, weights, reported


def _blob_tasks(n_tasks=4, n_rows_per_class=8, random_state=0):
    return make_blob_tasks(n_tasks=n_tasks, n_classes=3, n_rows_per_class=n_rows_per_class,
                           n_features=4, random_state=random_state)


@pytest.mark.parametrize("Estimator, n_shots", [
    (ReptileClassifier, 2), (ReptileClassifier, (1, 3)), (ReptileRegressor, 2), (ReptileRegressor, (1, 4)),
])
def test_meta_steps_with_sgd_are_reptiles_update_and_train_loss_the_adapted_loss(Estimator, n_shots):
    if Estimator is ReptileClassifier:
        tasks, loss_fn, extra = _blob_tasks(), cross_entropy, {}
    else:
        tasks, loss_fn = make_sinusoid_tasks(4, n_rows=12, random_state=0), _squared_error
        extra = {"standardize_targets": False, "inner_lr": 0.02}
    meta, recorder, expected, reported = _fit_and_replay(
        Estimator, tasks, loss_fn, n_shots=n_shots, n_episodes=6, **extra)
    assert len(recorder.batches) == 2
    if isinstance(n_shots, tuple):  # episodes of mixed sizes, padded
        assert any(batch.padded for batch in recorder.batches)
    got = {name: p.detach().double() for name, p in meta.module_.named_parameters()}
    _assert_same(got, expected, rtol=1e-4, atol=1e-6)
    assert max((expected[n] - recorder.initial[n].double()).abs().max().item() for n in expected) > 1e-3
    # train_loss: the adapted weights' loss on the rows they were fitted to.
    batch_losses = [b["train_loss"] for b in meta.history_[-1]["batches"]]
    np.testing.assert_allclose(batch_losses, reported, rtol=1e-4)


def test_defaults():
    classifier, regressor = ReptileClassifier(), ReptileRegressor()
    assert (classifier.inner_lr, classifier.inner_steps, classifier.adapt_steps, classifier.lr) == (
        0.1, 5, 10, 1e-3)
    assert (regressor.inner_lr, regressor.inner_steps, regressor.lr, regressor.max_epochs,
            regressor.standardize_targets) == (0.05, 5, 0.01, 60, True)
    assert "first_order" not in classifier.get_params()
    with pytest.raises(ValueError, match="first_order"):  # first order by construction
        ReptileClassifier(first_order=True, **_SGD, n_episodes=1).fit(_blob_tasks())


def _episode_of(task, n_shots=2, n_queries=3):
    """``n_shots`` then ``n_queries`` rows of each class (a regression task: of the task)."""
    if np.issubdtype(np.asarray(task.y).dtype, np.floating):
        return Episode(task.X[:n_shots], task.y[:n_shots], task.X[n_shots:n_shots + n_queries],
                       task.y[n_shots:n_shots + n_queries])
    rows = [np.flatnonzero(task.y == c) for c in np.unique(task.y)]
    support = np.concatenate([r[:n_shots] for r in rows])
    query = np.concatenate([r[n_shots:n_shots + n_queries] for r in rows])
    return Episode(task.X[support], np.searchsorted(np.unique(task.y), task.y[support]),
                   task.X[query], np.searchsorted(np.unique(task.y), task.y[query]))


@pytest.mark.parametrize("classification", [True, False], ids=["classifier", "regressor"])
def test_meta_validation_scores_the_query_rows_after_adapting_as_adapt_does(classification):
    # The regressor's inner_lr=0.15 on raw targets up to 5 overshoots on some support
    # sets: adapt halves those steps, and meta-validation must do the same.
    if classification:
        tasks, Estimator, extra = _blob_tasks(n_tasks=6), ReptileClassifier, {}
    else:
        tasks, Estimator = make_sinusoid_tasks(6, n_rows=20, random_state=0), ReptileRegressor
        extra = {"standardize_targets": False, "inner_lr": 0.15}
    meta = Estimator(**{**_SGD, "lr": 0.05, **extra}, n_shots=2, n_episodes=4).fit(tasks)
    episodes = [_episode_of(task, n_shots=2 if classification else 8, n_queries=3) for task in tasks]
    batch = EpisodeBatch.stack(episodes, classification=classification)
    with torch.no_grad():
        loss, outputs = meta._episode_loss(batch, training=False)
    losses, backtracked = [], []
    for e in range(len(batch)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AdaptationWarning)
            adapted = meta.adapt(batch.X_support[e].numpy(), batch.y_support[e].numpy())
        backtracked.append(adapted.adapt_history_["backtracked"])
        y_query = batch.y_query[e].numpy()
        if classification:
            proba = adapted.predict_proba(batch.X_query[e].numpy())
            np.testing.assert_allclose(torch.softmax(outputs[e], -1).numpy(), proba, rtol=1e-5, atol=1e-6)
            losses.append(-np.log(proba[np.arange(len(proba)), y_query]).mean())
        else:
            predicted = adapted.predict(batch.X_query[e].numpy())
            np.testing.assert_allclose(outputs[e].numpy(), predicted, rtol=1e-5, atol=1e-5)
            losses.append(np.mean((predicted - y_query) ** 2))
    assert float(loss) == pytest.approx(np.mean(losses), rel=1e-5)
    if not classification:  # both kinds of episode are there
        assert any(backtracked) and not all(backtracked), backtracked


# ------------------------------------------------------------------ learning


def _mse(predicted, y):
    return float(np.mean((predicted - y) ** 2))


def test_regressor_adapted_beats_unadapted_and_nearest_neighbours_on_new_tasks():
    # Seeds 0, 1, 2 while writing, query MSE adapted / un-adapted / 3-NN on the
    # support: 0.32 / 3.30 / 2.42, 0.59 / 4.35 / 3.05, 0.62 / 3.08 / 3.02.
    train = make_sinusoid_tasks(200, random_state=0)
    new_tasks = make_sinusoid_tasks(20, random_state=100)
    meta = ReptileRegressor(max_epochs=3, n_shots=10, n_queries=10, train_split=None, device="cpu",
                            random_state=0).fit(train)
    start = copy.deepcopy(meta).set_params(adapt_steps=0)
    adapted, unadapted, neighbours = [], [], []
    for task in new_tasks:
        X_support, y_support, X_query, y_query = task.X[:10], task.y[:10], task.X[10:], task.y[10:]
        adapted.append(_mse(meta.predict(X_query, X_support, y_support), y_query))
        unadapted.append(_mse(start.predict(X_query, X_support, y_support), y_query))
        neighbours.append(_mse(KNeighborsRegressor(3).fit(X_support, y_support).predict(X_query), y_query))
    adapted, unadapted, neighbours = np.mean(adapted), np.mean(unadapted), np.mean(neighbours)
    assert adapted < 0.3 * unadapted and adapted < 0.3 * neighbours, (adapted, unadapted, neighbours)


def test_classifier_adapted_beats_unadapted_and_logistic_regression_on_new_tasks(support_only_score):
    # Seeds 0, 1, 2 while writing, query accuracy adapted / un-adapted / logistic
    # regression / 3-NN on the support: 0.745 / 0.51 / 0.71 / 0.65, 0.73 / 0.47 /
    # 0.66 / 0.61, 0.78 / 0.46 / 0.735 / 0.68.
    tasks = make_blob_tasks(n_tasks=60, random_state=0)
    train, new_tasks = tasks[:40], tasks[40:]
    meta = ReptileClassifier(max_epochs=4, train_split=None, device="cpu", random_state=0).fit(train)
    score = meta.score(new_tasks)
    unadapted = unadapted_score(meta, new_tasks)
    logistic = support_only_score(LogisticRegression(), new_tasks, like=meta)
    neighbours = support_only_score(KNeighborsClassifier(3), new_tasks, like=meta)
    assert score > unadapted + 0.15, (score, unadapted)
    assert score > logistic + 0.02 and score > neighbours + 0.05, (score, logistic, neighbours)
