"""Tests of skmeta/metric/_neighbors.py: neighbour votes and EmbeddingKNNClassifier."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from skmeta import ProtoNetClassifier
from skmeta.datasets import make_blob_tasks
from skmeta.metric._neighbors import EmbeddingKNNClassifier, neighbor_votes


@pytest.mark.parametrize("weights", ["uniform", "distance"])
@pytest.mark.parametrize("n_neighbors", [1, 3, 5])
def test_votes_are_sklearns_k_nearest_neighbour_probabilities(weights, n_neighbors):
    rng = np.random.default_rng(0)
    support, queries = rng.normal(size=(12, 3)), rng.normal(size=(20, 3))
    labels = rng.integers(0, 3, size=12)
    got = neighbor_votes(torch.tensor(queries), torch.tensor(support), torch.tensor(labels), 3,
                         n_neighbors=n_neighbors, weights=weights)
    expected = KNeighborsClassifier(n_neighbors, weights=weights).fit(support, labels).predict_proba(queries)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_a_support_row_of_weight_zero_never_votes_and_weights_multiply_votes():
    support = torch.tensor([[0.0], [0.1], [0.2], [5.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 1, 0])
    query = torch.tensor([[0.0]], dtype=torch.float64)
    dropped = neighbor_votes(query, support, labels, 2, n_neighbors=2,
                             support_weight=torch.tensor([0.0, 1.0, 1.0, 1.0], dtype=torch.float64))
    np.testing.assert_allclose(dropped.numpy(), [[0.0, 1.0]])
    weighted = neighbor_votes(query, support, labels, 2, n_neighbors=2,
                              support_weight=torch.tensor([3.0, 1.0, 1.0, 1.0], dtype=torch.float64))
    np.testing.assert_allclose(weighted.numpy(), [[0.75, 0.25]])


def test_more_neighbours_than_support_rows_lets_every_row_vote():
    support = torch.tensor([[0.0], [1.0]])
    votes = neighbor_votes(torch.tensor([[0.0]]), support, torch.tensor([0, 1]), 2, n_neighbors=5)
    np.testing.assert_allclose(votes.numpy(), [[0.5, 0.5]])


def test_with_an_identity_embedding_the_learner_is_sklearns_knn(fast_params):
    tasks = make_blob_tasks(n_tasks=4, n_classes=3, n_rows_per_class=10, n_features=5, random_state=0)
    meta = EmbeddingKNNClassifier(module=torch.nn.Identity, n_neighbors=4, weights="distance",
                                  **fast_params).fit(tasks)
    task = make_blob_tasks(n_tasks=1, n_classes=3, n_rows_per_class=10, n_features=5, random_state=4)[0]
    names = np.array(["cat", "ant", "bee"])
    X_support, y_support = task.X[::2], names[task.y[::2]]
    expected = KNeighborsClassifier(4, weights="distance").fit(X_support, y_support)
    adapted = meta.adapt(X_support, y_support)
    np.testing.assert_array_equal(adapted.classes_, expected.classes_)
    np.testing.assert_allclose(adapted.predict_proba(task.X[1::2]), expected.predict_proba(task.X[1::2]),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(adapted.predict(task.X[1::2]), expected.predict(task.X[1::2]))


def test_the_embedding_is_learned_as_prototypical_networks_learn_theirs(fast_params, blob_tasks):
    knn = EmbeddingKNNClassifier(**fast_params).fit(blob_tasks)
    protonet = ProtoNetClassifier(**fast_params).fit(blob_tasks)
    X = blob_tasks[0].X
    np.testing.assert_allclose(knn.transform(X), protonet.transform(X), rtol=1e-6)


def test_learns_and_beats_knn_on_the_raw_features(support_only_score):
    # Blobs: 2 classes at random places in a 2-d subspace of 20 features.
    tasks = make_blob_tasks(n_tasks=50, random_state=0)
    params = dict(n_neighbors=3, n_episodes=100, device="cpu", random_state=0)
    meta = EmbeddingKNNClassifier(max_epochs=3, **params).fit(tasks[:35])
    start = EmbeddingKNNClassifier(max_epochs=1, lr=1e-12, **params).fit(tasks[:35])
    new_tasks = tasks[35:]
    score = meta.score(new_tasks)
    assert score > start.score(new_tasks) + 0.05
    for baseline in (LogisticRegression(), KNeighborsClassifier(3)):
        assert score > support_only_score(baseline, new_tasks, like=meta) + 0.05
