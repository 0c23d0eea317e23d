"""The benchmark runner's quick mode: every benchmark runs small and reports."""

import json

from benchmarks.__main__ import BENCHMARKS, main


def test_quick_run_writes_results_and_report(tmp_path):
    results, doc = tmp_path / "results", tmp_path / "benchmarks.md"
    assert main(["run", "--quick", "--results", str(results), "--doc", str(doc)]) == 0
    for name in BENCHMARKS:
        record = json.loads((results / f"{name}.json").read_text())
        assert record["quick"] is True and record["figures"]
        assert record["machine"]["versions"]["torch"]
    text = doc.read_text()
    for heading in ("## Sinusoid regression", "### Speed against the per-task loop",
                    "### Memory against inner steps", "## Adaptation latency"):
        assert heading in text
    assert "nan" not in text.lower().replace("nanosec", "")
    for image in doc.parent.joinpath("benchmarks").glob("*.png"):
        assert image.stat().st_size > 5_000
    assert any(doc.parent.joinpath("benchmarks").glob("*.png"))
