"""Ink encodings against each other in one run: sequence length, feature time, epoch time.

For the same lines of an IAM-OnDB-format corpus (default: the synthetic corpus of the
iam_ondb recipe), each encoding's features are computed (``graves``: 14 features per point
resampled every 0.5 core heights; ``bezier``: one row per fitted curve, with the options of
``synthetic_bezier``: 13 values, pen lifts folded in), then one training epoch
(length-bucketed batches -> CTCModel -> CTC loss -> backward -> Adam) runs on them with the
model and batch sizes of that encoding's recipe experiment (``synthetic``,
``synthetic_bezier``). The encodings take turns, ``--repeats`` (at least 5) times, so that
a busy machine slows both alike, and the median epoch time of each is reported; the ratio is
graves / bezier.

    python scripts/bench/pen_encodings.py [--quick] [--json PATH] [--lines N] [--repeats R]
        [--corpus DIR] [--threads T]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from recog.batching import bucket_batches  # noqa: E402
from recog.data.iamondb import read_iamondb, read_line_strokes  # noqa: E402
from recog.features.pen import PenFeatureOptions, pen_features  # noqa: E402
from recog.models.ctc import CTCModel, ModelOptions  # noqa: E402

EXPERIMENTS = {"graves": "synthetic", "bezier": "synthetic_bezier"}
DEFAULT_CORPUS = ROOT / "data/iamondb_synthetic/corpus"


def _experiment(name: str) -> tuple[PenFeatureOptions, ModelOptions, dict]:
    exp = OmegaConf.load(ROOT / f"recipes/iam_ondb/conf/experiment/{name}.yaml")
    pen = PenFeatureOptions(**OmegaConf.to_container(exp.features.pen))
    model = ModelOptions(**OmegaConf.to_container(exp.model))
    lr = float(exp.optim.lr)
    return pen, model, {"batch_frames": int(exp.trainer.batch_frames), "lr": lr}


def _epoch(feats: list[np.ndarray], labels: list[list[int]], vocab: int,
           model_opts: ModelOptions, settings: dict) -> float:
    """Seconds (process time) of one training epoch over ``feats``."""
    torch.manual_seed(0)
    model = CTCModel(feats[0].shape[1], vocab, model_opts)
    flat = np.concatenate(feats)
    model.set_normalization(torch.from_numpy(flat.mean(0)), torch.from_numpy(flat.std(0)))
    optim = torch.optim.Adam(model.parameters(), lr=settings["lr"])
    batches = bucket_batches([len(f) for f in feats], settings["batch_frames"], 64,
                             shuffle=True, seed=0)
    start = time.process_time()
    for batch in batches:
        lengths = torch.tensor([len(feats[i]) for i in batch])
        x = torch.zeros(len(batch), int(lengths.max()), feats[0].shape[1])
        for row, i in enumerate(batch):
            x[row, : len(feats[i])] = torch.from_numpy(feats[i])
        targets = torch.tensor([t for i in batch for t in labels[i]])
        target_lengths = torch.tensor([len(labels[i]) for i in batch])
        log_probs, out_lens = model(x, lengths)
        loss = F.ctc_loss(log_probs.transpose(0, 1), targets, out_lens, target_lengths,
                          zero_infinity=True)
        optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optim.step()
    return time.process_time() - start


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    p.add_argument("--lines", type=int, default=400, help="training lines used")
    p.add_argument("--repeats", type=int, default=5,
                   help="timed epochs per encoding (at least 5; the median is reported)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="a tiny corpus written here (a smoke test)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.repeats < 5:
        p.error("--repeats must be at least 5 (a median of fewer is noise on a shared CPU)")
    torch.set_num_threads(args.threads)
    if args.quick:
        import tempfile

        from recog.data.synth.iamondb import InkSynthOptions, generate_iamondb

        tmp = tempfile.mkdtemp()
        generate_iamondb(Path(tmp), InkSynthOptions(
            n_train_writers=2, n_val1_writers=1, n_val2_writers=1, n_test_writers=1,
            forms_per_writer=1, eval_forms_per_writer=1), progress=False)
        args.corpus, args.lines = Path(tmp), 12
    utts = read_iamondb(args.corpus).splits["train"][: args.lines]
    chars = sorted({c for u in utts for c in u.tokens})
    labels = [[chars.index(c) + 1 for c in u.tokens] for u in utts]
    inks = [read_line_strokes(u.source) for u in utts]
    raw_points = sum(len(s) for ink in inks for s in ink)
    rows: dict[str, dict] = {}
    feats: dict[str, list[np.ndarray]] = {}
    for kind, exp in EXPERIMENTS.items():
        pen, model_opts, settings = _experiment(exp)
        start = time.process_time()
        feats[kind] = [pen_features(ink, pen).numpy() for ink in inks]
        ms = 1000 * (time.process_time() - start) / len(inks)
        n = sum(len(f) for f in feats[kind])
        rows[kind] = {"experiment": exp, "rows": n, "rows_per_char": n / sum(map(len, labels)),
                      "lstm_frames": sum(-(-len(f) // model_opts.stack) for f in feats[kind]),
                      "features_ms_per_line": ms, "epoch_times_s": [],
                      "model": model_opts, "settings": settings}
    for _ in range(args.repeats):
        for kind, row in rows.items():
            row["epoch_times_s"].append(_epoch(feats[kind], labels, len(chars) + 1,
                                               row["model"], row["settings"]))
    for row in rows.values():
        row["epoch_s"] = statistics.median(row["epoch_times_s"])
    print(f"{len(utts)} training lines of {args.corpus}, {raw_points} raw points, "
          f"{args.threads} thread(s), median of {args.repeats} (process time)")
    print(f"{'encoding':<9} {'experiment':<17} {'rows':>8} {'rows/char':>9} {'LSTM frames':>11} "
          f"{'feat ms/line':>12} {'epoch s':>8}")
    for kind, r in rows.items():
        print(f"{kind:<9} {r['experiment']:<17} {r['rows']:>8} {r['rows_per_char']:>9.2f} "
              f"{r['lstm_frames']:>11} {r['features_ms_per_line']:>12.1f} {r['epoch_s']:>8.2f}")
    g, b = rows["graves"], rows["bezier"]
    summary = {"lines": len(utts), "raw_points": raw_points,
               "raw_points_per_curve_row": raw_points / b["rows"],
               "graves_rows_per_bezier_row": g["rows"] / b["rows"],
               "epoch_speedup": g["epoch_s"] / b["epoch_s"],
               "encodings": {k: {f: v for f, v in r.items() if f not in ("model", "settings")}
                             for k, r in rows.items()}}
    print(f"raw points / bezier rows: {summary['raw_points_per_curve_row']:.2f}x; graves rows / "
          f"bezier rows: {summary['graves_rows_per_bezier_row']:.2f}x; epoch time graves / "
          f"bezier: {summary['epoch_speedup']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
