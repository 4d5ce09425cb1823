"""Real-time factor of recog-transcribe, PyTorch eager against ONNX Runtime, every cell, in
one run: python scripts/bench/transcribe.py [--quick] [--json PATH] [--audio DIR].

What is timed is ``Transcriber.__call__`` on a list of audio files: reading, filterbanks,
batching, the network, greedy decoding and the per-token times, i.e. all of
``recog-transcribe`` but loading the checkpoint (and, for ONNX Runtime, exporting it). The
network is the synthetic TIMIT recipe's shape (3 x 160 bidirectional, stack 3, 123
filterbank inputs, the 61 phones) with random weights: the work per frame does not depend
on the weights. The audio is the synthetic TIMIT test set when ``--audio`` (default
data/timit_synthetic/corpus/TIMIT/TEST) holds it, else noise of the same lengths (2-4 s).
One thread for both runtimes; the median of ``--repeats`` timed calls after a warm-up,
the two runtimes interleaved; RTF = seconds of compute / seconds of audio. The outputs are
compared: the same tokens for every file, and the largest score difference. Beside the
whole call, the same run times its parts: the features (reading and filterbanks, the same
code for both runtimes) and the network alone on the same padded batches, each runtime's
(medians of ``--repeats`` again), so that what each runtime can gain is visible: a
runtime that took no time at all would make the whole call at most (whole / features)x
faster.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from recog.batching import bucket_batches, pad
from recog.features.audio import AudioFeatureOptions
from recog.models import CTCModel, ModelOptions, save_checkpoint
from recog.models.cells import LAYERS
from recog.tasks import TimitTask, front_end_record
from recog.tokens import timit_vocabulary
from recog.transcribe import TranscribeOptions, Transcriber

CELLS = ("lstm", *sorted(LAYERS))


def _audio(folder: Path, n: int, tmp: Path) -> list[Path]:
    """``n`` recordings of the synthetic test set, or noise files of its lengths."""
    found = sorted(folder.rglob("*.WAV"))[:n] if folder.is_dir() else []
    if len(found) == n:
        return found
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        out.append(tmp / f"noise{k}.wav")
        sf.write(out[-1], rng.normal(0, 0.1, int(16000 * rng.uniform(2, 4))).astype(
            np.float32), 16000)
    return out


def _time(run: object, files: list[Path]) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    out = run(files)
    return time.perf_counter() - start, out


def _parts(eager: Transcriber, onnx: Transcriber, files: list[Path], repeats: int
           ) -> dict[str, float]:
    """Median seconds of the features of ``files`` and of each runtime's network alone on
    the padded batches ``Transcriber`` makes of them."""
    def features() -> list[torch.Tensor]:
        return [eager.features(f) for f in files]

    feats = features()
    batches = [pad([feats[i] for i in b], feats[0].shape[1])
               for b in bucket_batches([len(f) for f in feats], eager.opts.batch_frames)]
    runs = {"features": features,
            "eager": lambda: [eager.model(x, n) for x, n in batches],
            "onnx": lambda: [onnx.network(x, n) for x, n in batches]}
    times: dict[str, list[float]] = {k: [] for k in runs}
    with torch.no_grad():
        for rep in range(repeats + 1):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                if rep:
                    times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a tiny network and 3 files")
    ap.add_argument("--json", help="write one record per cell here")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per runtime and cell")
    ap.add_argument("--audio", type=Path, default=Path("data/timit_synthetic/corpus/TIMIT/TEST"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    hidden, layers, n_files = (8, 1, 3) if args.quick else (160, 3, 24)
    features, vocab = AudioFeatureOptions(), timit_vocabulary(61)
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        files = _audio(args.audio, n_files, Path(tmp))
        seconds = sum(sf.info(f).duration for f in files)
        kind = "synthetic TIMIT test" if files[0].suffix == ".WAV" else "noise"
        print(f"{len(files)} files, {seconds:.1f} s of audio ({kind}); {layers} x {hidden} "
              f"bidirectional, stack 3; one thread; median of {args.repeats}")
        print(f"{'cell':10} {'eager RTF':>10} {'onnx RTF':>10} {'speed-up':>9} {'same tokens':>12} "
              f"{'max |score diff|':>17} {'features RTF':>13} {'net eager':>10} {'net onnx':>9} "
              f"{'net speed-up':>13}")
        for cell in CELLS:
            torch.manual_seed(0)
            model = CTCModel(features.dim, len(vocab), ModelOptions(
                cell=cell, hidden=hidden, layers=layers, stack=3))
            ckpt = Path(tmp) / f"{cell}.pt"
            save_checkpoint(ckpt, model, vocab, {},
                            front_end=front_end_record(TimitTask(61, features)))
            eager = Transcriber.load(ckpt, TranscribeOptions())
            onnx = Transcriber.load(ckpt, TranscribeOptions(runtime="onnx"))
            times: dict[str, list[float]] = {"eager": [], "onnx": []}
            outputs: dict[str, list[dict]] = {}
            for rep in range(args.repeats + 1):
                for name, run in (("eager", eager), ("onnx", onnx)):
                    took, outputs[name] = _time(run, files)
                    if rep:  # the first call warms up
                        times[name].append(took)
            want, got = outputs["eager"], outputs["onnx"]
            e, o = (statistics.median(times[k]) / seconds for k in ("eager", "onnx"))
            same = sum(a["tokens"] == b["tokens"] for a, b in zip(want, got, strict=True))
            diff = max(abs(a["score"] - b["score"]) for a, b in zip(want, got, strict=True))
            part = {k: v / seconds for k, v in _parts(eager, onnx, files, args.repeats).items()}
            records.append({"cell": cell, "eager_rtf": round(e, 7), "onnxruntime_rtf": round(o, 7),
                            "speedup": round(e / o, 3), "same_tokens": f"{same}/{len(files)}",
                            "max_abs_score_diff": diff, "audio_seconds": round(seconds, 2),
                            "files": len(files), "hidden": hidden, "layers": layers,
                            "features_rtf": round(part["features"], 7),
                            "network_eager_rtf": round(part["eager"], 7),
                            "network_onnxruntime_rtf": round(part["onnx"], 7),
                            "network_speedup": round(part["eager"] / part["onnx"], 3)})
            print(f"{cell:10} {e:10.4f} {o:10.4f} {e / o:8.2f}x {same:>7}/{len(files):<4} "
                  f"{diff:17.1e} {part['features']:13.4f} {part['eager']:10.4f} "
                  f"{part['onnx']:9.4f} {part['eager'] / part['onnx']:12.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)


if __name__ == "__main__":
    main()
