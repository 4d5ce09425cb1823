"""Training-step time (forward + backward) of every recurrent cell against nn.LSTM of the same
size, in one run: python scripts/bench/cells.py [--quick] [--json PATH] [--device cpu|cuda].

With --variants it also times two other ways to run the ``graves`` recurrence on the same
weights, to show what the fused autograd.Function buys: ``graves/autograd`` (a Python loop of
differentiable torch ops per step) and ``graves/torchscript`` (that step scripted with
torch.jit.script, the loop and backward still autograd's).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from recog.models.cells import RecurrentLayer, StackedRecurrent

CELLS = ("lstm", "lstm/packed", "peephole", "graves", "cifg", "indy")
VARIANTS = ("graves/autograd", "graves/torchscript")


def graves_step(gates: torch.Tensor, h: torch.Tensor, c: torch.Tensor, u: torch.Tensor,
                peep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the graves cell in differentiable torch ops (both directions batched)."""
    a = (gates + torch.bmm(h, u)).view(gates.shape[0], gates.shape[1], 4, -1)
    i = torch.sigmoid(a[:, :, 0] + peep[:, None, 0] * c)
    f = torch.sigmoid(a[:, :, 1] + peep[:, None, 1] * c)
    c = f * c + i * torch.tanh(a[:, :, 2])
    o = torch.sigmoid(a[:, :, 3] + peep[:, None, 2] * c)
    return o * torch.tanh(c), c


class LoopGraves(torch.nn.Module):
    """The graves layers' recurrence as a per-step loop that autograd differentiates
    (full-length batches only: the benchmark's)."""

    def __init__(self, stack: StackedRecurrent, scripted: bool):
        super().__init__()
        self.stack = stack
        self.step = torch.jit.script(graves_step) if scripted else graves_step

    def layer(self, layer: RecurrentLayer, x: torch.Tensor) -> torch.Tensor:
        d, t_len, b, _ = x.shape
        p = torch.baddbmm(layer.bias.unsqueeze(1), x.reshape(d, t_len * b, -1),
                          layer.weight_ih).view(d, t_len, b, -1)
        h = c = x.new_zeros(d, b, layer.hidden_size)
        out = []
        for t in range(t_len):
            h, c = self.step(p[:, t], h, c, layer.weight_hh, layer.weight_peep)
            out.append(h)
        return torch.stack(out, 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        y = x.transpose(0, 1)
        for layer in self.stack.layers:
            h = self.layer(layer, torch.stack([y, y.flip(0)]))
            y = torch.cat([h[0], h[1].flip(0)], -1)
        return y.transpose(0, 1)


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
    args = ap.parse_args()
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
        for name in VARIANTS:
            modules[name] = LoopGraves(modules["graves"], name.endswith("torchscript"))
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
