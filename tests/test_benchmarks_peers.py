"""The peers benchmark and the sinusoid table of the optimization family, on tiny settings."""

import copy

import numpy as np
import pytest
import torch

from benchmarks import peers, sinusoid
from benchmarks._common import fit_episodes, verdict
from skmeta import MAMLRegressor
from skmeta.datasets import make_sinusoid_tasks

TINY = dict(iterations=2, repeats=2, warmup=1, n_losses=2)


def test_fit_episodes_are_the_batches_fit_trains_on():
    tasks = make_sinusoid_tasks(30, n_rows=30, random_state=0)
    torch.manual_seed(0)
    module = sinusoid.MLP(1, 1, hidden_sizes=(8,))
    meta = MAMLRegressor(copy.deepcopy(module), n_episodes=6, meta_batch_size=3, max_epochs=1, n_shots=5,
                         n_queries=5, inner_lr=0.01, train_split=None, standardize_targets=False,
                         random_state=3, device="cpu")
    batches = list(fit_episodes(meta, tasks, 2))
    meta.fit(tasks)
    # The losses skmeta logged are those of the given batches, from the initial weights.
    weights = dict(module.named_parameters())
    first = batches[0]
    adapted = [{name: w - 0.01 * g for (name, w), g in zip(
        weights.items(), torch.autograd.grad(
            torch.nn.functional.mse_loss(module(first.X_support[i]).squeeze(-1), first.y_support[i]),
            list(weights.values())), strict=True)} for i in range(len(first))]
    loss = np.mean([torch.nn.functional.mse_loss(
        torch.func.functional_call(module, a, (first.X_query[i],)).squeeze(-1), first.y_query[i]).item()
        for i, a in enumerate(adapted)])
    assert meta.history[-1, "batches", 0, "train_loss"] == pytest.approx(loss, rel=1e-4)


def test_verdict_reads_the_interval():
    assert verdict({"mean": 12.0, "ci": 1.0, "n": 5}, 10) == "met"
    assert verdict({"mean": 8.0, "ci": 1.0, "n": 5}, 10) == "missed"
    assert verdict({"mean": 10.5, "ci": 1.0, "n": 5}, 10) == "not established"


def test_peers_without_learn2learn_reports_the_skip_and_agrees(monkeypatch, tmp_path):
    monkeypatch.setenv(peers.L2L_ENVIRONMENT_VARIABLE, str(tmp_path / "absent" / "python"))
    monkeypatch.setattr(peers, "_settings", lambda quick: dict(TINY))
    record = peers.run(quick=True)
    figures = record["figures"]
    assert figures["learn2learn"]["python"] is None
    assert "absent" in figures["learn2learn"]["skipped_because"]
    for name in peers.PROTOCOLS:
        for row in figures[name].values():
            assert set(row["it_per_s"]) == {"skmeta", "hand-written torch"}
            assert row["it_per_s"]["skmeta"]["n"] == TINY["repeats"]
            # The hand-written loop meta-trains exactly as skmeta does.
            assert row["agreement"]["hand-written torch"]["max_rel"] < peers.AGREEMENT_TOLERANCE
    text = peers.report(record, tmp_path, "")
    assert "learn2learn rows skipped" in text and "absent" in text
    assert "not measured" in text and "compute the same thing, to float32 precision" in text
    assert "nan" not in text.lower()


@pytest.mark.skipif(peers.learn2learn_python()[0] is None, reason="no python with learn2learn")
def test_learn2learn_contender_computes_what_skmeta_does(tmp_path):
    python = peers.learn2learn_python()[0]
    protocol = peers.PROTOCOLS["sinusoid"]
    tasks, modules = peers._protocol_data("sinusoid", 0)
    estimator = peers._skmeta(modules["MAML"], "MAML", False, 2, protocol, 2, 0)
    episodes = list(fit_episodes(estimator, tasks, 2))
    spec = tmp_path / "spec.pt"
    torch.save({"layers": peers._layers(modules["MAML"]), "algorithm": "maml", "task": "regression",
                "first_order": False, "steps": 2, "inner_lr": protocol["inner_lr"], "lr": protocol["lr"],
                "n_warmup": 1, "n_threads": 1, "n_losses": 2,
                "episodes": [(b.X_support, b.y_support, b.X_query, b.y_query)
                             for b in episodes[:1] + episodes]}, spec)
    learn2learn = peers._Learn2learn(python, tmp_path)
    try:
        seconds, losses = learn2learn(spec)
    finally:
        learn2learn.close()
    estimator.fit(tasks)
    assert seconds > 0
    np.testing.assert_allclose(losses, estimator.history[-1, "batches", :, "train_loss"], rtol=1e-4)


def test_family_table_has_every_optimization_regressor(tmp_path):
    names = [name for name, _ in sinusoid.family_learners()]
    assert "MAMLRegressor" in names
    assert all(name.endswith("Regressor") for name in names)
    settings = dict(n_train_tasks=20, test_tasks=1, iterations=70000, family_iterations={},
                    family_default_iterations=2)
    maml_row = {"train_seconds": 1.0, "mse": {f"{n}-shot, {s} steps": {"mean": 0.5, "ci": 0.1, "n": 1}
                                             for n in (5, 10, 20) for s in (1, 5, 10)}}
    rows = sinusoid.family(settings, maml_row)
    assert set(rows) == {*names, sinusoid.MAML_MULTI_STEP[0]}
    assert rows["MAMLRegressor"]["iterations"] == 70000
    multi = rows[sinusoid.MAML_MULTI_STEP[0]]
    assert multi["inner_steps"] == 5 and multi["iterations"] == 2
    config = {"paper_5_shot": sinusoid.PAPER_5_SHOT,
              "meta_sgd_paper_5_shot_1_step": sinusoid.META_SGD_PAPER_5_SHOT_1_STEP,
              "family_goals": sinusoid.FAMILY_GOALS}
    text = "\n".join(sinusoid._family_report(config, rows))
    for name in names:
        assert f"| {name} |" in text
    assert "MAMLRegressor, 5-shot MSE after 5 steps at most 0.38: **missed** (0.500" in text
