#!/usr/bin/env python3
"""Fuzz recog's readers: run each on random mutations of valid files for a bounded time.

Every outcome must be a clean result or recog's own error type (DataError); anything else
(a crash deep inside, a hang past --timeout, a front-end exception other than ValueError that
the feature cache had to wrap) is a failure: it is printed, its input saved
under --save, and the exit status is 1. A seeded random mutator (bit flips, interesting
bytes and numbers, deleted, repeated and inserted ranges, truncation, swapped and repeated
lines, splices of two files) rewrites one file of a valid item at a time; the readers are
the ones the pipeline runs, followed by the feature extraction and checks of the feature
cache, so that input the reader lets through is also fuzzed through the front end.
RIFF and FLAC audio are fuzzed with their sample-rate fields set to odd values as well;
checkpoints and feature caches with truncation and bit flips, where a damaged file that
loads without an error counts as a failure too (its contents must equal the original's).

    python scripts/fuzz_readers.py --seconds 300          # about 300 s in all
    python scripts/fuzz_readers.py --tries 200            # 200 inputs a reader, seeded
    python scripts/fuzz_readers.py --quick                # the smoke test's size (8 each)
"""

from __future__ import annotations

import argparse
import json
import random
import re
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recog.data import iamondb, manifest, timit  # noqa: E402
from recog.data.utterance import DataError, Utterance, read_jsonl, write_jsonl  # noqa: E402
from recog.features.audio import AudioFeatureOptions  # noqa: E402
from recog.features.cache import _checked_features  # noqa: E402
from recog.features.pen import PenFeatureOptions  # noqa: E402
from recog.tasks import InkTask, TimitTask  # noqa: E402
from tests import iamondb_tree, timit_tree  # noqa: E402

INTERESTING_BYTES = b"\x00\xff\x7f\x80\n -9.<>\"'&="
INTERESTING_NUMBERS = ["0", "-1", "1", "65535", "4294967296", "99999999999999999999", "1e309",
                       "-1e309", "nan", "inf", "0.0000001", "1e9", "-0", "", "١٢", "3.5"]
NUMBER = re.compile(rb"-?\d+(\.\d+)?")
# The feature cache turns any front-end exception into a DataError naming the file; one that
# is not a ValueError (the front ends' own "bad input" signal) means the front end did not
# check its input, so the fuzzer counts it as a failure.
UNCHECKED = re.compile(r"features cannot be computed \((?!ValueError)(\w+):")


def mutate(data: bytes, rng: random.Random, other: bytes, header: int = 0) -> bytes:
    """One to four random edits of ``data`` (within the first ``header`` bytes half of the
    time when ``header`` is set, where a format's structure lives)."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        n = len(buf)
        limit = header if header and n and rng.random() < 0.5 else n
        limit = max(1, min(limit, n))
        pos = rng.randrange(limit) if n else 0
        op = rng.randrange(10)
        if op == 0 and n:
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            buf[pos] = rng.choice(INTERESTING_BYTES)
        elif op == 2 and n:
            del buf[pos : pos + rng.randint(1, 64)]
        elif op == 3 and n:
            chunk = buf[pos : pos + rng.randint(1, 64)]
            buf[pos:pos] = chunk * rng.randint(1, 8)
        elif op == 4:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 5:
            del buf[rng.randint(0, n):]
        elif op in (6, 7):
            numbers = list(NUMBER.finditer(buf))
            if numbers:
                m = rng.choice(numbers)
                buf[m.start() : m.end()] = rng.choice(INTERESTING_NUMBERS).encode()
        elif op == 8:
            lines = bytes(buf).split(b"\n")
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            if rng.random() < 0.5:
                lines[i], lines[j] = lines[j], lines[i]
            else:
                lines.insert(i, lines[j])
            buf = bytearray(b"\n".join(lines))
        elif other:
            cut = rng.randrange(len(other))
            buf = buf[:pos] + bytearray(other[cut : cut + rng.randint(1, 256)])
    return bytes(buf)


@dataclass
class Target:
    """One reader: the file it reads (rewritten each try), seeds, and how to run it."""

    name: str
    path: Path
    seeds: list[bytes]
    run: Callable[[], object]
    header: int = 0
    special: Callable[[bytes, random.Random], bytes] | None = None  # a format-aware edit
    tried: int = 0
    clean: int = 0
    rejected: int = 0
    failures: list[dict] = field(default_factory=list)


def timit_targets(root: Path) -> list[Target]:
    """The TIMIT reader on each of an utterance's files (.WAV, .PHN, .WRD, .TXT), then the
    audio front end and the cache's checks on what it accepts."""
    tree = timit_tree.make_tree(root / "timit", speakers={"fxyz0": ("TRAIN", "DR1")})
    folder = tree / "TRAIN" / "DR1" / "FXYZ0"
    stems = [p.with_suffix("") for p in sorted(folder.glob("*.PHN"))]
    task = TimitTask(61, AudioFeatureOptions())
    target_stem = stems[0]

    def run() -> object:
        utt = timit.read_utterance(target_stem.with_suffix(".PHN"), "fxyz0", "dr1")
        return _checked_features(utt, task.extract, None)

    targets = []
    for ext, header in ((".WAV", 1024), (".PHN", 0), (".WRD", 0),
                        (".TXT", 0)):
        seeds = [s.with_suffix(ext).read_bytes() for s in stems]
        targets.append(Target(f"timit {ext}", target_stem.with_suffix(ext), seeds, run,
                              header))
    return targets


def iamondb_targets(root: Path) -> list[Target]:
    """The IAM-OnDB readers: a line's XML (then both pen front ends and the cache's checks),
    a form's ascii transcription, and a split file."""
    tree = iamondb_tree.make_tree(root / "iamondb")
    xmls = sorted((tree / "lineStrokes").rglob("*.xml"))
    asciis = sorted((tree / "ascii").rglob("*.txt"))
    splits = sorted(tree.glob("*.txt"))
    xml = xmls[0]
    tasks = [InkTask(PenFeatureOptions(kind=k)) for k in ("compact", "graves")]

    def run_xml() -> object:
        iamondb.read_line_strokes(xml)
        utt = Utterance("line", "w", str(xml), ("a",))
        return [_checked_features(utt, t.extract, None) for t in tasks]

    return [
        Target("iamondb line XML", xml, [p.read_bytes() for p in xmls], run_xml, 400),
        Target("iamondb ascii", asciis[0], [p.read_bytes() for p in asciis],
               lambda: iamondb.read_transcription(asciis[0])),
        Target("iamondb split file", splits[0], [p.read_bytes() for p in splits],
               lambda: iamondb.read_split_file(splits[0])),
    ]


def jsonl_targets(root: Path) -> list[Target]:
    """The prepared-split (JSONL manifest) reader."""
    path = root / "jsonl" / "train.jsonl"
    utts = [Utterance(f"spk{i}_u{i}", f"spk{i}", f"/data/u{i}.wav", tuple("ab c" * i),
                      f"text {i}", {"dialect": "dr1", "num_samples": 1000 * i})
            for i in range(1, 5)]
    write_jsonl(path, utts)
    return [Target("prepared split JSONL", path, [path.read_bytes()],
                   lambda: read_jsonl(path))]


def manifest_targets(root: Path) -> list[Target]:
    """The bring-your-own-data readers: a JSONL manifest over a WAV file, a Kaldi data
    directory's text and segments, and a JSON stroke file (then its pen features)."""
    import numpy as np
    import soundfile as sf

    folder = root / "manifest"
    (folder / "kaldi").mkdir(parents=True)
    wav = folder / "a.wav"
    sf.write(wav, 0.3 * np.sin(np.arange(8000) / 5.0), 16000, subtype="PCM_16")
    tok = manifest.Tokenizer("phones")
    jsonl = folder / "train.jsonl"
    jsonl.write_text("".join(json.dumps({
        "id": f"s{i}_u{i}", "source": "a.wav", "speaker": f"s{i}", "text": "sil ah b sil",
        "offset": 0.1 * i, "duration": 0.2}) + "\n" for i in range(3)))
    kaldi = folder / "kaldi"
    (kaldi / "wav.scp").write_text(f"rec1 {wav}\n")
    (kaldi / "text").write_text("u1 sil ah b\nu2 b ah sil\n")
    (kaldi / "utt2spk").write_text("u1 s1\nu2 s1\n")
    (kaldi / "segments").write_text("u1 rec1 0.0 0.2\nu2 rec1 0.2 0.45\n")
    strokes = folder / "line.json"
    strokes.write_text(json.dumps({"strokes": [[[0, 0, 0], [1, 2, 0.01], [2, 3, 0.02]],
                                               [[5, 5, 0.1], [6, 4, 0.11], [7, 4, 0.12]]]}))
    task = InkTask(PenFeatureOptions())
    return [
        Target("manifest JSONL", jsonl, [jsonl.read_bytes()],
               lambda: manifest.read_manifest(jsonl, tok)),
        Target("kaldi dir text", kaldi / "text", [(kaldi / "text").read_bytes()],
               lambda: manifest.read_kaldi_dir(kaldi, tok)),
        Target("kaldi dir segments", kaldi / "segments", [(kaldi / "segments").read_bytes()],
               lambda: manifest.read_kaldi_dir(kaldi, tok)),
        Target("JSON strokes", strokes, [strokes.read_bytes()],
               lambda: _checked_features(Utterance("line", "w", str(strokes), ("a",)),
                                         task.extract, None)),
    ]


ODD_RATES = [0, 1, 3_999, 4_000, 8_001, 11_025, 22_051, 44_101, 96_000, 192_001, 1_000_003,
             (1 << 20) - 1, (1 << 31) - 1, (1 << 32) - 1]


def _riff_rate(data: bytes, rng: random.Random) -> bytes:
    """A RIFF WAV with another sample rate (and byte rate) in its fmt chunk."""
    i = data.find(b"fmt ")
    if i < 0 or len(data) < i + 20:
        return data
    buf, rate = bytearray(data), rng.choice(ODD_RATES)
    buf[i + 12 : i + 16] = rate.to_bytes(4, "little")
    if rng.random() < 0.5:
        buf[i + 16 : i + 20] = (rate * 2 % (1 << 32)).to_bytes(4, "little")
    return bytes(buf)


def _flac_rate(data: bytes, rng: random.Random) -> bytes:
    """A FLAC file with another sample rate in STREAMINFO (20 bits at byte 18)."""
    if len(data) < 22 or data[:4] != b"fLaC":
        return data
    buf, rate = bytearray(data), rng.choice(ODD_RATES) & 0xFFFFF
    word = int.from_bytes(buf[18:21], "big")
    word = (rate << 4) | (word & 0xF)
    buf[18:21] = (word & 0xFFFFFF).to_bytes(3, "big")
    return bytes(buf)


def audio_targets(root: Path) -> list[Target]:
    """soundfile's RIFF WAV and FLAC through recog.data.audio (header checks, limits, the
    samples), then the audio front end from each file's own rate."""
    import numpy as np
    import soundfile as sf

    from recog.data.audio import audio_info, read_audio

    folder = root / "audio"
    folder.mkdir()
    task = TimitTask(61, AudioFeatureOptions())
    targets = []
    for fmt, special in (("WAV", _riff_rate), ("FLAC", _flac_rate)):
        seeds = []
        for k, (rate, channels, subtype) in enumerate(((16000, 1, "PCM_16"),
                                                       (22050, 2, "PCM_16"),
                                                       (8000, 1, "PCM_24"))):
            path = folder / f"seed{k}.{fmt.lower()}"
            t = np.arange(rate // 4) / rate
            samples = np.stack([0.3 * np.sin(2 * np.pi * 440 * t)] * channels, axis=1)
            sf.write(path, samples, rate, format=fmt, subtype=subtype)
            seeds.append(path.read_bytes())
        path = folder / f"target.{fmt.lower()}"
        path.write_bytes(seeds[0])

        def run(path: Path = path) -> object:
            audio_info(path)
            read_audio(path)
            return _checked_features(Utterance("u", "s", str(path), ("a",)), task.extract,
                                     None)

        targets.append(Target(f"audio {fmt}", path, seeds, run, 64, special))
    return targets


def integrity_targets(root: Path) -> list[Target]:
    """A checkpoint (best.pt) and a feature cache's frame file and index. A damaged
    checkpoint or frame file that opens must hold exactly the original contents."""
    import numpy as np
    import torch

    from recog.features.cache import FeatureCache, build_cache
    from recog.models import CTCModel, ModelOptions, load_checkpoint, save_checkpoint
    from recog.tokens import Vocabulary

    folder = root / "integrity"
    vocab = Vocabulary.from_symbols(["a", "b"])
    torch.manual_seed(0)
    model = CTCModel(3, len(vocab), ModelOptions(hidden=4, layers=1))
    ckpt = folder / "best.pt"
    save_checkpoint(ckpt, model, vocab, {"features": {}}, epoch=1, history=[{"x": 1.5}])
    weights = {k: v.clone() for k, v in model.state_dict().items()}

    def run_checkpoint() -> object:
        loaded, _, payload = load_checkpoint(ckpt)
        same = all(torch.equal(loaded.state_dict()[k], v) for k, v in weights.items())
        if not same or payload["epoch"] != 1 or payload["history"] != [{"x": 1.5}]:
            raise AssertionError("a damaged checkpoint loaded without an error")
        return loaded

    rng = np.random.default_rng(0)
    frames = {f"u{i}": rng.standard_normal((n, 3)).astype(np.float32)
              for i, n in enumerate((5, 2, 7))}
    utts = [Utterance(k, "s", f"/x/{k}.wav", ("a",)) for k in frames]
    cache = build_cache(utts, lambda u: torch.from_numpy(frames[u.id]), {"k": 1}, folder,
                        "train", progress=False)
    index, data = cache.index_path, cache.index_path.with_suffix(".f32")
    whole = np.concatenate(list(frames.values()))

    def run_frames() -> object:
        opened = FeatureCache(index)
        got = np.concatenate([opened[i] for i in range(len(opened))])
        if not np.array_equal(got, whole):
            raise AssertionError("a damaged frame file opened without an error")
        return opened

    def run_index() -> object:
        opened = FeatureCache(index)
        return [opened[i] for i in range(len(opened))]

    return [
        Target("checkpoint best.pt", ckpt, [ckpt.read_bytes()], run_checkpoint, 128),
        Target("feature cache frames", data, [data.read_bytes()], run_frames),
        Target("feature cache index", index, [index.read_bytes()], run_index),
    ]


class Hang(Exception):
    """An input took longer than the per-input timeout."""


def _alarm(signum: int, frame: object) -> None:
    raise Hang()


def fuzz(target: Target, seconds: float, rng: random.Random, timeout: float,
         save: Path, tries: int = 0) -> None:
    """Try mutations of the target's seeds until ``seconds`` have passed, or ``tries`` of
    them when given (then the inputs tried are the seed's alone, whatever the machine's
    speed)."""
    end = time.monotonic() + seconds
    original = target.path.read_bytes()
    try:
        while target.tried < tries if tries else time.monotonic() < end:
            seed = rng.choice(target.seeds)
            data = (target.special(seed, rng) if target.special and rng.random() < 0.3
                    else mutate(seed, rng, rng.choice(target.seeds), target.header))
            target.path.write_bytes(data)
            target.tried += 1
            signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                target.run()
                target.clean += 1
            except DataError as e:
                unchecked = UNCHECKED.search(e.reason)
                if unchecked is None:
                    target.rejected += 1
                    continue
                _failure(target, data, f"DataError wrapping {unchecked[1]}", e, save)
            except Exception as e:  # the point: anything but DataError is a failure
                signal.setitimer(signal.ITIMER_REAL, 0)
                _failure(target, data, "hang" if isinstance(e, Hang) else type(e).__name__, e,
                         save)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        target.path.write_bytes(original)


def _failure(target: Target, data: bytes, kind: str, e: BaseException, save: Path) -> None:
    """Keep the input that failed and say where."""
    save.mkdir(parents=True, exist_ok=True)
    name = f"{target.name.replace(' ', '_')}-{target.tried}{target.path.suffix}"
    (save / name).write_bytes(data)
    tb = traceback.extract_tb(e.__traceback__)
    where = f"{tb[-1].filename}:{tb[-1].lineno}" if tb else "?"
    target.failures.append({"error": kind, "message": str(e)[:300], "where": where,
                            "input": str(save / name)})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="time budget in all")
    p.add_argument("--tries", type=int, default=0,
                   help="this many inputs per reader instead of a time budget")
    p.add_argument("--quick", action="store_true",
                   help="--tries 8: the smoke test's size, the same inputs on every machine")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=20.0, help="seconds one input may take")
    p.add_argument("--save", type=Path, default=Path("exp/fuzz_failures"),
                   help="folder for the inputs that failed")
    p.add_argument("--json", type=Path, help="write the counts here")
    args = p.parse_args(argv)
    tries = 8 if args.quick else args.tries
    signal.signal(signal.SIGALRM, _alarm)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="recog-fuzz-") as tmp:
        root = Path(tmp)
        targets = (timit_targets(root) + iamondb_targets(root) + jsonl_targets(root)
                   + manifest_targets(root) + audio_targets(root) + integrity_targets(root))
        for t in targets:  # the seeds themselves must be clean
            t.run()
        for t in targets:
            fuzz(t, args.seconds / len(targets), rng, args.timeout, args.save, tries)
    print(f"{'reader':<22} {'tried':>7} {'clean':>7} {'DataError':>9} {'failures':>8}")
    for t in targets:
        print(f"{t.name:<22} {t.tried:>7} {t.clean:>7} {t.rejected:>9} {len(t.failures):>8}")
    total = sum(t.tried for t in targets)
    failures = [dict(f, reader=t.name) for t in targets for f in t.failures]
    print(f"{'total':<22} {total:>7} {sum(t.clean for t in targets):>7} "
          f"{sum(t.rejected for t in targets):>9} {len(failures):>8}   "
          f"({f'{tries} a reader' if tries else f'{args.seconds:.0f} s'}, seed {args.seed})")
    for f in failures:
        print(f"FAILURE {f['reader']}: {f['error']}: {f['message']} at {f['where']} "
              f"(input: {f['input']})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "seconds": None if tries else args.seconds, "tries": tries, "seed": args.seed,
            "failures": failures,
            "readers": {t.name: {"tried": t.tried, "clean": t.clean, "data_error": t.rejected,
                                 "failures": len(t.failures)} for t in targets}}, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
