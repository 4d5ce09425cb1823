"""The FSDD path end to end on six real recordings: train with every augmentation on, then
decode: the checkpoint's front end is used whatever the configuration says (an explicit
contradicting override is an error naming the key), the augmentation options never change
a decoding, the log says how many threads torch uses, and test-time VTLN (decode.warps)
reaches the front end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from recog.threads import choose_threads
from tests.test_fsdd import FIXTURES

AUGMENT = ["augment.spec_augment=true", "augment.speed_factors=[0.9,1.0,1.1]",
           "augment.noise_prob=0.5", "augment.time_warp=2"]


def _verb(verb: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    common = ["corpus=fsdd", f"corpus.root={FIXTURES}", "corpus.dev_speakers=[lucas]",
              "corpus.test_speakers=[jackson]", f"prepare.out={tmp_path / 'prep'}",
              f"exp_dir={tmp_path / 'exp'}", "trainer.progress=false"]
    return subprocess.run([sys.executable, "-c", f"from recog.cli import {verb}; {verb}()",
                           *common, *args], capture_output=True, text=True, cwd=tmp_path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("fsdd")
    assert _verb("prepare", tmp).returncode == 0
    run = _verb("train", tmp, "features.audio.sample_rate=8000", "features.audio.num_mel_bins=20",
                "model.hidden=8", "model.layers=1", "model.normalize=speaker",
                "trainer.epochs=1", *AUGMENT)
    assert run.returncode == 0, run.stderr
    assert "torch threads: " in run.stdout
    assert "train 9 utts" in run.stdout  # three speeds of the three training recordings
    return tmp


def test_features_verb_sets_the_thread_count(tmp_path: Path) -> None:
    """recog-features computes with trainer.num_threads torch threads (auto: half the cores,
    as training does), not torch's default of one per core, and says so."""
    assert _verb("prepare", tmp_path).returncode == 0
    run = _verb("features", tmp_path, "trainer.num_threads=0")
    assert run.returncode == 0, run.stderr
    assert f"torch threads: {choose_threads(0)} (trainer.num_threads=0, auto" in run.stdout


def _hyps(tmp: Path) -> str:
    return (tmp / "exp" / "results" / "test" / "hyp.txt").read_text()


def test_decode_uses_the_checkpoints_front_end(trained: Path) -> None:
    matching = _verb("decode", trained, "features.audio.sample_rate=8000",
                     "features.audio.num_mel_bins=20")
    assert matching.returncode == 0, matching.stderr
    expected = _hyps(trained)
    default = _verb("decode", trained)  # the configuration's 16 kHz, 40 bands
    assert default.returncode == 0, default.stderr
    assert "features.audio.sample_rate=8000: the checkpoint's" in default.stdout
    assert _hyps(trained) == expected
    caches = sorted(p.name for p in (trained / "prep" / "features").glob("test-*.json"))
    assert len(caches) == 1  # no second cache of 16 kHz features was built
    wrong = _verb("decode", trained, "features.audio.sample_rate=16000")
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert "features.audio.sample_rate: the checkpoint was trained with 8000" in wrong.stderr


def test_augmentation_never_reaches_decoding(trained: Path) -> None:
    plain = _verb("decode", trained)
    assert plain.returncode == 0, plain.stderr
    expected = _hyps(trained)
    augmented = _verb("decode", trained, *AUGMENT)
    assert augmented.returncode == 0, augmented.stderr
    assert _hyps(trained) == expected
    assert plain.stdout.splitlines()[-4:] == augmented.stdout.splitlines()[-4:]


def test_thread_default_takes_half_the_cores_per_local_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert choose_threads(0) == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert choose_threads(0) == 2
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert choose_threads(0) == 1  # a 2-core machine: never both cores per process
    assert choose_threads(3) == 3
    with pytest.raises(ValueError, match="num_threads"):
        choose_threads(-1)


def test_decode_warps_build_their_own_caches(trained: Path) -> None:
    """recog-decode decode.warps=[0.9,1.1] computes the test speaker's features at each
    warp (a cache apart from the plain one) and decodes; decode.warps=[1.0] is plain."""
    plain = _verb("decode", trained, "decode.results=plain")
    assert plain.returncode == 0, plain.stderr
    one = _verb("decode", trained, "decode.warps=[1.0]", "decode.results=one")
    assert one.returncode == 0, one.stderr
    exp = trained / "exp"
    for split in ("dev", "test"):
        assert (exp / "one" / split / "hyp.txt").read_text() == (
            exp / "plain" / split / "hyp.txt").read_text()
    run = _verb("decode", trained, "decode.warps=[0.9,1.1]", "decode.results=warped")
    assert run.returncode == 0, run.stderr
    caches = {p.name.rsplit("-", 1)[0] for p in (trained / "prep" / "features").glob("*.json")}
    assert {"test-w0.9", "test-w1.1", "dev-w0.9", "dev-w1.1"} <= caches
    assert (exp / "warped" / "test" / "hyp.txt").is_file()
    bad = _verb("decode", trained, "decode.warps=[0.1]")
    assert bad.returncode == 2 and "decode.warps: [0.1] outside" in bad.stderr


@pytest.mark.parametrize(("cores", "nproc", "launch"), [
    ("4", None, "torchrun --standalone --nproc-per-node=2 --no-python recog-train trainer=ddp"),
    ("2", None, "torchrun --standalone --nproc-per-node=2 --no-python recog-train trainer=ddp"),
    ("1", None, "recog-train hydra.searchpath"),
    ("2", "1", "recog-train hydra.searchpath"),
    ("1", "3", "torchrun --standalone --nproc-per-node=3 --no-python recog-train trainer=ddp"),
])
def test_recipe_trains_on_two_processes_where_there_are_two_cores(
        tmp_path: Path, cores: str, nproc: str | None, launch: str) -> None:
    """Stage 3 of recipes/fsdd/run.sh launches torchrun with one process per available core,
    at most two, unless --nproc says otherwise (stand-ins for nproc, torchrun and
    recog-train record what the stage ran)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in [("nproc", f"echo {cores}"), ("torchrun", 'echo "torchrun $*"'),
                       ("recog-train", 'echo "recog-train $*"')]:
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    root = Path(__file__).resolve().parents[1]
    options = ["--stage", "3", "--stop-stage", "3", *(["--nproc", nproc] if nproc else [])]
    run = subprocess.run(["bash", str(root / "recipes/fsdd/run.sh"), *options, "corpus.root=X"],
                         capture_output=True, text=True, cwd=tmp_path,
                         env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[1].startswith(launch)


def test_recipe_refuses_a_process_count_that_is_not_a_number(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run(["bash", str(root / "recipes/fsdd/run.sh"), "--nproc", "two",
                          "corpus.root=X"], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2
    assert "--nproc two" in run.stderr
