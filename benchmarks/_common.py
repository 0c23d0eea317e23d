"""What every benchmark shares: confidence intervals, timing, the machine."""

import contextlib
import os
import platform
import time
from pathlib import Path

import numpy as np
import scipy.stats

ROOT = Path(__file__).resolve().parents[1]


def mean_ci(values, confidence=0.95):
    """Mean and half-width of its Student-t confidence interval.

    Parameters
    ----------
    values : array-like of float
    confidence : float, default=0.95

    Returns
    -------
    dict
        ``{"mean": ..., "ci": ..., "n": ...}``; ``ci`` is 0 for one value.

    Examples
    --------
    >>> from benchmarks._common import mean_ci
    >>> mean_ci([1.0, 2.0, 3.0])
    {'mean': 2.0, 'ci': 2.484..., 'n': 3}
    """
    values = np.asarray(values, dtype=float)
    n = values.size
    mean = float(values.mean())
    if n < 2:
        return {"mean": mean, "ci": 0.0, "n": int(n)}
    half = scipy.stats.t.ppf((1 + confidence) / 2, n - 1) * values.std(ddof=1) / np.sqrt(n)
    return {"mean": mean, "ci": float(half), "n": int(n)}


def fmt(stat, digits=3):
    """``mean ± ci`` of a :func:`mean_ci` result, as text."""
    return f"{stat['mean']:.{digits}f} ± {stat['ci']:.{digits}f}"


def verdict(stat, goal):
    """Whether a ratio's 95% interval clears ``goal``: "met", "missed" or "not established".

    Parameters
    ----------
    stat : dict
        A :func:`mean_ci` result.
    goal : float
        The least ratio wanted.

    Returns
    -------
    str

    Examples
    --------
    >>> from benchmarks._common import verdict
    >>> verdict({"mean": 5.0, "ci": 0.5, "n": 5}, 4), verdict({"mean": 4.2, "ci": 0.5, "n": 5}, 4)
    ('met', 'not established')
    """
    low, high = stat["mean"] - stat["ci"], stat["mean"] + stat["ci"]
    return "met" if low >= goal else "missed" if high < goal else "not established"


def fit_episodes(estimator, tasks, n_iterations):
    """The meta-batches that ``estimator.fit(tasks)`` draws, in order.

    ``estimator`` must have an int ``random_state`` and be fitted for
    ``n_iterations * meta_batch_size`` episodes, on tasks that can all give
    an episode; the same batches can then be handed to another
    implementation, so that both train on the same episodes.

    Parameters
    ----------
    estimator : skmeta meta-learner
    tasks : TaskCollection
    n_iterations : int

    Returns
    -------
    EpisodeLoader

    Examples
    --------
    >>> from skmeta import MAMLRegressor
    >>> from skmeta.datasets import make_sinusoid_tasks
    >>> from benchmarks._common import fit_episodes
    >>> tasks = make_sinusoid_tasks(20, random_state=0)
    >>> meta = MAMLRegressor(n_episodes=4, meta_batch_size=2, random_state=0)
    >>> [len(batch) for batch in fit_episodes(meta, tasks, 2)]
    [2, 2]
    """
    from sklearn.utils import check_random_state

    from skmeta.tasks import EpisodeLoader

    rng = check_random_state(estimator.random_state)
    rng.randint(np.iinfo(np.int32).max)  # the backbone's seed comes first
    episode_rng = np.random.default_rng(rng.randint(np.iinfo(np.int32).max))
    size = estimator.meta_batch_size
    return EpisodeLoader(tasks, estimator._sampler(), n_episodes=n_iterations * size,
                         meta_batch_size=size, random_state=episode_rng)


@contextlib.contextmanager
def one_thread():
    """torch, OpenMP and BLAS on one thread each, restored afterwards.

    The models of the benchmarks are small: on 2 busy cores, two spinning
    OpenMP threads made a HistGradientBoosting fit 30 times slower than one
    thread.
    """
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(threads)


def timed(fn, *args, **kwargs):
    """Call ``fn`` and return ``(seconds, result)``."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def machine():
    """The machine and library versions a result was measured with."""
    import sklearn
    import skorch
    import torch

    import skmeta

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            "skmeta": skmeta.__version__,
            "torch": torch.__version__,
            "scikit-learn": sklearn.__version__,
            "skorch": skorch.__version__,
            "numpy": np.__version__,
        },
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
