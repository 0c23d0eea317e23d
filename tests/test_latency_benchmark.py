"""The latency benchmark: every registered learner, timed against sklearn baselines."""

import numpy as np
import pytest

from benchmarks import latency
from skmeta import MAMLRegressor, ProtoNetClassifier
from skmeta.utils import all_learners


def test_every_registered_learner_is_timed_with_its_own_kind_of_tasks():
    settings = latency._settings(quick=True)
    learners = list(latency._learners("cpu", settings))
    assert [name for name, _, _ in learners] == [name for name, _ in all_learners()]
    for _, learner, tasks in learners:
        assert learner.max_epochs == settings["epochs"] and learner.random_state == 0
        kinds = {np.asarray(task.y).dtype.kind for task in tasks}
        assert kinds == ({"i"} if learner._classification else {"f"})


def test_ratios_are_of_paired_percentiles_and_their_interval_covers_them():
    rng = np.random.default_rng(0)
    baseline = rng.uniform(1.0, 2.0, 200)
    stats = latency.ratio_stats(3 * baseline, baseline, n_bootstrap=200)
    assert stats["p50"]["ratio"] == pytest.approx(3.0) and stats["p95"]["ratio"] == pytest.approx(3.0)
    slower = latency.ratio_stats(3 * baseline + rng.uniform(0, 1, 200), baseline, n_bootstrap=200)
    for key in ("p50", "p95"):
        assert slower[key]["low"] <= slower[key]["ratio"] <= slower[key]["high"]
        assert slower[key]["ratio"] > 3.0


@pytest.mark.parametrize(("interval", "verdict"), [
    ({"ratio": 0.8, "low": 0.7, "high": 0.95}, "met"),
    ({"ratio": 1.3, "low": 1.1, "high": 1.5}, "missed"),
    ({"ratio": 0.9, "low": 0.7, "high": 1.2}, "not established"),
])
def test_goal_verdict_needs_the_whole_interval_on_one_side(interval, verdict):
    assert latency.goal_verdict(interval, 1.0) == verdict


def test_latency_times_learner_and_baselines_side_by_side_and_reports_the_goals(monkeypatch):
    registry = [("MAMLRegressor", MAMLRegressor), ("ProtoNetClassifier", ProtoNetClassifier)]
    monkeypatch.setattr(latency, "all_learners", lambda: registry)
    settings = dict(latency._settings(quick=True), calls=6, n_episodes=8, bootstrap=50)
    rows = latency.latency(settings, "cpu")
    assert list(rows) == ["MAMLRegressor", "ProtoNetClassifier"]
    assert list(rows["MAMLRegressor"]["ratios"]) == ["Ridge", "KNeighborsRegressor"]
    assert list(rows["ProtoNetClassifier"]["ratios"]) == ["LogisticRegression", "KNeighborsClassifier"]
    for row in rows.values():
        assert row["calls"] == 6 and 0 < row["median_ms"] <= row["p95_ms"]
        for baseline, ratio in row["ratios"].items():
            expected = row["median_ms"] / row["baselines"][baseline]["median_ms"]
            assert ratio["p50"]["ratio"] == pytest.approx(expected)
    text = "\n".join(latency._latency_section(rows, "CPU", "cpu"))
    assert "| ProtoNetClassifier |" in text and "| LogisticRegression |" in text
    assert "Goal: ProtoNetClassifier's median at most 0.5x LogisticRegression's:" in text
    assert "MAMLClassifier" not in text  # no goal line for a learner not timed
