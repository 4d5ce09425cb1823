"""Smoke test of the ink-encoding benchmark (--quick): it runs and its figures add up."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_pen_encodings_quick(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, str(ROOT / "scripts/bench/pen_encodings.py"),
                          "--quick", "--json", str(out)], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    figures = json.loads(out.read_text())
    g, b = figures["encodings"]["graves"], figures["encodings"]["bezier"]
    assert figures["graves_rows_per_bezier_row"] == g["rows"] / b["rows"]
    assert figures["raw_points_per_curve_row"] == figures["raw_points"] / b["rows"]
    assert figures["epoch_speedup"] == g["epoch_s"] / b["epoch_s"] and b["epoch_s"] > 0
    assert b["rows"] < g["rows"] < figures["raw_points"]
    assert "graves rows / bezier rows" in run.stdout
