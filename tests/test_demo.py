"""The demo (``skmeta demo``) runs end to end and says what it promises."""

from skmeta.__main__ import main


def test_quick_demo_prints_tables_and_saves_plot(tmp_path, capsys):
    plot = tmp_path / "demo.png"
    assert main(["demo", "--quick", "--output", str(plot)]) == 0
    out = capsys.readouterr().out
    for learner in ("ProtoNet", "MAML", "logistic (support only)", "kNN (support only)",
                    "pooled logistic (all training rows)"):
        assert learner in out
    assert "before adaptation" in out and "after 10 steps" in out
    assert plot.stat().st_size > 10_000
    assert f"plot saved to {plot.resolve()}" in out
