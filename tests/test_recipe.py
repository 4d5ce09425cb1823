"""The recipe's stages, run as a user runs them, on a tiny tone corpus."""

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

from tests.timit_tree import SPEAKERS, make_tree

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_run_sh_stages_on_a_tiny_corpus(tmp_path: Path) -> None:
    # two core-test speakers, so the bootstrap over speakers has something to resample
    make_tree(tmp_path / "corpus", speakers={**SPEAKERS, "mwbt0": ("TEST", "DR1")})
    overrides = [
        "corpus.synthetic=false", f"corpus.root={tmp_path / 'corpus'}",
        f"prepare.out={tmp_path / 'prep'}", f"exp_dir={tmp_path / 'exp'}",
        "model.hidden=16", "model.layers=1", "model.stack=1", "trainer.epochs=2",
        "trainer.progress=false",
    ]
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    run = subprocess.run(["bash", str(ROOT / "recipes/timit/run.sh"), *overrides],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    for n, stage in enumerate(("prepare", "features", "train", "decode", "score", "lm"), 1):
        assert f"== stage {n}: {stage}" in run.stdout
    summary = json.loads((tmp_path / "prep/summary.json").read_text())
    assert summary["splits"]["train"]["utterances"] == 6
    assert summary["splits"]["test"]["speakers"] == 2
    exp = tmp_path / "exp"
    for name in ("best.pt", "last.pt", "train.log", "config.yaml", "history.json",
                 "results/report.md", "results/scores.json", "results/test/ref.txt",
                 "results/test/hyp.txt", "results/test/ref.trn", "results/dev/PER/scores.json",
                 "results/test/PER/report.md"):
        assert (exp / name).is_file(), name
    scores = json.loads((exp / "results/scores.json").read_text())
    test = scores["splits"]["test"]["PER"]
    per_speaker = json.loads((exp / "results/test/PER/scores.json").read_text())["per_speaker"]
    assert sum(c["err"] for c in per_speaker.values()) == test["err"]
    # resampling 2 speakers: AA, AB or BB; 1,000 draws hold AA and BB (each 1/4) far more
    # often than 2.5 %, so the 95 % interval runs from one speaker's rate to the other's
    rates = sorted(100.0 * c["err"] / c["n"] for c in per_speaker.values())
    assert len(rates) == 2
    assert test["ci95"] == pytest.approx(rates, abs=1e-3)  # scores.json rounds to 4 places
    # the reference counts what the tree holds, folded to 39 (h# -> sil, q deleted)
    refs = (exp / "results/test/ref.txt").read_text().split()
    assert test["n"] == len(refs) - test["utterances"] > 0
    assert "q" not in refs and "h#" not in refs
    for name in ("../training_curves", "confusion_PER", "posteriorgram"):
        image = matplotlib.image.imread(exp / "results" / f"{name}.png")
        assert image.shape[0] >= 300 and image.shape[1] >= 800, name
        assert f"({name}.png)" in (exp / "results/report.md").read_text()
    assert not (exp / "results/training_curves.png").exists()  # one per experiment
    for method in ("beam", "beam_lm"):  # stage 6: beam search, then with the tuned n-gram
        beam = json.loads((exp / f"results_{method}/scores.json").read_text())
        assert beam["splits"]["test"]["PER"]["n"] == test["n"]
    assert (exp / "lm/tokens.arpa").is_file()
    assert (exp / "lm/results_beam_lm.tune.json").is_file()
    history = json.loads((exp / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert "PER" in (exp / "results/report.md").read_text()


def test_prepare_stops_at_bad_input_naming_file_and_line(tmp_path: Path) -> None:
    base = make_tree(tmp_path / "corpus")
    phn = base / "TRAIN/DR1/FXYZ0/SI1027.PHN"
    phn.write_text(phn.read_text().replace("h#", "hx", 1))
    cmd = [str(BIN / "recog-prepare"), "corpus.synthetic=false",
           f"corpus.root={tmp_path / 'corpus'}", f"prepare.out={tmp_path / 'prep'}"]
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode != 0
    assert f"{phn}:1: unknown phone 'hx'" in run.stderr
    run = subprocess.run([*cmd, "data.skip_bad=true"], cwd=tmp_path, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    assert "rejected: 1" in run.stdout and str(phn) in run.stdout
    summary = json.loads((tmp_path / "prep/summary.json").read_text())
    assert summary["rejected"][0]["line"] == 1


def test_utterance_too_short_for_ctc_is_reported(tmp_path: Path) -> None:
    """Stacking 10 frames leaves fewer output frames than labels: an error naming the file,
    or with data.skip_bad the utterances are skipped and listed in skipped.json and report."""
    make_tree(tmp_path / "corpus")
    base = ["corpus.synthetic=false", f"corpus.root={tmp_path / 'corpus'}",
            f"prepare.out={tmp_path / 'prep'}", f"exp_dir={tmp_path / 'exp'}",
            "model.hidden=8", "model.layers=1", "model.stack=10", "trainer.epochs=1",
            "trainer.progress=false"]
    assert subprocess.run([str(BIN / "recog-prepare"), *base], cwd=tmp_path).returncode == 0
    run = subprocess.run([str(BIN / "recog-train"), *base], cwd=tmp_path, capture_output=True,
                         text=True)
    assert run.returncode != 0
    assert "cannot hold its" in run.stderr and ".WAV" in run.stderr
    assert not (tmp_path / "exp/last.pt").exists()
    run = subprocess.run([str(BIN / "recog-train"), *base, "data.skip_bad=true"],
                         cwd=tmp_path, capture_output=True, text=True)
    skipped = json.loads((tmp_path / "exp/skipped.json").read_text())
    assert skipped and all("under CTC" in s["reason"] for s in skipped)
    assert "skipped" in run.stdout
