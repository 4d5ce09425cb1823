"""Smoke test of the training-throughput benchmark (--quick): it runs and reports figures."""

from pathlib import Path

from tests.bench_run import quick_bench


def test_train_throughput_quick(tmp_path: Path) -> None:
    figures, stdout = quick_bench("train_throughput.py", tmp_path)
    assert set(figures["sizes"]) == {"graves2013", "synthetic"}
    for entry in figures["sizes"].values():
        assert entry["pipeline_frames_per_s"] > 0 and entry["bare_frames_per_s"] > 0
        assert entry["ratio"] == entry["pipeline_frames_per_s"] / entry["bare_frames_per_s"]
        assert 0 <= entry["padding_fraction"] < 1
    assert "ratio" in stdout and "pipeline workers=0" in stdout
