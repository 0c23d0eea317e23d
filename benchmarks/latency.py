"""Adaptation latency, and meta-training throughput against meta-batch size and width.

- latency: ``adapt`` + ``predict`` on one new task (5 shots, 100 query rows),
  per learner, timed one call at a time: median and 95th percentile, on the
  CPU, and on a CUDA GPU too when one is present;
- throughput: time per task of second-order MAML meta-training on sinusoids
  against ``meta_batch_size`` (1 to 100) and the backbone's width. The
  episodes of a meta-batch run batched with ``vmap``, so the time per task
  should fall as the meta-batch grows, until the batched work fills the
  cores.
"""

import itertools
import time

import numpy as np
import torch

from skmeta import MLP, MAMLClassifier, MAMLRegressor, ProtoNetClassifier
from skmeta.datasets import make_blob_tasks, make_sinusoid_tasks

from ._common import fmt, mean_ci

NAME = "latency"
BATCH_SIZES = (1, 2, 5, 10, 25, 50, 100)


def _settings(quick):
    if quick:
        return dict(calls=20, widths=(40,), batch_sizes=(1, 10), iterations=3, repeats=2, epochs=1)
    return dict(calls=300, widths=(40, 160, 640), batch_sizes=BATCH_SIZES, iterations=20,
                repeats=3, epochs=5)


def _learners(device, epochs):
    common = dict(max_epochs=epochs, n_episodes=200, device=device, random_state=0)
    blobs = make_blob_tasks(n_tasks=40, n_rows_per_class=60, random_state=0)
    sinusoids = make_sinusoid_tasks(200, n_rows=110, random_state=0)
    return {
        "ProtoNetClassifier": (ProtoNetClassifier(**common), blobs),
        "MAMLClassifier (10 adapt steps)": (MAMLClassifier(**common), blobs),
        "MAMLRegressor (10 adapt steps)": (MAMLRegressor(inner_lr=0.01, lr=1e-3, n_shots=5,
                                                         standardize_targets=False, **common), sinusoids),
    }


def _support_query(task, rng, classification):
    if classification:
        support = np.concatenate([rng.choice(np.flatnonzero(task.y == c), 5, replace=False)
                                  for c in np.unique(task.y)])
    else:
        support = rng.choice(task.n_rows, 5, replace=False)
    rest = np.setdiff1d(np.arange(task.n_rows), support)
    query = rng.choice(rest, 100, replace=len(rest) < 100)
    return task.X[support], task.y[support], task.X[query]


def latency(settings, device):
    """Median and 95th percentile (ms) of adapt + predict, per learner."""
    out = {}
    for name, (learner, tasks) in _learners(device, settings["epochs"]).items():
        learner.fit(tasks)
        classification = not isinstance(learner, MAMLRegressor)
        rng = np.random.default_rng(0)
        times = []
        for i in range(settings["calls"] + 5):
            X_s, y_s, X_q = _support_query(tasks[i % len(tasks)], rng, classification)
            start = time.perf_counter()
            learner.adapt(X_s, y_s).predict(X_q)
            if device == "cuda":
                torch.cuda.synchronize()
            if i >= 5:  # the first calls warm caches up
                times.append((time.perf_counter() - start) * 1000)
        out[name] = {"median_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95)),
                     "calls": len(times)}
        print(f"   latency {device}, {name}: {out[name]['median_ms']:.2f} ms", flush=True)
    return out


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
        lines += [
            f"### Latency on the {name}",
            "",
            "`adapt` + `predict` on one new task, 5 shots (per class), 100 query rows, "
            f"{next(iter(figures['latency'].values()))['calls']} calls each:",
            "",
            "| learner | median (ms) | 95th percentile (ms) |",
            "|---|---|---|",
        ]
        for learner, row in figures["latency"].items():
            lines.append(f"| {learner} | {row['median_ms']:.2f} | {row['p95_ms']:.2f} |")
        fastest = min(figures["latency"], key=lambda k: figures["latency"][k]["median_ms"])
        why = " (it takes no gradient step)" if fastest.startswith("ProtoNet") else ""
        lines += ["", f"Adapting to a new task takes milliseconds; {fastest} is fastest{why}.", ""]

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
