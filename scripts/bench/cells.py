"""Training-step time (forward + backward) of every recurrent cell against nn.LSTM of the same
size, in one run: python scripts/bench/cells.py [--quick] [--json PATH] [--device cpu|cuda].

With --variants it also times, on the same weights, ``graves/torchscript``: the stack
compiled with torch.jit.script, which runs each layer's ``step`` equations in plain ops (the
export form) with autograd's backward op by op, to show what the fused autograd.Function
buys.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from recog.models.cells import StackedRecurrent

CELLS = ("lstm", "lstm/packed", "peephole", "graves", "cifg", "indy")
VARIANTS = ("graves/torchscript",)


class PackedLSTM(torch.nn.LSTM):
    """nn.LSTM called as CTCModel calls it: on a packed sequence."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        y, _ = super().forward(pack_padded_sequence(x, lengths, batch_first=True,
                                                    enforce_sorted=False))
        return pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])[0]


def encoder(cell: str, inputs: int, hidden: int, layers: int) -> torch.nn.Module:
    """The recurrent stack of ``cell``; ``lstm`` is nn.LSTM on the padded tensor (its fastest
    CPU path, exact here since every sequence is full length), ``lstm/packed`` as CTCModel
    runs it."""
    if cell.startswith("lstm"):
        kind = PackedLSTM if cell == "lstm/packed" else torch.nn.LSTM
        return kind(inputs, hidden, layers, bidirectional=True, batch_first=True)
    return StackedRecurrent(cell, inputs, hidden, layers, bidirectional=True)


def run(module: torch.nn.Module, x: torch.Tensor, lengths: torch.Tensor,
        weights: torch.Tensor) -> None:
    """One training step's work: forward over padded input, backward of a linear loss."""
    y = module(x)[0] if type(module) is torch.nn.LSTM else module(x, lengths)
    (y * weights).sum().backward()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    ap.add_argument("--json", help="write one record per cell here")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5,
                    help="timed steps per cell (at least 5; the median is reported)")
    ap.add_argument("--variants", action="store_true", help="also time " + ", ".join(VARIANTS))
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: what training picks on a 2-core machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.repeats < 5:
        ap.error("--repeats must be at least 5 (a median of fewer is noise on a shared CPU)")
    b, t, inputs, hidden, layers = (4, 20, 10, 16, 2) if args.quick else (16, 300, 123, 250, 5)
    repeats = args.repeats
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.randn(b, t, inputs, device=device)
    lengths = torch.full((b,), t)
    weights = torch.randn(b, t, 2 * hidden, device=device)
    modules = {c: encoder(c, inputs, hidden, layers).to(device) for c in CELLS}
    if args.variants:
        modules["graves/torchscript"] = torch.jit.script(modules["graves"])
    times: dict[str, list[float]] = {c: [] for c in modules}
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
                print(f"round {rep} {cell}: {times[cell][-1]:.0f} ms", file=sys.stderr,
                      flush=True)
    times = {c: [round(x, 2) for x in ts] for c, ts in times.items()}  # as the JSON has them
    lstm_ms = statistics.median(times["lstm"])
    records = []
    print(f"B={b} T={t} inputs={inputs} hidden={hidden} layers={layers} bidirectional "
          f"device={device} threads={torch.get_num_threads()} median of {repeats} steps")
    print(f"{'cell':18} {'step ms':>9} {'frames/s':>9} {'x lstm':>7}")
    for cell in modules:
        ms = statistics.median(times[cell])
        records.append({"name": cell, "step_ms": ms, "ratio_to_lstm": round(ms / lstm_ms, 3),
                        "times_ms": times[cell]})
        print(f"{cell:18} {ms:9.1f} {b * t / ms * 1000:9.0f} {ms / lstm_ms:7.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)


if __name__ == "__main__":
    main()
