"""Smoke test of scripts/fuzz_readers.py (--quick), and proof that it can fail."""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

from recog.data.utterance import DataError

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fuzz_readers.py"


def _module():  # noqa: ANN202 - the script as a module
    spec = importlib.util.spec_from_file_location("fuzz_readers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_quick_run_tries_every_reader(tmp_path: Path) -> None:
    out = tmp_path / "fuzz.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(out),
                          "--save", str(tmp_path / "failures")], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    counts = json.loads(out.read_text())
    assert set(counts["readers"]) == {
        "timit .WAV", "timit .PHN", "timit .WRD", "timit .TXT", "iamondb line XML",
        "iamondb ascii", "iamondb split file", "prepared split JSONL", "manifest JSONL",
        "kaldi dir text", "kaldi dir segments", "JSON strokes", "audio WAV", "audio FLAC",
        "checkpoint best.pt", "feature cache frames", "feature cache index"}
    for name, c in counts["readers"].items():
        assert c["tried"] == 8 and c["tried"] == c["clean"] + c["data_error"], name
    assert "total" in run.stdout and counts["failures"] == []


def test_a_foreign_exception_is_a_failure(tmp_path: Path) -> None:
    fuzz = _module()
    path = tmp_path / "x.txt"
    path.write_bytes(b"1 2 3\n")

    def reader() -> None:
        data = path.read_bytes()
        if b"2" not in data:
            raise KeyError("crashed deep inside")
        if b"3" not in data:
            raise DataError(path, "a clean rejection")

    target = fuzz.Target("toy", path, [b"1 2 3\n"], reader)
    fuzz.fuzz(target, 0.5, random.Random(0), 5.0, tmp_path / "failures")
    assert target.tried == target.clean + target.rejected + len(target.failures)
    assert target.rejected > 0 and target.failures
    assert {f["error"] for f in target.failures} == {"KeyError"}
    assert Path(target.failures[0]["input"]).is_file()
    assert path.read_bytes() == b"1 2 3\n"  # the original is put back
