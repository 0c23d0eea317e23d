"""Tests of skmeta/memory/_in_context.py: attention, the in-context network, the memory learners."""

import numpy as np
import pytest
import torch

from skmeta.datasets import make_blob_tasks, make_sinusoid_tasks
from skmeta.memory import InContextNet, MemoryClassifier, MemoryRegressor
from skmeta.memory._in_context import attention

# ------------------------------------------------------------ functional core


@pytest.mark.parametrize("n_heads", [1, 2, 4])
def test_attention_is_torchs_scaled_dot_product_attention_per_head(n_heads):
    rng = np.random.default_rng(0)
    q, k, v = (torch.tensor(rng.normal(size=(3, n, 8))) for n in (5, 7, 7))
    got = attention(q, k, v, n_heads)

    def heads(t):
        return t.reshape(*t.shape[:-1], n_heads, 8 // n_heads).transpose(-2, -3)

    expected = torch.nn.functional.scaled_dot_product_attention(heads(q), heads(k), heads(v))
    np.testing.assert_allclose(got.numpy(), expected.transpose(-2, -3).reshape(3, 5, 8).numpy(), rtol=1e-10)


def test_a_key_of_weight_w_counts_w_times_and_weight_zero_is_never_read():
    rng = np.random.default_rng(1)
    q, k, v = (torch.tensor(rng.normal(size=(n, 4))) for n in (3, 4, 4))
    weighted = attention(q, k, v, 2, weight=torch.tensor([2.0, 1.0, 0.0, 1.0], dtype=torch.float64))
    rows = [0, 0, 1, 3]  # row 0 twice, row 2 dropped
    np.testing.assert_allclose(weighted.numpy(), attention(q, k[rows], v[rows], 2).numpy(), rtol=1e-10)


def test_a_width_that_heads_cannot_share_is_refused():
    with pytest.raises(ValueError, match="multiple of n_heads"):
        InContextNet(3, n_outputs=2, width=10, n_heads=4)
    with pytest.raises(ValueError, match="width=10 is not a multiple of n_heads=4"):
        MemoryClassifier(width=10, n_heads=4, max_epochs=1, n_episodes=2).fit(
            make_blob_tasks(n_tasks=4, n_rows_per_class=10, n_features=4, random_state=0))


@pytest.mark.parametrize("width, n_layers", [(8, 1), (12, 3)])
def test_the_network_is_built_with_width_and_n_layers(width, n_layers):
    tasks = make_blob_tasks(n_tasks=4, n_rows_per_class=10, n_features=4, random_state=0)
    meta = MemoryClassifier(width=width, n_layers=n_layers, n_heads=2, max_epochs=1, n_episodes=2,
                            train_split=None, device="cpu", random_state=0).fit(tasks)
    assert len(meta.module_.layers) == n_layers
    assert meta.module_.rows[0].out_features == width
    memory = meta.module_.write(torch.zeros(5, 4), torch.zeros(5, 2))
    assert [m.shape for m in memory] == [torch.Size([5, width])] * (n_layers + 1)


# ------------------------------------------------------------ set semantics


@pytest.fixture(scope="module")
def tiny_memory():
    tasks = make_blob_tasks(n_tasks=6, n_rows_per_class=10, n_features=4, random_state=0)
    meta = MemoryClassifier(width=16, max_epochs=1, n_episodes=4, meta_batch_size=2, n_shots=2,
                            n_queries=3, train_split=None, device="cpu", random_state=0).fit(tasks)
    return meta, tasks


def test_predictions_do_not_depend_on_the_order_of_the_support_set(tiny_memory):
    meta, tasks = tiny_memory
    task = tasks[0]
    order = np.random.default_rng(0).permutation(8)
    np.testing.assert_allclose(meta.predict_proba(task.X[8:], task.X[:8], task.y[:8]),
                               meta.predict_proba(task.X[8:], task.X[:8][order], task.y[:8][order]),
                               rtol=1e-5, atol=1e-6)


def test_a_query_rows_prediction_does_not_depend_on_the_other_query_rows(tiny_memory):
    meta, tasks = tiny_memory
    task = tasks[1]
    adapted = meta.adapt(task.X[:8], task.y[:8])
    together = adapted.predict_proba(task.X[8:])
    one_by_one = np.concatenate([adapted.predict_proba(task.X[i:i + 1]) for i in range(8, task.n_rows)])
    np.testing.assert_allclose(together, one_by_one, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("Estimator", [MemoryClassifier, MemoryRegressor])
def test_a_support_row_of_weight_zero_is_the_row_dropped(Estimator):
    regression = not Estimator._classification
    tasks = (make_sinusoid_tasks(6, n_rows=10, random_state=0) if regression
             else make_blob_tasks(n_tasks=6, n_rows_per_class=10, n_features=4, random_state=0))
    meta = Estimator(width=16, max_epochs=1, n_episodes=4, meta_batch_size=2, n_shots=2, n_queries=3,
                     train_split=None, device="cpu", random_state=0).fit(tasks)
    task = tasks[1]
    X_support, y_support, X_query = task.X[:8], task.y[:8], task.X[8:]
    weight = np.ones(8)
    weight[2] = 0.0
    keep = weight > 0
    method = meta.predict if regression else meta.predict_proba
    # For the regressor, the support set's mean and deviation are weighted too.
    np.testing.assert_allclose(method(X_query, X_support, y_support, sample_weight=weight),
                               method(X_query, X_support[keep], y_support[keep]), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ learning


def test_classifier_learns_and_beats_models_fitted_on_the_support_set_alone(support_only_score):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    # Blobs: 2 classes at random places in a 2-d subspace of 20 features.
    tasks = make_blob_tasks(n_tasks=60, random_state=0)
    meta = MemoryClassifier(n_episodes=100, device="cpu", random_state=0).fit(tasks[:45])
    start = MemoryClassifier(lr=1e-12, max_epochs=1, n_episodes=8, device="cpu",
                             random_state=0).fit(tasks[:45])
    new_tasks = tasks[45:]
    score = meta.score(new_tasks)
    assert score > start.score(new_tasks) + 0.15
    for baseline in (LogisticRegression(), KNeighborsClassifier(3)):
        assert score > support_only_score(baseline, new_tasks, like=meta) + 0.05


def test_regressor_learns_and_beats_nearest_neighbours_on_the_support_set(support_only_score):
    from sklearn.neighbors import KNeighborsRegressor

    tasks = make_sinusoid_tasks(n_tasks=300, random_state=0)
    params = dict(n_shots=10, n_queries=10, device="cpu", random_state=0)
    meta = MemoryRegressor(max_epochs=10, **params).fit(tasks[:250])
    start = MemoryRegressor(lr=1e-12, max_epochs=1, n_episodes=8, **params).fit(tasks[:250])
    new_tasks = tasks[250:]
    score = meta.score(new_tasks)  # R² of the query rows
    assert score > start.score(new_tasks) + 0.3
    for k in (1, 3):
        assert score > support_only_score(KNeighborsRegressor(k), new_tasks, like=meta) + 0.05
