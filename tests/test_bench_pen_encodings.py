"""Smoke test of the ink-encoding benchmark (--quick): it runs and its figures add up."""

from pathlib import Path

from tests.bench_run import quick_bench


def test_pen_encodings_quick(tmp_path: Path) -> None:
    figures, stdout = quick_bench("pen_encodings.py", tmp_path)
    g, b = figures["encodings"]["graves"], figures["encodings"]["bezier"]
    assert figures["graves_rows_per_bezier_row"] == g["rows"] / b["rows"]
    assert figures["raw_points_per_curve_row"] == figures["raw_points"] / b["rows"]
    assert figures["epoch_speedup"] == g["epoch_s"] / b["epoch_s"] and b["epoch_s"] > 0
    assert b["rows"] < g["rows"] < figures["raw_points"]
    assert "graves rows / bezier rows" in stdout
    for r in (g, b):  # five timed epochs each, the median reported
        times = sorted(r["epoch_times_s"])
        assert len(times) == 5 and r["epoch_s"] == times[2]


def test_pen_encodings_refuses_fewer_than_five_repeats() -> None:
    import subprocess
    import sys

    from tests.bench_run import ROOT

    run = subprocess.run([sys.executable, str(ROOT / "scripts/bench/pen_encodings.py"),
                          "--quick", "--repeats", "4"], capture_output=True, text=True)
    assert run.returncode == 2 and "at least 5" in run.stderr
