"""Tests of skmeta/mapping/_film.py: the functional core, FiLMNet, FiLMClassifier, FiLMRegressor."""

import numpy as np
import pytest
import torch
from conftest import FAST
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import mean_squared_error
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

from skmeta import FiLMClassifier, FiLMRegressor
from skmeta.datasets import make_blob_tasks, make_sinusoid_tasks
from skmeta.mapping import FiLMNet
from skmeta.mapping._film import conditioned_outputs, encode_task, film, group_means
from skmeta.metrics import episodic_score
from skmeta.tasks import EpisodeBatch, EpisodeSampler

# ------------------------------------------------------------ functional core


def test_group_means_are_the_weighted_means_of_each_group():
    rng = np.random.default_rng(0)
    values, labels = rng.normal(size=(3, 12, 4)), rng.integers(0, 3, size=(3, 12))
    labels[:, :3] = [0, 1, 2]  # every class present
    weight = rng.uniform(0.5, 2.0, size=(3, 12))

    got = group_means(torch.tensor(values), torch.nn.functional.one_hot(torch.tensor(labels), 3),
                      torch.tensor(weight)).numpy()

    expected = [[np.average(values[e][labels[e] == k], axis=0, weights=weight[e][labels[e] == k])
                 for k in range(3)] for e in range(3)]
    np.testing.assert_allclose(got, np.array(expected), rtol=1e-12)


def test_film_scales_and_shifts_every_row_alike():
    hidden = torch.randn(2, 5, 3, dtype=torch.float64)
    scale, shift = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    expected = torch.stack([hidden[e] * scale[e] + shift[e] for e in range(2)])
    torch.testing.assert_close(film(hidden, scale, shift), expected)


def test_a_new_network_is_unconditioned_scales_one_shifts_zero():
    torch.manual_seed(0)
    net = FiLMNet(4, 2, hidden_sizes=(6, 5), task_dim=3, encoder_sizes=(7,))
    modulations = net.modulations(torch.randn(3))
    assert [(tuple(s.shape), tuple(b.shape)) for s, b in modulations] == [((6,), (6,)), ((5,), (5,))]
    for scale, shift in modulations:
        assert torch.equal(scale, torch.ones_like(scale)) and torch.equal(shift, torch.zeros_like(shift))
    # So the hidden layers are a plain ReLU network of the query rows.
    X, X_support = torch.randn(8, 4), torch.randn(6, 4)
    labels = torch.nn.functional.one_hot(torch.tensor([0, 1] * 3), 2).float()
    state = encode_task(net, X_support, labels, labels)
    hidden = torch.relu(net.hidden[1](torch.relu(net.hidden[0](X))))
    expected = hidden @ net.code_weight(state["codes"]).T + net.code_bias(state["codes"]).T
    torch.testing.assert_close(conditioned_outputs(net, state, X), expected)


def test_network_parameters_shape_the_network():
    net = FiLMNet(4, 3, hidden_sizes=(6, 5), task_dim=7, encoder_sizes=(9, 8))
    assert [layer.out_features for layer in net.hidden] == [6, 5]
    assert net.encoder[0].in_features == 4 + 3 and net.encoder[-2].out_features == 8
    assert net.rho[-1].out_features == 7 and net.film.weight.shape == (2 * (6 + 5), 7)
    assert net.code_weight.weight.shape == (5, 8)
    with pytest.raises(ValueError, match="encoder_sizes"):
        FiLMNet(4, 3, encoder_sizes=())
    with pytest.raises(ValueError, match="task_dim"):
        FiLMNet(4, 3, task_dim=0)


# ------------------------------------------------------------------ estimators


def _tiny(cls, **overrides):
    tasks = (make_blob_tasks(n_tasks=6, n_classes=3, n_rows_per_class=10, n_features=4, random_state=0)
             if cls._classification else make_sinusoid_tasks(6, n_rows=12, random_state=0))
    return cls(**{**FAST, "max_epochs": 2, **overrides}).fit(tasks)


def _new_task(cls, n_rows_per_class=8, random_state=1):
    if cls._classification:
        task = make_blob_tasks(n_tasks=1, n_classes=3, n_rows_per_class=n_rows_per_class, n_features=4,
                               random_state=random_state)[0]
    else:
        task = make_sinusoid_tasks(1, n_rows=3 * n_rows_per_class, random_state=random_state)[0]
    half = task.n_rows // 2
    return task.X[:half], task.y[:half], task.X[half:]


def _predict(adapted, X):
    return adapted.predict_proba(X) if hasattr(adapted, "predict_proba") else adapted.predict(X)


@pytest.mark.parametrize("cls", [FiLMClassifier, FiLMRegressor])
def test_adapting_is_one_forward_pass_of_the_functional_core(cls):
    meta = _tiny(cls)
    X_support, y_support, X_query = _new_task(cls)
    before = {name: p.detach().clone() for name, p in meta.module_.named_parameters()}
    adapted = meta.adapt(X_support, y_support)
    assert all(torch.equal(p, before[name]) for name, p in meta.module_.named_parameters())
    assert not hasattr(adapted, "adapt_history_")  # no gradient steps to report

    net = meta.module_.eval()
    X_s, X_q = torch.tensor(X_support, dtype=torch.float32), torch.tensor(X_query, dtype=torch.float32)
    if cls._classification:
        labels = torch.nn.functional.one_hot(torch.tensor(np.unique(y_support, return_inverse=True)[1]), 3)
        with torch.no_grad():
            state = encode_task(net, X_s, labels, labels)
            expected = torch.softmax(conditioned_outputs(net, state, X_q), -1).numpy()
    else:
        mean, std = y_support.mean(), max(y_support.std(), 0.1 * meta._pooled_target_scale)
        labels = torch.tensor((y_support - mean) / std, dtype=torch.float32)[:, None]
        with torch.no_grad():
            state = encode_task(net, X_s, labels, torch.ones_like(labels))
            expected = conditioned_outputs(net, state, X_q)[:, 0].numpy() * std + mean
    for key in ("representation", "codes"):
        torch.testing.assert_close(adapted.state_[key], state[key])
    np.testing.assert_allclose(_predict(adapted, X_query), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls", [FiLMClassifier, FiLMRegressor])
def test_support_rows_of_weight_zero_count_as_dropped(cls):
    meta = _tiny(cls)
    X_support, y_support, X_query = _new_task(cls)
    weight = np.ones(len(y_support))
    weight[[1, 4, 6]] = 0
    weighted = meta.adapt(X_support, y_support, sample_weight=weight)
    dropped = meta.adapt(X_support[weight > 0], y_support[weight > 0])
    np.testing.assert_allclose(_predict(weighted, X_query), _predict(dropped, X_query), rtol=1e-5, atol=1e-6)
    # and the weights do count: other weights give other predictions
    weight[[1, 4, 6]] = 3.0
    assert np.abs(_predict(meta.adapt(X_support, y_support, sample_weight=weight), X_query)
                  - _predict(dropped, X_query)).max() > 1e-4


@pytest.mark.parametrize("cls", [FiLMClassifier, FiLMRegressor])
def test_predictions_do_not_depend_on_the_order_of_the_support_rows(cls):
    meta = _tiny(cls)
    X_support, y_support, X_query = _new_task(cls)
    expected = _predict(meta.adapt(X_support, y_support), X_query)
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(len(y_support))
        np.testing.assert_allclose(_predict(meta.adapt(X_support[order], y_support[order]), X_query),
                                   expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [FiLMClassifier, FiLMRegressor])
def test_a_meta_batch_of_padded_episodes_gives_what_adapting_to_each_gives(cls):
    # Targets as given: _episode_loss sees the batch that fit standardises first.
    meta = _tiny(cls) if cls._classification else _tiny(cls, standardize_targets=False)
    if cls._classification:
        tasks = make_blob_tasks(n_tasks=2, n_classes=3, n_rows_per_class=5, n_features=4, random_state=2)
        small = np.concatenate([np.flatnonzero(tasks[0].y != 2), np.flatnonzero(tasks[0].y == 2)[:2]])
        data = [(tasks[0].X[small], tasks[0].y[small]), (tasks[1].X, tasks[1].y)]
    else:
        tasks = make_sinusoid_tasks(2, n_rows=5, random_state=2)
        data = [(tasks[0].X[:4], tasks[0].y[:4]), (tasks[1].X, tasks[1].y)]
    sampler = EpisodeSampler(n_shots=3, n_queries=2, classification=cls._classification)
    rng = np.random.default_rng(0)
    episodes = [sampler.sample(X, y, rng) for X, y in data]
    batch = EpisodeBatch.stack(episodes, classification=cls._classification)
    assert batch.padded  # the small task gives a shorter episode
    with meta._evaluating(), torch.no_grad():
        _, outputs = meta._episode_loss(batch, training=False)
    for e, episode in enumerate(episodes):
        adaptation = meta._adapt_task(episode.X_support, episode.y_support,
                                      None if episode.classes is None else len(episode.classes))
        expected = meta._predict_task(adaptation, episode.X_query)
        np.testing.assert_allclose(outputs[e, : len(episode.X_query)].numpy(), expected,
                                   rtol=1e-4, atol=1e-5)


def test_a_support_set_of_another_number_of_classes_is_refused():
    meta = _tiny(FiLMClassifier)
    task = make_blob_tasks(n_tasks=1, n_classes=2, n_rows_per_class=5, n_features=4, random_state=1)[0]
    with pytest.raises(ValueError, match="3-way tasks but this support set has 2 classes"):
        meta.adapt(task.X, task.y)


@pytest.mark.parametrize("cls", [FiLMClassifier, FiLMRegressor])
def test_module_parameters_are_routed_to_the_network(cls):
    meta = _tiny(cls, max_epochs=1, module__task_dim=5, module__encoder_sizes=(6, 7))
    assert meta.module_.film.weight.shape == (2 * 8, 5)
    assert [m.out_features for m in meta.module_.encoder if isinstance(m, torch.nn.Linear)] == [6, 7]
    # each support row is read with its label code: 3 one-hot columns, or the target
    assert meta.module_.encoder[0].in_features == meta.n_features_in_ + (3 if cls._classification else 1)


@pytest.mark.parametrize("cls", [FiLMClassifier, FiLMRegressor])
def test_a_module_that_is_not_a_film_network_becomes_its_body(cls):
    class Body(torch.nn.Module):
        def __init__(self, n_features, n_outputs=None, hidden_sizes=(8,)):
            super().__init__()
            assert n_outputs is None  # the body ends on its own features
            self.linear = torch.nn.Linear(n_features, hidden_sizes[-1])

        def forward(self, X):
            return torch.relu(self.linear(X))

    meta = _tiny(cls, module=Body)
    assert isinstance(meta.module_, FiLMNet) and isinstance(meta.module_.body, Body)
    assert meta.module_.film.weight.shape[0] == 2 * 8
    X_support, y_support, X_query = _new_task(cls)
    assert np.isfinite(_predict(meta.adapt(X_support, y_support), X_query)).all()


# ------------------------------------------------------------------ learning


@pytest.fixture(scope="module")
def blob_tasks_60():
    """2 classes at random places in a 2-d subspace of 8 features; 40 tasks
    to meta-train on, 20 new ones."""
    tasks = make_blob_tasks(n_tasks=60, n_features=8, n_rows_per_class=20, random_state=0)
    return tasks[:40], tasks[40:]


_BLOB_SETTINGS = dict(n_shots=3, n_queries=5, n_episodes=100, meta_batch_size=8, train_split=None,
                      device="cpu", random_state=0, module__hidden_sizes=(32,),
                      module__encoder_sizes=(32, 32), module__task_dim=16)


def test_classifier_beats_its_start_and_models_fitted_on_the_support_set_alone(
    blob_tasks_60, support_only_score
):
    # Seeds 0, 1, 2 while tuning: FiLM 0.85, 0.86, 0.84; before meta-training
    # 0.52, 0.52, 0.47; logistic regression 0.77, 0.73, 0.78 and 1-nearest
    # neighbour 0.73, 0.69, 0.72 on the same support sets.
    train, new_tasks = blob_tasks_60
    meta = FiLMClassifier(max_epochs=8, lr=3e-3, **_BLOB_SETTINGS).fit(train)
    start = FiLMClassifier(max_epochs=1, lr=1e-9, **{**_BLOB_SETTINGS, "n_episodes": 8}).fit(train)
    score = meta.score(new_tasks)
    assert score > start.score(new_tasks) + 0.2
    for baseline in (LogisticRegression(), KNeighborsClassifier(1)):
        assert score > support_only_score(baseline, new_tasks, like=meta) + 0.04


def _support_only_mse(estimator, tasks, *, like):
    """Mean squared error of ``estimator`` fitted on the support sets ``like.score`` draws."""
    sampler = EpisodeSampler(n_shots=like.n_shots, classification=False)
    rng = np.random.default_rng(like.random_state)
    errors = []
    for task in tasks:
        episode = sampler.sample(task.X, task.y, rng, task=task.name, query="rest")
        estimator.fit(episode.X_support, episode.y_support)
        errors.append(mean_squared_error(episode.y_query, estimator.predict(episode.X_query)))
    return float(np.mean(errors))


def test_regressor_beats_its_start_and_models_fitted_on_the_support_set_alone():
    # Seeds 0, 1, 2 while tuning: FiLM 0.90, 1.25, 1.32; before meta-training 6.9,
    # 5.7, 6.5; 1-nearest neighbour on the 10 support points 1.78, 1.45, 1.45
    # (k=2: 2.17, 1.80, 1.72; k=3: 2.76, 2.51, 2.24). Few meta-steps for a
    # sinusoid: the margin over 1-NN is seed 0's.
    tasks = make_sinusoid_tasks(300, n_rows=30, random_state=0)
    train, new_tasks = tasks[:250], tasks[250:]
    settings = dict(n_shots=10, n_queries=10, meta_batch_size=8, n_episodes=160, train_split=None,
                    device="cpu", random_state=0, module__hidden_sizes=(32, 32),
                    module__encoder_sizes=(32, 32), module__task_dim=16)
    meta = FiLMRegressor(max_epochs=15, lr=1e-2, **settings).fit(train)
    start = FiLMRegressor(max_epochs=1, lr=1e-9, **{**settings, "n_episodes": 8}).fit(train)

    def mse(learner):
        return -episodic_score(learner, new_tasks, scoring="neg_mean_squared_error")

    error = mse(meta)
    assert error < 0.5 * mse(start)
    for n_neighbors in (1, 2, 3):
        assert error < 0.75 * _support_only_mse(KNeighborsRegressor(n_neighbors), new_tasks, like=meta)
