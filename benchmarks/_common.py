"""What every benchmark shares: confidence intervals, timing, the machine."""

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
