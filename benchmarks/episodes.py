"""Episode settings on group tables: ``class_balance`` and ``n_shots`` for meta-training.

Meta-learners draw their training episodes "balanced" (``n_shots`` support
and ``n_queries`` query rows per class) or "natural" (as many rows in all,
in the task's own class proportions, one support row per class first), with
one shot count or a tuple of them (one drawn per episode). A user with a
new group of a table has a few labelled rows as they come: natural, of any
number. This benchmark measures which training-episode settings serve that
user best, on the real grouped classification tables of the tabular
benchmark (``adult``, ``bank``, ``contraception``; their loaders, splits,
support draws and scores are reused from :mod:`benchmarks.tabular`).

Rows: ``MAMLClassifier(inner_lr=0.1, inner_steps=3, adapt_steps=10)`` and
``ProtoNetClassifier``, each meta-trained with the four combinations
``class_balance`` in {"balanced", "natural"} x ``n_shots`` in {5, (1, 5,
10, 20)}, and the MAML learner with ``prior=LogisticRegression(max_iter=
1000)`` under "balanced" and "natural" (``n_shots=5``): the prior keeps the
pooled base rate, and balanced episodes teach the network to undo it. Meta
training budget: tabular's FULL meta settings (8 epochs of 100 episodes,
15 queries per class).

Evaluation as in the tabular benchmark: leave-groups-out splits, each held
out group adapted on 1, 5, 10 or 20 rows per class, drawn "natural" (rows
at random, the headline) and "stratified", and scored on the rest of the
group (up to ``max_query`` rows): ROC-AUC, log-loss, accuracy and the
base-rate gap ``|mean predicted P(positive) - positive rate of the query|``.
Per-group means over draws, then mean ± CI over held-out groups.

Budget (FULL, 2 cores shared with other jobs, torch/BLAS on one thread):
3 splits x 4 held-out groups (every group of adult and bank held out
once) x 2 draws per shot count and draw kind, ten meta-trained rows per
split; a meta-fit takes 1 to 5 s and an adapt + predict ~20 ms, so about
2 minutes a table and 5 to 8 minutes in all (the report's footer gives the
measured time). QUICK (adult, one split, two groups, one short epoch)
takes ~10 to 20 s.
"""

import copy
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from skmeta import MAMLClassifier, ProtoNetClassifier

from ._common import fmt, mean_ci, one_thread
from .tabular import FULL as TABULAR_FULL
from .tabular import (
    PROBABILITY_FLOOR,
    _draw,
    _fit_meta,
    _gives,
    _group_means,
    _loader,
    _splits,
    _table_shots,
    _training_rows,
)

NAME = "episodes"

# metric -> (label, higher is better)
METRICS = {"roc_auc": ("ROC-AUC", True), "log_loss": ("log-loss", False),
           "accuracy": ("accuracy", True), "base_rate_gap": ("base-rate gap", False)}
DRAWS = ("natural", "stratified")  # the first is the headline: rows as a user has them
LEARNERS = {
    "MAML": (MAMLClassifier, {"inner_lr": 0.1, "inner_steps": 3, "adapt_steps": 10}),
    "ProtoNet": (ProtoNetClassifier, {}),
}
BALANCES = ("balanced", "natural")
SHOT_SETTINGS = (5, (1, 5, 10, 20))
DEFAULT = ("balanced", 5)  # today's defaults of both learners
PRIOR_LEARNER = "MAML"
# "clearly best": lower mean log-loss than the default on every table, ROC-AUC no more than this lower
ROC_AUC_TOLERANCE = 0.005

FULL = {
    "tables": ["adult", "bank", "contraception"],
    "seed": 0,
    "n_splits": 3,  # 3 splits of 4: every group of adult and bank is held out once
    "n_held_out": 4,
    "n_draws": 2,
    "shots": [1, 5, 10, 20],
    "max_query": 200,
    "train_rows_per_group": 400,
    "min_rows_per_class": 30,
    "min_query": 2,
    "meta": {"max_epochs": TABULAR_FULL["meta"]["max_epochs"],
             "n_episodes": TABULAR_FULL["meta"]["n_episodes"],
             "n_queries": TABULAR_FULL["meta"]["classifier"]["n_queries"]},
}
QUICK = {
    **FULL,
    "tables": ["adult"],
    "n_splits": 1,
    "n_held_out": 2,
    "n_draws": 1,
    "shots": [1, 5],
    "max_query": 50,
    "train_rows_per_group": 40,
    "meta": {**FULL["meta"], "max_epochs": 1, "n_episodes": 16},
}


def _shots_text(n_shots):
    return str(n_shots) if np.ndim(n_shots) == 0 else "(" + ", ".join(map(str, n_shots)) + ")"


def row_name(learner, class_balance, n_shots, prior=False):
    """The row of one learner and episode setting.

    >>> row_name("MAML", "natural", (1, 5))
    'MAML, natural, n_shots=(1, 5)'
    >>> row_name("MAML", "balanced", 5, prior=True)
    'MAML + prior, balanced, n_shots=5'
    """
    return f"{learner}{' + prior' if prior else ''}, {class_balance}, n_shots={_shots_text(n_shots)}"


def _rows():
    """{row: (learner, class_balance, n_shots, prior)} in report order."""
    rows = {}
    for learner in LEARNERS:
        for balance in BALANCES:
            for n_shots in SHOT_SETTINGS:
                rows[row_name(learner, balance, n_shots)] = (learner, balance, n_shots, False)
    for balance in BALANCES:
        rows[row_name(PRIOR_LEARNER, balance, DEFAULT[1], prior=True)] = (
            PRIOR_LEARNER, balance, DEFAULT[1], True)
    return rows


def _learners(table, settings, seed):
    meta = settings["meta"]
    learners = {}
    for row, (learner, balance, n_shots, prior) in _rows().items():
        cls, own = LEARNERS[learner]
        params = {"task_column": table["task"], "train_split": None, "random_state": seed,
                  "max_epochs": meta["max_epochs"], "n_episodes": meta["n_episodes"],
                  "n_queries": meta["n_queries"], "n_shots": n_shots, "class_balance": balance,
                  **own}
        if prior:
            params["prior"] = LogisticRegression(max_iter=1000)
        learners[row] = cls(**params)
    return learners


def _scores(model, X, y, positive):
    """ROC-AUC, log-loss, accuracy and base-rate gap of one adapted model on the query."""
    proba = model.predict_proba(X)
    classes = np.asarray(model.classes_)
    p = np.clip(proba[:, np.flatnonzero(classes == positive)[0]], PROBABILITY_FLOOR,
                1 - PROBABILITY_FLOOR)
    is_positive = y == positive
    return (float(roc_auc_score(is_positive, p)),
            float(log_loss(is_positive, p, labels=[False, True])),
            float(accuracy_score(y, classes[proba.argmax(axis=1)])),
            float(abs(p.mean() - is_positive.mean())))


def _run_split(table, held_out, settings, seed, split, shots, log):
    from skmeta import make_task_preprocessor

    task, target, frame = table["task"], table["target"], table["frame"]
    train = _training_rows(table, held_out, settings, seed)
    X_train, y_train = train.drop(columns=target), train[target].to_numpy()
    encoder = make_task_preprocessor(X_train, task).fit(X_train)
    fitted, fit_seconds, failed = _fit_meta(_learners(table, settings, seed),
                                            encoder.transform(X_train), y_train, log)
    episodes = []
    for group_index, group in enumerate(held_out):
        rows = frame[frame[task] == group]
        y_group = rows[target].to_numpy()
        T_group = encoder.transform(rows.drop(columns=target))
        for n_shots in shots:
            if not _gives(y_group, n_shots, "classifier", settings["min_query"]):
                continue
            for draw in DRAWS:
                for repeat in range(settings["n_draws"]):
                    # the tabular benchmark's seeds: the same support sets as its runs
                    rng = np.random.default_rng([seed, split, group_index, n_shots,
                                                 ("stratified", "natural").index(draw), repeat])
                    drawn = _draw(y_group, n_shots, draw, "classifier", rng, settings["max_query"])
                    if drawn is None:
                        continue
                    support, query = drawn
                    scores = {}
                    for name, learner in list(fitted.items()):
                        try:
                            adapted = learner.adapt(T_group.iloc[support], y_group[support])
                            scores[name] = _scores(adapted, T_group.iloc[query], y_group[query],
                                                   table["positive"])
                        except Exception as error:  # noqa: BLE001 - recorded and reported
                            failed[name] = f"adapt: {type(error).__name__}: {error}"
                            log(f"   {name} failed to adapt: {failed[name]}")
                            del fitted[name]
                    episodes.append({"group": group, "shots": n_shots, "draw": draw,
                                     "scores": scores})
        log(f"   {table['name']} split {split}: {group} done")
    for episode in episodes:
        for name in failed:
            episode["scores"].pop(name, None)
    return {"episodes": episodes, "fit_seconds": fit_seconds, "failed": failed,
            "train_rows": len(train)}


def _summarise(table, held_out, splits, shots):
    episodes = [e for result in splits for e in result["episodes"]]
    failed = {name: why for result in splits for name, why in result["failed"].items()}
    rows = [row for row in _rows() if row not in failed]
    names = list(METRICS)
    draws = {}
    for draw in DRAWS:
        cells = {}
        for n_shots in shots:
            cell = [e for e in episodes if e["draw"] == draw and e["shots"] == n_shots]
            if not cell:
                continue
            per_group = np.stack(list(_group_means(cell, rows, len(names)).values()))
            cells[str(n_shots)] = {
                "metrics": {row: {metric: mean_ci(per_group[:, i, j]) for j, metric in enumerate(names)}
                            for i, row in enumerate(rows)},
                "n_groups": int(per_group.shape[0]),
            }
        draws[draw] = cells
    return {
        "task_column": table["task"],
        "target": table["target"],
        "positive": str(table["positive"]),
        "n_rows": int(len(table["frame"])),
        "n_groups": len(table["groups"]),
        "held_out": held_out,
        "rows": rows,
        "failed": failed,
        "train_rows": [int(r["train_rows"]) for r in splits],
        "fit_seconds": {row: mean_ci([r["fit_seconds"][row] for r in splits if row in r["fit_seconds"]])
                        for row in rows},
        "draws": draws,
    }


def _over_shots(cells, row, metric):
    """Mean over shot counts of a row's per-cell means."""
    return float(np.mean([cells[s]["metrics"][row][metric]["mean"] for s in cells]))


def _findings(tables, draw=DRAWS[0]):
    """Per learner: each setting's mean over shots per table and over tables; the best; the verdict."""
    findings = {}
    for learner in list(LEARNERS) + [f"{PRIOR_LEARNER} + prior"]:
        settings = {}
        for row, (name, balance, n_shots, prior) in _rows().items():
            if f"{name}{' + prior' if prior else ''}" != learner:
                continue
            if not all(row in data["rows"] and data["draws"][draw] for data in tables.values()):
                continue
            per_table = {t: {m: _over_shots(data["draws"][draw], row, m) for m in METRICS}
                         for t, data in tables.items()}
            settings[row] = {"class_balance": balance, "n_shots": n_shots, "per_table": per_table,
                             "overall": {m: float(np.mean([v[m] for v in per_table.values()]))
                                         for m in METRICS}}
        if not settings:
            continue
        best_loss = min(settings, key=lambda r: settings[r]["overall"]["log_loss"])
        best_auc = max(settings, key=lambda r: settings[r]["overall"]["roc_auc"])
        default = next((r for r, s in settings.items()
                        if (s["class_balance"], s["n_shots"]) == DEFAULT), None)
        clearly = False
        if default is not None and best_loss != default:
            b, d = settings[best_loss]["per_table"], settings[default]["per_table"]
            clearly = all(b[t]["log_loss"] < d[t]["log_loss"]
                          and b[t]["roc_auc"] >= d[t]["roc_auc"] - ROC_AUC_TOLERANCE for t in b)
        findings[learner] = {"settings": settings, "best_log_loss": best_loss, "best_roc_auc": best_auc,
                             "default": default, "clearly_better_than_default": clearly}
    return findings


def _prior_sentence(findings):
    """Whether natural episodes keep the prior's base rate better than balanced ones."""
    item = findings.get(f"{PRIOR_LEARNER} + prior")
    if item is None:
        return ""
    by_balance = {s["class_balance"]: s for s in item["settings"].values()}
    if set(by_balance) != set(BALANCES):
        return ""
    nat, bal = by_balance["natural"], by_balance["balanced"]
    wins = sum(nat["per_table"][t]["base_rate_gap"] < bal["per_table"][t]["base_rate_gap"]
               for t in nat["per_table"])
    verdict = "keep the base rate better" if wins * 2 > len(nat["per_table"]) else \
        "do not keep the base rate better"
    return (f"With prior=LogisticRegression, natural episodes give a mean base-rate gap of "
            f"{nat['overall']['base_rate_gap']:.3f} against {bal['overall']['base_rate_gap']:.3f} for "
            f"balanced ones (log-loss {nat['overall']['log_loss']:.3f} against "
            f"{bal['overall']['log_loss']:.3f}, ROC-AUC {nat['overall']['roc_auc']:.3f} against "
            f"{bal['overall']['roc_auc']:.3f}): on these tables natural episodes {verdict} "
            f"(a smaller gap on {wins} of {len(nat['per_table'])} table(s)).")


def _best_line(findings, draw):
    parts = [f"{learner}: \"{item['best_log_loss']}\" "
             f"({item['settings'][item['best_log_loss']]['overall']['log_loss']:.3f}) by log-loss, "
             f"\"{item['best_roc_auc']}\" "
             f"({item['settings'][item['best_roc_auc']]['overall']['roc_auc']:.3f}) by ROC-AUC"
             for learner, item in findings.items()]
    return f"With {draw} support draws instead, the best settings are: " + "; ".join(parts) + "."


def _recommendation(findings):
    """One computed line: keep the defaults, or which setting to use on group tables."""
    learners = [learner for learner in LEARNERS if learner in findings]
    if not learners:
        return "No learner ran on every table: no recommendation."
    keys = {learner: (findings[learner]["settings"][findings[learner]["best_log_loss"]]["class_balance"],
                      _shots_text(findings[learner]["settings"][findings[learner]["best_log_loss"]]
                                  ["n_shots"]))
            for learner in learners}
    clearly = all(findings[learner]["clearly_better_than_default"] for learner in learners)
    same = len(set(keys.values())) == 1
    default = f'class_balance="{DEFAULT[0]}", n_shots={DEFAULT[1]}'
    if clearly and same:
        balance, shots = next(iter(keys.values()))
        return (f'**Recommendation:** on group tables, meta-train with class_balance="{balance}", '
                f"n_shots={shots} (both {' and '.join(learners)}: lower log-loss than the defaults "
                f"({default}) on every table, ROC-AUC within {ROC_AUC_TOLERANCE}).")
    if clearly:
        parts = "; ".join(f'{learner}: class_balance="{b}", n_shots={s}' for learner, (b, s) in keys.items())
        return (f"**Recommendation:** each learner does better than the defaults ({default}) on "
                f"every table, but with different settings ({parts}); set them per learner.")
    better = [learner for learner in learners if findings[learner]["clearly_better_than_default"]]
    return (f"**Recommendation:** keep the defaults ({default}): no other setting is better on every "
            f"table by log-loss without losing ROC-AUC for both learners"
            + (f" (only for {', '.join(better)})" if better else "") + ".")


def run(*, quick, log=print):
    """Meta-train each learner with each episode setting and score it on held-out groups.

    Parameters
    ----------
    quick : bool
        Tiny settings (adult only, one split, two held-out groups, one
        draw, 1 and 5 shots, one short epoch): a smoke test.
    log : callable, default=print

    Returns
    -------
    dict
        ``"config"``: the settings; ``"figures"``: ``tables[name]`` with
        ``draws[draw][shots]["metrics"][row][metric]`` (mean ± CI over
        held-out groups), ``skipped`` (table -> why), ``findings`` (per
        learner, each setting's means over shots, the best settings and
        whether one is clearly better than the defaults) and
        ``recommendation``.
    """
    settings = copy.deepcopy(QUICK if quick else FULL)
    seed = settings["seed"]
    figures = {"tables": {}, "skipped": {}}
    for name in settings["tables"]:
        try:
            table = _loader(name)(settings)
        except FileNotFoundError as error:
            figures["skipped"][name] = f"file not found: {error.filename}"
            log(f"   {name}: skipped ({figures['skipped'][name]})")
            continue
        start = time.perf_counter()
        shots = _table_shots(table, settings)
        splits, held_out = [], []
        for split, held in _splits(table["held_out_groups"], n_splits=settings["n_splits"],
                                   n_held_out=settings["n_held_out"], seed=seed):
            held_out.append(held)
            with one_thread():
                splits.append(_run_split(table, held, settings, seed, split, shots, log))
        summary = _summarise(table, held_out, splits, shots)
        summary["seconds"] = round(time.perf_counter() - start, 1)
        figures["tables"][name] = summary
        log(f"   {name}: {summary['seconds']} s")
    figures["findings"] = _findings(figures["tables"])
    figures["findings_stratified"] = _findings(figures["tables"], draw="stratified")
    figures["recommendation"] = _recommendation(figures["findings"])
    config = {**settings, "learners": {k: v[1] for k, v in LEARNERS.items()},
              "prior": "LogisticRegression(max_iter=1000)", "default": list(DEFAULT),
              "roc_auc_tolerance": ROC_AUC_TOLERANCE}
    return {"config": config, "figures": figures}


# ----------------------------------------------------------------- report


def _metric_table(data, metric):
    columns = [(draw, s) for draw in DRAWS for s in data["draws"][draw]]
    lines = ["| row | " + " | ".join(f"{draw} {s}" for draw, s in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for row in data["rows"]:
        cells = [fmt(data["draws"][draw][s]["metrics"][row][metric]) for draw, s in columns]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def _finding_lines(findings, tables):
    names = list(tables)
    lines = ["| row | " + " | ".join(f"{t} log-loss | {t} ROC-AUC" for t in names)
             + " | mean log-loss | mean ROC-AUC | mean base-rate gap |",
             "|---|" + "---|" * (2 * len(names) + 3)]
    sentences = []
    for learner, item in findings.items():
        for row, s in item["settings"].items():
            lines.append(f"| {row} | " + " | ".join(
                f"{s['per_table'][t]['log_loss']:.3f} | {s['per_table'][t]['roc_auc']:.3f}" for t in names)
                + f" | {s['overall']['log_loss']:.3f} | {s['overall']['roc_auc']:.3f} | "
                f"{s['overall']['base_rate_gap']:.3f} |")
        best_loss, best_auc, default = item["best_log_loss"], item["best_roc_auc"], item["default"]
        settings = item["settings"]
        sentence = (f"{learner}: lowest mean log-loss with \"{best_loss}\" "
                    f"({settings[best_loss]['overall']['log_loss']:.3f}), highest mean ROC-AUC with "
                    f"\"{best_auc}\" ({settings[best_auc]['overall']['roc_auc']:.3f})")
        if default is not None:
            sentence += (f"; the defaults (\"{default}\") give "
                         f"{settings[default]['overall']['log_loss']:.3f} "
                         f"and {settings[default]['overall']['roc_auc']:.3f}")
            if best_loss != default:
                sentence += (f"; \"{best_loss}\" is "
                             + ("" if item["clearly_better_than_default"] else "not ")
                             + "better than the defaults by log-loss on every table without losing "
                             f"more than {ROC_AUC_TOLERANCE} ROC-AUC")
        sentences.append(sentence + ".")
    return lines, sentences


def report(result, plot_dir, plot_prefix):
    """The markdown section of the episode-settings benchmark.

    Parameters
    ----------
    result : dict
        What :func:`run` returned (with the runner's record fields).
    plot_dir, plot_prefix
        Unused (no plot); the runner passes them to every benchmark.

    Returns
    -------
    str
        Markdown, starting with ``## Episode settings on group tables``.
    """
    config, figures = result["config"], result["figures"]
    tables, findings = figures["tables"], figures["findings"]
    meta = config["meta"]
    lines = [
        "## Episode settings on group tables",
        "",
        "Which training episodes suit grouped tables? "
        + ", ".join(f"{k}Classifier({', '.join(f'{p}={v}' for p, v in params.items())})"
                    for k, params in config["learners"].items())
        + f" are meta-trained ({meta['max_epochs']} epoch(s) of {meta['n_episodes']} episodes, "
        f"{meta['n_queries']} queries per class) with class_balance \"balanced\" or \"natural\" and "
        "n_shots 5 or (1, 5, 10, 20), and the MAML learner also with "
        f"prior={config['prior']}; leave-groups-out as in the tabular benchmark "
        f"({config['n_splits']} split(s) of {config['n_held_out']} held-out groups, "
        f"{config['n_draws']} support draw(s) per group, shot count and draw kind, at most "
        f"{config['train_rows_per_group']} rows per training group, query = the rest of the group "
        f"up to {config['max_query']} rows). Columns: support draw ('natural': rows at random, as a "
        "user has them; 'stratified': the same number per class) and shots per class. Base-rate "
        "gap: |mean predicted P(positive) − the query's positive rate|. Scores are averaged over a "
        "group's draws, then ± is over held-out groups.",
    ]
    for name, why in figures["skipped"].items():
        lines += ["", f"*Table {name} was skipped: {why}.*"]
    finding_lines, sentences = _finding_lines(findings, tables)
    lines += [
        "",
        "### Summary: natural support draws, mean over shot counts",
        "",
        *finding_lines,
        "",
        *[f"- {s}" for s in sentences],
        "",
        _prior_sentence(findings),
        "",
        _best_line(figures["findings_stratified"], "stratified"),
        "",
        figures["recommendation"],
    ]
    for name, data in tables.items():
        lines += ["", f"### {name}", "",
                  f"{data['n_rows']:,} rows, {data['n_groups']} {data['task_column']} groups, "
                  f"positive label {data['positive']!r}; {sum(len(h) for h in data['held_out'])} "
                  f"groups held out, {data['train_rows'][0]:,} training rows in the first split; "
                  f"{data['seconds']} s."]
        for learner, why in data["failed"].items():
            lines += ["", f"*{learner} failed and is left out: {why}.*"]
        for metric, (label, higher) in METRICS.items():
            lines += ["", f"#### {name}: {label} ({'higher' if higher else 'lower'} is better)", "",
                      *_metric_table(data, metric)]
    return "\n".join(lines)
