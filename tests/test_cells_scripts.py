"""The cells reach the recipe through the config switch, and the cell benchmarks run (--quick)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image

from recog.models import load_checkpoint
from tests.timit_tree import make_tree

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}",
       "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}"}


def test_recipe_trains_a_fused_cell_behind_the_convlstm_front_end(tmp_path: Path) -> None:
    make_tree(tmp_path / "corpus")
    overrides = [
        "corpus.synthetic=false", f"corpus.root={tmp_path / 'corpus'}",
        f"prepare.out={tmp_path / 'prep'}", f"exp_dir={tmp_path / 'exp'}",
        "model.cell=graves", "model.frontend=convlstm", "model.convlstm.channels=2",
        "model.hidden=8", "model.layers=1", "model.stack=1", "trainer.epochs=1",
        "trainer.progress=false",
    ]
    run = subprocess.run(["bash", str(ROOT / "recipes/timit/run.sh"), "--stop-stage", "4",
                          *overrides], cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    model, _, _ = load_checkpoint(tmp_path / "exp/best.pt")
    assert (model.options.cell, model.options.frontend) == ("graves", "convlstm")
    assert type(model.rnn).__name__ == "StackedRecurrent" and model.frontend is not None
    assert (tmp_path / "exp/results/test/hyp.txt").read_text().strip()


def test_cells_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "cells.json"
    run = subprocess.run([sys.executable, str(ROOT / "scripts/bench/cells.py"), "--quick",
                          "--json", str(out)], env=ENV, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    records = json.loads(out.read_text())
    assert [r["name"] for r in records] == ["lstm", "lstm/packed", "peephole", "graves", "cifg"]
    assert records[0]["ratio_to_lstm"] == 1.0
    assert all(r["step_ms"] > 0 for r in records)
    assert "x lstm" in run.stdout


def test_long_lag_quick(tmp_path: Path) -> None:
    out, png = tmp_path / "lag.json", tmp_path / "lag.png"
    run = subprocess.run([sys.executable, str(ROOT / "scripts/bench/long_lag.py"), "--quick",
                          "--json", str(out), "--png", str(png)],
                         env=ENV, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    records = json.loads(out.read_text())
    assert {(r["cell"], r["lag"]) for r in records} == {
        (c, lag) for c in ("rnn", "lstm", "peephole", "graves", "cifg") for lag in (5, 10)}
    assert all(0 <= r["accuracy"] <= 1 for r in records)
    assert matplotlib.image.imread(png).shape[0] > 100
