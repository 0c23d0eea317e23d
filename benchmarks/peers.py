"""Meta-training speed side by side with peers: a hand-written torch loop and learn2learn.

Contenders, on the same initial weights and the same meta-batches of
episodes (those ``fit`` draws, see :func:`benchmarks._common.fit_episodes`):

- **skmeta**: ``MAMLRegressor``/``MAMLClassifier``/``ProtoNetClassifier``
  ``fit`` for a given number of meta-iterations, timed from the start of
  the first meta-iteration to the end of the last (episode sampling and the
  checks of every step included; the one-off set-up of ``fit``, such as
  validating the tasks, is recorded apart);
- **hand-written torch**: what a user writes without skmeta, the batches
  already drawn: for MAML, ``torch.func.grad`` for the inner steps and
  ``torch.func.vmap`` over the episodes of a meta-batch; for prototypical
  networks, batched tensor algebra over the meta-batch;
- **learn2learn** (0.2.0): its documented loops (``MAML.clone``/``adapt``
  task by task; ``nn.PrototypicalClassifier`` episode by episode), run by
  :mod:`benchmarks._learn2learn_peer` in a subprocess with the python of an
  environment that has learn2learn (``SKMETA_L2L_PYTHON``, else
  ``.venv-l2l`` in the checkout or ``venv-l2l`` beside it; install with
  ``VENV=... bash install-learn2learn.sh``). Its time is measured inside
  the subprocess, start-up and imports excluded. Without that python the
  learn2learn rows are skipped, and the report says so.

Protocols: (a) sinusoids under the MAML paper's protocol (MLP 1-40-40-1,
meta-batch 25, K=10 support and 10 query points, inner rate 0.01, Adam
1e-3), MAML second and first order with 1 and 5 inner steps; (b) 5-way
5-shot classification with 15 queries per class on
:func:`~skmeta.datasets.make_blob_tasks` (20 features), MAML (MLP
20-64-64-5, inner rate 0.1) and prototypical networks (MLP 20-64-64).

Within each repeat every configuration and contender runs once, in an order
that alternates from one repeat to the next; ratios are taken per repeat.
Every contender runs on one torch thread.
The losses of the first meta-iterations of all contenders are compared, to
show that they compute the same thing.
"""

import copy
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from skorch.callbacks import Callback
from torch.func import functional_call, grad, vmap
from torch.nn.functional import cross_entropy, mse_loss, one_hot

from skmeta import MLP, MAMLClassifier, MAMLRegressor, ProtoNetClassifier
from skmeta.datasets import make_blob_tasks, make_sinusoid_tasks

from ._common import ROOT, fit_episodes, fmt, mean_ci, timed, verdict

NAME = "peers"
L2L_ENVIRONMENT_VARIABLE = "SKMETA_L2L_PYTHON"
L2L_DEFAULTS = (ROOT / ".venv-l2l" / "bin" / "python", ROOT.parent / "venv-l2l" / "bin" / "python")
CONTENDERS = ("skmeta", "hand-written torch", "learn2learn")
GOALS = {"learn2learn": 10.0, "hand-written torch": 1.3, "first order": 1.5}
#: Relative difference of the first meta-iterations' losses below which two
#: float32 implementations of one algorithm are taken to compute the same thing.
AGREEMENT_TOLERANCE = 1e-3

PROTOCOLS = {
    "sinusoid": dict(
        title="Sinusoid regression (MLP 1-40-40-1, meta-batch 25, K=10 support and 10 query "
              "points, inner rate 0.01, Adam 1e-3)",
        task="regression", meta_batch_size=25, n_shots=10, n_queries=10, inner_lr=0.01, lr=1e-3,
        configs=[("MAML", False, 1), ("MAML", False, 5), ("MAML", True, 1), ("MAML", True, 5)],
    ),
    "blobs": dict(
        title="5-way 5-shot classification, 15 queries per class (make_blob_tasks, 20 features; "
              "MAML: MLP 20-64-64-5, inner rate 0.1; ProtoNet: embedding MLP 20-64-64; "
              "meta-batch 8, Adam 1e-3)",
        task="classification", n_ways=5, meta_batch_size=8, n_shots=5, n_queries=15, inner_lr=0.1, lr=1e-3,
        configs=[("MAML", False, 1), ("MAML", True, 1), ("ProtoNet", None, None)],
    ),
}


def _settings(quick):
    if quick:
        return dict(iterations=3, repeats=2, warmup=1, n_losses=3)
    return dict(iterations=100, repeats=5, warmup=3, n_losses=10)


def _label(algorithm, first_order, steps):
    if algorithm != "MAML":
        return algorithm
    return f"MAML, {'first' if first_order else 'second'} order, {steps} step{'s' * (steps > 1)}"


# ----------------------------------------------------------------- learn2learn


def learn2learn_python():
    """The python of an environment with learn2learn, or why there is none.

    Returns
    -------
    python : str or None
    version : str or None
        learn2learn's version.
    reason : str or None
        Why the learn2learn rows are skipped (None when ``python`` is found).

    Examples
    --------
    >>> from benchmarks.peers import learn2learn_python
    >>> python, version, reason = learn2learn_python()
    >>> (python is None) == (reason is not None)
    True
    """
    chosen = os.environ.get(L2L_ENVIRONMENT_VARIABLE)
    candidates = [Path(chosen)] if chosen else list(L2L_DEFAULTS)
    for python in candidates:
        if not python.exists():
            continue
        done = subprocess.run([str(python), "-c", "import learn2learn; print(learn2learn.__version__)"],
                              capture_output=True, text=True)
        if done.returncode == 0:
            return str(python), done.stdout.strip().splitlines()[-1], None
        return None, None, f"{python} cannot import learn2learn ({done.stderr.strip().splitlines()[-1:]})"
    where = (f"{L2L_ENVIRONMENT_VARIABLE}={chosen} does not exist" if chosen else
             f"{L2L_ENVIRONMENT_VARIABLE} is not set and neither "
             + " nor ".join(str(p) for p in L2L_DEFAULTS) + " exists")
    return None, None, where


def _layers(module):
    """The network as the learn2learn subprocess rebuilds it."""
    layers = []
    for layer in module.layers:
        if isinstance(layer, torch.nn.Linear):
            layers.append(("linear", layer.weight.detach().clone(), layer.bias.detach().clone()))
        elif isinstance(layer, torch.nn.ReLU):
            layers.append(("relu",))
        else:
            raise ValueError(f"the learn2learn contender rebuilds Linear and ReLU layers only, not {layer}")
    return layers


class _Learn2learn:
    """One subprocess of :mod:`benchmarks._learn2learn_peer`, serving every run."""

    def __init__(self, python, work):
        self.errors = open(Path(work) / "learn2learn.err", "w+")  # noqa: SIM115 (closed in close)
        self.process = subprocess.Popen(
            [python, str(ROOT / "benchmarks" / "_learn2learn_peer.py")], cwd=work, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors)

    def __call__(self, spec_path):
        self.process.stdin.write(f"{spec_path}\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            self.errors.seek(0)
            raise RuntimeError(f"the learn2learn subprocess failed: {self.errors.read()[-2000:]}")
        result = json.loads(answer)
        return result["seconds"], result["losses"]

    def close(self):
        self.process.stdin.close()
        self.process.wait()
        self.errors.close()


# ------------------------------------------------------------ hand-written torch


def _maml_step(model, params, optimizer, batch, *, loss_fn, inner_lr, steps, first_order, **_):
    """One MAML meta-update as a user writes it with torch.func; the loss."""

    def episode(X_support, y_support, X_query, y_query):
        fast = params
        for _ in range(steps):
            grads = grad(lambda p: loss_fn(functional_call(model, p, (X_support,)), y_support))(fast)
            if first_order:
                grads = {name: g.detach() for name, g in grads.items()}
            fast = {name: fast[name] - inner_lr * grads[name] for name in fast}
        return loss_fn(functional_call(model, fast, (X_query,)), y_query)

    optimizer.zero_grad()
    loss = vmap(episode)(batch.X_support, batch.y_support, batch.X_query, batch.y_query).mean()
    loss.backward()
    optimizer.step()
    return loss.item()


def _protonet_step(model, params, optimizer, batch, *, n_ways, **_):
    """One prototypical-network update over a meta-batch, batched; the loss."""
    optimizer.zero_grad()
    support = model(batch.X_support)                                  # (episodes, rows, dim)
    labels = one_hot(batch.y_support, n_ways).to(support.dtype)
    centres = labels.transpose(1, 2) @ support / labels.sum(1).unsqueeze(-1)
    logits = -torch.cdist(model(batch.X_query), centres).pow(2)
    loss = cross_entropy(logits.flatten(0, 1), batch.y_query.flatten())
    loss.backward()
    optimizer.step()
    return loss.item()


def _hand_written(module, episodes, n_warmup, protocol, algorithm, first_order, steps):
    if protocol["task"] == "regression":
        def loss_fn(output, y):
            return mse_loss(output.squeeze(-1), y)
    else:
        loss_fn = cross_entropy
    step = _maml_step if algorithm == "MAML" else _protonet_step
    kwargs = dict(loss_fn=loss_fn, inner_lr=protocol["inner_lr"], steps=steps, first_order=first_order,
                  n_ways=protocol.get("n_ways"))

    def train(batches):
        model = copy.deepcopy(module)
        params = dict(model.named_parameters())
        optimizer = torch.optim.Adam(model.parameters(), lr=protocol["lr"])
        return [step(model, params, optimizer, batch, **kwargs) for batch in batches]

    train(episodes[:n_warmup])
    return timed(train, episodes)


# ----------------------------------------------------------------------- skmeta


class _IterationTimer(Callback):
    """Seconds from the start of the first meta-iteration to the end of the last."""

    def initialize(self):
        self.first, self.last = None, None
        return self

    def on_batch_begin(self, net, **kwargs):
        if self.first is None:
            self.first = time.perf_counter()

    def on_batch_end(self, net, **kwargs):
        self.last = time.perf_counter()


def _skmeta(module, algorithm, first_order, steps, protocol, iterations, seed):
    common = dict(max_epochs=1, n_episodes=iterations * protocol["meta_batch_size"],
                  meta_batch_size=protocol["meta_batch_size"], n_shots=protocol["n_shots"],
                  n_queries=protocol["n_queries"], lr=protocol["lr"], train_split=None,
                  random_state=seed, device="cpu", callbacks=[("iteration_timer", _IterationTimer())])
    if algorithm == "ProtoNet":
        return ProtoNetClassifier(copy.deepcopy(module), **common)
    maml = dict(inner_lr=protocol["inner_lr"], inner_steps=steps, first_order=first_order)
    if protocol["task"] == "regression":
        return MAMLRegressor(copy.deepcopy(module), standardize_targets=False, **common, **maml)
    return MAMLClassifier(copy.deepcopy(module), **common, **maml)


def _protocol_data(name, seed):
    """Training tasks and the initial network of each algorithm."""
    torch.manual_seed(seed)
    if name == "sinusoid":
        # Few tasks: fit validates every task once, which is not what is compared.
        tasks = make_sinusoid_tasks(200, n_rows=50, random_state=seed)
        return tasks, {"MAML": MLP(1, 1, hidden_sizes=(40, 40))}
    tasks = make_blob_tasks(100, n_classes=PROTOCOLS[name]["n_ways"], n_rows_per_class=40, n_features=20,
                            random_state=seed)
    return tasks, {"MAML": MLP(20, 5, hidden_sizes=(64, 64)), "ProtoNet": MLP(20, 64, hidden_sizes=(64,))}


# -------------------------------------------------------------------- the runs


def _compare(protocol_name, settings, learn2learn, work, seed=0):
    protocol = PROTOCOLS[protocol_name]
    tasks, modules = _protocol_data(protocol_name, seed)
    n, n_warmup = settings["iterations"], settings["warmup"]
    threads = torch.get_num_threads()
    cells = {}
    for algorithm, first_order, steps in protocol["configs"]:
        label = _label(algorithm, first_order, steps)
        module = modules[algorithm]
        estimator = _skmeta(module, algorithm, first_order, steps, protocol, n, seed)
        episodes = list(fit_episodes(estimator, tasks, n))
        _skmeta(module, algorithm, first_order, steps, protocol, n_warmup, seed).fit(tasks)  # warm up
        contenders = {
            "skmeta": lambda a=algorithm, f=first_order, s=steps, m=module: _run_skmeta(
                m, a, f, s, protocol, n, seed, tasks),
            "hand-written torch": lambda a=algorithm, f=first_order, s=steps, m=module, e=episodes:
                _hand_written(m, e, n_warmup, protocol, a, f, s),
        }
        if learn2learn is not None:
            spec_path = Path(work) / f"{protocol_name}-{len(cells)}.pt"
            torch.save({
                "layers": _layers(module), "algorithm": algorithm.lower(), "task": protocol["task"],
                "first_order": bool(first_order), "steps": steps, "inner_lr": protocol["inner_lr"],
                "lr": protocol["lr"], "n_warmup": n_warmup, "n_threads": threads,
                "n_losses": settings["n_losses"],
                "episodes": [(b.X_support, b.y_support, b.X_query, b.y_query)
                             for b in episodes[:n_warmup] + episodes],
            }, spec_path)
            contenders["learn2learn"] = lambda p=spec_path: learn2learn(p)
        cells[label] = {"contenders": contenders, "seconds": {c: [] for c in contenders}, "losses": {},
                        "set_up": []}
    for repeat in range(settings["repeats"]):
        order = list(cells.items())
        for _, cell in order if repeat % 2 == 0 else order[::-1]:
            names = list(cell["contenders"])
            for contender in names if repeat % 2 == 0 else names[::-1]:
                seconds, losses, *set_up = cell["contenders"][contender]()
                cell["seconds"][contender].append(seconds / n)
                cell["set_up"] += set_up
                cell["losses"].setdefault(contender, losses[:settings["n_losses"]])
        print(f"   {protocol_name}: repeat {repeat + 1} of {settings['repeats']} done", flush=True)
    return {label: _summary(cell) for label, cell in cells.items()}, {
        label: np.array(cell["seconds"]["skmeta"]) for label, cell in cells.items()}


def _run_skmeta(module, algorithm, first_order, steps, protocol, n, seed, tasks):
    estimator = _skmeta(module, algorithm, first_order, steps, protocol, n, seed)
    seconds, _ = timed(estimator.fit, tasks)
    timer = dict(estimator.callbacks_)["iteration_timer"]
    iterations = timer.last - timer.first
    return iterations, list(estimator.history[-1, "batches", :, "train_loss"]), seconds - iterations


def _summary(cell):
    ours = np.array(cell["seconds"]["skmeta"])
    reference = np.array(cell["losses"]["skmeta"])
    out = {"it_per_s": {c: mean_ci(1 / np.array(t)) for c, t in cell["seconds"].items()},
           "speedup": {}, "agreement": {}, "skmeta_fit_set_up_seconds": mean_ci(cell["set_up"])}
    for contender, seconds in cell["seconds"].items():
        if contender == "skmeta":
            continue
        out["speedup"][contender] = mean_ci(np.array(seconds) / ours)
        difference = np.abs(np.array(cell["losses"][contender]) - reference)
        out["agreement"][contender] = {
            "max_abs": float(difference.max()),
            "max_rel": float((difference / np.abs(reference)).max()),
            "iterations": int(reference.size),
        }
    return out


def run(*, quick):
    """Time every contender on both protocols; see the module docstring.

    Parameters
    ----------
    quick : bool
        Tiny settings, for a smoke test.

    Returns
    -------
    dict
        ``{"config": ..., "figures": {"sinusoid", "blobs", "first_vs_second_order",
        "learn2learn"}}``.
    """
    settings = _settings(quick)
    # One torch thread for every contender: the networks are tiny, and on a machine shared
    # with other work two threads per process spin against each other (tenfold slower).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(settings)
    finally:
        torch.set_num_threads(threads)


def _run(settings):
    python, version, reason = learn2learn_python()
    figures = {"learn2learn": {"python": python, "version": version, "skipped_because": reason}}
    with tempfile.TemporaryDirectory() as work:
        learn2learn = None if python is None else _Learn2learn(python, work)
        try:
            results = {name: _compare(name, settings, learn2learn, work) for name in PROTOCOLS}
        finally:
            if learn2learn is not None:
                learn2learn.close()
        for name, (figures[name], skmeta_seconds) in results.items():
            if name == "sinusoid":
                figures["first_vs_second_order"] = mean_ci(skmeta_seconds["MAML, second order, 5 steps"]
                                                           / skmeta_seconds["MAML, first order, 5 steps"])
    figures["skmeta_fit_set_up_seconds"] = mean_ci(
        [row["skmeta_fit_set_up_seconds"]["mean"] for name in PROTOCOLS for row in figures[name].values()])
    protocols = {name: {k: v for k, v in p.items() if k != "configs"} for name, p in PROTOCOLS.items()}
    return {"config": {**settings, "torch_threads": torch.get_num_threads(), "protocols": protocols,
                       "agreement_tolerance": AGREEMENT_TOLERANCE, "goals": GOALS}, "figures": figures}


# ---------------------------------------------------------------------- report


def report(record, plot_dir, plot_prefix):
    """The markdown section of a stored result.

    Parameters
    ----------
    record : dict
        A stored result of :func:`run`.
    plot_dir : pathlib.Path
        Unused (no plot).
    plot_prefix : str
        Unused.

    Returns
    -------
    str
    """
    config, figures = record["config"], record["figures"]
    l2l = figures["learn2learn"]
    lines = [
        "## Meta-training speed against peers",
        "",
        "Meta-iterations per second, side by side in one run: skmeta's `fit`; the same algorithm "
        "written by hand with `torch.func.grad` and `vmap` over the meta-batch (prototypical "
        "networks: batched tensor algebra), on meta-batches drawn beforehand; and learn2learn's "
        "documented loops (`MAML.clone`/`adapt` task by task, `nn.PrototypicalClassifier` episode "
        "by episode), timed inside a subprocess, start-up excluded. Same initial weights, same "
        f"episodes; {config['repeats']} repeats of {config['iterations']} meta-iterations, each "
        "repeat running every contender once in alternating order, after "
        f"{config['warmup']} warm-up iterations; {config['torch_threads']} torch threads. "
        "Speed-up = contender's time / skmeta's time, per repeat. skmeta is timed from the start "
        "of its first meta-iteration to the end of its last (episode sampling included); "
        + (f"the one-off set-up of each `fit` (validating 100-200 tasks, building the optimizer) "
           f"took {fmt(figures['skmeta_fit_set_up_seconds'], 3)} s more."
           if "skmeta_fit_set_up_seconds" in figures else ""),
        "",
    ]
    if l2l["python"] is None:
        lines += [f"**learn2learn rows skipped**: {l2l['skipped_because']}. Install it with "
                  "`VENV=<venv with torch> bash install-learn2learn.sh` and point "
                  f"`{L2L_ENVIRONMENT_VARIABLE}` at that venv's python.", ""]
    else:
        lines += [f"learn2learn {l2l['version']} ran with `{l2l['python']}`.", ""]
    present = [c for c in CONTENDERS if c != "learn2learn" or l2l["python"] is not None]
    for name, protocol in config.get("protocols", PROTOCOLS).items():
        rows = figures[name]
        lines += [
            f"### {protocol['title']}", "",
            "| configuration | " + " | ".join(f"{c} (it/s)" for c in present) + " | "
            + " | ".join(f"speed-up over {c}" for c in present[1:]) + " |",
            "|---|" + "---|" * (2 * len(present) - 1),
        ]
        for label, row in rows.items():
            lines.append(f"| {label} | " + " | ".join(fmt(row["it_per_s"][c], 1) for c in present) + " | "
                         + " | ".join(f"{fmt(row['speedup'][c], 2)}×" for c in present[1:]) + " |")
        lines.append("")
    lines += ["### Goals", ""]
    second = {k: v for k, v in figures["sinusoid"].items() if "second order" in k}
    for contender in present[1:]:
        goal = config["goals"][contender]
        for label, row in second.items():
            stat = row["speedup"][contender]
            lines.append(f"- Second-order MAML at least {goal:g}× faster than {contender} "
                         f"(sinusoid, {label.split(', ')[-1]}): **{verdict(stat, goal)}** "
                         f"({_interval(stat)}).")
    if l2l["python"] is None:
        lines.append(f"- Second-order MAML at least {config['goals']['learn2learn']:g}× faster than "
                     "learn2learn: **not measured** (learn2learn skipped, see above).")
    stat, goal = figures["first_vs_second_order"], config["goals"]["first order"]
    lines += [f"- First-order MAML at least {goal:g}× faster than second order at 5 inner steps "
              f"(skmeta, sinusoid): **{verdict(stat, goal)}** "
              f"({_interval(stat)}).", ""]
    lines += ["### Do the contenders compute the same thing?", ""]
    worst = []
    for name in PROTOCOLS:
        for label, row in figures[name].items():
            for contender, check in row["agreement"].items():
                worst.append((check["max_rel"], check["max_abs"], f"{name}, {label}, {contender}",
                              check["iterations"]))
    rel, abs_, where, iterations = max(worst)
    agree = rel <= config["agreement_tolerance"]
    lines.append(
        f"Over the first {iterations} meta-iterations from the same weights on the same episodes, "
        f"every contender's meta-batch losses match skmeta's to within a relative "
        f"{rel:.1e} (absolute {abs_:.1e}, worst: {where}): "
        + ("they compute the same thing, to float32 precision." if agree else
           f"**above the tolerance of {config['agreement_tolerance']:g}: they differ.**"))
    return "\n".join(lines)


def _interval(stat):
    low, high = stat["mean"] - stat["ci"], stat["mean"] + stat["ci"]
    return f"{stat['mean']:.2f}×, 95% interval {low:.2f}–{high:.2f}×"
