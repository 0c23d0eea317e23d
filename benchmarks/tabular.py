"""Tabular few-shot across groups: adult by occupation, bank by job.

Each table is split into groups (its tasks). Leave-groups-out: for each
split, the meta-learners are meta-trained on the other groups, then adapt
to each held-out group from 1, 5 or 10 labelled rows per class and predict
the rest of that group (up to ``max_query`` rows). They are compared, on the
same support and query rows, with models fitted on the support set alone,
with pooled models trained on every row of the training groups (not
adapted), and with those pooled models refitted with the support rows
added. Accuracy and ROC-AUC (the minority label is the positive class) are
averaged over (split, held-out group, support draw) episodes.

The preprocessing is a ``ColumnTransformer`` fitted on the training groups
only. For the meta-learners it is the first step of a ``Pipeline`` whose
last step is the meta-learner, fitted on the long-format DataFrame with the
group column passed through by name; a held-out group is adapted to with
``pipe[-1].adapt(pipe[:-1].transform(X_support), y_support)``.
"""

import copy
import time

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

from skmeta import MAMLClassifier, ProtoNetClassifier, make_task_preprocessor
from skmeta.datasets import load_adult
from skmeta.tasks import EpisodeSampler

from ._common import ROOT, fmt, mean_ci

NAME = "tabular"
DATA_DIR = ROOT.parent / "shared" / "data" / "tabular"

META = ("ProtoNet", "MAML")
SUPPORT_ONLY = ("logistic, support only", "kNN, support only", "random forest, support only")
POOLED = ("pooled logistic", "pooled HGB")
REFITTED = ("pooled logistic + support", "pooled HGB + support")
MAJORITY = "majority label of training rows"
LEARNERS = META + SUPPORT_ONLY + POOLED + REFITTED + (MAJORITY,)
METRICS = {"accuracy": "accuracy", "roc_auc": "ROC-AUC"}

FULL = {
    "datasets": ["adult", "bank"],
    "seed": 0,
    "n_splits": 3,
    "n_held_out": 4,
    "n_draws": 5,
    "shots": [1, 5, 10],
    "max_query": 1000,
    "train_rows_per_class": None,
    "min_rows_per_class": 30,
    "meta": {"n_shots": 5, "n_queries": 15, "max_epochs": 15, "n_episodes": 200},
    "maml": {"inner_lr": 0.1, "inner_steps": 3, "adapt_steps": 10},
}
QUICK = {
    **FULL,
    "n_splits": 1,
    "n_held_out": 2,
    "n_draws": 1,
    "shots": [1, 5],
    "max_query": 200,
    "train_rows_per_class": 100,
    "meta": {"n_shots": 5, "n_queries": 15, "max_epochs": 1, "n_episodes": 32},
}


# ------------------------------------------------------------------- data


def _group_table(df, *, name, task, target, min_rows_per_class, dropped=()):
    """Drop rows without a group and groups too small in either class."""
    df = df.drop(columns=list(dropped)).dropna(subset=[task])
    counts = df.groupby(task)[target].value_counts().unstack(fill_value=0)
    kept = counts.index[(counts.min(axis=1) >= min_rows_per_class) & (counts.shape[1] > 1)]
    df = df[df[task].isin(kept)].reset_index(drop=True)
    labels = df[target].value_counts()
    return {
        "name": name,
        "frame": df,
        "task": task,
        "target": target,
        "positive": str(labels.idxmin()),  # the minority label
        "dropped_columns": list(dropped),
    }


def _load(name, min_rows_per_class):
    if name == "adult":
        # shipped with skmeta, so it needs no data folder
        return _group_table(load_adult(), name=name, task="occupation", target="income",
                            min_rows_per_class=min_rows_per_class)
    if name == "bank":
        path = DATA_DIR / "bank.csv.gz"
        if not path.exists():
            raise FileNotFoundError(
                f"The bank marketing table is not at {path}; the tabular benchmark reads it "
                "from shared/data/tabular/ beside the repository. Put bank.csv.gz there, or "
                "run the other benchmarks only."
            )
        df = pd.read_csv(path)
        # "duration" (of the call) is known only once the call is over, and its
        # authors ask to leave it out of realistic predictive models.
        return _group_table(df, name=name, task="job", target=df.columns[-1],
                            min_rows_per_class=min_rows_per_class, dropped=("duration",))
    raise ValueError(f"Unknown tabular dataset {name!r}; choose 'adult' or 'bank'.")


def _splits(groups, *, n_splits, n_held_out, seed):
    """Held-out groups per split: folds of seeded permutations of the groups.

    Consecutive splits partition one permutation, so with 12 groups and 4
    held out, 3 splits hold each group out once.
    """
    per_pass = len(groups) // n_held_out
    if per_pass < 1:
        raise ValueError(f"n_held_out={n_held_out} exceeds the {len(groups)} groups.")
    for split in range(n_splits):
        order = np.random.default_rng([seed, split // per_pass]).permutation(groups)
        fold = split % per_pass
        yield split, sorted(order[fold * n_held_out : (fold + 1) * n_held_out].tolist())


# --------------------------------------------------------------- learners


def _positive_scores(model, X, positive):
    """Probability of the positive label, and the predicted labels."""
    proba = model.predict_proba(X)
    classes = np.asarray(model.classes_)
    return proba[:, np.flatnonzero(classes == positive)[0]], classes[proba.argmax(axis=1)]


def _evaluate(model, X, y, positive):
    scores, predicted = _positive_scores(model, X, positive)
    return float(np.mean(predicted == y)), float(roc_auc_score(y == positive, scores))


def _support_only(n_shots, seed):
    # k is odd and at most the shots per class, so no class wins a vote by a tie-break
    return {
        "logistic, support only": LogisticRegression(max_iter=1000),
        "kNN, support only": KNeighborsClassifier(n_neighbors=min(3, n_shots)),
        "random forest, support only": RandomForestClassifier(random_state=seed),
    }


def _pooled(seed):
    return {
        "pooled logistic": LogisticRegression(max_iter=2000),
        "pooled HGB": HistGradientBoostingClassifier(random_state=seed),
    }


def _meta_learners(settings, task, seed):
    common = dict(task_column=task, train_split=None, random_state=seed, **settings["meta"])
    return {
        "ProtoNet": ProtoNetClassifier(**common),
        "MAML": MAMLClassifier(**settings["maml"], **common),
    }


# -------------------------------------------------------------------- run


def _run_split(table, held_out, settings, seed, split, log):
    """Every learner on every episode of one split; per-episode scores."""
    df, task, target, positive = table["frame"], table["task"], table["target"], table["positive"]
    train = df[~df[task].isin(held_out)]
    if settings["train_rows_per_class"]:
        train = (train.sample(frac=1.0, random_state=seed)
                 .groupby([task, target]).head(settings["train_rows_per_class"]))
    X_train, y_train = train.drop(columns=target), train[target].to_numpy()

    fit_seconds = {}
    pipelines = {}
    for name, learner in _meta_learners(settings, task, seed).items():
        start = time.perf_counter()
        pipelines[name] = make_pipeline(make_task_preprocessor(X_train, task), learner).fit(X_train, y_train)
        fit_seconds[name] = time.perf_counter() - start

    encoder = make_task_preprocessor(X_train, task).fit(X_train)
    E_train = encoder.transform(X_train).drop(columns=task).to_numpy()
    pooled = {name: model.fit(E_train, y_train) for name, model in _pooled(seed).items()}
    labels, counts = np.unique(y_train, return_counts=True)
    majority = labels[counts.argmax()]

    episodes = []
    for group_index, group in enumerate(held_out):
        rows = df[df[task] == group]
        X_group, y_group = rows.drop(columns=target), rows[target].to_numpy()
        E_group = encoder.transform(X_group).drop(columns=task).to_numpy()
        for n_shots in settings["shots"]:
            sampler = EpisodeSampler(n_shots=n_shots, n_queries=1)
            for draw in range(settings["n_draws"]):
                # one support set per (split, group, shots, draw), shared by every learner
                rng = np.random.default_rng([seed, split, group_index, n_shots, draw])
                episode = sampler.sample(np.arange(len(y_group)), y_group, rng, query="rest")
                support = episode.X_support
                query = rng.permutation(episode.X_query)[: settings["max_query"]]
                y_s, y_q = y_group[support], y_group[query]
                E_s, E_q = E_group[support], E_group[query]
                scores = {}
                for name, pipe in pipelines.items():
                    adapted = pipe[-1].adapt(pipe[:-1].transform(X_group.iloc[support]), y_s)
                    scores[name] = _evaluate(adapted, pipe[:-1].transform(X_group.iloc[query]),
                                             y_q, positive)
                for name, model in _support_only(n_shots, seed).items():
                    scores[name] = _evaluate(model.fit(E_s, y_s), E_q, y_q, positive)
                for name, model in pooled.items():
                    scores[name] = _evaluate(model, E_q, y_q, positive)
                E_more, y_more = np.vstack([E_train, E_s]), np.r_[y_train, y_s]
                for name, model in pooled.items():
                    # a fresh fit (no warm start: lbfgs would stop at once at the old optimum)
                    refitted = clone(model).fit(E_more, y_more)
                    scores[f"{name} + support"] = _evaluate(refitted, E_q, y_q, positive)
                scores[MAJORITY] = (float(np.mean(y_q == majority)), 0.5)
                episodes.append({"shots": n_shots, "positive_rate": float(np.mean(y_q == positive)),
                                 "scores": scores})
        log(f"   {table['name']} split {split}: {group} done")
    return {"episodes": episodes, "fit_seconds": fit_seconds, "train_rows": len(train)}


def _summarise(table, held_out, splits, shots):
    """Mean ± CI per learner, shots and metric, and paired differences."""
    episodes = [e for result in splits for e in result["episodes"]]
    metrics, paired = {}, {}
    for n_shots in shots:
        cell = [e for e in episodes if e["shots"] == n_shots]
        values = {name: np.array([e["scores"][name] for e in cell]) for name in LEARNERS}
        for name in LEARNERS:
            metrics.setdefault(name, {})[str(n_shots)] = {
                metric: mean_ci(values[name][:, i]) for i, metric in enumerate(METRICS)
            }
        for meta in META:
            for other in LEARNERS:
                if other in META or other == MAJORITY:
                    continue
                paired.setdefault(meta, {}).setdefault(other, {})[str(n_shots)] = {
                    metric: mean_ci(values[meta][:, i] - values[other][:, i])
                    for i, metric in enumerate(METRICS)
                }
    df, task = table["frame"], table["task"]
    return {
        "task_column": task,
        "target": table["target"],
        "positive": table["positive"],
        "dropped_columns": table["dropped_columns"],
        "n_rows": int(len(df)),
        "groups": sorted(df[task].unique().tolist()),
        "held_out": held_out,
        "train_rows": [int(result["train_rows"]) for result in splits],
        "query_positive_rate": mean_ci([e["positive_rate"] for e in episodes]),
        "meta_fit_seconds": {
            name: mean_ci([result["fit_seconds"][name] for result in splits]) for name in META
        },
        "metrics": metrics,
        "paired": paired,
    }


def run(*, quick, log=print):
    """Measure few-shot accuracy and ROC-AUC on held-out groups.

    Parameters
    ----------
    quick : bool
        Tiny settings (one split, two held-out groups, one draw, 1 and 5
        shots, one epoch, a few rows per group): a smoke test, not a
        measurement.
    log : callable, default=print
        Where progress lines go.

    Returns
    -------
    dict
        ``"config"``: the settings; ``"figures"``: per dataset, the groups,
        the held-out groups per split, the base rate of the query rows,
        meta-training seconds, ``metrics[learner][shots][metric]`` and
        ``paired[meta_learner][other][shots][metric]`` (differences on the
        same episodes), each a :func:`~benchmarks._common.mean_ci` dict.

    Raises
    ------
    FileNotFoundError
        If ``bank.csv.gz`` is not in ``shared/data/tabular/`` beside the
        repository.
    """
    settings = copy.deepcopy(QUICK if quick else FULL)
    seed = settings["seed"]
    figures = {"learners": list(LEARNERS), "shots": settings["shots"], "datasets": {}}
    for name in settings["datasets"]:
        start = time.perf_counter()
        table = _load(name, settings["min_rows_per_class"])
        groups = sorted(table["frame"][table["task"]].unique().tolist())
        splits, held_out = [], []
        for split, held in _splits(groups, n_splits=settings["n_splits"],
                                   n_held_out=settings["n_held_out"], seed=seed):
            held_out.append(held)
            splits.append(_run_split(table, held, settings, seed, split, log))
        figures["datasets"][name] = _summarise(table, held_out, splits, settings["shots"])
        figures["datasets"][name]["seconds"] = round(time.perf_counter() - start, 1)
        log(f"   {name}: {figures['datasets'][name]['seconds']} s")
    config = {
        **settings,
        "learners": {
            "meta-learners": "ProtoNetClassifier and MAMLClassifier (default MLP backbone), "
                             "meta-trained once per split on every training group, adapted per episode",
            "support only": "LogisticRegression(max_iter=1000), KNeighborsClassifier(k=min(3, shots)), "
                            "RandomForestClassifier() on the support rows",
            "pooled": "LogisticRegression(max_iter=2000), HistGradientBoostingClassifier() on every "
                      "training-group row, not adapted; '+ support': refitted from scratch with the "
                      "support rows added",
            MAJORITY: "predicts the most frequent label of the training rows (ROC-AUC 0.5)",
        },
    }
    return {"config": config, "figures": figures}


# ----------------------------------------------------------------- report


def _shots_label(n_shots):
    return f"{n_shots} shot{'s' if int(n_shots) > 1 else ''}"


def _best(metrics, names, n_shots, metric):
    return max(names, key=lambda name: metrics[name][n_shots][metric]["mean"])


def _metric_table(data, shots, metric):
    lines = [
        "| learner | " + " | ".join(_shots_label(s) for s in shots) + " |",
        "|---|" + "---|" * len(shots),
    ]
    for name, row in data["metrics"].items():
        lines.append(f"| {name} | " + " | ".join(fmt(row[s][metric]) for s in shots) + " |")
    return lines


def _ordinal(n):
    return f"{n}{'th' if 10 <= n % 100 < 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _metric_sentence(data, shots, metric):
    metrics = data["metrics"]
    learners = list(metrics)
    best = [(s, _best(metrics, learners, s, metric)) for s in shots]
    text = "; ".join(f"{_shots_label(s)}: {name} ({metrics[name][s][metric]['mean']:.3f})"
                     for s, name in best)
    meta_ranks, meta_best_at = [], []
    for s, overall in best:
        meta = _best(metrics, META, s, metric)
        order = sorted(learners, key=lambda name: -metrics[name][s][metric]["mean"])
        meta_ranks.append(f"{meta} {_ordinal(order.index(meta) + 1)} of {len(order)} "
                          f"at {_shots_label(s)}")
        if overall in META:
            meta_best_at.append(_shots_label(s))
    sentence = (f"Highest {METRICS[metric]}: {text}. The better meta-learner ranks "
                f"{', '.join(meta_ranks)}")
    if metric == "accuracy":
        beats = [s for s in shots if metrics[_best(metrics, META, s, metric)][s][metric]["mean"]
                 > metrics[MAJORITY][s][metric]["mean"]]
        sentence += (f", and beats always predicting the majority label "
                     f"({metrics[MAJORITY][shots[0]][metric]['mean']:.3f} at {_shots_label(shots[0])}) at "
                     f"{len(beats)} of "
                     f"{len(shots)} shot counts")
    else:
        sentence += (f" (ROC-AUC ignores the base rate: it asks only whether {data['positive']!r} "
                     "rows are ranked above the others)")
    if meta_best_at:
        sentence += f"; a meta-learner is the best choice here at {', '.join(meta_best_at)}"
    else:
        sentence += ("; a user is better served here by the best learner named above than by "
                     "either meta-learner, at every shot count")
    return sentence + "."


def _paired_rows(datasets, shots):
    """One row per (dataset, shots, meta-learner): the difference to the strongest other."""
    rows = []
    for name, data in datasets.items():
        metrics = data["metrics"]
        others = [learner for learner in metrics if learner not in META and learner != MAJORITY]
        for s in shots:
            strongest = _best(metrics, others, s, "roc_auc")
            for meta in META:
                diff = data["paired"][meta][strongest][s]
                rows.append((name, s, meta, strongest, diff))
    return rows


def _verdict(stat):
    if stat["mean"] - stat["ci"] > 0:
        return "win"
    if stat["mean"] + stat["ci"] < 0:
        return "loss"
    return "tie"


def _plot(datasets, shots, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(datasets), len(METRICS), figsize=(12, 4 * len(datasets) + 1),
                             squeeze=False)
    x = np.array([int(s) for s in shots], dtype=float)
    for row, (name, data) in zip(axes, datasets.items(), strict=True):
        for ax, (metric, label) in zip(row, METRICS.items(), strict=True):
            low, high = 1.0, 0.0
            for i, (learner, values) in enumerate(data["metrics"].items()):
                means = np.array([values[s][metric]["mean"] for s in shots])
                cis = np.array([values[s][metric]["ci"] for s in shots])
                low, high = min(low, (means - cis).min()), max(high, (means + cis).max())
                style = "-" if learner in META else ("--" if learner != MAJORITY else ":")
                shift = 1.03 ** (i - (len(data["metrics"]) - 1) / 2)  # keeps the bars apart
                ax.errorbar(x * shift, means, yerr=cis, fmt=style, marker="o", markersize=4,
                            capsize=2, elinewidth=0.8, color=f"C{i}",
                            linewidth=2.5 if learner in META else 1.0, label=learner)
            ax.set(title=f"{name}, held-out {data['task_column']} groups: {label}",
                   xlabel="shots per class", ylabel=f"query {label}", xscale="log",
                   ylim=(max(0.0, low - 0.02), min(1.0, high + 0.02)))
            ax.set_xticks(x, [str(s) for s in shots])
            ax.minorticks_off()
            ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(result, plot_dir, plot_prefix):
    """The markdown section of the tabular benchmark, and its plot.

    Parameters
    ----------
    result : dict
        What :func:`run` returned (with the runner's record fields).
    plot_dir : pathlib.Path
        Where ``tabular_shots.png`` is saved.
    plot_prefix : str
        Prefix of the plot's path in the markdown, relative to the report.

    Returns
    -------
    str
        Markdown, starting with ``## Tabular few-shot across groups``.
    """
    config, figures = result["config"], result["figures"]
    datasets, shots = figures["datasets"], [str(s) for s in figures["shots"]]
    plot_dir.mkdir(parents=True, exist_ok=True)
    _plot(datasets, shots, plot_dir / "tabular_shots.png")

    n_episodes = next(iter(datasets.values()))["query_positive_rate"]["n"] // len(shots)
    described = ", ".join(
        f"{name} ({data['n_rows']:,} rows, {len(data['groups'])} {data['task_column']} groups, "
        f"positive label {data['positive']!r}, {data['query_positive_rate']['mean']:.1%} of query rows"
        + (f"; column(s) {', '.join(data['dropped_columns'])} left out" if data["dropped_columns"]
           else "") + ")"
        for name, data in datasets.items()
    )
    meta_cfg, maml_cfg = config["meta"], config["maml"]
    lines = [
        "## Tabular few-shot across groups",
        "",
        f"Real tables split into groups: {described}. Leave-groups-out: {config['n_splits']} "
        f"split(s), each holding out {config['n_held_out']} groups. Per split, ProtoNet and MAML "
        f"are meta-trained once on the other groups ({meta_cfg['n_shots']}-shot episodes, "
        f"{meta_cfg['max_epochs']} epoch(s) of {meta_cfg['n_episodes']} episodes; MAML with "
        f"{maml_cfg['inner_steps']} inner steps, {maml_cfg['adapt_steps']} adaptation steps), as the "
        "last step of a Pipeline whose ColumnTransformer is fitted on the training groups only. "
        f"For each held-out group and shot count, {config['n_draws']} seeded support set(s) are "
        "drawn, the same for every learner; the query is the rest of the group (up to "
        f"{config['max_query']} rows). A support set holds the same number of rows of each "
        "class, while the query keeps the group's base rate (given above): accuracy rewards "
        "knowing that base rate, ROC-AUC (with the minority label as positive) does not. ± is "
        f"over {n_episodes} (split, group, draw) episodes per cell.",
        "",
        f"![accuracy and ROC-AUC against shots per class]({plot_prefix}tabular_shots.png)",
    ]
    for name, data in datasets.items():
        for metric, label in METRICS.items():
            lines += [
                "",
                f"### {name}, {label} on held-out {data['task_column']} groups",
                "",
                *_metric_table(data, shots, metric),
                "",
                _metric_sentence(data, shots, metric),
            ]

    rows = _paired_rows(datasets, shots)
    lines += [
        "",
        "### Meta-learners against the strongest model without meta-learning",
        "",
        "Paired differences on the same episodes (meta-learner minus the learner with the "
        "highest mean ROC-AUC among the others at that shot count); an interval that excludes 0 "
        "is a win or a loss.",
        "",
        "| dataset | shots | meta-learner | strongest other | Δ accuracy | Δ ROC-AUC |",
        "|---|---|---|---|---|---|",
    ]
    for name, s, meta, strongest, diff in rows:
        lines.append(f"| {name} | {s} | {meta} | {strongest} | {fmt(diff['accuracy'])} | "
                     f"{fmt(diff['roc_auc'])} |")
    tallies = []
    for meta in META:
        verdicts = [_verdict(diff["roc_auc"]) for _, _, m, _, diff in rows if m == meta]
        tallies.append(f"{meta} {verdicts.count('win')} win(s), {verdicts.count('tie')} tie(s) "
                       f"and {verdicts.count('loss')} loss(es)")
    strongest_names = sorted({strongest for *_, strongest, _ in rows})
    lines += [
        "",
        f"In ROC-AUC over the {len(rows) // len(META)} (dataset, shots) cells, {'; '.join(tallies)} "
        f"against the strongest model without meta-learning ({', '.join(strongest_names)}), which "
        "is what a user with the other groups' rows at hand should compare against.",
    ]
    return "\n".join(lines)
