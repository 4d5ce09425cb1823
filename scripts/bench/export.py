"""Inference time of every cell's network, eager PyTorch against its ONNX export run by ONNX
Runtime and its torch.export program (model.pt2), in one run:
python scripts/bench/export.py [--quick] [--json PATH].

One utterance of T frames through CTCModel (normalisation, recurrent stack, linear,
log-softmax), recipe-sized by default (123 inputs, 5 bidirectional layers of 250, T=300:
3 s of speech at 100 frames/s); both sides on one thread; the median of ``--repeats``
timed calls after a warm-up, the runtimes interleaved. The exports are recog-export's
(recog.export: TorchScript, then ONNX; torch.export with scan loops), and the outputs are
compared.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from recog.export import export_onnx, export_program, pt2_runner
from recog.models import CELLS, CTCModel, ModelOptions

ORDER = ("lstm", "peephole", "graves", "cifg", "indy")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    ap.add_argument("--json", help="write one record per cell here")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per runtime and cell")
    args = ap.parse_args()
    import onnxruntime  # noqa: F401 - required here: export_onnx checks only where installed

    dim, hidden, layers, frames = (6, 8, 2, 20) if args.quick else (123, 250, 5, 300)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    feats, lengths = torch.randn(1, frames, dim, generator=gen), torch.tensor([frames])
    records = []
    print(f"T={frames} inputs={dim} hidden={hidden} layers={layers} bidirectional, one thread, "
          f"median of {args.repeats} calls")
    print(f"{'cell':10} {'eager ms':>9} {'onnx ms':>9} {'speed-up':>9} {'max |diff|':>11} "
          f"{'pt2 ms':>9} {'pt2 x':>7} {'pt2 |diff|':>11}")
    for cell in [c for c in ORDER if c in CELLS]:
        torch.manual_seed(0)
        model = CTCModel(dim, 62, ModelOptions(cell=cell, hidden=hidden, layers=layers)).eval()
        with tempfile.TemporaryDirectory() as tmp:  # the checked session, one thread
            session = export_onnx(model, Path(tmp) / "model.onnx", "bench", threads=1)
        program = pt2_runner(export_program(model, "bench"), model.options.stack)
        inputs = {"feats": feats.numpy(), "lengths": lengths.numpy()}
        eager, onnx, pt2 = [], [], []
        for rep in range(args.repeats + 1):
            start = time.perf_counter()
            with torch.no_grad():
                want = model(feats, lengths)[0]
            middle = time.perf_counter()
            got = session.run(None, inputs)[0]
            third = time.perf_counter()
            got_pt2 = program(feats, lengths)[0]
            if rep:  # the first call warms up
                eager.append(1000 * (middle - start))
                onnx.append(1000 * (third - middle))
                pt2.append(1000 * (time.perf_counter() - third))
        e, o, p = (statistics.median(t) for t in (eager, onnx, pt2))
        diff = float(abs(got - want.numpy()).max())
        diff_pt2 = float((got_pt2 - want).abs().max())
        records.append({"cell": cell, "eager_ms": round(e, 4), "onnxruntime_ms": round(o, 4),
                        "speedup": round(e / o, 3), "max_abs_diff": diff,
                        "pt2_ms": round(p, 4), "pt2_speedup": round(e / p, 3),
                        "pt2_max_abs_diff": diff_pt2})
        print(f"{cell:10} {e:9.1f} {o:9.1f} {e / o:8.2f}x {diff:11.1e} {p:9.1f} {e / p:6.2f}x "
              f"{diff_pt2:11.1e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)


if __name__ == "__main__":
    main()
