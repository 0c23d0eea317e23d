"""Synthetic task families for the metric and memory learners: who adapts best from few rows.

Three families, each meta-trained on and tested on held-out tasks:

- **blobs** (classification): :func:`~skmeta.datasets.make_blob_tasks`
  with its defaults, class centres placed anew in every task inside a
  hidden 2-dimensional subspace of 20 features;
- **recurring blobs** (classification): tasks recur with variations
  (``n_recurring`` base tasks, each task a base with its class centres moved
  a little), the family where a memory of past tasks should help: a few
  support rows say which base a task is, and past tasks of that base say
  where its classes lie better than a few rows can;
- **sinusoids** (regression): :func:`~skmeta.datasets.make_sinusoid_tasks`.

Rows: the metric learners (matching networks with either kernel, kNN in a
learned embedding, taken from prototypical training or from a matching
network), the memory learners with and without a memory of past tasks,
and for reference ProtoNet and MAML (the tabular benchmark's MAML
settings for classification, defaults for regression), each at its own
defaults otherwise; and models fitted on the support set alone (logistic
regression and 3-NN; 3-NN and ridge for regression). Each held-out task is
adapted on ``shots`` support rows per class (classification) or in all
(regression) and scored on the rest: accuracy, or MSE. Each seed draws
new tasks and new weights; figures are mean ± CI over seeds of the mean
over held-out tasks and draws.

Goals: the memory learner beats ProtoNet and MAML on recurring blobs (the
paired difference over seeds above 0), at 1 and at 5 shots; the memory of
tasks beats the same learner without it (recurring blobs, blobs,
sinusoids); every new metric learner beats the support-only models on
blobs at 5 shots; the metric regressor beats the support-only ones on
sinusoids. Each is stated met, missed or not established (the interval
straddles 0). The report computes them from the stored per-seed scores.
"""

import time

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

from skmeta import (
    EmbeddingKNNClassifier,
    MAMLClassifier,
    MAMLRegressor,
    MatchingNetClassifier,
    MatchingNetRegressor,
    MemoryClassifier,
    MemoryRegressor,
    ProtoNetClassifier,
)
from skmeta.datasets import make_blob_tasks, make_sinusoid_tasks

from ._common import fmt, mean_ci, one_thread

NAME = "families"
RECURRING = dict(n_recurring=10, n_informative=16, n_features=20, class_sep=0.5, variation=0.25, noise=1.0)
TASK_MEMORY = 1000
MEMORY_ROW = f"MemoryClassifier, task_memory={TASK_MEMORY}"


def _classifiers():
    maml = dict(inner_lr=0.1, inner_steps=3, adapt_steps=10)
    return {
        "ProtoNetClassifier": lambda: ProtoNetClassifier(),
        "MAMLClassifier": lambda: MAMLClassifier(**maml),
        "MatchingNetClassifier (cosine)": lambda: MatchingNetClassifier(),
        "MatchingNetClassifier (learned, full context)": lambda: MatchingNetClassifier(
            kernel="learned", full_context=True),
        "EmbeddingKNNClassifier": lambda: EmbeddingKNNClassifier(),
        "EmbeddingKNNClassifier (matching embedding)": lambda: EmbeddingKNNClassifier(
            embedding=MatchingNetClassifier()),
        "MemoryClassifier": lambda: MemoryClassifier(),
        MEMORY_ROW: lambda: MemoryClassifier(task_memory=TASK_MEMORY),
    }


def _regressors():
    return {
        "MAMLRegressor": lambda: MAMLRegressor(),
        "MatchingNetRegressor": lambda: MatchingNetRegressor(),
        "MemoryRegressor": lambda: MemoryRegressor(),
        f"MemoryRegressor, task_memory={TASK_MEMORY}": lambda: MemoryRegressor(task_memory=TASK_MEMORY),
    }


SUPPORT_ONLY = {
    "classifier": {"logistic regression, support only": lambda: LogisticRegression(max_iter=1000),
                   "3-NN, support only": lambda: KNeighborsClassifier(3)},
    "regressor": {"ridge, support only": lambda: Ridge(),
                  "3-NN, support only": lambda: KNeighborsRegressor(3)},
}


def _settings(quick):
    if quick:
        return dict(seeds=[0], n_train={"blobs": 12, "recurring blobs": 12, "sinusoids": 40},
                    n_test=4, draws=1, shots={"classifier": [1, 5], "regressor": [5]},
                    meta=dict(max_epochs=1, n_episodes=8))
    return dict(seeds=[0, 1, 2], n_train={"blobs": 200, "recurring blobs": 200, "sinusoids": 1000},
                n_test=50, draws=2, shots={"classifier": [1, 5], "regressor": [5, 10]},
                meta={})


def _family(name, seed, n_tasks):
    if name == "blobs":
        return make_blob_tasks(n_tasks=n_tasks, random_state=seed)
    if name == "recurring blobs":
        return make_blob_tasks(n_tasks=n_tasks, random_state=seed, **RECURRING)
    return make_sinusoid_tasks(n_tasks=n_tasks, random_state=seed)


def _draw(task, shots, kind, rng):
    """Support positions: ``shots`` rows per class, or ``shots`` rows."""
    if kind == "regressor":
        return rng.choice(task.y.shape[0], shots, replace=False)
    return np.concatenate([rng.choice(np.flatnonzero(task.y == c), shots, replace=False)
                           for c in np.unique(task.y)])


def _score(predicted, y, kind):
    return float((predicted == y).mean()) if kind == "classifier" else float(((predicted - y) ** 2).mean())


def _evaluate(models, test, shots, kind, draws, seed):
    """Mean score of each model over test tasks and draws (the same draws for all)."""
    scores = {name: [] for name in models}
    for t, task in enumerate(test):
        for d in range(draws):
            support = _draw(task, shots, kind, np.random.default_rng([seed, t, d, shots]))
            query = np.setdiff1d(np.arange(task.y.shape[0]), support)
            for name, model in models.items():
                if hasattr(model, "adapt"):
                    fitted = model.adapt(task.X[support], task.y[support])
                else:  # k of a support-only kNN: at most the support rows
                    model = model()
                    if hasattr(model, "n_neighbors"):
                        model.set_params(n_neighbors=min(model.n_neighbors, support.shape[0]))
                    fitted = model.fit(task.X[support], task.y[support])
                scores[name].append(_score(fitted.predict(task.X[query]), task.y[query], kind))
    return {name: float(np.mean(values)) for name, values in scores.items()}


def run(quick=False):
    """Meta-train every row on each family per seed; score held-out tasks (on one thread).

    Returns
    -------
    dict
        ``config`` and ``figures``: per family, per shot count, per row, the
        per-seed scores and their mean ± CI; fit seconds per row (the report
        states the goals from the per-seed scores).
    """
    with one_thread():
        return _measure(_settings(quick))


def _measure(settings):
    families = {"blobs": "classifier", "recurring blobs": "classifier", "sinusoids": "regressor"}
    raw = {f: {s: {} for s in settings["shots"][kind]} for f, kind in families.items()}
    seconds = {f: {} for f in families}
    for seed in settings["seeds"]:
        for family, kind in families.items():
            tasks = _family(family, seed, settings["n_train"][family] + settings["n_test"])
            train, test = tasks[: settings["n_train"][family]], tasks[settings["n_train"][family]:]
            models = {}
            for name, make in (_classifiers() if kind == "classifier" else _regressors()).items():
                learner = make()
                meta = {"train_split": None, **settings["meta"]}
                if getattr(learner, "embedding", None) is not None:  # trained by its embedding learner
                    meta = {f"embedding__{key}": value for key, value in meta.items()}
                learner.set_params(random_state=seed, **meta)
                start = time.perf_counter()
                models[name] = learner.fit(train)
                seconds[family].setdefault(name, []).append(time.perf_counter() - start)
                print(f"   seed {seed}, {family}, {name}: {seconds[family][name][-1]:.0f} s", flush=True)
            models.update(SUPPORT_ONLY[kind])
            for shots in settings["shots"][kind]:
                scores = _evaluate(models, test, shots, kind, settings["draws"], seed)
                for name, value in scores.items():
                    raw[family][shots].setdefault(name, []).append(value)
    figures = {"families": {}, "seconds": {}}
    for family, by_shots in raw.items():
        figures["families"][family] = {
            str(shots): {name: {"per_seed": values, **mean_ci(values)} for name, values in rows.items()}
            for shots, rows in by_shots.items()}
        figures["seconds"][family] = {name: mean_ci(values) for name, values in seconds[family].items()}
    return {"config": {**{k: v for k, v in settings.items()}, "recurring": RECURRING,
                       "task_memory": TASK_MEMORY, "families": families},
            "figures": figures}


def _difference(raw, family, shots, better, worse, higher):
    """Paired differences over seeds: ``better - worse`` (or ``worse - better`` for MSE)."""
    a, b = np.asarray(raw[family][shots][better]), np.asarray(raw[family][shots][worse])
    return mean_ci(a - b if higher else b - a)


def _state(stat):
    low, high = stat["mean"] - stat["ci"], stat["mean"] + stat["ci"]
    if stat["n"] < 2:
        return "met" if stat["mean"] > 0 else "missed"
    return "met" if low > 0 else "missed" if high < 0 else "not established"


def _goals(raw, settings):
    goals = []
    for shots in settings["shots"]["classifier"]:
        for rival in ("ProtoNetClassifier", "MAMLClassifier"):
            stat = _difference(raw, "recurring blobs", shots, MEMORY_ROW, rival, True)
            goals.append({"goal": f"{MEMORY_ROW} beats {rival} on recurring blobs, {shots} shot(s)",
                          "difference": stat, "state": _state(stat)})
    # the memory of tasks against the same learner without it: what the memory itself adds
    for family, kind, without in (("recurring blobs", "classifier", "MemoryClassifier"),
                                  ("blobs", "classifier", "MemoryClassifier"),
                                  ("sinusoids", "regressor", "MemoryRegressor")):
        for shots in settings["shots"][kind]:
            stat = _difference(raw, family, shots, f"{without}, task_memory={TASK_MEMORY}", without,
                               kind == "classifier")
            goals.append({"goal": f"{without}, task_memory={TASK_MEMORY} beats {without} on {family}, "
                                  f"{shots} shot(s){' (MSE)' if kind == 'regressor' else ''}",
                          "difference": stat, "state": _state(stat)})
    top = max(settings["shots"]["classifier"])
    new_metric = [n for n in _classifiers() if n.startswith(("Matching", "EmbeddingKNN"))]
    for name in new_metric:
        for baseline in SUPPORT_ONLY["classifier"]:
            stat = _difference(raw, "blobs", top, name, baseline, True)
            goals.append({"goal": f"{name} beats {baseline} on blobs, {top} shots",
                          "difference": stat, "state": _state(stat)})
    for shots in settings["shots"]["regressor"]:
        for baseline in SUPPORT_ONLY["regressor"]:
            stat = _difference(raw, "sinusoids", shots, "MatchingNetRegressor", baseline, False)
            goals.append({"goal": f"MatchingNetRegressor beats {baseline} on sinusoids, {shots} shots (MSE)",
                          "difference": stat, "state": _state(stat)})
    return goals


def report(result, plot_dir, plot_prefix):
    """The markdown section of a stored result.

    Parameters
    ----------
    result : dict
        A stored result of :func:`run`.
    plot_dir : pathlib.Path
        Where plots go (none here).
    plot_prefix : str

    Returns
    -------
    str
    """
    config, figures = result["config"], result["figures"]
    seeds = len(config["seeds"])
    lines = ["## Metric and memory learners on synthetic families", ""]
    recurring = ", ".join(f"{k}={v}" for k, v in config["recurring"].items())
    lines += [
        f"Meta-trained on {config['n_train']['blobs']} blob tasks, {config['n_train']['recurring blobs']} "
        f"recurring blob tasks (`make_blob_tasks({recurring})`) and {config['n_train']['sinusoids']} "
        f"sinusoid tasks; each learner at its defaults (ProtoNet and MAML for reference), "
        f"`train_split=None`. Scored on {config['n_test']} held-out tasks × {config['draws']} support "
        f"draws; mean ± 95% CI over {seeds} seed(s) (new tasks, new weights). Accuracy for "
        "classification (higher is better), query MSE for regression (lower is better).",
    ]
    for family, by_shots in figures["families"].items():
        metric = "MSE" if config["families"][family] == "regressor" else "accuracy"
        shots = list(by_shots)
        per = "rows" if config["families"][family] == "regressor" else "shots per class"
        lines += ["", f"### {family.capitalize()}", "",
                  "| learner | " + " | ".join(f"{s} {per}: {metric}" for s in shots) + " | fit (s) |",
                  "|---|" + "---|" * (len(shots) + 1)]
        for name in by_shots[shots[0]]:
            fit = figures["seconds"][family].get(name)
            lines.append(f"| {name} | " + " | ".join(fmt(by_shots[s][name]) for s in shots)
                         + f" | {fmt(fit, 1) if fit else '—'} |")
    raw = {family: {int(shots): {name: row["per_seed"] for name, row in rows.items()}
                    for shots, rows in by_shots.items()}
           for family, by_shots in figures["families"].items()}
    lines += ["", "### Goals", "",
              "Each difference is paired over seeds (the better minus the other; for MSE the other "
              "minus the better), so above 0 means the goal holds; 'not established' where the "
              "interval straddles 0.", "",
              "| goal | difference | state |", "|---|---|---|"]
    for goal in _goals(raw, config):
        lines.append(f"| {goal['goal']} | {fmt(goal['difference'])} | {goal['state']} |")
    return "\n".join(lines)
