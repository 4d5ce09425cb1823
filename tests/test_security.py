"""Security and integrity: a checkpoint cannot run code, damaged checkpoints and caches are
refused, a resume under other settings is refused, the lock file is not followed through a
link, and every failure of a console verb is one line naming the file, exit status 2."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from recog import cli
from recog.config import Config
from recog.data.utterance import DataError, Utterance
from recog.features.cache import FeatureCache, build_cache
from recog.finetune import FinetuneOptions
from recog.models import CTCModel, ModelOptions, load_checkpoint, save_checkpoint
from recog.models.checkpoint import content_hash, read_payload
from recog.stages.finetune import finetune as run_finetune
from tests import train_worker
from tests.train_worker import DIM, VOCAB, tiny_corpus

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
ENV.pop("RECOG_DEBUG", None)


class _Payload:
    """Pickles as a call of os.system: what a hostile checkpoint appends to its payload."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch '{self.marker}'",)


def _checkpoint(path: Path, **state: object) -> Path:
    torch.manual_seed(0)
    model = CTCModel(DIM, len(VOCAB), ModelOptions(hidden=8, layers=1))
    save_checkpoint(path, model, VOCAB, {"features": {"audio": {"kind": "fbank"}}}, **state)
    return path


def _poison(path: Path, marker: Path) -> None:
    """Rewrite ``path`` with a payload that runs ``touch marker`` when unpickled."""
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, "extra": _Payload(marker)}, path)


@pytest.fixture
def poisoned(tmp_path: Path) -> tuple[Path, Path]:
    """A best.pt whose unpickling would create ``marker``; checked to be live."""
    marker = tmp_path / "payload-ran"
    ckpt = _checkpoint(tmp_path / "exp" / "best.pt")
    _poison(ckpt, marker)
    torch.load(ckpt, weights_only=False)  # the payload is live: the old loader ran it
    assert marker.exists()
    marker.unlink()
    return ckpt, marker


def _refused(capsys: pytest.CaptureFixture, verb: object, argv: list[str], path: Path
             ) -> str:
    with pytest.raises(SystemExit) as e:
        verb(argv)  # type: ignore[operator]
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: {path}: "), err
    return err


def test_poisoned_checkpoint_is_refused_by_every_verb(
        poisoned: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt, marker = poisoned
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"")
    err = _refused(capsys, cli.transcribe, [str(ckpt), str(wav)], ckpt)
    assert "refused: the file holds pickled objects other than tensors" in err
    _refused(capsys, cli.export, [str(ckpt), str(tmp_path / "out")], ckpt)
    assert not (tmp_path / "out" / "model.ts").exists()
    cfg = Config()
    cfg.exp_dir = str(ckpt.parent)
    with pytest.raises(DataError, match="refused"):  # recog-decode's library call
        from recog import pipeline
        pipeline.decode(cfg)
    with pytest.raises(DataError, match="refused"):  # recog-finetune's
        run_finetune(cfg, FinetuneOptions(checkpoint=str(ckpt)))
    exp = tmp_path / "resume"  # a resuming recog-train reads last.pt
    _poison(_checkpoint(exp / "last.pt"), marker)
    with pytest.raises(DataError, match="refused"):
        train_worker.run(tmp_path / "data", exp, {"trainer.epochs": "1"})
    assert not marker.exists()


def test_poisoned_checkpoint_through_the_decode_command(poisoned: tuple[Path, Path]) -> None:
    """The Hydra verb, end to end: one line, exit 2, no payload run, no traceback."""
    ckpt, marker = poisoned
    run = subprocess.run([sys.executable, "-c", "from recog.cli import decode; decode()",
                          f"exp_dir={ckpt.parent}"], cwd=ckpt.parent.parent, env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith(f"error: {ckpt}: refused: ") and run.stderr.count("\n") == 1
    assert not marker.exists()


def _flip(path: Path, at: int) -> None:
    """Flip one bit of byte ``at`` (same size, as a disk or a copy damages a file)."""
    data = bytearray(path.read_bytes())
    data[at] ^= 0x10
    path.write_bytes(bytes(data))


def _tensor_offset(path: Path, name: str) -> int:
    """Where the bytes of the largest stored tensor begin inside the zip (an independent
    look: the zip's own directory, not recog's reader)."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        infos = [i for i in z.infolist() if "/data/" in i.filename]
        big = max(infos, key=lambda i: i.file_size)
        assert big.compress_type == zipfile.ZIP_STORED
        header = path.read_bytes()[big.header_offset:big.header_offset + 30]
        name_len = int.from_bytes(header[26:28], "little")
        extra_len = int.from_bytes(header[28:30], "little")
        return big.header_offset + 30 + name_len + extra_len + big.file_size // 2


@pytest.mark.parametrize("name", ["best.pt", "last.pt"])
def test_a_flipped_bit_in_a_checkpoint_is_detected(tmp_path: Path, name: str) -> None:
    path = _checkpoint(tmp_path / name, epoch=1, best=12.5, history=[{"epoch": 1}])
    model, _, _ = load_checkpoint(path)  # whole: it loads
    _flip(path, _tensor_offset(path, name))
    with pytest.raises(DataError) as err:
        read_payload(path)
    assert str(err.value) == (f"{path}: checkpoint content does not match its SHA-256 (the "
                              "file was damaged or edited after it was written); use another "
                              "copy")


def test_a_rewritten_value_in_a_checkpoint_is_detected(tmp_path: Path) -> None:
    """Not only tensor bytes: a plain value changed (and re-saved whole) is caught too."""
    path = _checkpoint(tmp_path / "best.pt", epoch=1)
    payload = torch.load(path, weights_only=True)
    assert payload["sha256"] == content_hash(payload)
    torch.save({**payload, "vocab": [*payload["vocab"][:-1], "z"]}, path)
    with pytest.raises(DataError, match="does not match its SHA-256"):
        read_payload(path)


def test_a_damaged_version_key_does_not_skip_the_hash_check(tmp_path: Path) -> None:
    """Found by scripts/fuzz_readers.py: one changed byte renamed "format_version" (to
    "gormat_version"), and the file passed for an unhashed layout-1 checkpoint. The byte is
    changed where the key's name lies in the pickle (found with a plain byte search)."""
    path = _checkpoint(tmp_path / "best.pt", epoch=1)
    data = bytearray(path.read_bytes())
    at = data.index(b"format_version")
    data[at] = ord("g")
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="does not match its SHA-256"):
        read_payload(path)


def test_content_hash_covers_every_value() -> None:
    """Each kind of change moves the hash; equal contents give equal hashes."""
    base = {"w": torch.zeros(3), "n": 1, "f": 0.5, "s": "a", "l": [1, 2], "d": {1: None}}
    same = {"d": {1: None}, "l": [1, 2], "s": "a", "f": 0.5, "n": 1, "w": torch.zeros(3)}
    assert content_hash(base) == content_hash(same)
    for change in ({"w": torch.zeros(4)}, {"w": torch.zeros(3, dtype=torch.float64)},
                   {"w": torch.tensor([0.0, 0.0, 1e-30])}, {"n": 2}, {"n": 1.0},
                   {"f": 0.25}, {"s": "b"}, {"l": (1, 2)}, {"d": {1: 0}}, {"extra": 1}):
        assert content_hash({**base, **change}) != content_hash(base), change


def test_checkpoint_with_non_finite_weights_is_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CTCModel(DIM, len(VOCAB), ModelOptions(hidden=8, layers=1))
    model.set_normalization(torch.full((DIM,), float("nan")), torch.ones(DIM))
    save_checkpoint(tmp_path / "best.pt", model, VOCAB, {})
    with pytest.raises(DataError, match="non-finite weights or normalisation statistics"):
        load_checkpoint(tmp_path / "best.pt")


def test_checkpoints_hold_only_what_weights_only_reads(tmp_path: Path) -> None:
    """A whole training run's last.pt (optimiser, schedule, numpy/python/torch RNG states)
    loads with weights_only=True, and resuming from it restores the numpy stream."""

    tiny_corpus(tmp_path / "data")
    train_worker.run(tmp_path / "data", tmp_path / "exp", {"trainer.epochs": "1"})
    state = torch.load(tmp_path / "exp" / "last.pt", weights_only=True)
    assert {"optimizer", "scheduler", "rng", "data_order"} <= set(state)
    from recog.train import rng_state, set_rng_state

    np.random.seed(5)
    np.random.standard_normal()  # a cached Gaussian in the state as well
    buffer = io.BytesIO()
    torch.save(rng_state(), buffer)
    expected = (np.random.random_sample(3).tolist(), np.random.standard_normal())
    buffer.seek(0)
    set_rng_state(torch.load(buffer, weights_only=True))
    assert (np.random.random_sample(3).tolist(), np.random.standard_normal()) == expected



# --------------------------------------------------------------------------- resume
def _train(tmp_path: Path, exp: Path, **overrides: str) -> dict:
    return train_worker.run(tmp_path / "data", exp, {"trainer.epochs": "1", **overrides})


def test_resume_with_another_batching_or_model_is_refused(tmp_path: Path) -> None:
    """Stopped with 2 utterances a step, rerun with 4: refused naming the key (the run would
    otherwise skip half the epoch); the same for the network's options."""
    exp = tmp_path / "exp"
    _train(tmp_path, exp, **{"trainer.max_batch_utts": "2"})
    before = (exp / "last.pt").read_bytes()
    with pytest.raises(DataError) as err:
        _train(tmp_path, exp, **{"trainer.max_batch_utts": "4", "trainer.epochs": "2"})
    message = str(err.value)
    assert message.startswith(f"{exp / 'last.pt'}: cannot resume: ")
    assert "(trainer.max_batch_utts: 2 -> 4); resuming would skip or repeat data" in message
    assert "name=..." in message and "trainer.resume=false" in message
    with pytest.raises(DataError, match=r"\(model.dropout: 0.1 -> 0.3\)"):
        _train(tmp_path, exp, **{"trainer.max_batch_utts": "2", "model.dropout": "0.3"})
    assert (exp / "last.pt").read_bytes() == before  # nothing trained, nothing written
    history = _train(tmp_path, exp, **{"trainer.max_batch_utts": "2", "trainer.epochs": "2"})
    assert [h["epoch"] for h in history["history"]] == [1, 2]  # same settings: resumes


def test_resume_false_keeps_a_finished_run_unless_overwrite(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    _train(tmp_path, exp)
    best = (exp / "best.pt").read_bytes()
    with pytest.raises(DataError) as err:
        _train(tmp_path, exp, **{"trainer.resume": "false"})
    assert str(err.value).startswith(f"{exp / 'best.pt'}: trainer.resume=false would replace")
    assert "trainer.overwrite=true" in str(err.value)
    assert (exp / "best.pt").read_bytes() == best
    _train(tmp_path, exp, **{"trainer.resume": "false", "trainer.overwrite": "true",
                             "trainer.seed": "3"})
    assert (exp / "best.pt").read_bytes() != best


def test_stale_temporary_checkpoints_are_removed(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    exp.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    stale = exp / f".last.pt.{int(dead.stdout)}.tmp"  # that process has exited
    stale.write_bytes(b"half a checkpoint")
    _train(tmp_path, exp)
    assert not stale.exists() and (exp / "last.pt").is_file()


@pytest.mark.parametrize("lr, words", [("1e3", "the training loss is "),
                                       ("1e30", "the dev loss is ")])
def test_divergence_stops_with_a_message(tmp_path: Path, lr: str, words: str) -> None:
    """Adam at a learning rate of 1e3 (or 1e30) blows the loss up: stopped at the epoch's
    end with the reason, before any best.pt is taken from it."""
    from recog.train import Diverged

    exp = tmp_path / "exp"
    with pytest.raises(Diverged) as err:
        _train(tmp_path, exp, **{"optim.lr": lr, "trainer.epochs": "3"})
    message = str(err.value)
    assert message.startswith(f"{exp}: training diverged at epoch 1, step ") and words in message
    assert "over 10 times that of a uniform output (1.79)" in message  # log 6 tokens
    assert "lower optim.lr" in message and not (exp / "best.pt").exists()


def test_non_finite_steps_in_a_row_stop_training(tmp_path: Path) -> None:
    from recog.train import Diverged

    exp = tmp_path / "exp"
    with pytest.raises(Diverged, match="3 steps in a row had a non-finite loss or gradient"):
        _train(tmp_path, exp, **{"optim.lr": "1e30", "trainer.max_bad_steps": "3"})


def test_learning_rate_beyond_float32_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"optim.lr=1e\+39: the learning rate must be a "
                       "positive number that float32 holds"):
        _train(tmp_path, tmp_path / "exp", **{"optim.lr": "1e39"})


def test_best_checkpoint_is_never_taken_from_a_non_finite_dev_loss(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from recog import train

    evaluate = train.evaluate

    def nan_loss(*args: object, **kwargs: object) -> tuple:
        _, err, hyps = evaluate(*args, **kwargs)
        return float("nan"), err, hyps

    monkeypatch.setattr(train, "evaluate", nan_loss)
    exp = tmp_path / "exp"
    _train(tmp_path, exp)
    assert (exp / "last.pt").is_file() and not (exp / "best.pt").exists()


# --------------------------------------------------------------------------- lock file
def test_lock_file_is_not_followed_through_a_link(tmp_path: Path) -> None:
    from recog.lockfile import exp_lock

    victim = tmp_path / "precious.txt"
    victim.write_text("keep me\n")
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / ".lock").symlink_to(victim)
    with pytest.raises(DataError) as err:
        with exp_lock(exp):
            pass
    assert str(err.value).startswith(f"{exp.resolve() / '.lock'}: the experiment lock is a "
                                     "symbolic link")
    assert victim.read_text() == "keep me\n"
    (exp / ".lock").unlink()
    os.mkfifo(exp / ".lock")
    with pytest.raises(DataError, match="not a regular file"):
        with exp_lock(exp):
            pass


# --------------------------------------------------------------------------- feature cache
@pytest.fixture
def cache_files(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    """A built cache of three utterances (4, 3 and 5 frames of 2 dimensions): its index,
    its frame file and the frames that went in."""
    rng = np.random.default_rng(0)
    frames = {f"u{i}": rng.standard_normal((n, 2)).astype(np.float32)
              for i, n in enumerate((4, 3, 5))}
    utts = [Utterance(k, "s", f"/x/{k}.wav", ("a",)) for k in frames]
    cache = build_cache(utts, lambda u: torch.from_numpy(frames[u.id]), {"k": 1},
                        tmp_path, "train", progress=False)
    return cache.index_path, cache.index_path.with_suffix(".f32"), np.concatenate(
        list(frames.values()))


def test_whole_cache_reads_back_what_went_in(cache_files: tuple) -> None:
    index, _, frames = cache_files
    cache = FeatureCache(index)
    assert np.array_equal(np.concatenate([cache[i] for i in range(3)]), frames)
    assert cache.sha256 == hashlib.sha256(frames.tobytes()).hexdigest()


def _spoil_frames(data: Path, at: int, value: bytes) -> None:
    raw = bytearray(data.read_bytes())
    raw[at : at + len(value)] = value
    data.write_bytes(bytes(raw))


@pytest.mark.parametrize("value, reason", [
    (np.float32(1e-3).tobytes(), "does not match the SHA-256 its index"),
    (np.float32("nan").tobytes(), "holds NaN or inf at frame 5 (utterance u1)"),
    (np.float32("inf").tobytes(), "holds NaN or inf at frame 5 (utterance u1)")],
    ids=["noise", "nan", "inf"])
def test_damaged_frames_are_refused(cache_files: tuple, value: bytes, reason: str) -> None:
    index, data, _ = cache_files
    _spoil_frames(data, (5 * 2 + 1) * 4, value)  # frame 5, dimension 1: in u1
    with pytest.raises(DataError) as err:
        FeatureCache(index)
    assert str(err.value).startswith(f"{data}: feature cache ") and reason in str(err.value)
    assert "delete it and rerun to rebuild the cache" in str(err.value)


def _edit_index(index: Path, **changes: object) -> None:
    d = json.loads(index.read_text())
    d.update(changes)
    index.write_text(json.dumps(d))


@pytest.mark.parametrize("changes, reason", [
    ({"offsets": [0, 0, 0]}, "utterance u1 starts at frame 0, not 4"),
    ({"offsets": [0, 4, 6]}, "utterance u2 starts at frame 6, not 7"),
    ({"lengths": [4, -3, 11]}, "a negative length"),
    ({"ids": ["u0", "u0", "u2"]}, "an utterance id appears twice"),
    ({"offsets": [0, 4]}, "ids, offsets and lengths differ in number"),
    ({"dim": "2"}, "unreadable feature-cache index (TypeError"),
    ({"sha256": None}, "unreadable feature-cache index (TypeError"),
    ({"bad": [{"index": 7, "path": "x", "reason": "y", "line": None}]}, "past the utt"),
    ({"ids": None}, "unreadable feature-cache index"),
], ids=["zeroed offsets", "overlapping", "negative length", "duplicate id", "short",
        "dim type", "no checksum", "bad index", "ids not a list"])
def test_impossible_index_is_refused(cache_files: tuple, changes: dict, reason: str) -> None:
    index, _, _ = cache_files
    _edit_index(index, **changes)
    with pytest.raises(DataError) as err:
        FeatureCache(index)
    assert str(err.value).startswith(f"{index}: ") and reason in str(err.value), err.value


def test_deeply_nested_index_is_refused(cache_files: tuple) -> None:
    index, _, _ = cache_files
    index.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match="unreadable feature-cache index"):
        FeatureCache(index)


def test_build_cache_rebuilds_a_damaged_cache(cache_files: tuple, tmp_path: Path) -> None:
    index, data, frames = cache_files
    _spoil_frames(data, 0, np.float32("nan").tobytes())
    utts = [Utterance(f"u{i}", "s", f"/x/u{i}.wav", ("a",)) for i in range(3)]
    parts = np.split(frames, [4, 7])
    rebuilt = build_cache(utts, lambda u: torch.from_numpy(parts[int(u.id[1])]), {"k": 1},
                          tmp_path, "train", progress=False)
    assert rebuilt.index_path == index
    assert np.array_equal(np.asarray(rebuilt.data), frames)


# --------------------------------------------------------------------------- error boundary
def _boundary(capsys: pytest.CaptureFixture, error: BaseException) -> tuple[int, str]:
    """Exit status and stderr of a verb that fails with ``error``."""
    from recog.errors import guarded

    def verb() -> None:
        raise error

    with pytest.raises(SystemExit) as e:
        guarded(verb)()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return int(e.value.code), err.rstrip("\n")


@pytest.mark.parametrize("error, line", [
    (DataError("/d/x.jsonl", "not JSON", 3), "error: /d/x.jsonl:3: not JSON"),
    (OSError(28, "No space left on device", "/d/exp/.lock"),
     "error: /d/exp/.lock: no space left on the device: free some and run again"),
    (OSError(40, "Too many levels of symbolic links", "/d/a.wav"),
     "error: /d/a.wav: too many levels of symbolic links"),
    (OSError(13, "Permission denied", "/d/best.pt"), "error: /d/best.pt: permission denied"),
    (MemoryError(), "error: out of memory"),
], ids=["data", "enospc", "eloop", "eacces", "memory"])
def test_error_boundary_prints_one_line_and_exits_2(
        capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, error: BaseException,
        line: str) -> None:
    monkeypatch.delenv("RECOG_DEBUG", raising=False)
    status, err = _boundary(capsys, error)
    assert status == 2 and err.startswith(line), err


def test_unexpected_error_names_the_source_line_and_the_debug_switch(
        capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from recog.models import checkpoint

    monkeypatch.delenv("RECOG_DEBUG", raising=False)

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(checkpoint.torch, "load", broken)  # an error nobody expected
    status, err = _boundary(capsys, _raised(lambda: checkpoint.content_hash({"x": object()})))
    assert status == 2 and "internal error, TypeError: a checkpoint holds tensors" in err
    assert f"{Path(checkpoint.__file__)}:" in err and "RECOG_DEBUG=1 (or --debug)" in err


def _raised(fn: object) -> BaseException:
    try:
        fn()  # type: ignore[operator]
    except BaseException as e:  # noqa: BLE001 - the test hands it to the boundary
        return e
    raise AssertionError("no exception")


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from recog.errors import guarded

    def verb(argv: list[str]) -> None:
        assert argv == ["x"]  # --debug taken off
        raise KeyError("boom")

    monkeypatch.setenv("RECOG_DEBUG", "0")  # recorded, so --debug's setting is undone
    with pytest.raises(KeyError):
        guarded(verb)(["x", "--debug"])
    monkeypatch.setenv("RECOG_DEBUG", "0")
    monkeypatch.setenv("RECOG_DEBUG", "1")
    with pytest.raises(KeyError):
        guarded(verb)(["x"])


def test_keyboard_interrupt_outside_training_exits_130(
        capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECOG_DEBUG", raising=False)
    status, err = _boundary(capsys, KeyboardInterrupt())
    assert status == 130 and err.startswith("error: interrupted (SIGINT)")


def test_ctrl_c_while_a_verb_is_still_importing_is_one_line() -> None:
    """The console scripts import the CLI (and torch) inside the error boundary: an
    interrupt during that import (planted: importing torch raises it, every time) exits
    130 with the one line, not an import traceback; and describing it imports nothing (a
    second import of a torch that a Ctrl-C left half-imported crashed with SIGSEGV)."""
    code = ("import sys\n"
            "class Interrupting:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'torch':\n"
            "            raise KeyboardInterrupt\n"
            "sys.meta_path.insert(0, Interrupting())\n"
            "from recog.entry import train\n"
            "sys.exit(train())\n")
    env = {k: v for k, v in os.environ.items() if k != "RECOG_DEBUG"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.splitlines() == [
        "error: interrupted (SIGINT); files being written keep their previous version"]


def test_every_console_script_names_a_verb() -> None:
    import importlib
    from importlib.metadata import entry_points

    scripts = [e for e in entry_points(group="console_scripts") if e.name.startswith("recog-")]
    assert len(scripts) == 10 and all(e.value.startswith("recog.entry:") for e in scripts)
    for script in scripts:
        wrapper = script.load()
        module = "recog.serve.command" if wrapper.__name__ == "serve" else "recog.cli"
        assert callable(getattr(importlib.import_module(module), wrapper.__name__)), script



@pytest.mark.parametrize("content", [b"", b"garbage" * 10, None], ids=["empty", "garbage",
                                                                       "truncated"])
def test_unreadable_last_checkpoint_says_how_to_recover(tmp_path: Path, content: bytes | None
                                                        ) -> None:
    exp = tmp_path / "exp"
    _train(tmp_path, exp)
    last = exp / "last.pt"
    last.write_bytes(last.read_bytes()[:1000] if content is None else content)
    with pytest.raises(DataError) as err:
        _train(tmp_path, exp, **{"trainer.epochs": "2"})
    message = str(err.value)
    assert message.startswith(f"{last}: cannot resume from it: not a readable checkpoint")
    assert "move it away" in message and "trainer.resume=false trainer.overwrite=true" in message


def test_last_checkpoint_of_another_model_shape(tmp_path: Path) -> None:
    """A whole last.pt (hash right, settings equal) holding another network's weights."""
    exp = tmp_path / "exp"
    _train(tmp_path, exp)
    payload = torch.load(exp / "last.pt", weights_only=True)
    other = CTCModel(DIM, len(VOCAB), ModelOptions(hidden=16, layers=2))
    payload["model"] = other.state_dict()
    payload["sha256"] = content_hash(payload)
    torch.save(payload, exp / "last.pt")
    with pytest.raises(DataError) as err:
        _train(tmp_path, exp, **{"trainer.epochs": "2"})
    assert str(err.value).startswith(f"{exp / 'last.pt'}: does not fit this model or optimiser")


@pytest.mark.parametrize("name, content, words", [
    ("history.json", "[{\"epoch\": 1", "not JSON"),
    ("history.json", "{\"epoch\": 1}", "a JSON list"),
    ("skipped.json", "[{\"path\": 1}]", "a JSON list of objects with path, reason"),
    ("summary.json", "[" * 100_000, "unreadable (RecursionError"),
], ids=["truncated history", "history not a list", "skipped without reason", "deep summary"])
def test_damaged_run_records_are_errors_naming_the_file(tmp_path: Path, name: str,
                                                        content: str, words: str) -> None:
    from recog.data.utterance import read_json

    path = tmp_path / name
    path.write_text(content)
    keys = {"history.json": ("epoch",), "skipped.json": ("path", "reason")}.get(name, ())
    with pytest.raises(DataError) as err:
        read_json(path, dict if name == "summary.json" else list, keys)
    assert str(err.value).startswith(f"{path}") and words in str(err.value), err.value
    assert "delete it or rerun the stage that writes it" in str(err.value)
