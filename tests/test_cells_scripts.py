"""The cells reach the recipe through the config switch, the cell benchmarks run (--quick)
and report medians of their raw times, and the committed results are the README's table."""

import json
import math
import os
import re
import statistics
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
    assert [r["name"] for r in records] == list(BENCH_CELLS)
    _check_cell_records(records)
    for r in records:  # the printed table is the JSON's
        assert f"{r['name']:18} {r['step_ms']:9.1f}" in run.stdout, r["name"]


BENCH_CELLS = ("lstm", "lstm/packed", "peephole", "graves", "cifg", "indy")


def _check_cell_records(records: list[dict]) -> None:
    """Each cell timed at least 5 times; its step time the median of those; its ratio that
    median over nn.LSTM's (recomputed here from the raw times)."""
    lstm = statistics.median(next(r for r in records if r["name"] == "lstm")["times_ms"])
    for r in records:
        assert len(r["times_ms"]) >= 5, r["name"]
        assert all(t > 0 for t in r["times_ms"]), r["name"]
        assert math.isclose(r["step_ms"], statistics.median(r["times_ms"])), r["name"]
        assert abs(r["ratio_to_lstm"] - statistics.median(r["times_ms"]) / lstm) <= 5e-4


def test_committed_cells_results_agree_with_the_readme_table() -> None:
    records = json.loads((ROOT / "scripts/bench/results/cells.json").read_text())
    assert [r["name"] for r in records] == list(BENCH_CELLS)
    _check_cell_records(records)
    readme = (ROOT / "README.md").read_text()
    table = readme.split("| cell | step ms | frames/s | × `lstm` |", 1)[1].split("\n\n", 1)[0]
    rows = {re.search(r"`([^`]+)`", line).group(1): [c.strip() for c in line.split("|")[2:5]]
            for line in table.strip().splitlines()[1:]}
    assert list(rows) == list(BENCH_CELLS)
    text = (ROOT / "scripts/bench/results/cells.txt").read_text()
    batch_frames = int(re.search(r"B=(\d+)", text).group(1)) * int(re.search(r"T=(\d+)",
                                                                             text).group(1))
    for r in records:
        ms, fps, ratio = rows[r["name"]]
        assert ms == f"{r['step_ms']:,.0f}", r["name"]
        assert fps == f"{batch_frames / r['step_ms'] * 1000:,.0f}", r["name"]
        assert ratio == f"{r['step_ms'] / records[0]['step_ms']:.2f}", r["name"]  # as printed


def test_long_lag_quick(tmp_path: Path) -> None:
    out, png = tmp_path / "lag.json", tmp_path / "lag.png"
    run = subprocess.run([sys.executable, str(ROOT / "scripts/bench/long_lag.py"), "--quick",
                          "--json", str(out), "--png", str(png)],
                         env=ENV, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    records = json.loads(out.read_text())
    assert {(r["cell"], r["lag"]) for r in records} == {
        (c, lag) for c in ("rnn", "lstm", "peephole", "graves", "cifg", "indy")
        for lag in (5, 10)}
    assert all(0 <= r["accuracy"] <= 1 for r in records)
    assert matplotlib.image.imread(png).shape[0] > 100
