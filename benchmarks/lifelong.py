"""Lifelong meta-learning: task families that arrive one after another.

Protocol. A stream of task families arrives in stages: stage 0 is ``fit`` on
family 0's training tasks, stage ``k`` (1, 2, ...) is ``partial_fit`` on
family ``k``'s. After each stage the learner is scored on the held-out tasks
of every family, seen or not yet seen: the episodic accuracy (adapt on a
support set of ``n_shots`` rows per class, predict ``n_queries`` query rows
per class), averaged over fixed episodes drawn once per seed and shared by
every control. This fills the matrix ``R[stage][family]`` of Lopez-Paz and
Ranzato (GEM, 2017), from which come

- the average final score, ``mean_j R[T][j]`` (``T`` the last stage);
- backward transfer, ``BWT = mean_{j<T} (R[T][j] - R[j][j])``; forgetting is
  ``-BWT``;
- forward transfer, ``FWT = mean_{j>=1} (R[j-1][j] - b_j)``, with ``b_j`` the
  score on family ``j`` of the learner at its initial weights: the same
  estimator and ``random_state`` meta-trained with every weight frozen
  (skorch's ``Freezer``), since ``max_epochs=0`` is refused, so that its
  weights are those every control starts from.

Streams.

- ``blobs``: 5 families of :func:`~skmeta.datasets.make_blob_tasks` (2 classes,
  20 features, 2 informative, noise 3), family ``k`` rotated by its own fixed
  random orthogonal matrix, so that each family's classes live in its own
  plane and the other families' planes are noise to it: a learner that
  meta-trains on family ``k`` learns to ignore the planes the others need.
  30 training and 10 held-out tasks per family, 4 episodes per held-out task.
- ``adult``: the 12 occupations of :func:`~skmeta.datasets.load_adult_tasks`
  (features one-hot encoded and scaled by a preprocessor fitted on the first
  batch's training rows), shuffled per seed and arriving in 4 batches of 3;
  30% of each occupation's rows are held out and give 12 episodes each.

Controls, at equal compute per stage (the same ``max_epochs`` and
``n_episodes`` in every stage and every control):

- ``naive``: ``partial_fit`` with ``replay_size=0, ewc=0``;
- ``replay``: ``partial_fit`` with the default reservoir, ``replay_size=100``;
- ``penalty``: ``partial_fit`` with ``replay_size=0`` and ``ewc`` of 10 for
  ProtoNet and 1 for MAML (:data:`EWC`). Each was chosen on the blob stream
  with seed 100 (not a reported seed) as the value of least forgetting among
  those whose average final score was within 0.01 of the best: ProtoNet,
  ``ewc`` 1 / 3 / 10 gave average 0.655 / 0.661 / 0.658 and BWT -0.163 /
  -0.094 / -0.059 (naive: 0.595, -0.334); MAML, ``ewc`` 0.3 / 1 / 3 gave
  0.669 / 0.665 / 0.641 and -0.032 / +0.009 / +0.015 (naive: 0.645, -0.109);
- ``refit``: a fresh ``fit`` on the training tasks of every family seen so
  far, after each stage, with ``k + 1`` times a stage's epochs at stage
  ``k``: joint training on everything seen, each family given as many
  episodes as its own stage gave it, the upper bound the goal compares
  with (at more compute: the sum over stages is 15 stages' worth for 5
  families).

Learners: :class:`~skmeta.ProtoNetClassifier` and
:class:`~skmeta.MAMLClassifier`, ``train_split=None``, on one torch thread;
3 seeds (the seed draws the tasks, the adult arrival order, the episodes and
the initial weights). Budget of each stage, every control alike: blobs, 5
epochs of 200 episodes (meta-batches of 8); adult, 3 epochs of 200 episodes;
each stage's seconds are recorded. Sizing, one seed of FULL on one torch
thread: 143 s on a lightly loaded 2-core machine (with MAML at 3 and 2
epochs), 359 s on the same machine under a load of 3 to 5 processes; per
stage under that load, ProtoNet 0.6 to 1.7 s (blobs) and 1.1 to 2.8 s
(adult), MAML 2.3 to 5.2 s and 1.4 to 4.8 s. Scoring takes most of MAML's
time (10 adaptation steps per episode, 200 episodes per evaluation on the
blobs). FULL is 3 seeds: about 8 minutes on a free core.

Goals, on both streams and for each learner: the forgetting of ``replay`` is
at most a third of ``naive``'s, and ``replay``'s average final score is at
least 0.95 of ``refit``'s. Each is judged on its per-seed margin
(``forgetting_naive / 3 - forgetting_replay`` and
``average_replay - 0.95 * average_refit``) by :func:`benchmarks._common.verdict`
against 0.

QUICK: 3 blob families and 2 adult batches of 2 occupations, one seed, one
short epoch: seconds, a smoke test.
"""

import time

import numpy as np
from skorch.callbacks import Freezer

from skmeta import MAMLClassifier, ProtoNetClassifier, Task, TaskCollection, make_task_preprocessor
from skmeta.datasets import load_adult_tasks, make_blob_tasks

from ._common import fmt, mean_ci, one_thread, verdict

NAME = "lifelong"
#: The ``penalty`` control's ``ewc``, per learner (see the module docstring).
EWC = {"ProtoNetClassifier": 10.0, "MAMLClassifier": 1.0}
#: ``partial_fit`` parameters of each control (``ewc=None``: the learner's
#: :data:`EWC`); ``refit`` fits anew after each stage.
CONTROLS = {
    "naive": {"replay_size": 0, "ewc": 0.0},
    "replay": {"replay_size": 100, "ewc": 0.0},
    "penalty": {"replay_size": 0, "ewc": None},
    "refit": {"replay_size": 0, "ewc": 0.0},
}
LEARNERS = {"ProtoNetClassifier": ProtoNetClassifier, "MAMLClassifier": MAMLClassifier}
#: Goals: replay's forgetting at most this fraction of naive's; its average at least
#: this fraction of refit's.
FORGETTING_FRACTION, AVERAGE_FRACTION = 1 / 3, 0.95


def _settings(quick):
    if quick:
        return {
            "seeds": [0],
            "blobs": {"n_families": 3, "n_train_tasks": 6, "n_test_tasks": 2, "n_test_episodes": 2,
                      "n_features": 20, "noise": 3.0},
            "adult": {"n_batches": 2, "per_batch": 2, "held_out": 0.3, "n_test_episodes": 2},
            "budgets": {kind: {"ProtoNetClassifier": {"max_epochs": 1, "n_episodes": 16},
                               "MAMLClassifier": {"max_epochs": 1, "n_episodes": 16}}
                        for kind in ("blobs", "adult")},
            "n_shots": 5, "n_queries": 15,
        }
    return {
        "seeds": [0, 1, 2],
        "blobs": {"n_families": 5, "n_train_tasks": 30, "n_test_tasks": 10, "n_test_episodes": 4,
                  "n_features": 20, "noise": 3.0},
        "adult": {"n_batches": 4, "per_batch": 3, "held_out": 0.3, "n_test_episodes": 12},
        "budgets": {"blobs": {"ProtoNetClassifier": {"max_epochs": 5, "n_episodes": 200},
                              "MAMLClassifier": {"max_epochs": 5, "n_episodes": 200}},
                    "adult": {"ProtoNetClassifier": {"max_epochs": 3, "n_episodes": 200},
                              "MAMLClassifier": {"max_epochs": 3, "n_episodes": 200}}},
        "n_shots": 5, "n_queries": 15,
    }


# -------------------------------------------------------------------- metrics


def average_score(R):
    """Average final score: the mean over families of the last stage's scores.

    Parameters
    ----------
    R : array-like of shape (n_stages, n_families)
        ``R[i][j]``: the score on family ``j`` after stage ``i``.

    Returns
    -------
    float

    Examples
    --------
    >>> from benchmarks.lifelong import average_score
    >>> average_score([[0.9, 0.5], [0.7, 0.8]])
    0.75
    """
    return float(np.mean(np.asarray(R, dtype=float)[-1]))


def backward_transfer(R):
    """Backward transfer, ``mean_{j<T} (R[T][j] - R[j][j])``; forgetting is its negative.

    Parameters
    ----------
    R : array-like of shape (n_stages, n_families)
        ``R[i][j]``: the score on family ``j`` after stage ``i``, family
        ``i`` being the one trained on at stage ``i``; at least 2 stages.

    Returns
    -------
    float
        How much later stages changed the score on earlier families
        (negative: forgotten).

    Examples
    --------
    >>> from benchmarks.lifelong import backward_transfer
    >>> round(backward_transfer([[0.9, 0.5], [0.7, 0.8]]), 6)
    -0.2
    """
    R = np.asarray(R, dtype=float)
    T = R.shape[0] - 1
    if T < 1:
        raise ValueError(f"backward transfer needs at least 2 stages; R has {R.shape[0]}.")
    return float(np.mean([R[T, j] - R[j, j] for j in range(T)]))


def forward_transfer(R, baseline):
    """Forward transfer, ``mean_{j>=1} (R[j-1][j] - b_j)``.

    Parameters
    ----------
    R : array-like of shape (n_stages, n_families)
        ``R[i][j]``: the score on family ``j`` after stage ``i``; at least 2
        stages.
    baseline : array-like of shape (n_families,)
        ``b_j``: the score on family ``j`` of the learner at its initial
        weights.

    Returns
    -------
    float
        How much training on earlier families helps (positive) or hurts a
        family not yet seen, against the initial weights.

    Examples
    --------
    >>> from benchmarks.lifelong import forward_transfer
    >>> round(forward_transfer([[0.9, 0.5], [0.7, 0.8]], [0.5, 0.6]), 6)
    -0.1
    """
    R, baseline = np.asarray(R, dtype=float), np.asarray(baseline, dtype=float)
    if R.shape[0] < 2:
        raise ValueError(f"forward transfer needs at least 2 stages; R has {R.shape[0]}.")
    return float(np.mean([R[j - 1, j] - baseline[j] for j in range(1, R.shape[0])]))


# -------------------------------------------------------------------- streams


def _renamed(tasks, prefix):
    return TaskCollection([Task(t.X, t.y, name=f"{prefix}{i}") for i, t in enumerate(tasks)])


def blob_stream(n_families, n_train_tasks, n_test_tasks, n_features, noise, seed):
    """Blob task families, each in its own rotation of the feature space.

    Parameters
    ----------
    n_families : int
    n_train_tasks, n_test_tasks : int
        Training and held-out tasks per family.
    n_features : int
    noise : float
        Standard deviation of the uninformative directions.
    seed : int
        Draws the tasks; the rotation of family ``k`` is fixed by ``k``.

    Returns
    -------
    list of (TaskCollection, TaskCollection)
        Each family's training and held-out tasks.

    Examples
    --------
    >>> from benchmarks.lifelong import blob_stream
    >>> stream = blob_stream(2, 3, 1, n_features=6, noise=3.0, seed=0)
    >>> len(stream), len(stream[1][0]), stream[1][0][0].name, stream[1][0][0].X.shape
    (2, 3, 'f1_0', (80, 6))
    """
    stream = []
    for k in range(n_families):
        tasks = make_blob_tasks(n_tasks=n_train_tasks + n_test_tasks, n_features=n_features,
                                noise=noise, random_state=seed * 1000 + k)
        rotation = np.linalg.qr(np.random.default_rng(1000 + k).normal(size=(n_features, n_features)))[0]
        tasks = [Task((t.X @ rotation).astype(np.float32), t.y) for t in tasks]
        stream.append((_renamed(tasks[:n_train_tasks], f"f{k}_"),
                       _renamed(tasks[n_train_tasks:], f"f{k}_test_")))
    return stream


def adult_stream(n_batches, per_batch, held_out, seed):
    """The adult table's occupations arriving in batches, rows held out in each.

    Parameters
    ----------
    n_batches, per_batch : int
        Batches, and occupations per batch (at most 12 in all).
    held_out : float
        Fraction of each occupation's rows held out for scoring (stratified
        by income).
    seed : int
        Draws the order of the occupations and the held-out rows.

    Returns
    -------
    list of (TaskCollection, TaskCollection)
        Each batch's training tasks (one per occupation) and held-out tasks
        (the same occupations' held-out rows). Features are one-hot encoded
        and scaled by a preprocessor fitted on the first batch's training
        rows; labels are 1 for income above 50K.

    Examples
    --------
    >>> from benchmarks.lifelong import adult_stream
    >>> stream = adult_stream(2, 2, 0.3, seed=0)
    >>> len(stream), len(stream[0][0]), stream[0][0][0].name == stream[0][1][0].name
    (2, 2, True)
    """
    frame = load_adult_tasks(return_frame=True)
    rng = np.random.default_rng(seed)
    occupations = sorted(frame["occupation"].unique())
    if n_batches * per_batch > len(occupations):
        raise ValueError(f"n_batches * per_batch = {n_batches * per_batch} exceeds the "
                         f"{len(occupations)} occupations; lower either.")
    order = [occupations[i] for i in rng.permutation(len(occupations))[:n_batches * per_batch]]
    test = np.zeros(len(frame), dtype=bool)
    for _, rows in frame.groupby(["occupation", "income"]).indices.items():
        rows = rng.permutation(rows)
        test[rows[:int(round(held_out * len(rows)))]] = True
    features = frame.drop(columns="income")
    y = (frame["income"] == ">50K").to_numpy().astype(np.int64)
    first = features["occupation"].isin(order[:per_batch]).to_numpy() & ~test
    encoder = make_task_preprocessor(features[first], "occupation").fit(features[first])
    X = encoder.transform(features).drop(columns="occupation").to_numpy(np.float32)
    stream = []
    for b in range(n_batches):
        batch = order[b * per_batch:(b + 1) * per_batch]
        parts = []
        for rows in (~test, test):
            parts.append(TaskCollection([
                Task(X[mask], y[mask], name=name)
                for name in batch
                for mask in [rows & (frame["occupation"] == name).to_numpy()]
            ]))
        stream.append(tuple(parts))
    return stream


def held_out_episodes(tasks, n_episodes, n_shots, n_queries, seed):
    """Fixed episodes of held-out tasks: support and query rows, balanced per class.

    Parameters
    ----------
    tasks : TaskCollection
    n_episodes : int
        Episodes per task.
    n_shots, n_queries : int
        Support and query rows per class.
    seed : int

    Returns
    -------
    list of (X_support, y_support, X_query, y_query)

    Examples
    --------
    >>> from benchmarks.lifelong import blob_stream, held_out_episodes
    >>> held_out = blob_stream(1, 1, 2, n_features=4, noise=3.0, seed=0)[0][1]
    >>> episodes = held_out_episodes(held_out, 3, 5, 15, seed=0)
    >>> len(episodes), episodes[0][0].shape, episodes[0][2].shape
    (6, (10, 4), (30, 4))
    """
    rng = np.random.default_rng(seed)
    episodes = []
    for task in tasks:
        X, y = np.asarray(task.X), np.asarray(task.y)
        for _ in range(n_episodes):
            support, query = [], []
            for c in np.unique(y):
                rows = rng.permutation(np.flatnonzero(y == c))
                support.extend(rows[:n_shots])
                query.extend(rows[n_shots:n_shots + n_queries])
            episodes.append((X[support], y[support], X[query], y[query]))
    return episodes


def episodic_accuracy(meta, episodes):
    """Mean query accuracy of ``meta`` adapted on each episode's support set.

    Parameters
    ----------
    meta : fitted skmeta classifier
    episodes : list of (X_support, y_support, X_query, y_query)

    Returns
    -------
    float

    Examples
    --------
    >>> from skmeta import ProtoNetClassifier
    >>> from benchmarks.lifelong import blob_stream, episodic_accuracy, held_out_episodes
    >>> train, held_out = blob_stream(1, 4, 2, n_features=4, noise=3.0, seed=0)[0]
    >>> meta = ProtoNetClassifier(max_epochs=1, n_episodes=8, train_split=None,
    ...                           random_state=0).fit(train)
    >>> 0 <= episodic_accuracy(meta, held_out_episodes(held_out, 2, 5, 15, seed=0)) <= 1
    True
    """
    return float(np.mean([np.mean(meta.adapt(Xs, ys).predict(Xq) == yq)
                          for Xs, ys, Xq, yq in episodes]))


# -------------------------------------------------------------------- runs


def _learner(name, budget, settings, seed, **params):
    return LEARNERS[name](max_epochs=budget["max_epochs"], n_episodes=budget["n_episodes"],
                          n_shots=settings["n_shots"], n_queries=settings["n_queries"],
                          train_split=None, random_state=seed, **params)


def _scores(meta, episodes):
    return [episodic_accuracy(meta, family) for family in episodes]


def run_stream(stream, episodes, name, budget, settings, seed):
    """One learner and seed on one stream: ``R`` of every control and the baseline.

    Parameters
    ----------
    stream : list of (TaskCollection, TaskCollection)
    episodes : list of list
        Each family's fixed held-out episodes (:func:`held_out_episodes`).
    name : str
        A key of :data:`LEARNERS`.
    budget : dict
        ``max_epochs`` and ``n_episodes`` of every stage.
    settings : dict
        ``n_shots`` and ``n_queries`` of training episodes.
    seed : int
        The learner's ``random_state``.

    Returns
    -------
    dict
        ``{"baseline": [b_j], "controls": {control: {"R": ..., "stage_seconds": ...}}}``.
    """
    frozen = _learner(name, budget, settings, seed, callbacks=[("freeze", Freezer("*"))])
    baseline = _scores(frozen.fit(stream[0][0]), episodes)
    out = {"baseline": baseline, "controls": {}}
    for control, params in CONTROLS.items():
        params = {**params, "ewc": EWC[name] if params["ewc"] is None else params["ewc"]}
        R, seconds = [], []
        meta = _learner(name, budget, settings, seed, **params)
        for k, (train, _) in enumerate(stream):
            start = time.perf_counter()
            if control == "refit":
                seen = TaskCollection([task for family, _ in stream[:k + 1] for task in family])
                # joint training: every family seen gets a stage's worth of episodes
                joint = {**budget, "max_epochs": budget["max_epochs"] * (k + 1)}
                meta = _learner(name, joint, settings, seed, **params).fit(seen)
            elif k == 0:
                meta.fit(train)
            else:
                meta.partial_fit(train)
            seconds.append(time.perf_counter() - start)
            R.append(_scores(meta, episodes))
        out["controls"][control] = {"R": R, "stage_seconds": seconds}
    return out


def _summaries(runs):
    """Per control: the seeds' mean R and the metrics' mean ± CI; the goals."""
    controls = {}
    for control in CONTROLS:
        Rs = [run["controls"][control]["R"] for run in runs]
        metrics = {
            "average": [average_score(R) for R in Rs],
            "bwt": [backward_transfer(R) for R in Rs],
            "fwt": [forward_transfer(R, run["baseline"]) for R, run in zip(Rs, runs, strict=True)],
        }
        metrics["forgetting"] = [-v for v in metrics["bwt"]]
        controls[control] = {
            **{key: mean_ci(values) for key, values in metrics.items()},
            "per_seed": metrics,
            "R_mean": np.mean(Rs, axis=0).tolist(),
            "R_ci": [[mean_ci(np.asarray(Rs)[:, i, j])["ci"] for j in range(len(Rs[0][0]))]
                     for i in range(len(Rs[0]))],
            "stage_seconds": mean_ci([s for run in runs for s in run["controls"][control]["stage_seconds"]]),
        }
    naive, replay, refit = (controls[c]["per_seed"] for c in ("naive", "replay", "refit"))
    forgetting_margin = [FORGETTING_FRACTION * n - r
                         for n, r in zip(naive["forgetting"], replay["forgetting"], strict=True)]
    average_margin = [r - AVERAGE_FRACTION * f
                      for r, f in zip(replay["average"], refit["average"], strict=True)]
    goals = {
        "forgetting": {"margin": mean_ci(forgetting_margin)},
        "average": {"margin": mean_ci(average_margin)},
    }
    for goal in goals.values():
        goal["verdict"] = verdict(goal["margin"], 0.0)
    return {"controls": controls, "goals": goals,
            "baseline": np.mean([run["baseline"] for run in runs], axis=0).tolist()}


def _stream(kind, settings, seed):
    if kind == "blobs":
        stream = blob_stream(**{k: v for k, v in settings["blobs"].items() if k != "n_test_episodes"},
                             seed=seed)
    else:
        stream = adult_stream(**{k: v for k, v in settings["adult"].items() if k != "n_test_episodes"},
                              seed=seed)
    n_episodes = settings[kind]["n_test_episodes"]
    episodes = [held_out_episodes(test, n_episodes, settings["n_shots"], settings["n_queries"],
                              seed=seed * 1000 + j)
                for j, (_, test) in enumerate(stream)]
    return stream, episodes


def run(*, quick, log=print):
    """Both streams, every learner, every control, every seed; see the module docstring.

    Parameters
    ----------
    quick : bool
        Tiny settings, for a smoke test.
    log : callable, default=print

    Returns
    -------
    dict
        ``{"config": ..., "figures": {stream: {learner: {"controls", "goals",
        "baseline", "runs"}}}}``.
    """
    settings = _settings(quick)
    figures = {}
    with one_thread():
        for kind in ("blobs", "adult"):
            streams = {seed: _stream(kind, settings, seed) for seed in settings["seeds"]}
            figures[kind] = {}
            for name, budget in settings["budgets"][kind].items():
                start = time.perf_counter()
                runs = [run_stream(*streams[seed], name, budget, settings, seed)
                        for seed in settings["seeds"]]
                figures[kind][name] = {**_summaries(runs), "runs": runs,
                                       "seconds": round(time.perf_counter() - start, 1)}
                log(f"   {kind}, {name}: {figures[kind][name]['seconds']} s", flush=True)
    return {"config": {**settings, "controls": CONTROLS, "ewc": EWC,
                       "goals": {"forgetting_fraction": FORGETTING_FRACTION,
                                 "average_fraction": AVERAGE_FRACTION}},
            "figures": figures}


# -------------------------------------------------------------------- report

_STREAM_TITLES = {"blobs": "rotated blob families", "adult": "adult occupations in batches"}


def report(result, plot_dir, plot_prefix):
    """The markdown section of a stored result, with one plot per stream and learner.

    Parameters
    ----------
    result : dict
        A stored result of :func:`run`.
    plot_dir : pathlib.Path
        Where plots go.
    plot_prefix : str
        How the markdown refers to ``plot_dir``.

    Returns
    -------
    str
    """
    config, figures = result["config"], result["figures"]
    seeds = len(config["seeds"])
    lines = [
        "## Lifelong meta-learning: task families arriving one after another",
        "",
        "Stage 0 is `fit` on the first family (blobs: a family of rotated blob tasks; adult: a "
        "batch of occupations), each later stage `partial_fit` on the next. After each stage, "
        f"every family's held-out tasks are scored (episodic accuracy, {config['n_shots']} "
        f"support and {config['n_queries']} query rows per class, fixed episodes). Controls at "
        "equal compute per stage: `naive` (`replay_size=0`), `replay` (the default reservoir of "
        "100 past tasks), `penalty` (no replay; `ewc` "
        + ", ".join(f"{v:g} for {k}" for k, v in config["ewc"].items())
        + "); and the upper bound `refit`, a fresh `fit` on every family seen so far with "
        "k + 1 stages' epochs at stage k (joint training, each family given a stage's worth of "
        "episodes). Average = mean final score over families; "
        "forgetting = -BWT = mean over earlier families of the drop from just after their stage "
        "to the end; FWT = score on the next family before its stage minus that of the initial "
        f"weights. Mean ± 95% CI over {seeds} seed{'s' * (seeds > 1)}.",
    ]
    for kind, learners in figures.items():
        stream = config[kind]
        shape = (f"{stream['n_families']} families of {stream['n_train_tasks']} training and "
                 f"{stream['n_test_tasks']} held-out tasks ({stream['n_features']} features, "
                 f"noise {stream['noise']:g}), {stream['n_test_episodes']} episodes per held-out task"
                 if kind == "blobs" else
                 f"{stream['n_batches']} batches of {stream['per_batch']} occupations, "
                 f"{stream['held_out']:.0%} of each occupation's rows held out, "
                 f"{stream['n_test_episodes']} episodes per occupation")
        lines += ["", f"### Stream: {_STREAM_TITLES[kind]}", "", shape + "."]
        for name, fig in learners.items():
            budget = config["budgets"][kind][name]
            lines += ["", f"#### {name}", "",
                      f"Each stage: {budget['max_epochs']} epochs of {budget['n_episodes']} episodes; "
                      f"{fig['seconds']} s in all (every control and seed). Seconds per stage: "
                      + ", ".join(f"{c} {fmt(fig['controls'][c]['stage_seconds'], 2)}" for c in CONTROLS)
                      + ".", "",
                      "| control | average final score | forgetting (-BWT) | BWT | FWT |",
                      "|---|---|---|---|---|"]
            for control in CONTROLS:
                row = fig["controls"][control]
                lines.append(f"| {control} | {fmt(row['average'])} | {fmt(row['forgetting'])} | "
                             f"{fmt(row['bwt'])} | {fmt(row['fwt'])} |")
            lines += ["", *_goal_lines(fig), "", *_matrix_lines(fig)]
            filename = f"lifelong_{kind}_{name}.png"
            _plot(fig, f"{name}, {_STREAM_TITLES[kind]}", plot_dir / filename)
            lines += ["", f"![{name} on {_STREAM_TITLES[kind]}, score per family over stages]"
                          f"({plot_prefix}{filename})", "",
                      "One panel per control, one line per family (mean ± CI over seeds): dotted "
                      "before the family's own stage, solid from it on; the thin horizontal line is "
                      "the initial weights' score on that family."]
    return "\n".join(lines)


def _goal_lines(fig):
    controls, goals = fig["controls"], fig["goals"]
    naive, replay = controls["naive"]["forgetting"], controls["replay"]["forgetting"]
    average, refit = controls["replay"]["average"], controls["refit"]["average"]
    lines = [
        f"- Goal: forgetting of replay at most 1/3 of naive's: **{goals['forgetting']['verdict']}** "
        f"(replay {fmt(replay)}, naive {fmt(naive)}; margin naive/3 - replay "
        f"{fmt(goals['forgetting']['margin'])}).",
        f"- Goal: average of replay at least 0.95 of refit's: **{goals['average']['verdict']}** "
        f"(replay {fmt(average)}, refit {fmt(refit)}; margin replay - 0.95 × refit "
        f"{fmt(goals['average']['margin'])}).",
    ]
    if naive["mean"] - naive["ci"] <= 0:
        lines.append("- Naive `partial_fit` does not forget measurably here (its forgetting's "
                     "interval reaches 0): the stream's families do not conflict enough for the "
                     "forgetting goal to say much.")
    return lines


def _matrix_lines(fig):
    """R[stage][family] per control (mean over seeds), with the initial weights' row."""
    baseline = fig["baseline"]
    n = len(baseline)
    header = "| stage \\ family | " + " | ".join(str(j) for j in range(n)) + " |"
    lines = ["R[stage][family], mean over seeds (bold: the family trained on at that stage):"]
    for control in CONTROLS:
        R = fig["controls"][control]["R_mean"]
        lines += ["", f"*{control}*", "", header, "|---|" + "---|" * n,
                  "| initial weights | " + " | ".join(f"{b:.3f}" for b in baseline) + " |"]
        for i, row in enumerate(R):
            cells = [f"**{v:.3f}**" if i == j else f"{v:.3f}" for j, v in enumerate(row)]
            lines.append(f"| {i} | " + " | ".join(cells) + " |")
    return lines


def _plot(fig, title, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    controls = list(CONTROLS)
    n = len(fig["baseline"])
    figure, axes = plt.subplots(1, len(controls), figsize=(3.2 * len(controls), 3.2), sharey=True)
    stages = np.arange(n)
    for ax, control in zip(axes, controls, strict=True):
        R, ci = np.asarray(fig["controls"][control]["R_mean"]), np.asarray(fig["controls"][control]["R_ci"])
        for j in range(n):
            color = f"C{j}"
            # Before its stage (dotted), then from its stage on (solid).
            ax.plot(stages[:j + 1], R[:j + 1, j], ":", color=color)
            ax.errorbar(stages[j:], R[j:, j], ci[j:, j], color=color, marker="o", capsize=2,
                        label=f"family {j}")
            ax.axhline(fig["baseline"][j], color=color, linewidth=0.5, alpha=0.5)
        ax.set(title=control, xlabel="stage", xticks=stages)
    axes[0].set_ylabel("held-out episodic accuracy")
    axes[-1].legend(fontsize=7)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
