"""The lifelong benchmark (benchmarks/lifelong.py): its metrics, goals and quick run."""

import json
import math

import numpy as np
import pytest

from benchmarks import lifelong

# R[stage][family]: family i is trained on at stage i.
R = [[0.8, 0.5, 0.4],
     [0.6, 0.9, 0.5],
     [0.7, 0.6, 0.9]]
BASELINE = [0.5, 0.4, 0.3]


def test_metrics_of_a_hand_made_matrix():
    assert lifelong.average_score(R) == pytest.approx((0.7 + 0.6 + 0.9) / 3)
    # Families 0 and 1 after the last stage against just after their own stage.
    assert lifelong.backward_transfer(R) == pytest.approx(((0.7 - 0.8) + (0.6 - 0.9)) / 2)
    # Families 1 and 2 just before their stage against the initial weights.
    assert lifelong.forward_transfer(R, BASELINE) == pytest.approx(((0.5 - 0.4) + (0.5 - 0.3)) / 2)


def test_transfer_needs_two_stages():
    with pytest.raises(ValueError, match="at least 2 stages"):
        lifelong.backward_transfer([[0.8, 0.5]])
    with pytest.raises(ValueError, match="at least 2 stages"):
        lifelong.forward_transfer([[0.8, 0.5]], [0.5, 0.5])


def _runs(forgetting):
    """Three seeds' runs in which each control forgets ``forgetting[control]`` of family 0."""
    runs = []
    for seed in range(3):
        jitter = 0.01 * seed
        controls = {}
        for control in lifelong.CONTROLS:
            drop = forgetting[control] + jitter
            matrix = [[0.9, 0.5], [0.9 - 2 * drop, 0.9]]  # mean over the 1 earlier family
            controls[control] = {"R": matrix, "stage_seconds": [1.0, 1.0]}
        runs.append({"baseline": [0.5, 0.5], "controls": controls})
    return runs


def test_the_goals_are_judged_on_per_seed_margins():
    # BWT on 2 stages: R[1][0] - R[0][0] = -2 * drop.
    met = lifelong._summaries(_runs({"naive": 0.15, "replay": 0.01, "penalty": 0.05, "refit": 0.0}))
    assert met["controls"]["naive"]["forgetting"]["mean"] == pytest.approx(0.32)
    assert met["goals"]["forgetting"]["verdict"] == "met"
    assert met["goals"]["average"]["verdict"] == "met"  # replay's average is refit's less 0.01
    missed = lifelong._summaries(_runs({"naive": 0.15, "replay": 0.15, "penalty": 0.05, "refit": 0.0}))
    assert missed["goals"]["forgetting"]["verdict"] == "missed"
    assert missed["goals"]["average"]["verdict"] == "missed"  # about 0.74 against 0.95 * 0.9


@pytest.fixture(scope="module")
def quick_record():
    return json.loads(json.dumps(lifelong.run(quick=True, log=lambda *a, **k: None)))


@pytest.mark.filterwarnings("ignore")
def test_quick_run_gives_every_control_finite_figures(quick_record, tmp_path):
    settings = quick_record["config"]
    for kind, n_stages in (("blobs", settings["blobs"]["n_families"]),
                           ("adult", settings["adult"]["n_batches"])):
        for name in lifelong.LEARNERS:
            figure = quick_record["figures"][kind][name]
            assert len(figure["baseline"]) == n_stages
            assert set(figure["controls"]) == set(lifelong.CONTROLS)
            for row in figure["controls"].values():
                assert np.shape(row["R_mean"]) == (n_stages, n_stages)
                assert np.isfinite(row["R_mean"]).all()
                assert ((np.asarray(row["R_mean"]) >= 0) & (np.asarray(row["R_mean"]) <= 1)).all()
                for metric in ("average", "bwt", "fwt", "forgetting"):
                    assert math.isfinite(row[metric]["mean"]) and math.isfinite(row[metric]["ci"])
            # Every control starts from the same stage 0 (the same fit of family 0).
            first = [row["R_mean"][0] for row in figure["controls"].values()]
            assert all(np.allclose(f, first[0]) for f in first)
            assert {goal["verdict"] for goal in figure["goals"].values()} <= {
                "met", "missed", "not established"}
    text = lifelong.report({**quick_record, "name": "lifelong"}, tmp_path, "plots/")
    assert "nan" not in text.lower()
    assert text.count("| naive |") == 4 and text.count("Goal: forgetting of replay") == 4
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert len(pngs) == 4 and all(f"plots/{p}" in text for p in pngs)
