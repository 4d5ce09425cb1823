"""Training throughput: the full pipeline against the bare LSTM + CTC bound, in one run.

Pipeline: ``recog.train.fit`` for one epoch (memory-mapped feature cache -> length-bucketed
batches -> collate -> CTCModel -> CTC loss -> clipping -> optimiser), its own frames/s and
padding fraction as written to history. Bare bound: ``nn.LSTM`` (one per layer and
direction) + linear + CTC + the same optimiser on random tensors already in memory, of
exactly the shapes the pipeline's batches give its LSTM (same batch sizes, padded lengths,
frame stacking, label lengths); no lengths handling, no data. Both count
the same input frames, so the ratio is bare time / pipeline time. Model and batch sizes come
from the recipe experiments (Graves 2013 and the synthetic default).

    python scripts/bench/train_throughput.py [--quick] [--json PATH] [--utts N]
        [--workers 0 1] [--cache data/timit_synthetic/prepared/features/train-*.json]
        [--device cpu|cuda] [--precision fp32|bf16]

Labels are random, one per 8 input frames (about TIMIT's phone rate): the speed of CTC
depends on their number, not their identity.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from recog.batching import CTCDataset, bucket_batches  # noqa: E402
from recog.data.utterance import Utterance  # noqa: E402
from recog.features.cache import FeatureCache, build_cache, feature_stats  # noqa: E402
from recog.models.ctc import CTCModel, ModelOptions  # noqa: E402
from recog.train import PRECISIONS, OptimOptions, TrainerOptions, fit, make_optimizer  # noqa: E402

EXPERIMENTS = {"graves2013": ROOT / "recipes/timit/conf/experiment/graves2013_ctc.yaml",
               "synthetic": ROOT / "recipes/timit/conf/experiment/synthetic.yaml"}
OPTIM_PRESETS = {"adam": ROOT / "conf/optim/adam.yaml",
                 "sgd_momentum": ROOT / "conf/optim/sgd_momentum.yaml"}
VOCAB = 62  # 61 TIMIT phones + blank
DEFAULT_CACHE = "data/timit_synthetic/prepared/features/train-*.json"


def experiment(name: str) -> tuple[ModelOptions, OptimOptions, dict]:
    """Model, optimiser and batch settings of a recipe experiment (its YAML overlay)."""
    exp = OmegaConf.load(EXPERIMENTS[name])
    optim_name = next(d["override /optim"] for d in exp.defaults if "override /optim" in d)
    optim = OmegaConf.merge(OmegaConf.load(OPTIM_PRESETS[optim_name]), exp.get("optim", {}))
    model = ModelOptions(**{k: v for k, v in OmegaConf.to_container(exp.model).items()})
    batch = {"batch_frames": int(exp.trainer.batch_frames),
             "max_batch_utts": int(exp.trainer.get("max_batch_utts", 64))}
    return model, OptimOptions(**OmegaConf.to_container(optim)), batch


def corpus(cache_glob: str | None, utts: int, folder: Path, short: bool = False
           ) -> CTCDataset:
    """``utts`` utterances of the feature cache (a random subset), or of a random cache
    (``short``: 0.5-1 s utterances, for the smoke test)."""
    rng = np.random.default_rng(0)
    found = sorted(glob.glob(str(ROOT / cache_glob))) if cache_glob else []
    if found:
        cache = FeatureCache(found[0])
        keep = sorted(rng.choice(len(cache), min(utts, len(cache)), replace=False).tolist())
        cache = cache.subset(keep)
    else:  # TIMIT-like lengths (2-5 s at 100 frames/s), 123 dims
        lengths = rng.integers(50, 100, utts) if short else rng.integers(200, 500, utts)
        items = [Utterance(f"u{i}", "s", f"u{i}", ("a",)) for i in range(utts)]
        frames = {u.id: torch.randn(int(n), 123) for u, n in zip(items, lengths, strict=True)}
        cache = build_cache(items, lambda u: frames[u.id], {"random": utts}, folder, "train",
                            progress=False)
    targets = []
    for n in cache.lengths:
        k = max(1, int(n) // 8)  # ~2.5 output frames per label at stack 3, ~8 at stack 1
        targets.append(rng.integers(1, VOCAB, k).tolist())
    return CTCDataset(cache, targets)


def pipeline(data: CTCDataset, dev: CTCDataset, model_opts: ModelOptions, optim: OptimOptions,
             batch: dict, workers: int, device: str, precision: str) -> tuple[float, float]:
    """frames/s and padding fraction of one training epoch of ``fit``."""
    torch.manual_seed(0)
    model = CTCModel(data.cache.dim, VOCAB, model_opts)
    mean, std = feature_stats(data.cache)
    model.set_normalization(torch.from_numpy(mean), torch.from_numpy(std))
    opts = TrainerOptions(epochs=1, early_stop=5, seed=0, device=device, precision=precision,
                          loader_workers=workers, checkpoint_every=0, resume=False,
                          progress=False, **batch)
    with tempfile.TemporaryDirectory() as exp:
        record = fit(model, _vocab(), data, dev, optim, opts, exp, {})["history"][0]
    return record["frames_per_s"], record["padding_fraction"]


def bare(data: CTCDataset, model_opts: ModelOptions, optim: OptimOptions, batch: dict,
         device: str, precision: str) -> float:
    """frames/s of nn.LSTM + linear + CTC + optimiser on in-memory random tensors shaped like
    the pipeline's batches (epoch 1's batches, as ``fit`` draws them)."""
    dev = torch.device(device)
    torch.manual_seed(0)
    k = model_opts.stack
    dirs = 2 if model_opts.bidirectional else 1
    # one nn.LSTM per layer and direction: on the CPU torch's fused kernel runs these far
    # faster than one stacked bidirectional nn.LSTM, so this is the higher bound
    rnns = torch.nn.ModuleList(
        torch.nn.LSTM(data.cache.dim * k if layer == 0 else model_opts.hidden * dirs,
                      model_opts.hidden, batch_first=True)
        for layer in range(model_opts.layers) for _ in range(dirs))
    out = torch.nn.Linear(model_opts.hidden * dirs, VOCAB)
    net = torch.nn.Sequential(rnns, out).to(dev)

    def rnn(x: torch.Tensor) -> torch.Tensor:
        for layer in range(model_opts.layers):
            ys = [rnns[layer * dirs](x)[0]]
            if dirs == 2:
                ys.append(rnns[layer * dirs + 1](x.flip(1))[0].flip(1))
            x = torch.cat(ys, -1)
            if model_opts.dropout and layer < model_opts.layers - 1:
                x = F.dropout(x, model_opts.dropout)
        return x

    optimizer = make_optimizer(net, optim)
    plan = bucket_batches(data.lengths, batch["batch_frames"], batch["max_batch_utts"],
                          shuffle=True, seed=1)  # fit's epoch 1 with seed 0
    tensors, frames = [], 0
    for idx in plan:
        lengths = torch.as_tensor(data.lengths[idx], dtype=torch.long)
        out_lens = (lengths + k - 1) // k
        x = torch.randn(len(idx), int(out_lens.max()), data.cache.dim * k, device=dev)
        targets = [data.targets[i] for i in idx]
        tensors.append((x, out_lens,
                        torch.as_tensor([t for seq in targets for t in seq], device=dev),
                        torch.as_tensor([len(t) for t in targets])))
        frames += int(lengths.sum())
    dtype = PRECISIONS[precision]
    net.train()
    _sync(dev)
    t0 = time.monotonic()
    for x, out_lens, targets, target_lens in tensors:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            log_probs = out(rnn(x)).log_softmax(-1)
        loss = F.ctc_loss(log_probs.float().transpose(0, 1), targets, out_lens, target_lens,
                          reduction="sum")
        (loss / len(out_lens)).backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), optim.grad_clip)
        optimizer.step()
        loss.item()  # the pipeline reads every loss too
    _sync(dev)
    return frames / (time.monotonic() - t0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _vocab():  # noqa: ANN202 - a Vocabulary of VOCAB symbols
    from recog.tokens import Vocabulary

    return Vocabulary.from_symbols([f"p{i}" for i in range(1, VOCAB)])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="a few short utterances, 2 x 16 LSTMs (smoke test)")
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument("--utts", type=int, nargs=2, default=[80, 300], metavar=("GRAVES", "SYNTH"),
                   help="utterances per epoch for each model size")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1],
                   help="DataLoader worker counts to measure (the first is the headline)")
    p.add_argument("--cache", default=DEFAULT_CACHE, help="feature cache index (glob; a "
                   "random TIMIT-like cache when none matches)")
    p.add_argument("--repeats", type=int, default=2, help="best of this many runs each")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=sorted(PRECISIONS))
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    utts = [3, 6] if args.quick else args.utts
    repeats = 1 if args.quick else args.repeats
    results: dict = {"device": args.device, "precision": args.precision,
                     "threads": torch.get_num_threads(), "sizes": {}}
    rows = [f"{'model':<11} {'utts':>5} {'run':<20} {'frames/s':>10} {'ratio':>6} "
            f"{'padding':>8}"]
    with tempfile.TemporaryDirectory() as tmp:
        for (name, _), n in zip(EXPERIMENTS.items(), utts, strict=True):
            model_opts, optim, batch = experiment(name)
            if args.quick:  # the smoke test checks the program, not a speed: a tiny model
                model_opts = ModelOptions.from_dict(
                    {**model_opts.as_dict(), "hidden": 16, "layers": 2})
            data = corpus(None if args.quick else args.cache, n, Path(tmp) / name,
                          short=args.quick)
            dev = CTCDataset(data.cache.subset([0]), data.targets[:1])
            runs: dict[str, list[float]] = {"bare": []}
            padding = math.nan
            for _ in range(repeats):  # alternate, so that a busy moment hits both
                runs["bare"].append(bare(data, model_opts, optim, batch, args.device,
                                         args.precision))
                for w in args.workers:
                    fps, padding = pipeline(data, dev, model_opts, optim, batch, w,
                                            args.device, args.precision)
                    runs.setdefault(f"pipeline workers={w}", []).append(fps)
            best = {k: max(v) for k, v in runs.items()}
            head = f"pipeline workers={args.workers[0]}"
            entry = {"model": f"{model_opts.layers}x{model_opts.hidden} stack "
                     f"{model_opts.stack}", "utterances": len(data),
                     "frames": int(data.lengths.sum()), **batch,
                     "pipeline_frames_per_s": best[head], "bare_frames_per_s": best["bare"],
                     "ratio": best[head] / best["bare"], "padding_fraction": padding,
                     "workers": {str(w): {"frames_per_s": best[f"pipeline workers={w}"],
                                          "ratio": best[f"pipeline workers={w}"] / best["bare"]}
                                 for w in args.workers}}
            results["sizes"][name] = entry
            for run, fps in best.items():
                rows.append(f"{name:<11} {len(data):>5} {run:<20} {fps:>10.0f} "
                            f"{fps / best['bare']:>6.3f} "
                            f"{padding if run != 'bare' else 0:>8.3f}")
    print(f"device {args.device}, {args.precision}, {results['threads']} torch threads; "
          "ratio = frames/s over the bare bound's")
    print("\n".join(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
