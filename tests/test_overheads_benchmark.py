"""The overheads benchmark: contenders timed side by side, reported per call."""

from benchmarks import overheads


def test_episode_drawing_compares_the_loader_with_sampling_per_episode():
    result = overheads.episodes(dict(overheads._settings(quick=True), repeats=2, calls=5))
    assert list(result["seconds"]) == ["loader", "sample per episode"]
    assert result["ratio"]["of"] == "loader / sample per episode" and result["ratio"]["n"] == 2
    assert result["per_adapt_divisor"] == 20  # the time of one pass over 20 episodes, per episode
    record = {"config": overheads._settings(quick=True),
              "figures": {"validation": result, "adaptation": {**result, "per_adapt_divisor": 1},
                          "episodes": result}}
    assert "| draw an episode (2 ways, 5 shots, 10 queries) | loader |" in overheads.report(record, None, "")
