"""Overheads of the safety checks, side by side with what they replaced.

- **Validating a long-format table**: one pass over the whole table
  (``check_long_format``) against validating task by task after splitting
  (``TaskCollection.from_arrays`` then ``check_task_collection``, the path
  every fit took before).
- **Adapting with the guard**: MAML's guarded inner loop (plain autograd,
  each step checked, backtracked if it raises the support loss) against
  the unguarded ``torch.func`` inner loop, on the same support sets.
- **Checks at the public boundary**: ProtoNet's ``adapt(...).predict(...)``
  (validation of the support and query rows, parameters, the lock, the
  finite-output check) against its functional core alone on tensors.
- **Drawing episodes**: ``EpisodeLoader``, which checks and scans each
  task's targets once per pass, against ``EpisodeSampler.sample`` called per
  episode (which checks and scans them every time); both draw the same
  episodes from the same seed.

The contenders are interleaved and repeated; ratios are per repeat.
"""

import time

import numpy as np
import pandas as pd
import torch

from skmeta import MAMLClassifier, ProtoNetClassifier
from skmeta._validation import check_long_format, check_task_collection
from skmeta.datasets import make_blob_tasks
from skmeta.metric._protonet import prototypes, prototypical_logits
from skmeta.optimization._maml import inner_loop
from skmeta.tasks import EpisodeBatch, EpisodeLoader, EpisodeSampler, TaskCollection

from ._common import mean_ci


def _settings(quick):
    if quick:
        return dict(n_groups=20, n_rows=50, n_features=10, repeats=3, calls=20)
    return dict(n_groups=400, n_rows=100, n_features=20, repeats=15, calls=300)


def _long_table(settings):
    rng = np.random.default_rng(0)
    n = settings["n_groups"] * settings["n_rows"]
    X = pd.DataFrame(rng.normal(size=(n, settings["n_features"])),
                     columns=[f"x{i}" for i in range(settings["n_features"])])
    X["group"] = np.repeat([f"g{i}" for i in range(settings["n_groups"])], settings["n_rows"])
    return X, rng.integers(2, size=n)


def validation(settings):
    X, y = _long_table(settings)

    def one_pass():
        check_long_format(X, y, task_column="group", classification=True)

    def per_task():
        tasks = TaskCollection.from_arrays(X.drop(columns="group"), y, X["group"])
        check_task_collection(tasks, classification=True)

    return _interleaved({"one pass": one_pass, "per task": per_task}, settings["repeats"], calls=1)


def adaptation(settings):
    tasks = make_blob_tasks(n_tasks=40, n_rows_per_class=30, n_features=10, random_state=0)
    meta = MAMLClassifier(max_epochs=1, n_episodes=32, n_shots=5, n_queries=10, train_split=None,
                          random_state=0, device="cpu").fit(tasks[:30])
    rng = np.random.default_rng(1)
    supports = []
    for task in tasks[30:]:
        rows = np.concatenate([rng.choice(np.flatnonzero(task.y == c), 5, replace=False) for c in (0, 1)])
        supports.append((torch.as_tensor(task.X[rows]), torch.as_tensor(task.y[rows], dtype=torch.long),
                         torch.as_tensor(task.X)))
    params = meta._params()
    steps = meta.adapt_steps

    def guarded(X, y, X_query):
        state, _ = meta._adapt(X, y, 2)
        return meta._predict_state(state, X_query)

    def unguarded(X, y, X_query):
        detached = {name: p.detach() for name, p in params.items()}
        state = inner_loop(meta.module_, detached, X, y, loss_fn=meta._loss, inner_lr=meta.inner_lr,
                           steps=steps, first_order=True)
        return meta._predict_state({k: v.detach() for k, v in state.items()}, X_query)

    def run(fn):
        def call():
            for X, y, X_query in supports:
                fn(X, y, X_query)
        return call

    with meta._evaluating():
        result = _interleaved({"guarded": run(guarded), "unguarded": run(unguarded)},
                              settings["repeats"], calls=max(1, settings["calls"] // len(supports)))
    result["per_adapt_divisor"] = len(supports)
    return result


def boundary(settings):
    tasks = make_blob_tasks(n_tasks=40, n_rows_per_class=60, n_features=10, random_state=0)
    meta = ProtoNetClassifier(max_epochs=1, n_episodes=32, train_split=None, random_state=0,
                              device="cpu").fit(tasks[:30])
    task = tasks[35]
    support = np.concatenate([np.flatnonzero(task.y == c)[:5] for c in (0, 1)])
    query = np.setdiff1d(np.arange(task.n_rows), support)[:100]
    X_support, y_support, X_query = task.X[support], task.y[support], task.X[query]
    tensors = (torch.as_tensor(X_support), torch.as_tensor(y_support, dtype=torch.long),
               torch.as_tensor(X_query))

    def public():
        meta.adapt(X_support, y_support).predict(X_query)

    def core():
        X, y, Xq = tensors
        with torch.no_grad():
            centres = prototypes(meta.module_(X), y, 2)
            prototypical_logits(meta.module_(Xq), centres).argmax(1)

    return _interleaved({"adapt + predict": public, "functional core": core}, settings["repeats"],
                        calls=settings["calls"])


def episodes(settings):
    tasks = make_blob_tasks(n_tasks=40, n_rows_per_class=60, n_features=10, random_state=0)
    sampler, n_episodes, meta_batch_size = EpisodeSampler(n_shots=5, n_queries=10), 4 * settings["calls"], 8

    def loader():
        for _ in EpisodeLoader(tasks, sampler, n_episodes=n_episodes, meta_batch_size=meta_batch_size,
                               random_state=0):
            pass

    def per_episode():
        rng = np.random.default_rng(0)
        order = rng.integers(len(tasks), size=n_episodes)
        for start in range(0, n_episodes, meta_batch_size):
            EpisodeBatch.stack([sampler.sample(tasks[i].X, tasks[i].y, rng, task=tasks[i].name)
                                for i in order[start : start + meta_batch_size]])

    result = _interleaved({"loader": loader, "sample per episode": per_episode}, settings["repeats"], calls=1)
    result["per_adapt_divisor"] = n_episodes
    return result


def _interleaved(contenders, repeats, *, calls):
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            times[name].append((time.perf_counter() - start) / calls)
    names = list(contenders)
    ratio = np.array(times[names[0]]) / np.array(times[names[1]])
    return {"seconds": {name: mean_ci(t) for name, t in times.items()},
            "ratio": {"of": f"{names[0]} / {names[1]}", **mean_ci(ratio)}}


def run(*, quick=False):
    torch.set_num_threads(1)
    settings = _settings(quick)
    return {"config": settings,
            "figures": {"validation": validation(settings), "adaptation": adaptation(settings),
                        "boundary": boundary(settings), "episodes": episodes(settings)}}


def report(record, plot_dir, plot_prefix):
    cfg, val, ada = record["config"], record["figures"]["validation"], record["figures"]["adaptation"]
    n = ada["per_adapt_divisor"]
    lines = [
        "## Overheads of the safety checks",
        "",
        f"Validating a long-format table of {cfg['n_groups']} groups × {cfg['n_rows']} rows × "
        f"{cfg['n_features']} features, and MAML's adapt + predict (10 steps, 5 shots, 2 ways) on "
        f"{n} support sets, and ProtoNet's public adapt + predict against its functional core; "
        f"{cfg['repeats']} interleaved repeats.",
        "",
        "| what | contender | time | ratio |",
        "|---|---|---|---|",
    ]
    rows = [("validate a table", val, 1), ("MAML adapt + predict", ada, n)]
    if "boundary" in record["figures"]:
        rows.append(("ProtoNet, 5 shots, 100 queries", record["figures"]["boundary"], 1))
    if "episodes" in record["figures"]:  # time per episode
        block = record["figures"]["episodes"]
        rows.append(("draw an episode (2 ways, 5 shots, 10 queries)", block, block["per_adapt_divisor"]))
    for title, block, divisor in rows:
        (first, a), (second, b) = block["seconds"].items()
        ratio = block["ratio"]
        lines += [
            f"| {title} | {first} | {1e3 * a['mean'] / divisor:.2f} ± {1e3 * a['ci'] / divisor:.2f} ms | "
            f"{ratio['mean']:.2f} ± {ratio['ci']:.2f} ({ratio['of']}) |",
            f"| | {second} | {1e3 * b['mean'] / divisor:.2f} ± {1e3 * b['ci'] / divisor:.2f} ms | |",
        ]
    return "\n".join(lines)
