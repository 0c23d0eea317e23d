"""The demo (``skmeta demo``) runs end to end and says what it promises.

The quick demo is run once; its tables must show the orderings the README
reports for the full run: the meta-learners above the models fitted on the
support set alone at every shot count, the pooled prior lifting MAML, and
MAML's sinusoid error lower after adapting than before.
"""

import pytest

import skmeta._demo
from skmeta.__main__ import main
from skmeta._demo import run_demo

META_LEARNERS = ["ProtoNet", "MAML", "MAML + pooled prior"]
SUPPORT_ONLY = ["logistic (support only)", "kNN (support only)"]
POOLED = "pooled logistic (all training rows)"


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    lines = []
    plot = tmp_path_factory.mktemp("demo") / "demo.png"
    results = run_demo(quick=True, output=plot, log=lambda *parts: lines.append(" ".join(map(str, parts))))
    return results, "\n".join(lines), plot


def test_command_line_passes_its_options_to_the_demo(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(skmeta._demo, "run_demo", lambda **kwargs: calls.append(kwargs))
    assert main(["demo", "--quick", "--output", str(tmp_path / "x.png"), "--seed", "3"]) == 0
    assert main(["demo"]) == 0
    assert calls == [
        {"quick": True, "output": str(tmp_path / "x.png"), "seed": 3},
        {"quick": False, "output": "skmeta_demo.png", "seed": 0},
    ]


def test_quick_demo_prints_its_tables_and_saves_the_plot(quick_demo):
    results, out, plot = quick_demo
    for learner in META_LEARNERS + SUPPORT_ONLY + [POOLED]:
        assert learner in out
    assert "before adaptation" in out and "after 10 steps" in out
    assert results["plot"] == plot.resolve()
    assert plot.stat().st_size > 10_000
    assert f"plot saved to {plot.resolve()}" in out


def test_meta_learners_beat_the_support_set_alone_at_every_shot_count(quick_demo):
    # While writing this test (quick run, seed 0): ProtoNet 0.745/0.772/0.755,
    # MAML 0.767/0.773/0.763 at 1/5/10 shots; logistic 0.588/0.684/0.720,
    # kNN 0.588/0.599/0.629.
    accuracy = quick_demo[0]["adult"]
    assert list(accuracy.columns) == [1, 5, 10]
    for shots in accuracy.columns:
        worst_meta = accuracy.loc[META_LEARNERS, shots].min()
        best_alone = accuracy.loc[SUPPORT_ONLY, shots].max()
        assert worst_meta > best_alone + 0.02, (shots, accuracy[shots].to_dict())


def test_the_pooled_prior_lifts_maml_toward_the_pooled_model(quick_demo):
    # While writing this test (quick run, seed 0): MAML 0.767/0.773/0.763, with the
    # prior 0.816/0.835/0.836, pooled logistic 0.863/0.866/0.868 at 1/5/10 shots.
    accuracy = quick_demo[0]["adult"]
    for shots in accuracy.columns:
        assert accuracy.loc["MAML + pooled prior", shots] > accuracy.loc["MAML", shots] + 0.02, (
            accuracy[shots].to_dict())
        # Without a prior, the pooled model beats the meta-learners: imbalanced
        # held-out occupations, class-balanced episodes.
        assert accuracy.loc[POOLED, shots] > accuracy.loc[["ProtoNet", "MAML"], shots].max()


def test_adapting_lowers_the_sinusoid_error(quick_demo):
    # While writing this test (quick run): 2.70 before, 1.87 after.
    mse = quick_demo[0]["sinusoid"]["query MSE"]
    before, after = mse.iloc[0], mse.iloc[1]
    assert mse.index[0].startswith("before") and mse.index[1].startswith("after")
    assert after < 0.8 * before
