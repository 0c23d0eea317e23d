"""Tests of skmeta/metric/_neighbors.py: neighbour votes and EmbeddingKNNClassifier."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from skmeta import MAMLClassifier, MatchingNetClassifier, MatchingNetRegressor, ProtoNetClassifier
from skmeta.datasets import make_blob_tasks
from skmeta.exceptions import AdaptationWarning
from skmeta.io import dump, load
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


# ---------------------------------------------------------------- another learner's embedding


def test_with_a_matching_network_the_neighbours_are_taken_in_its_embedding(fast_params, blob_tasks):
    template = MatchingNetClassifier(kernel="learned", **fast_params)
    knn = EmbeddingKNNClassifier(embedding=template, n_neighbors=3, weights="distance").fit(blob_tasks)
    matching = MatchingNetClassifier(kernel="learned", **fast_params).fit(blob_tasks)
    assert not hasattr(template, "module_")  # a clone was meta-trained
    # The kNN head reads the matching network's own embedding: the same weights, the same rows.
    assert knn.module_ is knn.embedding_.module_.embedding
    learned, expected = knn.module_.state_dict(), matching.module_.embedding.state_dict()
    assert learned.keys() == expected.keys()
    for name in expected:
        assert torch.equal(learned[name], expected[name]), name
    task = make_blob_tasks(n_tasks=1, n_rows_per_class=10, n_features=4, random_state=7)[0]
    np.testing.assert_array_equal(knn.transform(task.X), matching.transform(task.X))
    # ... and votes there as sklearn's k nearest neighbours do.
    X_support, y_support, X_query = task.X[::2], task.y[::2], task.X[1::2]
    vote = KNeighborsClassifier(3, weights="distance").fit(matching.transform(X_support), y_support)
    np.testing.assert_allclose(knn.adapt(X_support, y_support).predict_proba(X_query),
                               vote.predict_proba(matching.transform(X_query)), rtol=1e-5, atol=1e-7)
    # The matching network's own settings train the embedding: another kernel, another one.
    cosine = EmbeddingKNNClassifier(embedding=MatchingNetClassifier(**fast_params)).fit(blob_tasks)
    prototypical = EmbeddingKNNClassifier(**fast_params).fit(blob_tasks)
    for other in (cosine, prototypical):
        assert np.abs(other.transform(task.X) - knn.transform(task.X)).max() > 1e-3


def test_a_matching_network_embedding_learns_and_beats_knn_on_the_raw_features(support_only_score):
    tasks = make_blob_tasks(n_tasks=50, random_state=0)
    settings = dict(n_episodes=100, device="cpu")
    meta = EmbeddingKNNClassifier(embedding=MatchingNetClassifier(max_epochs=3, **settings), n_neighbors=3,
                                  random_state=0).fit(tasks[:35])
    start = EmbeddingKNNClassifier(embedding=MatchingNetClassifier(max_epochs=1, lr=1e-12, **settings),
                                   n_neighbors=3, random_state=0).fit(tasks[:35])
    new_tasks = tasks[35:]
    score = meta.score(new_tasks)
    assert score > start.score(new_tasks) + 0.05
    assert score > support_only_score(KNeighborsClassifier(3), new_tasks, like=meta) + 0.05


@pytest.mark.parametrize("embedding, message", [
    (MatchingNetRegressor(), r"MatchingNetRegressor\(...\) is a regressor.*MatchingNetClassifier\(\)"),
    (MAMLClassifier(), r"embedding=MAMLClassifier\(...\) is not a metric meta-learner.*embedding=None"),
    (LogisticRegression(), r"embedding=LogisticRegression\(\) is not a metric meta-learner"),
    ("matching", r"embedding='matching' is not a metric meta-learner.*MatchingNetClassifier\(\)"),
    (MatchingNetClassifier, r"embedding=MatchingNetClassifier is a class.*=MatchingNetClassifier\(\)"),
])
def test_an_embedding_that_is_not_a_classifying_metric_learner_is_refused(embedding, message, blob_tasks):
    with pytest.raises(ValueError, match=message):
        EmbeddingKNNClassifier(embedding=embedding).fit(blob_tasks)


@pytest.mark.parametrize("params, message", [
    ({"lr": 0.1}, r"lr=0.1 has no effect with embedding=MatchingNetClassifier.*embedding__lr=0.1"),
    ({"max_epochs": 3}, r"max_epochs=3 has no effect.*embedding__max_epochs=3"),
    ({"device": "cpu"}, r"device='cpu' has no effect.*embedding__device='cpu'"),
    ({"module__hidden_sizes": (8,)}, r"module__hidden_sizes=\(8,\) has no effect.*embedding__module__hidden"),
    ({"embedding__warm_start": True}, r"embedding__warm_start=True has no effect.*partial_fit"),
    ({"task_column": "a", "embedding__task_column": "b"}, r"task_column='a' differs"),
])
def test_settings_that_the_embedding_learner_owns_are_refused_here(params, message, blob_tasks):
    meta = EmbeddingKNNClassifier(embedding=MatchingNetClassifier())
    meta.set_params(**params)
    with pytest.raises(ValueError, match=message):
        meta.fit(blob_tasks)
    assert not hasattr(meta, "module_")
    with pytest.raises(ValueError, match=r"embedding__lr.\] set parameters of embedding, but embedding=None"):
        EmbeddingKNNClassifier().set_params(embedding__lr=0.1)


def test_nested_parameters_reach_a_fresh_clone_seeded_by_random_state(fast_params, blob_tasks):
    settings = {k: v for k, v in fast_params.items() if k != "random_state"}
    fitted = MatchingNetClassifier(**settings, random_state=1).fit(blob_tasks)
    weights = {k: v.clone() for k, v in fitted.module_.state_dict().items()}
    meta = EmbeddingKNNClassifier(embedding=fitted, random_state=0)
    assert meta.get_params()["embedding__scale"] == 10.0
    meta.set_params(embedding__scale=3.0, embedding__random_state=None)
    assert clone(meta).get_params()["embedding__scale"] == 3.0
    meta.fit(blob_tasks)
    # A fitted learner is cloned and meta-trained afresh, as sklearn's meta-estimators do;
    # the one given is left as it was.
    assert all(torch.equal(v, fitted.module_.state_dict()[k]) for k, v in weights.items())
    assert meta.embedding_ is not fitted and meta.embedding_.scale == 3.0
    # Without a random_state of its own, the clone takes this one's: refits repeat.
    assert meta.embedding_.random_state == 0
    again = clone(meta).fit(blob_tasks)
    np.testing.assert_array_equal(again.transform(blob_tasks[0].X), meta.transform(blob_tasks[0].X))
    assert meta.n_features_in_ == 4 and meta.n_ways_ == 2
    assert meta.history_ is meta.embedding_.history_


def test_persistence_and_partial_fit_keep_one_embedding(fast_params, blob_tasks, tmp_path):
    meta = EmbeddingKNNClassifier(embedding=MatchingNetClassifier(**fast_params), n_shots=2)
    meta.fit(blob_tasks[:4])
    dump(meta, tmp_path / "knn.skmeta")
    copies = [load(tmp_path / "knn.skmeta"), pickle.loads(pickle.dumps(meta))]
    X, y = blob_tasks[5].X, blob_tasks[5].y
    for copied in copies:
        assert copied.module_ is copied.embedding_.module_.embedding
        np.testing.assert_array_equal(copied.adapt(X[::2], y[::2]).predict_proba(X),
                                      meta.adapt(X[::2], y[::2]).predict_proba(X))
    before = meta.transform(X)
    # partial_fit continues the fitted clone's meta-training, the same for the copies.
    for learner in [meta, *copies]:
        learner.partial_fit(blob_tasks[4:])
        assert learner.stage_ == learner.embedding_.stage_ == 1
        assert learner.module_ is learner.embedding_.module_.embedding
        np.testing.assert_array_equal(learner.transform(X), meta.transform(X))
    assert np.abs(meta.transform(X) - before).max() > 1e-4
    with pytest.raises(ValueError, match=r"embedding=None differs from the fitted model's"):
        meta.set_params(embedding=None).partial_fit(blob_tasks[4:])


def test_a_prototypical_network_as_embedding_trains_what_no_embedding_trains(fast_params, blob_tasks):
    given = EmbeddingKNNClassifier(embedding=ProtoNetClassifier(**fast_params)).fit(blob_tasks)
    own = EmbeddingKNNClassifier(**fast_params).fit(blob_tasks)
    np.testing.assert_allclose(given.transform(blob_tasks[0].X), own.transform(blob_tasks[0].X), rtol=1e-6)
    # A learner of this kind nests: its own embedding, read again.
    nested = EmbeddingKNNClassifier(embedding=EmbeddingKNNClassifier(**fast_params)).fit(blob_tasks)
    np.testing.assert_array_equal(nested.transform(blob_tasks[0].X), own.transform(blob_tasks[0].X))


def test_a_vote_of_the_whole_support_set_is_warned_of_with_the_fix():
    tasks = make_blob_tasks(n_tasks=6, n_rows_per_class=10, n_features=4, random_state=0)
    meta = EmbeddingKNNClassifier(n_neighbors=3, max_epochs=1, n_episodes=4, train_split=None,
                                  random_state=0).fit(tasks)
    task = tasks[0]
    support = np.concatenate([np.flatnonzero(task.y == c)[:1] for c in (0, 1)])
    with pytest.warns(AdaptationWarning, match="n_neighbors=3 is at least the 2 support row"):
        adapted = meta.adapt(task.X[support], task.y[support])
    np.testing.assert_allclose(adapted.predict_proba(task.X), 0.5)  # what the warning says
    with warnings.catch_warnings():
        warnings.simplefilter("error", AdaptationWarning)
        meta.set_params(n_neighbors=1).adapt(task.X[support], task.y[support])
        meta.set_params(n_neighbors=3, weights="distance").adapt(task.X[support], task.y[support])
