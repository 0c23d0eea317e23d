"""Sinusoid regression under the MAML paper's protocol: quality, speed, memory.

Protocol (Finn et al., 2017): amplitude U[0.1, 5], phase U[0, π], x U[-5, 5];
MLP 1-40-40-1 with ReLU; meta-training with K=10 support and 10 query points,
one inner step of learning rate 0.01, meta-batches of 25 tasks, Adam 1e-3;
test on 600 fresh tasks with 100 query points each.

- quality: query MSE after 1, 5 and 10 adaptation steps at 5, 10 and 20
  shots, for second- and first-order :class:`~skmeta.MAMLRegressor`;
- speed: meta-iterations per second of ``MAMLRegressor.fit`` against the
  per-task loop of :mod:`benchmarks.reference_maml`, from the same initial
  weights on the same episodes, alternating in one process; both are then
  trained alike and must reach the same MSE;
- memory: peak memory of one meta-iteration against ``inner_steps``;
- family: the same quality table for every registered regressor of
  :mod:`skmeta.optimization` (each at its own default ``inner_steps``), and
  for MAML meta-trained with 5 first-order inner steps, against the MAML
  and Meta-SGD papers.
"""

import copy
import json
import subprocess
import sys

import numpy as np
import torch

from skmeta import MLP, MAMLRegressor
from skmeta.datasets import make_sinusoid_tasks
from skmeta.utils import all_learners

from . import reference_maml
from ._common import ROOT, fit_episodes, fmt, mean_ci, timed, verdict

NAME = "sinusoid"
PAPER_5_SHOT = {"1": 0.67, "5": 0.38, "10": 0.35}  # MAML paper, appendix: 5-shot MSE after 1/5/10 steps
#: Meta-SGD paper (Li et al., 2017), Table 1: 5-shot MSE after one step, Meta-SGD and MAML.
META_SGD_PAPER_5_SHOT_1_STEP = {"Meta-SGD": 0.90, "MAML": 1.13}
#: Goals of the family table: (learner row, shots, adaptation steps, largest mean query MSE).
FAMILY_GOALS = (("MetaSGDRegressor", 5, 1, 0.45), ("MAMLRegressor", 5, 5, 0.38),
                ("MAMLRegressor, 5 inner steps, first order", 5, 5, 0.38))
#: The extra MAML row of the family table: meta-trained with several inner steps.
MAML_MULTI_STEP = ("MAMLRegressor, 5 inner steps, first order", dict(inner_steps=5, first_order=True))
PROTOCOL = dict(inner_lr=0.01, inner_steps=1, n_shots=10, n_queries=10, meta_batch_size=25,
                lr=1e-3, train_split=None, device="cpu")


def _settings(quick):
    if quick:
        return dict(iterations=40, test_tasks=30, speed_iterations=10, speed_repeats=2,
                    check_iterations=20, memory_steps=(1, 2), memory_repeats=1, memory_batch_sizes=(25,),
                    n_train_tasks=200, family_iterations={}, family_default_iterations=5)
    return dict(iterations=70000, test_tasks=600, speed_iterations=300, speed_repeats=5,
                check_iterations=1500, memory_steps=(1, 2, 5, 10), memory_repeats=3,
                memory_batch_sizes=(25, 100),
                n_train_tasks=20000,
                # Meta-iterations per row of the family table (MAMLRegressor's row is the
                # quality run's), sized from seconds per meta-iteration relative to MAML's
                # (about 3.8 ms on 2 cores): Meta-SGD and ANIL about 1x, Reptile (5 inner
                # steps) and MAML with 5 first-order steps about 2.5x, the meta-learned LSTM
                # update about 70x; so that the family adds about 12 minutes (training
                # about 9, the MSE tables about 30 s each).
                family_iterations={MAML_MULTI_STEP[0]: 15000, "MetaSGDRegressor": 25000,
                                   "ANILRegressor": 25000, "ReptileRegressor": 12000,
                                   "MetaLSTMRegressor": 400},
                family_default_iterations=5000)


def _initial_module(seed):
    torch.manual_seed(seed)
    return MLP(1, 1, hidden_sizes=(40, 40))


def _maml(module, iterations, seed, **params):
    params = {**PROTOCOL, **params}
    params.setdefault("n_episodes", iterations * params["meta_batch_size"])
    return MAMLRegressor(copy.deepcopy(module), max_epochs=1, random_state=seed, standardize_targets=False,
                         **params)


def _episodes(tasks, iterations, seed):
    """The episodes ``MAMLRegressor(random_state=seed).fit(tasks)`` draws, in order."""
    return fit_episodes(_maml(_initial_module(seed), iterations, seed), tasks, iterations)


def _train_reference(module, tasks, iterations, seed, first_order=False):
    weights = reference_maml.mlp_weights(module)
    optimizer = torch.optim.Adam([t for pair in weights for t in pair], lr=1e-3)
    losses = [reference_maml.meta_step(weights, optimizer, batch, inner_lr=0.01, steps=1,
                                       first_order=first_order)
              for batch in _episodes(tasks, iterations, seed)]
    return weights, losses


def _test_tasks(n_tasks, seed):
    """Fresh tasks of 20 support candidates and 100 query points each."""
    return make_sinusoid_tasks(n_tasks, n_rows=120, random_state=seed)


def _mse_table(maml, test_tasks, shots=(5, 10, 20), steps=(1, 5, 10)):
    table = {}
    for n_shots in shots:
        for n_steps in steps:
            maml.set_params(adapt_steps=n_steps)
            errors = [np.mean((maml.adapt(t.X[:n_shots], t.y[:n_shots]).predict(t.X[20:]) - t.y[20:]) ** 2)
                      for t in test_tasks]
            table[f"{n_shots}-shot, {n_steps} steps"] = mean_ci(errors)
    maml.set_params(adapt_steps=10)
    return table


def _reference_mse(weights, test_tasks, n_shots=10, n_steps=10):
    errors = []
    for t in test_tasks:
        X_s, y_s = torch.as_tensor(t.X[:n_shots]), torch.as_tensor(t.y[:n_shots])
        fast = reference_maml.adapt(weights, X_s, y_s, inner_lr=0.01, steps=n_steps)
        with torch.no_grad():
            prediction = reference_maml.forward(fast, torch.as_tensor(t.X[20:])).numpy()
        errors.append(np.mean((prediction - t.y[20:]) ** 2))
    return mean_ci(errors)


def quality(settings, seed=0):
    """MSE table of second- and first-order MAML trained under the protocol."""
    tasks = make_sinusoid_tasks(settings["n_train_tasks"], n_rows=50, random_state=seed)
    test_tasks = _test_tasks(settings["test_tasks"], seed + 1)
    module, out = _initial_module(seed), {}
    for order, first_order in (("second order", False), ("first order", True)):
        maml = _maml(module, settings["iterations"], seed, first_order=first_order)
        seconds, _ = timed(maml.fit, tasks)
        out[order] = {"train_seconds": round(seconds, 1), "mse": _mse_table(maml, test_tasks)}
        print(f"   quality, {order}: {seconds:.0f} s", flush=True)
    return out


def family_learners():
    """The registered regressors of :mod:`skmeta.optimization`, by name."""
    return [(name, cls) for name, cls in all_learners("regressor")
            if cls.__module__.startswith("skmeta.optimization.")]


def _family_member(cls, module, iterations, seed, **params):
    """``cls`` under the protocol, at its own default ``inner_steps`` unless given."""
    accepted = cls().get_params()
    protocol = {k: v for k, v in PROTOCOL.items() if k in accepted and k != "inner_steps"}
    return cls(copy.deepcopy(module), max_epochs=1, n_episodes=iterations * PROTOCOL["meta_batch_size"],
               random_state=seed, standardize_targets=False, **{**protocol, **params})


def family(settings, maml_row, seed=0):
    """MSE table of every optimization-family regressor trained under the protocol.

    ``maml_row`` is the second-order MAML result of :func:`quality`, reused
    as MAMLRegressor's row; a MAML row meta-trained with several inner steps
    is added. A learner that fails is reported with its error.
    """
    tasks = make_sinusoid_tasks(settings["n_train_tasks"], n_rows=50, random_state=seed)
    test_tasks = _test_tasks(settings["test_tasks"], seed + 1)
    module, out = _initial_module(seed), {}
    rows = []
    for name, cls in family_learners():
        rows.append((name, cls, {}))
        if name == "MAMLRegressor":
            rows.append((MAML_MULTI_STEP[0], cls, MAML_MULTI_STEP[1]))
    for label, cls, params in rows:
        if label == "MAMLRegressor":
            out[label] = {**maml_row, "iterations": settings["iterations"], "inner_steps": 1}
            continue
        iterations = settings["family_iterations"].get(label, settings["family_default_iterations"])
        try:
            learner = _family_member(cls, module, iterations, seed, **params)
            seconds, _ = timed(learner.fit, tasks)
            out[label] = {"iterations": iterations, "inner_steps": learner.inner_steps,
                          "train_seconds": round(seconds, 1), "mse": _mse_table(learner, test_tasks)}
        except Exception as exc:  # noqa: BLE001 (reported in the table, not hidden)
            out[label] = {"iterations": iterations, "error": f"{type(exc).__name__}: {exc}"}
            seconds = float("nan")
        print(f"   family, {label}: {seconds:.0f} s", flush=True)
    return out


def speed(settings, seed=0):
    """Meta-iterations per second, skmeta against the per-task loop, alternating."""
    # Few tasks: fit validates every task once, which is not what is timed here.
    tasks = make_sinusoid_tasks(200, n_rows=50, random_state=seed)
    module, n = _initial_module(seed), settings["speed_iterations"]
    out = {}
    for order, first_order in (("second order", False), ("first order", True)):
        ratios, ours, theirs = [], [], []
        _maml(module, 2, seed, first_order=first_order).fit(tasks)  # warm up both paths
        _train_reference(module, tasks, 2, seed, first_order)
        for _ in range(settings["speed_repeats"]):
            t_ours, _ = timed(_maml(module, n, seed, first_order=first_order).fit, tasks)
            t_ref, _ = timed(_train_reference, module, tasks, n, seed, first_order)
            ours.append(n / t_ours)
            theirs.append(n / t_ref)
            ratios.append(t_ref / t_ours)
        out[order] = {"skmeta_it_per_s": mean_ci(ours), "reference_it_per_s": mean_ci(theirs),
                      "ratio": mean_ci(ratios), "iterations_per_repeat": n}
        print(f"   speed, {order}: {fmt(mean_ci(ratios), 2)}x", flush=True)
    return out


def agreement(settings, seed=0):
    """Train skmeta and the reference alike; compare losses and final MSE."""
    tasks = make_sinusoid_tasks(settings["n_train_tasks"], n_rows=50, random_state=seed)
    test_tasks = _test_tasks(settings["test_tasks"], seed + 1)
    module, n = _initial_module(seed), settings["check_iterations"]
    maml = _maml(module, n, seed)
    t_ours, _ = timed(maml.fit, tasks)
    t_ref, (weights, ref_losses) = timed(_train_reference, module, tasks, n, seed)
    our_losses = maml.history[-1, "batches", :, "train_loss"]
    first = min(20, n)
    return {
        "iterations": n,
        "max_abs_loss_difference_first_iterations": float(
            np.max(np.abs(np.subtract(our_losses[:first], ref_losses[:first])))),
        "first_iterations_compared": first,
        "skmeta_mse_10_shot_10_steps": _mse_table(maml, test_tasks, shots=(10,), steps=(10,))[
            "10-shot, 10 steps"],
        "reference_mse_10_shot_10_steps": _reference_mse(weights, test_tasks),
        "skmeta_train_seconds": round(t_ours, 1),
        "reference_train_seconds": round(t_ref, 1),
    }


_MEMORY_PROBE = """
import ctypes, gc, json, sys
from benchmarks.sinusoid import _initial_module, _maml
from skmeta.datasets import make_sinusoid_tasks
steps, first_order, batch = int(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])
tasks = make_sinusoid_tasks(50, n_rows=50, random_state=0)
# One meta-iteration first: torch loads and builds what it needs once.
maml = _maml(_initial_module(0), 1, 0, first_order=True, meta_batch_size=batch).fit(tasks)
maml.set_params(inner_steps=steps, first_order=first_order)
tasks = maml._prepare_fit(tasks, None, reset=False)
gc.collect()
ctypes.CDLL("libc.so.6").malloc_trim(0)   # hand freed memory back, so growth shows
def rss(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")                           # reset the peak to the current size
before = rss("VmRSS:")
maml.partial_fit(tasks)                    # the measured meta-iteration
print(json.dumps({"peak_kib": rss("VmHWM:") - before}))
"""


def memory(settings):
    """Extra peak resident memory (MiB) of one meta-iteration, a fresh process each.

    Linux only (it reads /proc); each probe resets the process's peak,
    runs one meta-iteration and reads the new peak.
    """
    out = {}
    for batch_size in settings["memory_batch_sizes"]:
        for order, first_order in (("second order", "0"), ("first order", "1")):
            rows = {}
            for steps in settings["memory_steps"]:
                peaks = []
                for _ in range(settings["memory_repeats"]):
                    done = subprocess.run(
                        [sys.executable, "-c", _MEMORY_PROBE, str(steps), first_order, str(batch_size)],
                        capture_output=True, text=True, check=True, cwd=ROOT,
                    )
                    peaks.append(json.loads(done.stdout.strip().splitlines()[-1])["peak_kib"])
                rows[str(steps)] = mean_ci(np.array(peaks) / 1024)
            out[f"{order}, {batch_size} tasks"] = rows
    return out


def run(*, quick):
    """Run the three parts; see the module docstring.

    Parameters
    ----------
    quick : bool
        Tiny settings, for a smoke test.

    Returns
    -------
    dict
        ``{"config": ..., "figures": {"quality", "speed", "agreement", "memory", "family"}}``.
    """
    settings = _settings(quick)
    figures = {"speed": speed(settings), "agreement": agreement(settings),
               "memory": memory(settings), "quality": quality(settings)}
    figures["family"] = family(settings, figures["quality"]["second order"])
    return {"config": {**settings, "protocol": PROTOCOL, "paper_5_shot": PAPER_5_SHOT,
                       "meta_sgd_paper_5_shot_1_step": META_SGD_PAPER_5_SHOT_1_STEP,
                       "family_goals": FAMILY_GOALS},
            "figures": figures}


def report(result, plot_dir, plot_prefix):
    """The markdown section of a stored result (with its plot).

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
    lines = ["## Sinusoid regression, MAML-paper protocol", ""]
    lines += [
        f"MLP 1-40-40-1, meta-trained for {config['iterations']:,} meta-iterations of 25 tasks "
        f"(K=10 support, 10 query, one inner step of 0.01, Adam 1e-3) on "
        f"{config['n_train_tasks']:,} training tasks; tested on {config['test_tasks']} fresh tasks "
        "with 100 query points. Query MSE, mean ± 95% CI over test tasks:",
        "",
        "| shots, adaptation steps | second order | first order |",
        "|---|---|---|",
    ]
    second, first = figures["quality"]["second order"], figures["quality"]["first order"]
    for key in second["mse"]:
        lines.append(f"| {key} | {fmt(second['mse'][key])} | {fmt(first['mse'][key])} |")
    paper = config["paper_5_shot"]
    ours = [second["mse"][f"5-shot, {s} steps"]["mean"] for s in (1, 5, 10)]
    anchor = " / ".join(str(paper[str(s)]) for s in (1, 5, 10))
    verdicts = [f"{'met' if o <= paper[str(s)] else 'not met'} after {s} step{'s' * (s > 1)} "
                f"({o:.3f} against {paper[str(s)]})" for o, s in zip(ours, (1, 5, 10), strict=True)]
    lines += [
        "",
        f"The paper's 5-shot anchor after 1/5/10 steps is {anchor}. Second-order MAML here, after "
        f"{config['iterations']:,} meta-iterations (the paper's count): goal "
        + "; ".join(verdicts) + ". "
        f"Meta-training took {second['train_seconds']} s (second order) and "
        f"{first['train_seconds']} s (first order). For a user: ten labelled points and ten "
        f"gradient steps recover a new sine wave to an MSE of "
        f"{second['mse']['10-shot, 10 steps']['mean']:.3f}; after 10 steps, first-order MAML "
        f"(cheaper to meta-train) is {_compare(first['mse'], second['mse'])} second order.",
    ]

    speed_rows = figures["speed"]
    lines += [
        "",
        "### Speed against the per-task loop",
        "",
        "Meta-iterations per second of `MAMLRegressor.fit` (vmap over the meta-batch) against "
        "`benchmarks/reference_maml.py` (a Python loop over the 25 tasks, "
        "`autograd.grad(create_graph=True)`, weights updated by hand), same initial weights, "
        "same episodes, alternating in one process; ratio = reference time / skmeta time, "
        f"over {speed_rows['second order']['ratio']['n']} repeats of "
        f"{speed_rows['second order']['iterations_per_repeat']} meta-iterations:",
        "",
        "| MAML | skmeta (it/s) | per-task loop (it/s) | speed-up |",
        "|---|---|---|---|",
    ]
    for order, row in speed_rows.items():
        lines.append(f"| {order} | {fmt(row['skmeta_it_per_s'], 1)} | "
                     f"{fmt(row['reference_it_per_s'], 1)} | {fmt(row['ratio'], 2)}× |")
    ratio = speed_rows["second order"]["ratio"]
    low, high = ratio["mean"] - ratio["ci"], ratio["mean"] + ratio["ci"]
    lines += ["", f"Goal: at least 4× for second-order MAML on 2 CPU cores: {verdict(ratio, 4)} "
                  f"({ratio['mean']:.2f}×, 95% interval {low:.2f}–{high:.2f}×). For a user: "
                  "the same meta-training takes a fraction of the time of the usual "
                  "task-by-task implementation."]

    check = figures["agreement"]
    lines += [
        "",
        f"Both implementations compute the same thing: over the first "
        f"{check['first_iterations_compared']} meta-iterations their losses differ by at most "
        f"{check['max_abs_loss_difference_first_iterations']:.1e}; after {check['iterations']:,} "
        f"meta-iterations each, 10-shot MSE after 10 steps is "
        f"{fmt(check['skmeta_mse_10_shot_10_steps'])} (skmeta, {check['skmeta_train_seconds']} s) "
        f"and {fmt(check['reference_mse_10_shot_10_steps'])} (per-task loop, "
        f"{check['reference_train_seconds']} s).",
    ]

    memory_rows = figures["memory"]
    steps = list(next(iter(memory_rows.values())))
    lines += [
        "",
        "### Memory against inner steps",
        "",
        "Extra peak resident memory (MiB) of one meta-iteration (after one warm-up iteration "
        "and `malloc_trim`), in a fresh process per measurement, mean ± CI over "
        f"{config['memory_repeats']} processes:",
        "",
        "| MAML, meta-batch (rows) · inner steps (columns) | " + " | ".join(steps) + " |",
        "|---|" + "---|" * len(steps),
    ]
    for order, row in memory_rows.items():
        lines.append(f"| {order} | " + " | ".join(fmt(row[s], 2) for s in steps) + " |")
    lines += ["", "Second order keeps every inner step's graph for the meta-gradient, so its "
                  "memory grows with `inner_steps`; first order does not differentiate through "
                  "the inner steps."]
    if "family" in figures:
        lines += ["", *_family_report(config, figures["family"])]
    lines += ["", f"![sinusoid MSE against adaptation steps]({plot_prefix}sinusoid_mse.png)"]
    _plot(figures["quality"], plot_dir / "sinusoid_mse.png")
    return "\n".join(lines)


def _family_report(config, rows):
    keys = [f"{n}-shot, {s} steps" for n in (5, 10, 20) for s in (1, 5, 10)]
    lines = [
        "### Every optimization-based regressor",
        "",
        "Every registered regressor of `skmeta.optimization` under the same protocol (K=10 "
        "support and 10 query points, meta-batch 25, inner rate 0.01, Adam 1e-3, the same "
        "initial weights and tasks), each with its own default number of inner steps in "
        "meta-training, plus MAML meta-trained with 5 first-order inner steps; tested on the "
        "same fresh tasks. Query MSE, mean ± 95% CI over test tasks, by shots and adaptation "
        "steps; the meta-iteration budget of each row is given (MAMLRegressor's row is the "
        "second-order run above).",
        "",
        "| learner | inner steps | meta-iterations | seconds | " + " | ".join(keys) + " |",
        "|---|---|---|---|" + "---|" * len(keys),
    ]
    for label, row in rows.items():
        if "error" in row:
            lines.append(f"| {label} | | {row['iterations']:,} | | failed: {row['error']} |"
                         + " |" * (len(keys) - 1))
            continue
        lines.append(f"| {label} | {row['inner_steps']} | {row['iterations']:,} | {row['train_seconds']} | "
                     + " | ".join(fmt(row["mse"][k]) for k in keys) + " |")
    paper = config["paper_5_shot"]
    sgd_paper = config["meta_sgd_paper_5_shot_1_step"]
    lines += [
        "",
        f"Anchors: the MAML paper's 5-shot MSE after 1/5/10 steps is {paper['1']}/{paper['5']}/"
        f"{paper['10']}; the Meta-SGD paper (Li et al., 2017, Table 1) gives 5-shot MSE after one "
        f"step of {sgd_paper['Meta-SGD']} for Meta-SGD and {sgd_paper['MAML']} for MAML in its own "
        "runs. Goals:",
        "",
    ]
    for label, shots, steps, goal in config["family_goals"]:
        row = rows.get(label)
        if row is None or "error" in row:
            lines.append(f"- {label}, {shots}-shot MSE after {steps} step{'s' * (steps > 1)} "
                         f"at most {goal}: **not measured** "
                         f"({'not registered' if row is None else 'failed'}).")
            continue
        stat = row["mse"][f"{shots}-shot, {steps} steps"]
        lines.append(f"- {label}, {shots}-shot MSE after {steps} step{'s' * (steps > 1)} at most {goal}: "
                     f"**{'met' if stat['mean'] <= goal else 'missed'}** ({fmt(stat)}, after "
                     f"{row['iterations']:,} meta-iterations).")
    return lines


def _compare(first, second):
    """How first-order MSE after 10 steps compares with second order's, over shots."""
    keys = [k for k in second if k.endswith(", 10 steps")]
    overlap = [abs(first[k]["mean"] - second[k]["mean"]) <= first[k]["ci"] + second[k]["ci"] for k in keys]
    if all(overlap):
        return "within the confidence intervals of"
    better = sum(first[k]["mean"] < second[k]["mean"] for k in keys)
    return f"better at {better} of {len(keys)} shot counts than"


def _plot(quality_figures, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for order, style in (("second order", "-"), ("first order", "--")):
        table = quality_figures[order]["mse"]
        for i, n_shots in enumerate((5, 10, 20)):
            keys = [f"{n_shots}-shot, {s} steps" for s in (1, 5, 10)]
            ax.errorbar((1, 5, 10), [table[k]["mean"] for k in keys], [table[k]["ci"] for k in keys],
                        linestyle=style, color=f"C{i}", marker="o", capsize=3,
                        label=f"{n_shots}-shot, {order}")
    ax.set(xlabel="adaptation steps", ylabel="query MSE", yscale="log",
           title="MAMLRegressor on fresh sinusoids")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
