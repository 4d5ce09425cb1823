"""Training-step time (forward + backward) of every recurrent cell against nn.LSTM of the same
size, in one run: python scripts/bench/cells.py [--quick] [--json PATH] [--device cpu|cuda]."""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from recog.models.cells import StackedRecurrent

CELLS = ("lstm", "peephole", "graves", "cifg")


def encoder(cell: str, inputs: int, hidden: int, layers: int) -> torch.nn.Module:
    """The recurrent stack exactly as CTCModel builds it for ``cell``."""
    if cell == "lstm":
        return torch.nn.LSTM(inputs, hidden, layers, bidirectional=True, batch_first=True)
    return StackedRecurrent(cell, inputs, hidden, layers, bidirectional=True)


def run(module: torch.nn.Module, x: torch.Tensor, lengths: torch.Tensor,
        weights: torch.Tensor) -> None:
    """One training step's work: forward over padded input, backward of a linear loss."""
    if isinstance(module, torch.nn.LSTM):  # as CTCModel runs it: packed
        y, _ = module(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        y, _ = pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
    else:
        y = module(x, lengths)
    (y * weights).sum().backward()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    ap.add_argument("--json", help="write one record per cell here")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5, help="timed steps per cell")
    args = ap.parse_args()
    b, t, inputs, hidden, layers = (4, 20, 10, 16, 2) if args.quick else (16, 300, 123, 250, 5)
    repeats = 2 if args.quick else args.repeats
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.randn(b, t, inputs, device=device)
    lengths = torch.full((b,), t)
    weights = torch.randn(b, t, 2 * hidden, device=device)
    modules = {c: encoder(c, inputs, hidden, layers).to(device) for c in CELLS}
    times: dict[str, list[float]] = {c: [] for c in CELLS}
    for rep in range(repeats + 1):  # round-robin, so drift hits every cell alike
        for cell, module in modules.items():
            module.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            run(module, x, lengths, weights)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if rep:  # the first round warms up
                times[cell].append(1000 * (time.perf_counter() - start))
    lstm_ms = statistics.median(times["lstm"])
    records = []
    print(f"B={b} T={t} inputs={inputs} hidden={hidden} layers={layers} bidirectional "
          f"device={device} threads={torch.get_num_threads()} median of {repeats} steps")
    print(f"{'cell':10} {'step ms':>9} {'frames/s':>9} {'x lstm':>7}")
    for cell in CELLS:
        ms = statistics.median(times[cell])
        records.append({"name": cell, "step_ms": round(ms, 2),
                        "ratio_to_lstm": round(ms / lstm_ms, 3)})
        print(f"{cell:10} {ms:9.1f} {b * t / ms * 1000:9.0f} {ms / lstm_ms:7.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)


if __name__ == "__main__":
    main()
