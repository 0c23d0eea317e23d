"""Tests of skmeta/_protonet.py: prototypes, prototypical_logits, ProtoNetClassifier."""

import copy

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier, NearestCentroid

from skmeta import ProtoNetClassifier, Task, TaskCollection
from skmeta.datasets import make_blob_tasks
from skmeta.metric._protonet import prototypes, prototypical_logits
from skmeta.tasks import EpisodeSampler

# ------------------------------------------------------------ functional core


def test_prototypes_are_the_class_means_of_each_episode():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(3, 12, 4))
    labels = np.stack([rng.permutation(np.repeat(np.arange(3), 4)) for _ in range(3)])

    got = prototypes(torch.tensor(embeddings), torch.tensor(labels), 3).numpy()

    expected = [[embeddings[e][labels[e] == k].mean(0) for k in range(3)] for e in range(3)]
    np.testing.assert_allclose(got, np.array(expected), rtol=1e-12)


def test_prototypes_of_unequal_classes_without_a_meta_batch_axis():
    embeddings = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0], [7.0, 7.0]], dtype=torch.float64)
    got = prototypes(embeddings, torch.tensor([1, 0, 1, 1]), 2)
    np.testing.assert_allclose(got.numpy(), [[2.0, 3.0], [11 / 3, 16 / 3]])


def test_prototypical_logits_are_negative_squared_euclidean_distances():
    rng = np.random.default_rng(1)
    queries, centres = rng.normal(size=(2, 7, 5)), rng.normal(size=(2, 3, 5))

    got = prototypical_logits(torch.tensor(queries), torch.tensor(centres)).numpy()

    expected = -((queries[:, :, None, :] - centres[:, None, :, :]) ** 2).sum(-1)
    assert got.shape == (2, 7, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


# ---------------------------------------------- identity backbone = NearestCentroid


def _labelled(tasks, names):
    """The same tasks with string labels, to check the label mapping too."""
    return TaskCollection([Task(task.X, np.asarray(names)[task.y], name=task.name) for task in tasks])


@pytest.fixture(scope="module")
def nearest_centroid_net():
    """A ProtoNet whose embedding is the identity: fitting changes nothing."""
    tasks = _labelled(make_blob_tasks(n_tasks=4, n_classes=3, n_rows_per_class=20, n_features=5,
                                      random_state=0), ["ant", "bee", "cat"])
    meta = ProtoNetClassifier(module=torch.nn.Identity, max_epochs=2, n_episodes=4, meta_batch_size=2,
                              device="cpu", random_state=0)
    return meta.fit(tasks)


def test_fit_works_with_a_backbone_without_parameters(nearest_centroid_net):
    history = nearest_centroid_net.history_
    assert len(history) == 2 and np.isfinite(history[-1, "train_loss"])
    assert list(nearest_centroid_net.module_.parameters()) == []


@pytest.mark.parametrize("n_classes", [3, 4])
def test_identity_backbone_predicts_as_nearest_centroid(nearest_centroid_net, n_classes):
    names = ["ant", "bee", "cat", "dog"][:n_classes]
    new_tasks = _labelled(make_blob_tasks(n_tasks=3, n_classes=n_classes, n_rows_per_class=20,
                                          n_features=5, random_state=1), names)
    sampler = EpisodeSampler(n_shots=5)
    rng = np.random.default_rng(0)
    for task in new_tasks:
        episode = sampler.sample(task.X, task.y, rng, query="rest")
        X_support, y_support = episode.X_support, episode.classes[episode.y_support]
        expected = NearestCentroid().fit(X_support, y_support).predict(episode.X_query)
        adapted = nearest_centroid_net.adapt(X_support, y_support)
        np.testing.assert_array_equal(adapted.predict(episode.X_query), expected)
        np.testing.assert_array_equal(adapted.classes_, names)
        assert np.unique(expected).shape[0] > 1  # not a trivial agreement


def test_identity_backbone_probabilities_are_a_softmax_of_negative_squared_distances(
    nearest_centroid_net
):
    task = make_blob_tasks(n_tasks=1, n_classes=3, n_rows_per_class=10, n_features=5, random_state=3)[0]
    names = np.array(["cat", "ant", "bee"])  # sorted: ant, bee, cat
    adapted = nearest_centroid_net.adapt(task.X[:15], names[task.y[:15]])
    X, X_support = task.X[15:].astype(np.float64), task.X[:15].astype(np.float64)
    centres = [X_support[names[task.y[:15]] == label].mean(0) for label in adapted.classes_]
    logits = -np.stack([((X - centre) ** 2).sum(1) for centre in centres], axis=1)
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(adapted.predict_proba(task.X[15:]), expected, rtol=1e-4, atol=1e-6)


def test_identity_backbone_scores_as_nearest_centroid_on_the_same_support_sets(
    nearest_centroid_net, support_only_score
):
    # 40 rows per class: the score's queries (all 35 other rows) are not the
    # n_queries=15 rows of a training episode.
    new_tasks = make_blob_tasks(n_tasks=5, n_classes=3, n_rows_per_class=40, n_features=5, random_state=2)
    expected = support_only_score(NearestCentroid(), new_tasks, like=nearest_centroid_net)
    assert nearest_centroid_net.score(new_tasks) == pytest.approx(expected, abs=1e-12)
    # n_shots counts: 2 shots per class give another score than the 5 it was fitted with.
    two_shots = copy.deepcopy(nearest_centroid_net).set_params(n_shots=2)
    assert two_shots.score(new_tasks) == pytest.approx(
        support_only_score(NearestCentroid(), new_tasks, like=two_shots), abs=1e-12)
    assert abs(two_shots.score(new_tasks) - expected) > 1e-3


# ------------------------------------------------------------------ learning


@pytest.fixture(scope="module")
def blob_net():
    """A ProtoNet meta-trained on 40 tasks, with 20 new ones: 2 classes at
    random places in a 2-d subspace of 20 features."""
    tasks = make_blob_tasks(n_tasks=60, random_state=0)
    meta = ProtoNetClassifier(max_epochs=5, device="cpu", random_state=0).fit(tasks[:40])
    return meta, tasks[40:]


def test_beats_models_fitted_on_the_support_set_alone(blob_net, support_only_score):
    # Seeds 0, 1, 2 while tuning: ProtoNet 0.86, 0.84, 0.85; logistic
    # regression 0.71, 0.66, 0.74 and 3-nearest neighbours 0.65, 0.61, 0.68.
    meta, new_tasks = blob_net
    score = meta.score(new_tasks)
    for baseline in (LogisticRegression(), KNeighborsClassifier(3)):
        assert score > support_only_score(baseline, new_tasks, like=meta) + 0.1


def test_transform_gives_the_learned_embedding(blob_net):
    meta, new_tasks = blob_net
    X = new_tasks[0].X
    embedded = meta.transform(X)
    assert embedded.shape == (X.shape[0], 64) and embedded.dtype == np.float64
    with torch.no_grad():
        np.testing.assert_allclose(embedded, meta.module_(torch.as_tensor(X)).numpy(), rtol=1e-6)


def test_the_embedding_helps_a_model_fitted_on_the_support_set(blob_net, support_only_score):
    # Seeds 0, 1, 2 while tuning: 0.86, 0.84, 0.84 on the embedding, against
    # 0.71, 0.66, 0.74 on the raw features.
    meta, new_tasks = blob_net

    class OnEmbedding(LogisticRegression):
        def fit(self, X, y):
            return super().fit(meta.transform(X), y)

        def score(self, X, y):
            return super().score(meta.transform(X), y)

    raw = support_only_score(LogisticRegression(), new_tasks, like=meta)
    assert support_only_score(OnEmbedding(), new_tasks, like=meta) > raw + 0.1


# ------------------------------------------------------------- determinism


def test_same_random_state_gives_identical_predictions(fast_params, blob_tasks):
    task = blob_tasks[0]

    def probabilities(random_state):
        meta = ProtoNetClassifier(**{**fast_params, "random_state": random_state}).fit(blob_tasks)
        return meta.predict_proba(task.X[6:], task.X[:6], task.y[:6]), meta.transform(task.X)

    first, again, other = probabilities(0), probabilities(0), probabilities(1)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[1], other[1])


def test_adapting_leaves_the_embedding_unchanged(fast_params, blob_tasks):
    meta = ProtoNetClassifier(**fast_params).fit(blob_tasks)
    before = {name: p.detach().clone() for name, p in meta.module_.named_parameters()}
    task = blob_tasks[0]
    meta.adapt(task.X[:6], task.y[:6]).predict(task.X[6:])
    meta.score(blob_tasks)
    for name, p in meta.module_.named_parameters():
        assert torch.equal(p, before[name]), name
