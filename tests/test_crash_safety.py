"""Crash safety outside the training loop: an interrupted feature-cache build is rebuilt,
never read half; one writer per experiment folder; a full disk keeps the old checkpoint."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recog import pipeline
from recog.atomic import atomic_write_text
from recog.features.cache import FeatureCache
from recog.lockfile import LockedError, exp_lock
from recog.models import CTCModel, ModelOptions
from recog.models.checkpoint import load_checkpoint, save_checkpoint
from recog.tokens import timit_vocabulary
from tests.timit_tree import tiny_config

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

# Builds the train split's feature cache and SIGKILLs itself while computing the 4th
# utterance: the state a power cut or `kill -9` leaves behind.
KILLED_BUILD = """
import os, signal, sys
from pathlib import Path
from recog import pipeline
from recog.tasks import TimitTask
from tests.timit_tree import tiny_config

cfg = tiny_config(Path(sys.argv[1]))
extract, calls = TimitTask.extract, [0]
def dying_extract(self, utt):
    calls[0] += 1
    if calls[0] == 4:
        os.kill(os.getpid(), signal.SIGKILL)
    return extract(self, utt)
TimitTask.extract = dying_extract
pipeline.prepare(cfg)
pipeline.features(cfg, "train")
"""


def test_killed_cache_build_is_rebuilt_and_trains(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-c", KILLED_BUILD, str(tmp_path)], cwd=ROOT,
                         env=ENV, capture_output=True, text=True, timeout=300)
    assert run.returncode == -signal.SIGKILL, run.stderr
    features = tmp_path / "prep" / "features"
    left = sorted(p.name for p in features.iterdir())
    assert len(left) == 1 and left[0].startswith(".train-") and left[0].endswith(".tmp")
    assert (features / left[0]).stat().st_size > 0  # three utterances' frames, no index
    cfg = tiny_config(tmp_path)  # the same tree (same seed) and options: the same cache key
    result = pipeline.train(cfg, {})
    assert len(result["history"]) == 1 and (tmp_path / "exp" / "best.pt").is_file()
    assert not list(features.glob(".*.tmp"))  # the killed build's leftover is gone
    index = next(features.glob("train-*.json"))
    cache = FeatureCache(index)
    assert len(cache) == len(pipeline.load_split(cfg, "train")) and not cache.bad


def test_damaged_cache_is_rebuilt_not_read(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path)
    pipeline.prepare(cfg)
    cache = pipeline.features(cfg, "dev")
    expected = [cache[i].copy() for i in range(len(cache))]
    data = cache.index_path.with_suffix(".f32")
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])  # a half-written file
    with pytest.raises(Exception) as err:
        FeatureCache(cache.index_path)
    assert str(data) in str(err.value) and "interrupted or damaged build" in str(err.value)
    rebuilt = pipeline.features(cfg, "dev")
    assert rebuilt.index_path == cache.index_path
    assert all((rebuilt[i] == expected[i]).all() for i in range(len(expected)))
    cache.index_path.write_text('{"ids": [')  # a damaged index
    assert len(pipeline.features(cfg, "dev")) == len(expected)


HOLDER = """
import sys, time
from recog.lockfile import exp_lock
with exp_lock(sys.argv[1], "recog-train"):
    print("holding", flush=True)
    time.sleep(120)
"""


def test_second_writer_of_an_experiment_folder_is_refused(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(exp)], cwd=ROOT, env=ENV,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        with pytest.raises(LockedError) as err:
            with exp_lock(exp, "recog-decode"):
                pass
        message = str(err.value)
        assert str(exp.resolve()) in message and f"pid {holder.pid}, recog-train" in message
        cfg = tiny_config(tmp_path)
        cfg.exp_dir = str(exp)
        with pytest.raises(LockedError):
            pipeline.decode(cfg)  # refused before it reads anything
        cli = subprocess.run(
            [sys.executable, "-c", "from recog.cli import train; train()",
             f"corpus.root={cfg.corpus.root}", f"prepare.out={cfg.prepare.out}",
             f"exp_dir={exp}"], cwd=tmp_path, env=ENV, capture_output=True, text=True,
            timeout=300)
        assert cli.returncode == 2, cli.stderr
        assert cli.stderr.startswith(f"error: {exp.resolve()}: another run is writing")
        assert not (exp / "config.yaml").exists()  # the refused run wrote nothing
    finally:
        holder.kill()  # SIGKILL: the kernel drops the lock with the process
        holder.wait()
    with exp_lock(exp, "recog-train"), exp_lock(exp, "nested in the same process"):
        assert "recog-train" in (exp / ".lock").read_text()


def _model(seed: int) -> CTCModel:
    torch.manual_seed(seed)
    return CTCModel(3, len(timit_vocabulary(39)), ModelOptions(hidden=5, layers=1))


# Writes two files past a real kernel limit (RLIMIT_FSIZE: each write beyond it fails with
# EFBIG, as one beyond a full disk fails with ENOSPC): a checkpoint through save_checkpoint,
# and a file that torch.save writes by path itself (as recog-export's writers do), then
# prints what the CLI's error boundary makes of each failure.
FULL_DISK = """
import resource, signal, sys, torch
from pathlib import Path
from recog.atomic import atomic_path
from recog.errors import describe
from recog.models import CTCModel, ModelOptions
from recog.models.checkpoint import save_checkpoint
from recog.tokens import timit_vocabulary

path = Path(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 4096,) * 2)
big = CTCModel(3, len(timit_vocabulary(39)), ModelOptions(hidden=64, layers=2))
def by_path():
    with atomic_path(path) as tmp:
        torch.save(big.state_dict(), tmp)
for write in (lambda: save_checkpoint(path, big, timit_vocabulary(39), {"run": 2}), by_path):
    try:
        write()
    except Exception as e:
        print(describe(e)[0])
"""


def test_disk_full_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path: Path) -> None:
    vocab = timit_vocabulary(39)
    path = tmp_path / "exp" / "last.pt"
    save_checkpoint(path, _model(0), vocab, {"run": 1}, epoch=1)
    before = path.read_bytes()
    run = subprocess.run([sys.executable, "-c", FULL_DISK, str(path)], cwd=ROOT, env=ENV,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == (f"{path}: the file grew past the process's file-size limit while "
                        "writing it; the previous version of the file, if any, is intact")
    assert lines[1].startswith(f"{path}: ") and "the previous version" in lines[1], lines[1]
    assert path.read_bytes() == before
    model, _, payload = load_checkpoint(path)
    assert payload["epoch"] == 1 and payload["config"] == {"run": 1}
    for name, tensor in _model(0).state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name


def test_disk_full_while_writing_text_keeps_the_previous_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "history.json"
    atomic_write_text(path, "[1, 2]")
    real_fsync = os.fsync

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="no space left"):
        atomic_write_text(path, "[1, 2, 3]")
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert path.read_text() == "[1, 2]" and sorted(os.listdir(tmp_path)) == ["history.json"]
