"""Runs a benchmark of scripts/bench/ in its --quick mode for the smoke tests."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quick_bench(script: str, tmp_path: Path) -> tuple[dict, str]:
    """``scripts/bench/<script> --quick --json FILE``: asserts it exits 0; its JSON and stdout."""
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, str(ROOT / "scripts/bench" / script), "--quick",
                          "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(out.read_text()), run.stdout
