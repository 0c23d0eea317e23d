"""Small shared fixtures: a few tiny tasks and settings that fit in a second."""

from types import MappingProxyType

import pytest
import torch

from skmeta.datasets import make_blob_tasks, make_sinusoid_tasks

# The test models are tiny: a second intra-op thread makes nothing faster, and
# on a busy machine its threads wait on each other (10-100x slower seen here).
torch.set_num_threads(1)

#: Meta-learner settings for tests: one short epoch of tiny episodes on the CPU.
FAST = MappingProxyType(dict(
    max_epochs=1,
    n_episodes=4,
    meta_batch_size=2,
    n_shots=2,
    n_queries=3,
    train_split=None,
    device="cpu",
    random_state=0,
    module__hidden_sizes=(8,),
))


@pytest.fixture(scope="session")
def fast_params():
    """Read-only :data:`FAST`: ``Estimator(**fast_params)``, or
    ``Estimator(**{**fast_params, "n_ways": 3})`` to change one."""
    return FAST


@pytest.fixture
def blob_tasks():
    """Six 2-class tasks, 10 rows per class, 4 features."""
    return make_blob_tasks(n_tasks=6, n_rows_per_class=10, n_features=4, random_state=0)


@pytest.fixture
def sinusoid_tasks():
    """Six sinusoid regression tasks of 10 rows each."""
    return make_sinusoid_tasks(6, n_rows=10, random_state=0)


@pytest.fixture(scope="session")
def support_only_score():
    """``score(estimator, tasks, like=meta)``: the episodic score of a plain
    sklearn estimator fitted on each task's support set alone.

    The support sets are those ``meta.score(tasks)`` adapts on: the same
    sampler settings (``n_ways``, ``n_shots``, ``n_queries``), the same seed,
    and the query set is the rest of each task.
    """
    from numbers import Integral

    import numpy as np

    from skmeta.tasks import EpisodeSampler

    def score(estimator, tasks, *, like):
        sampler = EpisodeSampler(n_ways=like.n_ways, n_shots=like.n_shots,
                                 n_queries=like.n_queries, classification=like._classification)
        seed = like.random_state if isinstance(like.random_state, Integral) else 0
        rng = np.random.default_rng(seed)
        scores = []
        for task in tasks:
            episode = sampler.sample(task.X, task.y, rng, task=task.name, query="rest")
            estimator.fit(episode.X_support, episode.y_support)
            scores.append(estimator.score(episode.X_query, episode.y_query))
        return float(np.mean(scores))

    return score
