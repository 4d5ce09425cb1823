"""The long-time-lag experiment behind the LSTM claim: recall, after ``lag`` steps of random
distractors, which of 4 symbols came first (Hochreiter & Schmidhuber 1997, experiment 2,
with noise), for each LSTM cell against a plain tanh RNN; accuracy by lag, table and PNG.

    python scripts/bench/long_lag.py [--quick] [--json PATH] [--png PATH]

Chance is 25 %. Each (cell, lag) trains one unidirectional layer from its own seed with Adam
for at most ``--steps`` batches and stops once a held-out set is recalled at >= 99 %. The
LSTM cells' forget-gate biases get the chrono initialisation (Tallec & Ollivier 2018,
b_f = log U(1, lag - 1), b_i = -b_f), the usual way to let a gated cell start with memory
spans up to the lag; the RNN has no gate to initialise.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

from recog.models.cells import StackedRecurrent

SYMBOLS, DISTRACTORS = 4, 4
CELLS = ("rnn", "lstm", "peephole", "graves", "cifg", "indy")
FORGET_BLOCK = {"lstm": 1, "graves": 1, "peephole": 1, "cifg": 1, "indy": 1}  # gate block of f
INPUT_BLOCK = {"lstm": 0, "graves": 0, "peephole": 0, "indy": 0}  # cifg: no input gate


def batch(n: int, lag: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, lag + 1, 8) one-hot sequences: a symbol, then ``lag`` distractors; and the symbol."""
    target = torch.randint(SYMBOLS, (n,), generator=gen)
    noise = torch.randint(SYMBOLS, SYMBOLS + DISTRACTORS, (n, lag), generator=gen)
    ids = torch.cat([target[:, None], noise], 1)
    return nn.functional.one_hot(ids, SYMBOLS + DISTRACTORS).float(), target


class Recall(nn.Module):
    """One recurrent layer of ``cell`` and a linear read-out of its last output."""

    def __init__(self, cell: str, hidden: int, lag: int):
        super().__init__()
        inputs = SYMBOLS + DISTRACTORS
        if cell == "rnn":
            self.rnn = nn.RNN(inputs, hidden, nonlinearity="tanh", batch_first=True)
        elif cell == "lstm":
            self.rnn = nn.LSTM(inputs, hidden, batch_first=True)
        else:
            self.rnn = StackedRecurrent(cell, inputs, hidden, 1, bidirectional=False)
        self.cell, self.out = cell, nn.Linear(hidden, SYMBOLS)
        if cell != "rnn":
            self.chrono(hidden, lag)

    @torch.no_grad()
    def chrono(self, n: int, lag: int) -> None:
        b_f = torch.log(torch.empty(n).uniform_(1, max(lag - 1, 2)))
        if self.cell == "lstm":
            bias = self.rnn.bias_ih_l0
            self.rnn.bias_hh_l0.zero_()
        else:
            bias = self.rnn.layers[0].bias[0]
        bias[FORGET_BLOCK[self.cell] * n:(FORGET_BLOCK[self.cell] + 1) * n] = b_f
        if self.cell in INPUT_BLOCK:
            bias[INPUT_BLOCK[self.cell] * n:(INPUT_BLOCK[self.cell] + 1) * n] = -b_f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.rnn, StackedRecurrent):
            y = self.rnn(x, torch.full((x.shape[0],), x.shape[1]))
        else:
            y, _ = self.rnn(x)
        return self.out(y[:, -1])


def train(cell: str, lag: int, hidden: int, steps: int, batch_size: int, seed: int
          ) -> dict:
    """Train until the held-out recall reaches 99 % or ``steps`` batches; report accuracy."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = Recall(cell, hidden, lag)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    test_x, test_y = batch(256, lag, gen)
    start, step, acc = time.perf_counter(), 0, 0.0
    while step < steps:
        x, y = batch(batch_size, lag, gen)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 25 == 0 or step == steps:
            with torch.no_grad():
                acc = (model(test_x).argmax(-1) == test_y).float().mean().item()
            if acc >= 0.99:
                break
    return {"cell": cell, "lag": lag, "accuracy": round(acc, 4), "steps": step,
            "solved": acc >= 0.99, "seconds": round(time.perf_counter() - start, 1)}


def plot(records: list[dict], lags: list[int], cells: list[str], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for cell in cells:
        acc = [next(r["accuracy"] for r in records if r["cell"] == cell and r["lag"] == lag)
               for lag in lags]
        ax.plot(lags, [100 * a for a in acc], marker="o", label=cell)
    ax.axhline(100 / SYMBOLS, color="grey", linestyle=":", label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("time lag (steps)")
    ax.set_ylabel("held-out recall accuracy (%)")
    ax.set_title("Long-time-lag recall: LSTM cells vs tanh RNN")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    ap.add_argument("--json", help="write one record per (cell, lag) here")
    ap.add_argument("--png", help="plot accuracy by lag here")
    ap.add_argument("--lags", default="50,100,200,500,1000")
    ap.add_argument("--steps", type=int, default=400, help="most training batches per run")
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--cells", default=",".join(CELLS), help="which of " + ", ".join(CELLS))
    ap.add_argument("--merge", help="a JSON of an earlier run: its records of the other cells "
                    "join this run's in the table, the JSON and the plot")
    args = ap.parse_args()
    cells = args.cells.split(",")
    if set(cells) - set(CELLS):
        ap.error(f"unknown cells {sorted(set(cells) - set(CELLS))}; known: {', '.join(CELLS)}")
    lags = [5, 10] if args.quick else [int(x) for x in args.lags.split(",")]
    steps = 3 if args.quick else args.steps
    torch.set_num_threads(1)  # tiny matrices: threads only add synchronisation
    records = []
    for lag in lags:
        for cell in cells:
            records.append(train(cell, lag, args.hidden, steps, args.batch, seed=lag))
            print(json.dumps(records[-1]), flush=True)
    if args.merge:
        with open(args.merge) as f:
            records = [r for r in json.load(f) if r["cell"] not in cells] + records
        cells = [c for c in CELLS if any(r["cell"] == c for r in records)]
    print(f"\nheld-out recall accuracy (%), chance 25 %; hidden {args.hidden}, batch "
          f"{args.batch}, at most {steps} Adam steps (steps taken in brackets)")
    print(f"{'lag':>6} " + " ".join(f"{c:>14}" for c in cells))
    for lag in lags:
        row = [next(r for r in records if r["cell"] == c and r["lag"] == lag) for c in cells]
        print(f"{lag:>6} " + " ".join(f"{100 * r['accuracy']:7.1f} ({r['steps']:4d})"
                                      for r in row))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
    if args.png:
        plot(records, lags, cells, args.png)


if __name__ == "__main__":
    main()
