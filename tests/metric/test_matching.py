"""Tests of skmeta/metric/_matching.py: the attention core and the matching-network learners."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics.pairwise import cosine_similarity
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

from skmeta.datasets import make_blob_tasks, make_sinusoid_tasks
from skmeta.metric._matching import (
    MatchingNetClassifier,
    MatchingNetRegressor,
    attend,
    matching_outputs,
    similarities,
)

# ------------------------------------------------------------ functional core


def test_cosine_similarities_are_sklearns_times_the_scale():
    rng = np.random.default_rng(0)
    queries, support = rng.normal(size=(7, 5)), rng.normal(size=(4, 5))
    got = similarities(torch.tensor(queries), torch.tensor(support), kernel="cosine",
                       scale=torch.tensor(3.0, dtype=torch.float64))
    np.testing.assert_allclose(got.numpy(), 3.0 * cosine_similarity(queries, support), rtol=1e-12)


def test_the_learned_kernel_is_a_bilinear_form():
    rng = np.random.default_rng(1)
    queries, support, W = rng.normal(size=(3, 4)), rng.normal(size=(5, 4)), rng.normal(size=(4, 4))
    got = similarities(torch.tensor(queries), torch.tensor(support), kernel="learned",
                       scale=torch.tensor(2.0, dtype=torch.float64), weight_matrix=torch.tensor(W))
    np.testing.assert_allclose(got.numpy(), 2.0 * queries @ W @ support.T, rtol=1e-12)


def test_attention_counts_a_row_of_weight_w_w_times_and_ignores_padding():
    scores = torch.tensor([[0.3, -1.2, 2.0, 0.7]], dtype=torch.float64)
    weighted = attend(scores, weight=torch.tensor([2.0, 1.0, 0.0, 1.0], dtype=torch.float64))
    # The same as the row repeated twice and the padded row dropped.
    repeated = torch.softmax(torch.tensor([[0.3, 0.3, -1.2, 0.7]], dtype=torch.float64), dim=-1)
    expected = torch.stack([repeated[0, 0] + repeated[0, 1], repeated[0, 2], torch.tensor(0.0,
                            dtype=torch.float64), repeated[0, 3]])
    np.testing.assert_allclose(weighted[0].numpy(), expected.numpy(), rtol=1e-12)


def test_matching_outputs_are_an_attention_weighted_vote():
    attention = torch.tensor([[0.5, 0.25, 0.25]])
    one_hot = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    np.testing.assert_allclose(matching_outputs(attention, one_hot).numpy(), [[0.75, 0.25]])


# --------------------------------------------- identity embedding: a known kernel rule


def test_with_an_identity_embedding_the_classifier_is_a_cosine_kernel_vote():
    tasks = make_blob_tasks(n_tasks=4, n_classes=3, n_rows_per_class=10, n_features=5, random_state=0)
    meta = MatchingNetClassifier(module=torch.nn.Identity, scale=4.0, max_epochs=1, n_episodes=2,
                                 meta_batch_size=2, lr=1e-12, train_split=None, device="cpu",
                                 random_state=0).fit(tasks)
    task = make_blob_tasks(n_tasks=1, n_classes=3, n_rows_per_class=10, n_features=5, random_state=9)[0]
    names = np.array(["cat", "ant", "bee"])
    X_support, y_support, X_query = task.X[::2], names[task.y[::2]], task.X[1::2]
    got = meta.predict_proba(X_query, X_support, y_support)

    scale = float(meta.module_.log_scale.detach().exp())
    weights = np.exp(scale * cosine_similarity(X_query, X_support))
    weights /= weights.sum(1, keepdims=True)
    expected = np.stack([weights[:, y_support == label].sum(1) for label in sorted(set(names))], axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert scale == pytest.approx(4.0, rel=1e-6)


def test_with_an_identity_embedding_the_regressor_is_a_nadaraya_watson_estimate():
    tasks = make_sinusoid_tasks(4, n_rows=10, random_state=0)
    meta = MatchingNetRegressor(module=torch.nn.Identity, kernel="learned", scale=2.0, max_epochs=1,
                                n_episodes=2, meta_batch_size=2, lr=1e-12, n_shots=5, n_queries=5,
                                train_split=None, device="cpu", random_state=0).fit(tasks)
    task = make_sinusoid_tasks(1, n_rows=20, random_state=5)[0]
    X_support, y_support, X_query = task.X[:8], task.y[:8], task.X[8:]
    W = meta.module_.weight_matrix.detach().double().numpy()
    scores = meta.module_.log_scale.exp().item() * X_query @ W @ X_support.T
    weights = np.exp(scores - scores.max(1, keepdims=True))
    expected = (weights / weights.sum(1, keepdims=True)) @ y_support
    np.testing.assert_allclose(meta.predict(X_query, X_support, y_support), expected, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------ set semantics


@pytest.mark.parametrize("full_context", [False, True])
def test_predictions_do_not_depend_on_the_order_of_the_support_set(full_context, fast_params, blob_tasks):
    meta = MatchingNetClassifier(**{**fast_params, "full_context": full_context}).fit(blob_tasks)
    task = blob_tasks[0]
    order = np.random.default_rng(0).permutation(8)
    X_support, y_support = task.X[:8], task.y[:8]
    np.testing.assert_allclose(meta.predict_proba(task.X[8:], X_support, y_support),
                               meta.predict_proba(task.X[8:], X_support[order], y_support[order]),
                               rtol=1e-5, atol=1e-6)


def test_full_context_conditions_each_row_on_the_whole_support_set(fast_params, blob_tasks):
    """Adding a support row changes the other rows' embeddings only with full context."""
    task = blob_tasks[0]
    for full_context in (False, True):
        meta = MatchingNetClassifier(**{**fast_params, "full_context": full_context}).fit(blob_tasks)
        X = torch.as_tensor(task.X[:6], dtype=torch.float32)
        with torch.no_grad():
            alone = meta.module_.encode_support(X[:5])
            with_one_more = meta.module_.encode_support(X)[:5]
        assert torch.allclose(alone, with_one_more) != full_context


@pytest.mark.parametrize("Estimator", [MatchingNetClassifier, MatchingNetRegressor])
def test_a_support_row_of_weight_zero_is_the_row_dropped(Estimator, fast_params):
    regression = not Estimator._classification
    tasks = (make_sinusoid_tasks(6, n_rows=10, random_state=0) if regression
             else make_blob_tasks(n_tasks=6, n_rows_per_class=10, n_features=4, random_state=0))
    meta = Estimator(**{**fast_params, "full_context": True}).fit(tasks)
    task = tasks[1]
    X_support, y_support, X_query = task.X[:8], task.y[:8], task.X[8:]
    weight = np.ones(8)
    weight[3] = 0.0
    keep = weight > 0
    method = meta.predict if regression else meta.predict_proba
    np.testing.assert_allclose(method(X_query, X_support, y_support, sample_weight=weight),
                               method(X_query, X_support[keep], y_support[keep]), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ learning


@pytest.mark.parametrize("kernel, full_context", [("cosine", False), ("learned", True)])
def test_classifier_learns_and_beats_models_fitted_on_the_support_set_alone(
    kernel, full_context, support_only_score
):
    # Blobs: 2 classes at random places in a 2-d subspace of 20 features.
    tasks = make_blob_tasks(n_tasks=50, random_state=0)
    params = dict(kernel=kernel, full_context=full_context, n_episodes=100, device="cpu", random_state=0)
    meta = MatchingNetClassifier(max_epochs=3, **params).fit(tasks[:35])
    start = MatchingNetClassifier(max_epochs=1, lr=1e-12, **params).fit(tasks[:35])
    new_tasks = tasks[35:]
    score = meta.score(new_tasks)
    assert score > start.score(new_tasks) + 0.05
    for baseline in (LogisticRegression(), KNeighborsClassifier(3)):
        assert score > support_only_score(baseline, new_tasks, like=meta) + 0.05


def test_regressor_learns_and_beats_nearest_neighbours_on_the_support_set(support_only_score):
    tasks = make_sinusoid_tasks(n_tasks=300, random_state=0)
    params = dict(n_shots=10, n_queries=10, device="cpu", random_state=0)
    meta = MatchingNetRegressor(max_epochs=4, **params).fit(tasks[:250])
    start = MatchingNetRegressor(max_epochs=1, lr=1e-12, n_episodes=8, **params).fit(tasks[:250])
    new_tasks = tasks[250:]
    score = meta.score(new_tasks)  # R² of the query rows
    assert score > start.score(new_tasks) + 0.1
    for k in (1, 3):
        assert score > support_only_score(KNeighborsRegressor(k), new_tasks, like=meta) + 0.05
