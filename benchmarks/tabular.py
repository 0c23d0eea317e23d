"""Tabular few-shot across groups: the no-regret benchmark.

A user with a grouped table (stores, schools, subjects) and a new group with
a few labelled rows can always fall back on a model of those rows alone, or
on a model pooled over every other group. A meta-learner is worth its cost
only if it never does worse than the better of the two, and sometimes does
much better. This benchmark measures exactly that, on real grouped tables
and on semi-synthetic ones whose between-group spread is known.

Tables (one group column each; the groups are the tasks):

- classification: ``adult`` (shipped with skmeta, groups = occupation),
  ``bank`` (groups = job, ``duration`` left out) and ``contraception``
  (groups = district; every district is trained on, only districts with two
  rows of each class are held out);
- regression: ``hsb82`` (groups = school), ``sleepstudy`` (groups =
  subject, 10 rows each, so 1 and 5 shots only) and four semi-synthetic
  tables ``semi s=0`` ... ``semi s=2``: adult's feature rows, encoded and
  standardised, groups = occupation, target ``x @ (w + s * delta_g) + e``
  with ``w, delta_g ~ N(0, I / d)`` and ``e ~ N(0, 0.5**2)``, so ``s`` is
  the size of each group's own coefficients relative to the shared ones.

A table whose file is not found (``shared/data/`` beside the repository) is
skipped with a log line and a note in the report.

Leave-groups-out: for each split, every public skmeta learner of the table's
kind (``skmeta.utils.all_learners``, so learners added later appear, plus a
``prior=`` variant of each learner that takes one) is meta-trained on the
other groups, then adapts to each held-out group from 1, 5, 10 or 20 rows
(per class for classification, in all for regression; fewer where a table
cannot give them) and predicts the rest of the group (up to ``max_query``
rows). The support rows are drawn "stratified" (the same number per class)
or "natural" (at random, as they would arrive). On the same support and
query rows they are compared with models of the support alone, pooled
models of the training groups, those refitted with the support added, and a
headroom model that also sees the other half of the group's own query rows.

Scores are averaged over a group's draws first; means, intervals and paired
differences are then over held-out groups, the unit a user cares about.

Every model sees the same encoding: ``make_task_preprocessor`` fitted on the
training groups only (each at most ``train_rows_per_group`` rows, a random
sample that keeps its base rate); meta-learners get its DataFrame with the
group column, the others its numeric columns. A learner that raises in fit
or adapt is left out of that table, and the error is recorded and reported.

Budget (FULL settings, 2 CPU cores; sklearn, BLAS and torch run on one
thread each, see ``_common.one_thread``). FULL has 2 splits x 5 held-out groups x
2 draws per shot count and draw kind: 160 episodes on adult and bank, 80 on
contraception (2 shot counts), hsb82 and each semi-synthetic table, 40 on
sleepstudy. A full run with 8 classification rows and 8 regression rows
took 1,010 s (17 minutes) on 2 cores shared with other jobs; the record in
``benchmarks/results/tabular.json`` has the time of the committed run. An
episode's cost is mostly the pooled HGB refit and the meta rows'
adaptation. QUICK (adult only, 2 groups, one short epoch, tiny samples)
takes ~25 s.
"""

import copy
import time

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import (
    accuracy_score,
    log_loss,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

from skmeta import make_task_preprocessor
from skmeta.datasets import load_adult
from skmeta.tasks import EpisodeSampler
from skmeta.utils import all_learners

from ._common import ROOT, fmt, mean_ci, one_thread

NAME = "tabular"
SHARED = ROOT.parent / "shared" / "data"

KINDS = ("classifier", "regressor")
# metric -> (label, higher is better); the first is the one learners are ranked by
METRICS = {
    "classifier": {"roc_auc": ("ROC-AUC", True), "log_loss": ("log-loss", False),
                   "accuracy": ("accuracy", True)},
    "regressor": {"mae": ("MAE", False), "rmse": ("RMSE", False), "r2": ("R²", True)},
}
DRAWS = {"classifier": ("stratified", "natural"), "regressor": ("natural",)}
PROBABILITY_FLOOR = 1e-7  # log-loss clips probabilities to [1e-7, 1 - 1e-7]

# Non-meta rows, by family. "headroom" is a ceiling, not a competitor.
LINEAR = {"classifier": "logistic", "regressor": "ridge"}
SUPPORT_ONLY = {kind: (f"{LINEAR[kind]}, support only", "kNN, support only",
                       "random forest, support only") for kind in KINDS}
POOLED = {kind: (f"pooled {LINEAR[kind]}", "pooled HGB") for kind in KINDS}
REFITTED = {kind: tuple(f"{name} + support" for name in POOLED[kind]) for kind in KINDS}
HEADROOM = {kind: f"headroom: pooled {LINEAR[kind]} + support + other query half" for kind in KINDS}
MAJORITY = "majority label of training rows"

# Per-learner settings on top of COMMON (unknown learners get COMMON only).
LEARNER_SETTINGS = {
    "MAMLClassifier": {"inner_lr": 0.1, "inner_steps": 3, "adapt_steps": 10},
    # MAMLRegressor keeps its defaults (chosen on regression families: inner_lr=0.05, lr=0.01).
}
COMMON = ("task_column", "train_split", "random_state", "max_epochs", "n_episodes",
          "n_shots", "n_queries")
PRIORS = {"classifier": lambda: LogisticRegression(max_iter=1000), "regressor": Ridge}

# The goal the report checks, from the figures.
GOAL = {
    "within": {"classifier": 0.005, "regressor": 0.02},  # ROC-AUC points / relative MAE
    "beat_support": {"classifier": 0.05, "regressor": 0.10},
    "beat_support_max_shots": 10,
    "beat_both_tables": ("sleepstudy", "hsb82", "semi s=1", "semi s=2"),
}

FULL = {
    "tables": ["adult", "bank", "contraception", "hsb82", "sleepstudy",
               "semi s=0", "semi s=0.5", "semi s=1", "semi s=2"],
    "seed": 0,
    "n_splits": 2,
    "n_held_out": 5,
    "n_draws": 2,
    "shots": [1, 5, 10, 20],
    "max_query": 200,
    "train_rows_per_group": 400,  # a random sample of larger training groups
    "min_rows_per_class": 30,  # adult and bank: smaller (group, class) cells are dropped
    "min_query": 2,
    "meta": {"max_epochs": 8, "n_episodes": 100,
             "classifier": {"n_shots": 5, "n_queries": 15},
             "regressor": {"n_shots": 10, "n_queries": 10}},
    "semi": {"rows_per_group": 400, "min_rows": 30, "noise": 0.5},
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


# ------------------------------------------------------------------- data


def _table(frame, *, name, kind, task, target, dropped=(), held_out_groups=None, meta=None):
    """One grouped table: the frame and what the benchmark needs to know of it."""
    frame = frame.drop(columns=list(dropped)).dropna(subset=[task]).reset_index(drop=True)
    groups = sorted(frame[task].unique().tolist())
    table = {
        "name": name,
        "kind": kind,
        "frame": frame,
        "task": task,
        "target": target,
        "dropped_columns": list(dropped),
        "groups": groups,
        "held_out_groups": groups if held_out_groups is None else sorted(held_out_groups),
        "meta": meta or {},
        "positive": None,
    }
    if kind == "classifier":
        table["positive"] = frame[target].value_counts().idxmin()  # the minority label
    return table


def _class_counts(frame, task, target):
    return frame.groupby(task)[target].value_counts().unstack(fill_value=0)


def _drop_small_cells(frame, task, target, min_rows_per_class):
    """Keep groups with at least ``min_rows_per_class`` rows of each class."""
    counts = _class_counts(frame, task, target)
    kept = counts.index[(counts.min(axis=1) >= min_rows_per_class) & (counts.shape[1] > 1)]
    return frame[frame[task].isin(kept)]


def _load_adult(settings):
    # shipped with skmeta, so it needs no data folder
    frame = _drop_small_cells(load_adult(), "occupation", "income", settings["min_rows_per_class"])
    return _table(frame, name="adult", kind="classifier", task="occupation", target="income")


def _load_bank(settings):
    frame = pd.read_csv(SHARED / "tabular" / "bank.csv.gz")
    target = frame.columns[-1]
    frame = _drop_small_cells(frame.dropna(subset=["job"]), "job", target,
                              settings["min_rows_per_class"])
    # "duration" (of the call) is known only once the call is over, and the
    # table's authors ask to leave it out of realistic predictive models.
    return _table(frame, name="bank", kind="classifier", task="job", target=target,
                  dropped=("duration",))


def _load_contraception(settings):
    frame = pd.read_csv(SHARED / "groups" / "contraception.csv.gz")
    counts = _class_counts(frame, "district", "use")
    # many districts are tiny: all are trained on, those with 2 rows of each class held out
    held_out = counts.index[counts.min(axis=1) >= 2].tolist()
    return _table(frame, name="contraception", kind="classifier", task="district", target="use",
                  dropped=("woman",), held_out_groups=held_out)


def _load_hsb82(settings):
    frame = pd.read_csv(SHARED / "groups" / "hsb82.csv.gz")
    return _table(frame, name="hsb82", kind="regressor", task="school", target="mAch")


def _load_sleepstudy(settings):
    frame = pd.read_csv(SHARED / "groups" / "sleepstudy.csv.gz")
    # 10 rows a subject: meta-training episodes of 5 support and 5 query rows
    return _table(frame, name="sleepstudy", kind="regressor", task="Subject", target="Reaction",
                  meta={"n_shots": 5, "n_queries": 5})


def semi_synthetic(spread, *, rows_per_group, min_rows, noise, seed):
    """Adult's feature rows with a per-group linear target of known spread.

    Parameters
    ----------
    spread : float
        ``s`` in ``w_g = w + s * delta_g``; 0 makes every group the same.
    rows_per_group : int
        At most this many rows of each occupation (a seeded sample).
    min_rows : int
        Occupations with fewer rows are left out.
    noise : float
        Standard deviation of the Gaussian noise on the target.
    seed : int
        The rows, ``w``, the ``delta_g`` and the noise are the same for every
        ``spread``: the tables differ only in ``s``.

    Returns
    -------
    DataFrame
        The standardised encoded features, ``occupation`` and the target ``y``.
    """
    adult = load_adult().drop(columns="income").dropna(subset=["occupation"])
    sizes = adult["occupation"].value_counts()
    adult = adult[adult["occupation"].isin(sizes.index[sizes >= min_rows])]
    adult = (adult.sample(frac=1.0, random_state=seed).groupby("occupation").head(rows_per_group)
             .sort_index().reset_index(drop=True))
    encoded = make_task_preprocessor(adult, "occupation").fit_transform(adult)
    features = encoded.drop(columns="occupation").astype(float)
    features = features.loc[:, features.std() > 0]
    features = (features - features.mean()) / features.std()
    d = features.shape[1]
    # w and every delta_g on one scale, N(0, I / d): x @ w then has variance about 1 and
    # s is the spread of the groups' own coefficients relative to the shared ones. (With
    # delta_g ~ N(0, I) unscaled, even s = 0.5 would make the group part ~d/4 = 25 times
    # the shared one, beyond anything 20 rows can fit.)
    rng = np.random.default_rng([seed, 2024])
    shared = rng.normal(size=d) / np.sqrt(d)
    groups = sorted(adult["occupation"].unique())
    own = dict(zip(groups, rng.normal(size=(len(groups), d)) / np.sqrt(d), strict=True))
    errors = rng.normal(scale=noise, size=len(adult))
    coefficients = np.stack([shared + spread * own[g] for g in adult["occupation"]])
    frame = features.copy()
    frame["occupation"] = adult["occupation"].to_numpy()
    frame["y"] = np.einsum("ij,ij->i", features.to_numpy(), coefficients) + errors
    return frame


def _loader(name):
    loaders = {"adult": _load_adult, "bank": _load_bank, "contraception": _load_contraception,
               "hsb82": _load_hsb82, "sleepstudy": _load_sleepstudy}
    if name in loaders:
        return loaders[name]
    if name.startswith("semi s="):
        spread = float(name.removeprefix("semi s="))

        def load(settings):
            frame = semi_synthetic(spread, seed=settings["seed"], **settings["semi"])
            return _table(frame, name=name, kind="regressor", task="occupation", target="y")

        return load
    raise ValueError(f"Unknown table {name!r}; choose from {FULL['tables']}.")


def load_tables(settings, log=print):
    """The tables of ``settings["tables"]``, and why any were skipped.

    Returns
    -------
    tables : list of dict
    skipped : dict
        Table name -> reason, for a table whose file is not there.
    """
    tables, skipped = [], {}
    for name in settings["tables"]:
        try:
            tables.append(_loader(name)(settings))
        except FileNotFoundError as error:
            skipped[name] = f"file not found: {error.filename}"
            log(f"   {name}: skipped ({skipped[name]})")
    return tables, skipped


def _gives(y, n_shots, kind, min_query):
    """Whether a group with targets ``y`` gives ``n_shots`` and ``min_query`` query rows."""
    if kind == "regressor":
        return len(y) >= n_shots + min_query
    _, counts = np.unique(y, return_counts=True)
    # stratified: n_shots per class and at least one query row per class
    return len(counts) > 1 and counts.min() >= n_shots + max(1, min_query // len(counts))


def _table_shots(table, settings):
    """The shot counts at least half of the table's held-out groups can give."""
    frame, task, target = table["frame"], table["task"], table["target"]
    targets = [frame.loc[frame[task] == g, target].to_numpy() for g in table["held_out_groups"]]
    return [s for s in settings["shots"]
            if 2 * sum(_gives(y, s, table["kind"], settings["min_query"]) for y in targets)
            >= len(targets)]


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


# --------------------------------------------------------------- episodes


def _draw(y, n_shots, draw, kind, rng, max_query, tries=1000):
    """Support and query positions of one group, or None if none can be drawn.

    "stratified" takes ``n_shots`` rows of each class (``EpisodeSampler``);
    "natural" takes ``n_shots * n_classes`` rows (``n_shots`` for
    regression) at random, redrawn until the support and the query both hold
    every class. The query is the rest, capped at ``max_query`` rows (per
    class in proportion, at least one of each).
    """
    positions = np.arange(len(y))
    if draw == "stratified":
        episode = EpisodeSampler(n_shots=n_shots, n_queries=1).sample(positions, y, rng, query="rest")
        support, query = episode.X_support, episode.X_query
    else:
        classes = np.unique(y) if kind == "classifier" else None
        n_support = n_shots * (len(classes) if kind == "classifier" else 1)
        for _ in range(tries):
            order = rng.permutation(positions)
            support, query = order[:n_support], order[n_support:]
            if kind == "regressor" or (len(np.unique(y[support])) == len(classes)
                                       and len(np.unique(y[query])) == len(classes)):
                break
        else:
            return None
    return support, _cap_query(query, y, kind, rng, max_query)


def _cap_query(query, y, kind, rng, max_query):
    query = rng.permutation(query)
    if len(query) <= max_query:
        return query
    if kind == "regressor":
        return query[:max_query]
    classes, counts = np.unique(y[query], return_counts=True)
    take = np.maximum(1, np.round(counts / counts.sum() * max_query).astype(int))
    return np.concatenate([query[y[query] == c][:k] for c, k in zip(classes, take, strict=True)])


# ---------------------------------------------------------------- metrics


def _classification_scores(proba, classes, y, positive):
    """ROC-AUC, log-loss and accuracy from class probabilities."""
    classes = np.asarray(classes)
    p = np.clip(proba[:, np.flatnonzero(classes == positive)[0]], PROBABILITY_FLOOR,
                1 - PROBABILITY_FLOOR)
    is_positive = y == positive
    return (float(roc_auc_score(is_positive, p)),
            float(log_loss(is_positive, p, labels=[False, True])),
            float(accuracy_score(y, classes[proba.argmax(axis=1)])))


def _regression_scores(predicted, y):
    return (float(mean_absolute_error(y, predicted)), float(root_mean_squared_error(y, predicted)),
            float(r2_score(y, predicted)))


def _scores(model, X, y, table):
    if table["kind"] == "classifier":
        return _classification_scores(model.predict_proba(X), model.classes_, y, table["positive"])
    return _regression_scores(model.predict(X), y)


# --------------------------------------------------------------- learners


def _meta_learners(kind, settings, table, seed):
    """Every public skmeta learner of ``kind``, and its ``prior=`` variant if it has one."""
    meta = settings["meta"]
    values = {"task_column": table["task"], "train_split": None, "random_state": seed,
              "max_epochs": meta["max_epochs"], "n_episodes": meta["n_episodes"],
              **meta[kind], **table["meta"]}
    learners = {}
    for name, cls in all_learners(kind):
        learner = cls()
        accepted = learner.get_params()
        # a learner without one of the COMMON parameters simply does not get it
        common = {key: values[key] for key in COMMON if key in accepted}
        learner.set_params(**common, **LEARNER_SETTINGS.get(name, {}))
        learners[name] = learner
        if "prior" in accepted:
            prior = PRIORS[kind]()
            # A prior brings the pooled base rate; class-balanced episodes would teach the
            # correction to undo it, so classifiers with a prior train on natural episodes.
            episodes = {"class_balance": "natural"} if kind == "classifier" else {}
            learners[f"{name}, prior={type(prior).__name__}"] = clone(learner).set_params(
                prior=prior, **episodes)
    return learners


def _support_only(kind, n_shots, seed):
    # k is odd and at most the shots (per class), so no class wins a vote by a tie-break
    k = min(3, n_shots)
    if kind == "classifier":
        models = (LogisticRegression(max_iter=1000), KNeighborsClassifier(n_neighbors=k),
                  RandomForestClassifier(n_estimators=50, random_state=seed))
    else:
        models = (Ridge(), KNeighborsRegressor(n_neighbors=k),
                  RandomForestRegressor(n_estimators=50, random_state=seed))
    return dict(zip(SUPPORT_ONLY[kind], models, strict=True))


def _pooled(kind, seed):
    if kind == "classifier":
        models = (LogisticRegression(max_iter=2000), HistGradientBoostingClassifier(random_state=seed))
    else:
        models = (Ridge(), HistGradientBoostingRegressor(random_state=seed))
    return dict(zip(POOLED[kind], models, strict=True))


def _cross_fitted(model, E_more, y_more, E_q, y_q, table, rng):
    """Headroom: fit on the training rows, the support and one half of the query; score the other."""
    halves = np.array_split(rng.permutation(len(y_q)), 2)
    if table["kind"] == "classifier":
        out = np.zeros((len(y_q), len(np.unique(y_more))))
    else:
        out = np.zeros(len(y_q))
    for scored, seen in (halves, halves[::-1]):
        fitted = clone(model).fit(np.vstack([E_more, E_q[seen]]), np.r_[y_more, y_q[seen]])
        out[scored] = fitted.predict_proba(E_q[scored]) if table["kind"] == "classifier" \
            else fitted.predict(E_q[scored])
    if table["kind"] == "classifier":
        return _classification_scores(out, fitted.classes_, y_q, table["positive"])
    return _regression_scores(out, y_q)


def _non_meta_scores(kind, n_shots, seed, pooled, linear, table, train, support, query, rng):
    """Support-only, pooled, pooled + support and headroom scores of one episode."""
    (E_train, y_train), (E_s, y_s), (E_q, y_q) = train, support, query
    scores = {}
    for name, model in _support_only(kind, n_shots, seed).items():
        scores[name] = _scores(model.fit(E_s, y_s), E_q, y_q, table)
    for name, model in pooled.items():
        scores[name] = _scores(model, E_q, y_q, table)
    E_more, y_more = np.vstack([E_train, E_s]), np.r_[y_train, y_s]
    for name, model in pooled.items():
        # a fresh fit (no warm start: lbfgs would stop at once at the old optimum)
        scores[f"{name} + support"] = _scores(clone(model).fit(E_more, y_more), E_q, y_q, table)
    scores[HEADROOM[kind]] = _cross_fitted(linear, E_more, y_more, E_q, y_q, table, rng)
    return scores


# -------------------------------------------------------------------- run


def _training_rows(table, held_out, settings, seed):
    frame, task = table["frame"], table["task"]
    train = frame[~frame[task].isin(held_out)]
    cap = settings["train_rows_per_group"]
    if cap:  # a random sample of each large group, which keeps its base rate
        train = train.sample(frac=1.0, random_state=seed).groupby(task).head(cap).sort_index()
    return train


def _fit_meta(learners, T_train, y_train, log):
    """Meta-train each learner; a learner that raises is reported, not fatal."""
    fitted, seconds, failed = {}, {}, {}
    for name, learner in learners.items():
        start = time.perf_counter()
        try:
            fitted[name] = learner.fit(T_train, y_train)
        except Exception as error:  # noqa: BLE001 - recorded in the result and the report
            failed[name] = f"fit: {type(error).__name__}: {error}"
            log(f"   {name} failed to fit: {failed[name]}")
            continue
        seconds[name] = time.perf_counter() - start
    return fitted, seconds, failed


def _run_split(table, held_out, settings, seed, split, shots, log):
    """Every learner on every episode of one split; per-episode scores."""
    kind, task, target = table["kind"], table["task"], table["target"]
    frame = table["frame"]
    train = _training_rows(table, held_out, settings, seed)
    X_train, y_train = train.drop(columns=target), train[target].to_numpy()

    encoder = make_task_preprocessor(X_train, task).fit(X_train)
    T_train = encoder.transform(X_train)
    E_train = T_train.drop(columns=task).to_numpy()
    meta, fit_seconds, failed = _fit_meta(_meta_learners(kind, settings, table, seed),
                                          T_train, y_train, log)
    pooled = {name: model.fit(E_train, y_train) for name, model in _pooled(kind, seed).items()}
    linear = pooled[POOLED[kind][0]]
    if kind == "classifier":
        labels, counts = np.unique(y_train, return_counts=True)
        majority, base_rate = labels[counts.argmax()], float(np.mean(y_train == table["positive"]))

    episodes = []
    for group_index, group in enumerate(held_out):
        rows = frame[frame[task] == group]
        y_group = rows[target].to_numpy()
        T_group = encoder.transform(rows.drop(columns=target))
        E_group = T_group.drop(columns=task).to_numpy()
        for n_shots in shots:
            if not _gives(y_group, n_shots, kind, settings["min_query"]):
                continue
            for draw in DRAWS[kind]:
                for repeat in range(settings["n_draws"]):
                    # one support set per (split, group, shots, draw), shared by every learner
                    rng = np.random.default_rng([seed, split, group_index, n_shots,
                                                 DRAWS[kind].index(draw), repeat])
                    drawn = _draw(y_group, n_shots, draw, kind, rng, settings["max_query"])
                    if drawn is None:
                        continue
                    support, query = drawn
                    y_s, y_q = y_group[support], y_group[query]
                    E_s, E_q = E_group[support], E_group[query]
                    scores = {}
                    for name, learner in list(meta.items()):
                        try:
                            adapted = learner.adapt(T_group.iloc[support], y_s)
                            scores[name] = _scores(adapted, T_group.iloc[query], y_q, table)
                        except Exception as error:  # noqa: BLE001 - recorded and reported
                            failed[name] = f"adapt: {type(error).__name__}: {error}"
                            log(f"   {name} failed to adapt: {failed[name]}")
                            del meta[name]
                    scores.update(_non_meta_scores(kind, n_shots, seed, pooled, linear, table,
                                                   (E_train, y_train), (E_s, y_s), (E_q, y_q), rng))
                    if kind == "classifier":
                        constant = np.clip(np.full(len(y_q), base_rate), PROBABILITY_FLOOR,
                                           1 - PROBABILITY_FLOOR)
                        scores[MAJORITY] = (0.5, float(log_loss(y_q == table["positive"], constant,
                                                                labels=[False, True])),
                                            float(np.mean(y_q == majority)))
                    episodes.append({"group": group, "shots": n_shots, "draw": draw,
                                     "positive_rate": (float(np.mean(y_q == table["positive"]))
                                                       if kind == "classifier" else None),
                                     "scores": scores})
        log(f"   {table['name']} split {split}: {group} done")
    # a learner that failed part-way is left out of the whole split
    for episode in episodes:
        for name in failed:
            episode["scores"].pop(name, None)
    return {"episodes": episodes, "fit_seconds": fit_seconds, "failed": failed,
            "train_rows": len(train)}


# -------------------------------------------------------------- summarise


def _group_means(episodes, rows, n_metrics):
    """Per held-out group, the mean over its draws: {group: array (rows, metrics)}."""
    by_group = {}
    for episode in episodes:
        by_group.setdefault(episode["group"], []).append(
            [episode["scores"][row] for row in rows])
    return {group: np.mean(np.array(values).reshape(len(values), len(rows), n_metrics), axis=0)
            for group, values in by_group.items()}




def _summarise_cell(episodes, rows, meta_rows, kind):
    """Metrics, the strongest non-meta row and paired differences of one (draw, shots) cell."""
    metrics = METRICS[kind]
    names = list(metrics)
    per_group = _group_means(episodes, rows, len(names))
    stacked = np.stack(list(per_group.values()))  # (groups, rows, metrics)
    summary = {row: {metric: mean_ci(stacked[:, i, j]) for j, metric in enumerate(names)}
               for i, row in enumerate(rows)}
    higher = next(iter(metrics.values()))[1]
    competitors = SUPPORT_ONLY[kind] + POOLED[kind] + REFITTED[kind]
    strongest = (max if higher else min)(competitors, key=lambda row: summary[row][names[0]]["mean"])
    other = rows.index(strongest)
    paired = {meta: {metric: mean_ci(stacked[:, rows.index(meta), j] - stacked[:, other, j])
                     for j, metric in enumerate(names)} for meta in meta_rows}
    return {"metrics": summary, "strongest": strongest, "paired": paired,
            "n_groups": len(per_group)}


def _summarise(table, held_out, splits, shots):
    """Mean ± CI over held-out groups per draw, shots, row and metric; paired differences."""
    kind = table["kind"]
    episodes = [e for result in splits for e in result["episodes"]]
    failed = {name: why for result in splits for name, why in result["failed"].items()}
    rows = [row for row in episodes[0]["scores"] if all(row in e["scores"] for e in episodes)]
    meta_rows = [row for row in rows if row in splits[0]["fit_seconds"]]
    draws = {}
    for draw in DRAWS[kind]:
        cells = {}
        for n_shots in shots:
            cell = [e for e in episodes if e["draw"] == draw and e["shots"] == n_shots]
            if cell:
                cells[str(n_shots)] = _summarise_cell(cell, rows, meta_rows, kind)
        draws[draw] = cells
    frame, task = table["frame"], table["task"]
    summary = {
        "kind": kind,
        "task_column": task,
        "target": table["target"],
        "positive": None if table["positive"] is None else str(table["positive"]),
        "dropped_columns": table["dropped_columns"],
        "n_rows": int(len(frame)),
        "n_groups": len(table["groups"]),
        "n_held_out_eligible": len(table["held_out_groups"]),
        "held_out": held_out,
        "shots": [s for s in shots if any(str(s) in cells for cells in draws.values())],
        "rows": rows,
        "meta_rows": meta_rows,
        "failed": failed,
        "train_rows": [int(result["train_rows"]) for result in splits],
        "meta_fit_seconds": {name: mean_ci([r["fit_seconds"][name] for r in splits
                                            if name in r["fit_seconds"]]) for name in meta_rows},
        "draws": draws,
    }
    if kind == "classifier":
        summary["query_positive_rate"] = mean_ci([e["positive_rate"] for e in episodes])
    return summary


def _mean(cells, s, row, metric):
    return cells[s]["metrics"][row][metric]["mean"]


def _best_row(cells, rows, s, metric, higher):
    return (max if higher else min)(rows, key=lambda row: _mean(cells, s, row, metric))


def _check(cells, learner, criterion, shots, references, passes, metric):
    """One goal criterion: the learner against a reference row at each shot count."""
    details = [{"shots": s, "value": _mean(cells, s, learner, metric), "reference": references[s],
                "reference_value": _mean(cells, s, references[s], metric)} for s in shots]
    for detail in details:
        detail["met"] = bool(passes(detail["value"], detail["reference_value"]))
    return {"criterion": criterion, "metric": metric, "learner": learner, "details": details,
            "met": all(detail["met"] for detail in details)}


def _goal_checks(name, kind, cells, meta_rows):
    """The goal's criteria for one (table, draw), on its best skmeta learner."""
    metric, (label, higher) = next(iter(METRICS[kind].items()))
    sign = 1 if higher else -1
    best = max(meta_rows, key=lambda row: np.mean([sign * _mean(cells, s, row, metric) for s in cells]))
    shots, few = list(cells), [s for s in cells if int(s) <= GOAL["beat_support_max_shots"]]
    strongest = {s: cells[s]["strongest"] for s in shots}
    support_only = {s: _best_row(cells, SUPPORT_ONLY[kind], s, metric, higher) for s in shots}
    within, margin = GOAL["within"][kind], GOAL["beat_support"][kind]
    if kind == "classifier":
        checks = [
            _check(cells, best, f"within {within} {label} of the strongest non-meta model", shots,
                   strongest, lambda v, a: v >= a - within, metric),
            _check(cells, best, "lower log-loss than the strongest non-meta model", shots, strongest,
                   lambda v, a: v < a, "log_loss"),
            _check(cells, best, f"beats the best support-only model by ≥ {margin} {label} at ≤ "
                   f"{GOAL['beat_support_max_shots']} shots", few, support_only,
                   lambda v, a: v >= a + margin, metric),
        ]
    else:
        checks = [
            _check(cells, best, f"{label} within {within:.0%} of the strongest non-meta model", shots,
                   strongest, lambda v, a: v <= a * (1 + within), metric),
            _check(cells, best, f"{label} ≥ {margin:.0%} below the best support-only model at ≤ "
                   f"{GOAL['beat_support_max_shots']} shots", few, support_only,
                   lambda v, a: v <= a * (1 - margin), metric),
        ]
    if name in GOAL["beat_both_tables"]:
        pooled = {s: _best_row(cells, POOLED[kind] + REFITTED[kind], s, metric, higher) for s in shots}
        better = (lambda v, a: v > a) if higher else (lambda v, a: v < a)
        checks += [_check(cells, best, f"better {label} than every pooled model", shots, pooled,
                          better, metric),
                   _check(cells, best, f"better {label} than every support-only model", shots,
                          support_only, better, metric)]
    return [check for check in checks if check["details"]]


def _goal_rows(tables):
    """The goal, criterion by criterion, for every (table, draw): a list of dicts."""
    return [{"table": name, "draw": draw, **check}
            for name, data in tables.items() if data["meta_rows"]
            for draw, cells in data["draws"].items() if cells
            for check in _goal_checks(name, data["kind"], cells, data["meta_rows"])]


def run(*, quick, log=print):
    """Measure few-shot learners against models without meta-learning, on held-out groups.

    Parameters
    ----------
    quick : bool
        Tiny settings (adult only, one split, two held-out groups, one draw,
        1 and 5 shots, one short epoch, a few rows per group): a smoke test,
        not a measurement.
    log : callable, default=print
        Where progress lines go.

    Returns
    -------
    dict
        ``"config"``: the settings and what each row is; ``"figures"``:
        ``tables[name]`` with the table's description, ``rows`` (the
        learners), ``meta_rows``, ``failed`` (learner -> error, for a
        learner that raised) and
        ``draws[draw][shots]`` = ``{"metrics": {row: {metric: stat}},
        "strongest": row, "paired": {meta_row: {metric: stat}},
        "n_groups": int}``, each stat a :func:`~benchmarks._common.mean_ci`
        over held-out groups; ``skipped`` (table -> why); ``goal`` (one dict
        per table, draw and criterion).
    """
    settings = copy.deepcopy(QUICK if quick else FULL)
    seed = settings["seed"]
    tables, skipped = load_tables(settings, log)
    figures = {"tables": {}, "skipped": skipped}
    for table in tables:
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
        figures["tables"][table["name"]] = summary
        log(f"   {table['name']}: {summary['seconds']} s")
    figures["goal"] = _goal_rows(figures["tables"])
    config = {**settings, "goal": GOAL, "learner_settings": LEARNER_SETTINGS,
              "rows": _row_descriptions()}
    return {"config": config, "figures": figures}


def _row_descriptions():
    return {
        "skmeta learners": "every learner of skmeta.utils.all_learners(kind) with COMMON settings "
                           "(and LEARNER_SETTINGS), meta-trained once per split on the training "
                           "groups, adapted per episode; 'prior=' rows: the same learner with a "
                           "LogisticRegression/Ridge prior, when it takes one (classifiers then on "
                           "episodes in the groups' own class proportions, class_balance='natural')",
        "support only": "logistic regression / ridge, kNN (k = min(3, shots)), random forest "
                        "(50 trees), fitted on the support rows alone",
        "pooled": "logistic regression / ridge and HistGradientBoosting on the training groups' "
                  "rows, not adapted; '+ support': refitted from scratch with the support rows added",
        "headroom": "the pooled linear model refitted with the training rows, the support and one "
                    "half of the group's query rows, predicting the other half (2-fold cross-fitting)",
        MAJORITY: "classification only: the training rows' base rate (ROC-AUC 0.5)",
    }


# ----------------------------------------------------------------- report


def _shots_label(n_shots, kind="classifier"):
    unit = " per class" if kind == "classifier" else ""
    return f"{n_shots} shot{'s' if int(n_shots) > 1 else ''}{unit}"


def _cell(cells, s, row, metric):
    if s not in cells:
        return "—"
    return fmt(cells[s]["metrics"][row][metric])


def _metric_table(data, cells, shots, metric):
    lines = ["| learner | " + " | ".join(_shots_label(s, data["kind"]) for s in shots) + " |",
             "|---|" + "---|" * len(shots)]
    for row in data["rows"]:
        name = f"**{row}**" if row in data["meta_rows"] else row
        lines.append(f"| {name} | " + " | ".join(_cell(cells, s, row, metric) for s in shots) + " |")
    return lines


def _ordinal(n):
    return f"{n}{'th' if 10 <= n % 100 < 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _ranked(cells, s, rows, metric, higher):
    return sorted(rows, key=lambda r: (-1 if higher else 1) * cells[s]["metrics"][r][metric]["mean"])


def _metric_sentence(data, cells, metric):
    kind = data["kind"]
    label, higher = METRICS[kind][metric]
    contenders = [r for r in data["rows"] if r != HEADROOM[kind] and r != MAJORITY]
    best, ranks = [], []
    for s in cells:
        order = _ranked(cells, s, contenders, metric, higher)
        best.append(f"{_shots_label(s, kind)}: {order[0]} "
                    f"({cells[s]['metrics'][order[0]][metric]['mean']:.3f})")
        if data["meta_rows"]:
            meta = next(r for r in order if r in data["meta_rows"])
            ranks.append(f"{meta} {_ordinal(order.index(meta) + 1)} of {len(order)} at "
                         f"{_shots_label(s, kind)}")
    sentence = f"{'Highest' if higher else 'Lowest'} {label} apart from the headroom row: " \
               f"{'; '.join(best)}."
    if ranks:
        sentence += f" The best skmeta learner ranks {', '.join(ranks)}."
    return sentence


def _paired_lines(tables):
    lines = ["| table | draw | shots | skmeta learner | strongest non-meta | "
             "Δ primary metric | Δ second metric |", "|---|---|---|---|---|---|---|"]
    verdicts = {}
    for name, data in tables.items():
        first, second = list(METRICS[data["kind"]])[:2]
        higher = METRICS[data["kind"]][first][1]
        for draw, cells in data["draws"].items():
            for s, cell in cells.items():
                for meta, diff in cell["paired"].items():
                    lines.append(f"| {name} | {draw} | {s} | {meta} | {cell['strongest']} | "
                                 f"{METRICS[data['kind']][first][0]} {fmt(diff[first])} | "
                                 f"{METRICS[data['kind']][second][0]} {fmt(diff[second])} |")
                    verdicts.setdefault(meta, []).append(_verdict(diff[first], higher))
    return lines, verdicts


def _verdict(stat, higher=True):
    low, high = stat["mean"] - stat["ci"], stat["mean"] + stat["ci"]
    if (low > 0) if higher else (high < 0):
        return "win"
    if (high < 0) if higher else (low > 0):
        return "loss"
    return "tie"


def _why(item, tables):
    """A computed reason for a missed criterion, from the headroom and support-only rows.

    Against a pooled reference, the headroom row (the pooled linear model
    given half of the group's own query rows as well) says how much any
    few-shot method could gain; against a support-only reference, the gap
    between the learner and the pooled rows says whether the pool helps.
    """
    data = tables[item["table"]]
    cells, kind, metric = data["draws"][item["draw"]], data["kind"], item["metric"]
    higher = METRICS[kind][metric][1]
    failing = [d for d in item["details"] if not d["met"]]
    if not failing:
        return ""
    if "support-only" in item["criterion"]:
        sign = 1 if higher else -1
        pooled = [max((_mean(cells, d["shots"], row, metric) for row in POOLED[kind]),
                      key=lambda v: sign * v) for d in failing]
        if all(sign * (p - d["reference_value"]) <= 0 for p, d in zip(pooled, failing, strict=True)):
            return (" Why: the groups differ so much that the pool adds little here: the best pooled "
                    "model scores " + ", ".join(f"{v:.3f}" for v in pooled) + " at those shots, no "
                    "better than the support set alone, so a learner that starts from the pool "
                    "must win by adapting alone.")
        return (" Why: the pool is better than the support set alone here (best pooled model "
                + ", ".join(f"{v:.3f}" for v in pooled) + "), but the learner keeps too little of "
                "that advantage after adapting.")
    if all(d["reference"] in SUPPORT_ONLY[kind] for d in failing):
        return (" Why: the strongest model here is fitted on the support set alone (the groups "
                "differ from the pool more than the pool helps), and the learner does not adapt "
                "as far from its start as that model fits the support.")
    failing = [d for d in failing if d["reference"] not in SUPPORT_ONLY[kind]]
    headroom = [_mean(cells, d["shots"], HEADROOM[kind], metric) for d in failing]
    gains = [(h - d["reference_value"]) * (1 if higher else -1)
             for h, d in zip(headroom, failing, strict=True)]
    if max(gains) <= 0.01 * max(abs(d["reference_value"]) for d in failing):
        reason = ("the groups differ from the pool too little for any few-shot method to gain: "
                  "the headroom row, which also sees half of each group's own query rows, is at "
                  f"best {max(gains):+.3f} better than the reference; a learner can at most match "
                  "the pool here, and this one starts below it and cannot make that up from a few "
                  "rows")
    else:
        reason = ("there is room to gain (the headroom row is up to "
                  f"{max(gains):+.3f} better than the reference), but the learner does not reach "
                  "the pooled model's level from so few rows")
    return f" Why: {reason}."


def _goal_lines(goal, tables):
    lines = ["| table | draw | criterion | skmeta learner | result | numbers (learner vs reference) |",
             "|---|---|---|---|---|---|"]
    misses = []
    for item in goal:
        numbers = "; ".join(f"{d['shots']}: {d['value']:.3f} vs {d['reference_value']:.3f} "
                            f"({d['reference']})" for d in item["details"])
        lines.append(f"| {item['table']} | {item['draw']} | {item['criterion']} | {item['learner']} "
                     f"| {'met' if item['met'] else '**missed**'} | {numbers} |")
        if not item["met"]:
            failing = [d for d in item["details"] if not d["met"]]
            where = ", ".join(f"{d['shots']} shot(s) ({d['value']:.3f} against "
                              f"{d['reference']} {d['reference_value']:.3f})" for d in failing)
            misses.append(f"- {item['table']} ({item['draw']} draws): {item['learner']} misses "
                          f"\"{item['criterion']}\" at {where}.{_why(item, tables)}")
    n_met = sum(item["met"] for item in goal)
    summary = f"{n_met} of {len(goal)} (table, draw, criterion) checks are met."
    return lines, misses, summary


def _plot(tables, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(name, draw, cells) for name, data in tables.items()
              for draw, cells in data["draws"].items() if cells]
    n_cols = min(3, len(panels))
    n_rows = -(-len(panels) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(5.5 * n_cols, 4 * n_rows + 1.5), squeeze=False)
    handles = {}
    for ax, (name, draw, cells) in zip(axes.flat, panels, strict=False):
        data = tables[name]
        metric, (label, _) = next(iter(METRICS[data["kind"]].items()))
        shots = list(cells)
        x = np.array([int(s) for s in shots], dtype=float)
        rows = [r for r in data["rows"] if r != MAJORITY]
        all_means = []
        for i, row in enumerate(rows):
            means = np.array([cells[s]["metrics"][row][metric]["mean"] for s in shots])
            cis = np.array([cells[s]["metrics"][row][metric]["ci"] for s in shots])
            all_means.append(means)
            meta = row in data["meta_rows"]
            shift = 1.012 ** (i - (len(rows) - 1) / 2)  # keeps the bars apart
            handles[row] = ax.errorbar(x * shift, means, yerr=cis, fmt="-" if meta else "--",
                                       marker="o", markersize=3, capsize=2, elinewidth=0.6,
                                       linewidth=2.2 if meta else 0.9,
                                       color=plt.get_cmap("tab20")(i % 20))
        # the means set the scale; intervals over a few groups may run off it
        low, high = np.min(all_means), np.max(all_means)
        pad = 0.25 * (high - low) + 1e-6
        ax.set_ylim(low - pad, high + pad)
        ax.set(title=f"{name} ({draw}), held-out {data['task_column']}", xscale="log",
               xlabel="shots per class" if data["kind"] == "classifier" else "shots",
               ylabel=f"query {label}")
        ax.set_xticks(x, shots)
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=4, fontsize=7,
               frameon=False)
    fig.tight_layout(rect=(0, 0.12 if len(handles) > 8 else 0.08, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _describe(name, data):
    text = (f"{name}: {data['kind']}, {data['n_rows']:,} rows, {data['n_groups']} "
            f"{data['task_column']} groups ({data['n_held_out_eligible']} can be held out), "
            f"target {data['target']!r}")
    if data["kind"] == "classifier":
        text += (f", positive label {data['positive']!r} "
                 f"({data['query_positive_rate']['mean']:.1%} of query rows)")
    if data["dropped_columns"]:
        text += f", column(s) {', '.join(data['dropped_columns'])} left out"
    held = sum(len(h) for h in data["held_out"])
    return (text + f"; {held} groups held out over {len(data['held_out'])} split(s), "
            f"{data['train_rows'][0]:,} training rows in the first split, {data['seconds']} s.")


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
        Markdown, starting with ``## Tabular few-shot across groups``: the
        goal and whether each table meets it, then per table and draw the
        mean ± CI of every metric per learner and shot count, and the paired
        differences to the strongest model without meta-learning.
    """
    config, figures = result["config"], result["figures"]
    if "tables" not in figures:  # a record of the earlier adult/bank-only benchmark
        return ("## Tabular few-shot across groups\n\n*The stored result was measured by an earlier "
                "version of this benchmark (datasets " + ", ".join(figures.get("datasets", {}))
                + "), whose figures this report no longer reads; rerun "
                "`python -m benchmarks run tabular` to measure the current one.*")
    tables = figures["tables"]
    plot_dir.mkdir(parents=True, exist_ok=True)
    _plot(tables, plot_dir / "tabular_shots.png")
    meta = config["meta"]
    goal = config["goal"]
    lines = [
        "## Tabular few-shot across groups",
        "",
        f"Grouped tables, leave-groups-out: {config['n_splits']} split(s), each holding out "
        f"{config['n_held_out']} groups. Per split every skmeta learner of the table's kind is "
        f"meta-trained once on the other groups ({meta['max_epochs']} epoch(s) of "
        f"{meta['n_episodes']} episodes; classification episodes of "
        f"{meta['classifier']['n_shots']} shots and {meta['classifier']['n_queries']} queries per "
        f"class, regression {meta['regressor']['n_shots']} and {meta['regressor']['n_queries']} in "
        f"all), after a ColumnTransformer fitted on the training groups only (at most "
        f"{config['train_rows_per_group']} rows per training group, a random sample). For each "
        f"held-out group and shot count, {config['n_draws']} seeded support set(s) per draw are "
        "drawn, the same for every learner: 'stratified' (the same number of rows of each class) "
        "and 'natural' (rows at random, as they come; the only kind for regression). The query "
        f"is the rest of the group (up to {config['max_query']} rows). Scores are averaged over "
        "a group's draws, then ± is over held-out groups. Rows: "
        + "; ".join(f"*{k}*: {v}" for k, v in config["rows"].items()) + ".",
    ]
    for name, why in figures["skipped"].items():
        lines += ["", f"*Table {name} was skipped: {why}.*"]
    for name, data in tables.items():
        for learner, why in data["failed"].items():
            lines += ["", f"*{learner} failed on {name} and is left out there: {why}.*"]

    goal_lines, misses, goal_summary = _goal_lines(figures["goal"], figures["tables"])
    lines += [
        "",
        "### Goal: no regret",
        "",
        "On every table the best skmeta learner (the one with the best mean primary metric over "
        f"shot counts) should be within {goal['within']['classifier']} ROC-AUC (or "
        f"{goal['within']['regressor']:.0%} MAE) of the strongest model without meta-learning or "
        "better, have a lower log-loss than it, and beat the best support-only model by "
        f"{goal['beat_support']['classifier']} ROC-AUC (or {goal['beat_support']['regressor']:.0%} "
        f"MAE) at ≤ {goal['beat_support_max_shots']} shots; on "
        f"{', '.join(goal['beat_both_tables'])} it should beat both the pooled and the "
        "support-only models. Checked on the means, at every shot count named.",
        "",
        *goal_lines,
        "",
        goal_summary,
        *([""] + misses if misses else []),
        "",
        f"![primary metric against shots]({plot_prefix}tabular_shots.png)",
    ]
    for name, data in tables.items():
        lines += ["", f"### {name}", "", _describe(name, data)]
        for draw, cells in data["draws"].items():
            shots = list(cells)
            for metric, (label, higher) in METRICS[data["kind"]].items():
                lines += ["", f"#### {name}, {draw} draws: {label} "
                              f"({'higher' if higher else 'lower'} is better)", "",
                          *_metric_table(data, cells, shots, metric), "",
                          _metric_sentence(data, cells, metric)]

    paired, verdicts = _paired_lines(tables)
    tallies = [f"{meta} {v.count('win')} win(s), {v.count('tie')} tie(s) and "
               f"{v.count('loss')} loss(es)" for meta, v in verdicts.items()]
    lines += [
        "",
        "### skmeta learners against the strongest model without meta-learning",
        "",
        "Paired differences over held-out groups (learner minus the support-only, pooled or "
        "pooled + support model with the best mean primary metric, ROC-AUC or MAE, in that "
        "cell); an interval that excludes 0 is a win or a loss.",
        "",
        *paired,
        "",
        f"In the primary metric over the {sum(len(c) for d in tables.values() for c in d['draws'].values())} "
        f"(table, draw, shots) cells: {'; '.join(tallies) or 'no skmeta learner ran'}.",
    ]
    return "\n".join(lines)
