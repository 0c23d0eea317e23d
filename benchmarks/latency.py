"""Adaptation latency, and meta-training throughput against meta-batch size and width.

- latency: ``adapt`` + ``predict`` on one new task (5 shots, 100 query rows)
  for every registered learner (:func:`skmeta.utils.all_learners`), timed one
  call at a time, interleaved call by call with sklearn baselines fitted and
  predicting on the same support set (``LogisticRegression`` and
  ``KNeighborsClassifier`` for classifiers, ``Ridge`` and
  ``KNeighborsRegressor`` for regressors): median and 95th percentile, and
  their ratios to the baselines' with bootstrap intervals, with one thread
  for torch and for sklearn's native libraries; on the CPU, and on a CUDA GPU
  too when one is present;
- throughput: time per task of second-order MAML meta-training on sinusoids
  against ``meta_batch_size`` (1 to 100) and the backbone's width. The
  episodes of a meta-batch run batched with ``vmap``, so the time per task
  should fall as the meta-batch grows, until the batched work fills the
  cores.
"""

import itertools
import time
import warnings

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from threadpoolctl import threadpool_limits

from skmeta import MLP, MAMLRegressor
from skmeta.datasets import make_blob_tasks, make_sinusoid_tasks
from skmeta.exceptions import AdaptationWarning
from skmeta.utils import all_learners

from ._common import fmt, mean_ci

NAME = "latency"
BATCH_SIZES = (1, 2, 5, 10, 25, 50, 100)
N_SHOTS, N_QUERIES = 5, 100

#: Goals on the CPU: the learner's median adapt + predict time at most this
#: multiple of LogisticRegression's median fit + predict time.
GOALS = {"MAMLClassifier": 1.0, "ProtoNetClassifier": 0.5}


def _baselines(classification):
    if classification:
        return {"LogisticRegression": LogisticRegression, "KNeighborsClassifier": KNeighborsClassifier}
    return {"Ridge": Ridge, "KNeighborsRegressor": KNeighborsRegressor}


def _settings(quick):
    if quick:
        return dict(calls=20, widths=(40,), batch_sizes=(1, 10), iterations=3, repeats=2, epochs=1,
                    n_episodes=32, bootstrap=200)
    return dict(calls=300, widths=(40, 160, 640), batch_sizes=BATCH_SIZES, iterations=20,
                repeats=3, epochs=5, n_episodes=200, bootstrap=2000)


def _learners(device, settings):
    """Every registered learner, with its defaults and the tasks of its kind."""
    blobs = make_blob_tasks(n_tasks=40, n_rows_per_class=60, random_state=0)
    sinusoids = make_sinusoid_tasks(200, n_rows=110, random_state=0)
    for name, cls in all_learners():
        learner = cls()
        wanted = dict(max_epochs=settings["epochs"], n_episodes=settings["n_episodes"], device=device,
                      random_state=0, n_shots=N_SHOTS)
        learner.set_params(**{k: v for k, v in wanted.items() if k in learner.get_params()})
        yield name, learner, (blobs if cls._classification else sinusoids)


def _support_query(task, rng, classification):
    if classification:
        support = np.concatenate([rng.choice(np.flatnonzero(task.y == c), N_SHOTS, replace=False)
                                  for c in np.unique(task.y)])
    else:
        support = rng.choice(task.n_rows, N_SHOTS, replace=False)
    rest = np.setdiff1d(np.arange(task.n_rows), support)
    query = rng.choice(rest, N_QUERIES, replace=len(rest) < N_QUERIES)
    return task.X[support], task.y[support], task.X[query]


def ratio_stats(times, baseline_times, *, n_bootstrap, seed=0):
    """Ratios of the median and 95th percentile of paired timings, with intervals.

    Calls ``i`` of both lists were timed side by side on one support set; the
    interval resamples those pairs (95% percentile bootstrap).

    Parameters
    ----------
    times, baseline_times : array-like of float
        Paired timings, one per call.
    n_bootstrap : int
        Bootstrap resamples.
    seed : int, default=0

    Returns
    -------
    dict
        ``{"p50": {"ratio", "low", "high"}, "p95": {...}}``.

    Examples
    --------
    >>> from benchmarks.latency import ratio_stats
    >>> stats = ratio_stats([2.0, 2.2, 1.8, 2.0], [1.0, 1.1, 0.9, 1.0], n_bootstrap=100)
    >>> stats["p50"]["ratio"]
    2.0
    """
    times, baseline_times = np.asarray(times, float), np.asarray(baseline_times, float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(times.size, size=(n_bootstrap, times.size))
    out = {}
    for key, q in (("p50", 50), ("p95", 95)):
        boot = np.percentile(times[draws], q, axis=1) / np.percentile(baseline_times[draws], q, axis=1)
        out[key] = {"ratio": float(np.percentile(times, q) / np.percentile(baseline_times, q)),
                    "low": float(np.percentile(boot, 2.5)), "high": float(np.percentile(boot, 97.5))}
    return out


def goal_verdict(interval, goal):
    """'met' when the whole interval is at most ``goal``, 'missed' when above, else 'not established'.

    Examples
    --------
    >>> from benchmarks.latency import goal_verdict
    >>> goal_verdict({"ratio": 0.8, "low": 0.7, "high": 0.9}, 1.0)
    'met'
    """
    if interval["high"] <= goal:
        return "met"
    return "missed" if interval["low"] > goal else "not established"


def _timed(fn):
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def latency(settings, device):
    """Per learner: adapt + predict times (ms), and their ratios to the baselines'."""
    out = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            for name, learner, tasks in _learners(device, settings):
                out[name] = _latency_of(learner, tasks, settings, device)
                row = out[name]
                print(f"   latency {device}, {name}: {row['median_ms']:.2f} ms, "
                      + ", ".join(f"{b} x{r['p50']['ratio']:.2f}" for b, r in row["ratios"].items()),
                      flush=True)
    finally:
        torch.set_num_threads(threads)
    return out


def _adapt_predict(learner, X_s, y_s, X_q, device):
    def call():
        learner.adapt(X_s, y_s).predict(X_q)
        if device == "cuda":
            torch.cuda.synchronize()
    return call


def _fit_predict(cls, X_s, y_s, X_q):
    return lambda: cls().fit(X_s, y_s).predict(X_q)


def _latency_of(learner, tasks, settings, device):
    with warnings.catch_warnings():
        # Backtracked steps are part of adapting and are timed; their warning is not shown.
        warnings.simplefilter("ignore", AdaptationWarning)
        return _time_calls(learner, tasks, settings, device)


def _time_calls(learner, tasks, settings, device):
    learner.fit(tasks)
    classification = learner._classification
    baselines = _baselines(classification)
    rng = np.random.default_rng(0)
    times = {"learner": [], **{b: [] for b in baselines}}
    for i in range(settings["calls"] + 5):
        X_s, y_s, X_q = _support_query(tasks[i % len(tasks)], rng, classification)

        calls = {"learner": _adapt_predict(learner, X_s, y_s, X_q, device),
                 **{b: _fit_predict(cls, X_s, y_s, X_q) for b, cls in baselines.items()}}
        order = list(calls) if i % 2 == 0 else list(calls)[::-1]  # neither always goes first
        measured = {key: _timed(calls[key]) for key in order}
        if i >= 5:  # the first calls warm caches up
            for key, value in measured.items():
                times[key].append(value)
    learner_times = np.array(times["learner"])
    return {
        "median_ms": float(np.median(learner_times)), "p95_ms": float(np.percentile(learner_times, 95)),
        "calls": int(learner_times.size),
        "baselines": {b: {"median_ms": float(np.median(times[b])),
                          "p95_ms": float(np.percentile(times[b], 95))} for b in baselines},
        "ratios": {b: ratio_stats(learner_times, times[b], n_bootstrap=settings["bootstrap"])
                   for b in baselines},
    }


def throughput(settings, device):
    """Milliseconds per task of meta-training, by width and meta-batch size."""
    tasks = make_sinusoid_tasks(200, n_rows=50, random_state=0)
    out = {}
    for width in settings["widths"]:
        row = {}
        for batch_size in settings["batch_sizes"]:
            per_task = []
            for repeat in range(settings["repeats"]):
                maml = MAMLRegressor(
                    MLP(1, 1, hidden_sizes=(width, width)), inner_lr=0.01, lr=1e-3, n_shots=10, n_queries=10,
                    standardize_targets=False,
                    meta_batch_size=batch_size, n_episodes=batch_size * settings["iterations"],
                    max_epochs=2, train_split=None, device=device, random_state=repeat,
                ).fit(tasks)
                # the second epoch's training time: the first one warms up
                per_task.append(maml.history[-1, "dur"] * 1000 / (batch_size * settings["iterations"]))
            row[str(batch_size)] = mean_ci(per_task)
        out[str(width)] = row
        print(f"   throughput {device}, width {width}: "
              + ", ".join(f"{b}: {v['mean']:.2f}" for b, v in row.items()), flush=True)
    return out


def run(*, quick):
    """Measure latency and throughput on the CPU, and on CUDA when present.

    Parameters
    ----------
    quick : bool
        Tiny settings, for a smoke test.

    Returns
    -------
    dict
        ``{"config": ..., "figures": {device: {"latency": ..., "throughput": ...}}}``.
    """
    settings = _settings(quick)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    figures = {device: {"latency": latency(settings, device), "throughput": throughput(settings, device)}
               for device in devices}
    return {"config": settings, "figures": figures}


def _stops_scaling(row, threshold=0.9):
    """The meta-batch size after which time per task stops falling by 10% a step."""
    sizes = list(row)
    for smaller, larger in itertools.pairwise(sizes):
        if row[larger]["mean"] > threshold * row[smaller]["mean"]:
            return smaller
    return sizes[-1]


def report(result, plot_dir, plot_prefix):
    """The markdown section of a stored result (with its plot).

    Parameters
    ----------
    result : dict
    plot_dir : pathlib.Path
    plot_prefix : str

    Returns
    -------
    str
    """
    lines = ["## Adaptation latency and meta-training throughput", ""]
    for device, figures in result["figures"].items():
        name = "CPU" if device == "cpu" else f"CUDA ({result['machine']['cuda']})"
        lines += _latency_section(figures["latency"], name, device)
        widths = figures["throughput"]
        sizes = list(next(iter(widths.values())))
        lines += [
            f"### Meta-training throughput on the {name}",
            "",
            "Milliseconds of second-order MAML meta-training per task (sinusoids, 10+10 points), "
            "by hidden width (rows) and `meta_batch_size` (columns), mean ± CI over "
            f"{result['config']['repeats']} fits:",
            "",
            "| width | " + " | ".join(sizes) + " |",
            "|---|" + "---|" * len(sizes),
        ]
        for width, row in widths.items():
            lines.append(f"| {width} | " + " | ".join(fmt(row[s], 2) for s in sizes) + " |")
        stops = {width: _stops_scaling(row) for width, row in widths.items()}
        lines += ["", "Time per task falls as the meta-batch grows (one batched call replaces a "
                      "loop); it stops falling by 10% or more per step after a meta-batch of "
                      + ", ".join(f"{s} at width {w}" for w, s in stops.items()) + ".", ""]
        path = f"latency_throughput_{device}.png"
        _plot(widths, plot_dir / path, name)
        lines += [f"![time per task against meta-batch size]({plot_prefix}{path})", ""]
    if "cuda" not in result["figures"]:
        lines += ["No CUDA GPU was present for this run, so there is no GPU section; "
                  "`python -m benchmarks run latency` adds one where a GPU is present."]
    return "\n".join(lines).rstrip()


def _interval(r):
    return f"{r['ratio']:.2f} ({r['low']:.2f}-{r['high']:.2f})"


def _latency_section(rows, name, device):
    calls = next(iter(rows.values()))["calls"]
    lines = [f"### Latency on the {name}", ""]
    if "ratios" not in next(iter(rows.values())):  # a record from before the baselines were timed
        lines += ["`adapt` + `predict` on one new task, 5 shots (per class), 100 query rows, "
                  f"{calls} calls each:", "", "| learner | median (ms) | 95th percentile (ms) |",
                  "|---|---|---|"]
        lines += [f"| {learner} | {row['median_ms']:.2f} | {row['p95_ms']:.2f} |"
                  for learner, row in rows.items()]
        return lines + [""]
    lines += [
        f"`adapt` + `predict` on one new task, {N_SHOTS} shots (per class), {N_QUERIES} query rows, "
        f"{calls} calls each, one thread; each call is interleaved with sklearn baselines fitted and "
        "predicting on the same support set. Ratio: the learner's time over the baseline's, at the "
        "median (p50) and 95th percentile (p95), with a 95% bootstrap interval over the calls:",
        "",
        "| learner | p50 (ms) | p95 (ms) | baseline | baseline p50 (ms) | ratio p50 | ratio p95 |",
        "|---|---|---|---|---|---|---|",
    ]
    for learner, row in rows.items():
        for i, (baseline, ratio) in enumerate(row["ratios"].items()):
            head = (f"| {learner} | {row['median_ms']:.2f} | {row['p95_ms']:.2f} " if i == 0
                    else "| | | ")
            lines.append(f"{head}| {baseline} | {row['baselines'][baseline]['median_ms']:.2f} | "
                         f"{_interval(ratio['p50'])} | {_interval(ratio['p95'])} |")
    lines.append("")
    if device == "cpu":
        for learner, goal in GOALS.items():
            if learner in rows:
                ratio = rows[learner]["ratios"]["LogisticRegression"]["p50"]
                lines.append(f"- Goal: {learner}'s median at most {goal:g}x LogisticRegression's: "
                             f"{goal_verdict(ratio, goal)} ({_interval(ratio)}).")
        lines.append("")
    return lines


def _plot(widths, path, name):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for width, row in widths.items():
        sizes = [int(s) for s in row]
        ax.errorbar(sizes, [v["mean"] for v in row.values()], [v["ci"] for v in row.values()],
                    marker="o", capsize=3, label=f"width {width}")
    ax.set(xscale="log", yscale="log", xlabel="meta_batch_size", ylabel="ms per task",
           title=f"MAML meta-training on the {name}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
