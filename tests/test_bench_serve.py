"""Smoke test of the recog-serve latency benchmark (--quick): it runs and its figures add up."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_serve_bench_quick(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, str(ROOT / "scripts/bench/serve.py"), "--quick",
                          "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    figures = json.loads(out.read_text())
    for kind in ("ink", "speech"):
        row = figures["inputs"][kind]
        assert row["server"]["n"] == row["direct"]["n"] == 3
        assert 0 < row["server"]["median_ms"] <= row["server"]["p95_ms"]
        assert row["overhead_ratio"] == row["server"]["median_ms"] / row["direct"]["median_ms"]
    assert figures["ink_goal_met"] == (figures["inputs"]["ink"]["server"]["median_ms"] <= 100)
    assert 15 <= figures["ink_line_chars"] <= 25 and "server/direct" in run.stdout
