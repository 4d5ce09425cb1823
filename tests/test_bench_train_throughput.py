"""Smoke test of the training-throughput benchmark (--quick): it runs and reports figures."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_train_throughput_quick(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, str(ROOT / "scripts/bench/train_throughput.py"),
                          "--quick", "--json", str(out)], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    figures = json.loads(out.read_text())
    assert set(figures["sizes"]) == {"graves2013", "synthetic"}
    for entry in figures["sizes"].values():
        assert entry["pipeline_frames_per_s"] > 0 and entry["bare_frames_per_s"] > 0
        assert entry["ratio"] == entry["pipeline_frames_per_s"] / entry["bare_frames_per_s"]
        assert 0 <= entry["padding_fraction"] < 1
    assert "ratio" in run.stdout and "pipeline workers=0" in run.stdout
