"""Benchmark: the same log-probs decoded by greedy, our prefix beam search, flashlight-text
(through torchaudio) and pyctcdecode at the same beam, without and with a token n-gram.

    python scripts/bench/decode.py --exp exp/timit/synthetic [--beam 16] [--json out.json]
    python scripts/bench/decode.py --quick      # synthetic peaky log-probs, no model needed

With --exp, the log-probs are the model's outputs on the dev split (config.yaml and best.pt
of the experiment folder; run from the repository root, where its relative paths point), in
the batches recog-decode uses (at most 30,000 padded frames each): recog decodes a batch at
once, flashlight-text and pyctcdecode one utterance at a time (their APIs).
Prints utterances/s, each decoder's ratio to ours, the error rate against the references
(the task's first metric: PER for TIMIT, CER for handwriting) and how often our best
hypothesis equals flashlight's. Every decoder runs on one thread.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from recog.decode.beam import BeamOptions
from recog.decode.decoder import BeamSearch, GreedyDecoder
from recog.decode.ngram import lm_automaton, train_kneser_ney
from recog.metrics import error_count

Batches = list[tuple[torch.Tensor, torch.Tensor]]


def model_outputs(exp: Path) -> tuple[Batches, list[list[int]], tuple[str, ...],
                                      list[list[str]], Callable]:
    """Dev-split log-probs of the experiment's best.pt, the references, the tokens, the
    train split's labels (for the n-gram) and the scoring normaliser."""
    from omegaconf import OmegaConf

    from recog import pipeline
    from recog.config import Config
    from recog.models.checkpoint import load_checkpoint
    from recog.train import run_model

    cfg: Config = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config),
                                                      OmegaConf.load(exp / "config.yaml")))
    model, vocab, _ = load_checkpoint(exp / "best.pt")
    ds, _ = pipeline.dataset(cfg, cfg.corpus.dev_split, vocab)
    batches, refs = [], []
    with torch.no_grad():
        for batch, lp, n in run_model(model, ds, 30000, torch.device("cpu")):
            batches.append((lp.contiguous(), n))
            refs += [ds.targets[i] for i in batch.indices]
    task = pipeline.get_task(cfg)
    train = [task.targets(u) for u in pipeline.load_split(cfg, cfg.corpus.train_split)]
    normalize = next(iter(task.metrics.values()))
    return batches, refs, vocab.tokens, train, normalize


def synthetic_outputs(n_utts: int = 48, vocab: int = 30, seed: int = 0
                      ) -> tuple[Batches, list[list[int]], tuple[str, ...],
                                 list[list[str]], Callable]:
    """Peaky log-probs around random labellings (a bigram-ish token chain), for --quick."""
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    tokens = ("<blk>", *(f"t{i}" for i in range(1, vocab)))

    def sentence() -> list[int]:
        out = [rng.randrange(1, vocab)]
        for _ in range(rng.randint(4, 14)):
            out.append(out[-1] % (vocab - 1) + 1 if rng.random() < 0.6
                       else rng.randrange(1, vocab))
        return out

    refs = [sentence() for _ in range(n_utts)]
    batches: Batches = []
    for start in range(0, n_utts, 16):
        chunk = refs[start:start + 16]
        frames = [[0, *(c for lab in r for c in (lab, lab, 0))] for r in chunk]
        t = max(len(f) for f in frames)
        logits = 1.5 * torch.randn(len(chunk), t, vocab, generator=g)
        for b, f in enumerate(frames):
            logits[b, torch.arange(len(f)), torch.tensor(f)] += 8.0
        batches.append((logits.log_softmax(-1), torch.tensor([len(f) for f in frames])))
    train = [[tokens[c] for c in sentence()] for _ in range(400)]
    return batches, refs, tokens, train, list


class PyCTCDecode:
    """pyctcdecode's beam search, one utterance at a time (its API), tokens as characters."""

    def __init__(self, tokens: Sequence[str], beam: int):
        from pyctcdecode import build_ctcdecoder

        self.chars = [""] + [chr(0x4E00 + i) for i in range(1, len(tokens))]
        self.index = {c: i for i, c in enumerate(self.chars)}
        self.decoder = build_ctcdecoder(self.chars)
        self.beam = beam

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        x = log_probs.numpy()
        return [[self.index[c] for c in self.decoder.decode(x[b, :n], beam_width=self.beam)]
                for b, n in enumerate(lengths.tolist())]


def more_probable(batches: Batches, ours: list[list[int]], theirs: list[list[int]]
                  ) -> tuple[int, int, int]:
    """Where the two best labellings differ, which has the higher total CTC probability
    (every alignment summed by torch's CTC forward pass): counts for ours, theirs, equal."""
    rows = [(lp[b, :n], n) for lp, lengths in batches
            for b, n in enumerate(lengths.tolist())]
    counts = [0, 0, 0]
    for (lp, n), a, b in zip(rows, ours, theirs, strict=True):
        if a != b:
            pa, pb = (-float(torch.nn.functional.ctc_loss(
                lp[:, None], torch.tensor([lab], dtype=torch.long), torch.tensor([n]),
                torch.tensor([len(lab)]), reduction="sum")) for lab in (a, b))
            counts[0 if pa > pb + 1e-4 else 1 if pb > pa + 1e-4 else 2] += 1
    return counts[0], counts[1], counts[2]


def run(decode: Callable, batches: Batches, repeats: int) -> tuple[float, list[list[int]]]:
    """Best-of-``repeats`` seconds to decode every batch, after one warm-up batch."""
    decode(*batches[0])
    best, hyps = float("inf"), []
    for _ in range(repeats):
        start = time.perf_counter()
        hyps = [h for lp, n in batches for h in decode(lp, n)]
        best = min(best, time.perf_counter() - start)
    return best, hyps


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exp", type=Path, help="experiment folder (config.yaml, best.pt)")
    p.add_argument("--quick", action="store_true", help="small synthetic problem, no model")
    p.add_argument("--beam", type=int, default=16)
    p.add_argument("--lm-order", type=int, default=3)
    p.add_argument("--lm-weight", type=float, default=0.3)
    p.add_argument("--insertion-bonus", type=float, default=0.5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, help="write the records here")
    args = p.parse_args(argv)
    if not args.quick and args.exp is None:
        p.error("give --exp DIR or --quick")
    torch.set_num_threads(args.threads)
    batches, refs, tokens, train, normalize = (
        synthetic_outputs() if args.quick else model_outputs(args.exp))
    repeats = 1 if args.quick else args.repeats
    lm = lm_automaton(train_kneser_ney(train, args.lm_order, tokens[1:]), tokens)
    plain = BeamOptions(beam=args.beam)
    fused = BeamOptions(beam=args.beam, lm_weight=args.lm_weight,
                        insertion_bonus=args.insertion_bonus)
    decoders: list[tuple[str, bool, Callable | None]] = [
        ("greedy", False, GreedyDecoder()),
        ("recog beam", False, BeamSearch(plain, tokens)),
        ("recog beam+LM", True, BeamSearch(fused, tokens, lm=lm)),
    ]
    try:
        from recog.decode.flashlight import FlashlightDecoder

        decoders += [("flashlight-text", False, FlashlightDecoder(tokens, plain)),
                     ("flashlight-text+LM", True, FlashlightDecoder(tokens, fused, lm=lm))]
    except ImportError as e:
        print(f"flashlight-text not available: {e}", file=sys.stderr)
    try:
        decoders.append(("pyctcdecode", False, PyCTCDecode(tokens, args.beam)))
    except ImportError as e:
        print(f"pyctcdecode not available: {e}", file=sys.stderr)

    n_utts = len(refs)
    ref_tokens = [normalize([tokens[c] for c in r]) for r in refs]
    n_ref = sum(len(r) for r in ref_tokens)
    records, outputs = [], {}
    for name, with_lm, dec in decoders:
        seconds, hyps = run(dec, batches, repeats)
        outputs[name] = hyps
        errors = sum(error_count(r, normalize([tokens[c] for c in h]))
                     for r, h in zip(ref_tokens, hyps, strict=True))
        records.append({"name": name, "beam": 1 if name == "greedy" else args.beam,
                        "lm": with_lm, "utt_per_s": n_utts / seconds,
                        "error_rate": 100.0 * errors / max(n_ref, 1), "seconds": seconds})
    speed = {r["name"]: r["utt_per_s"] for r in records}
    source = "synthetic peaky log-probs" if args.quick else f"{args.exp} dev"
    print(f"{n_utts} utterances ({source}) in {len(batches)} batch(es), {len(tokens)} tokens, "
          f"beam {args.beam}, "
          f"{args.threads} thread(s), best of {repeats}; LM: {args.lm_order}-gram KN, "
          f"weight {args.lm_weight}, bonus {args.insertion_bonus}")
    print(f"{'decoder':<20} {'beam':>4} {'LM':>3} {'utt/s':>9} {'ours / it':>9} "
          f"{'err %':>7}")
    for r in records:
        ours = speed["recog beam+LM" if r["lm"] else "recog beam"]
        print(f"{r['name']:<20} {r['beam']:>4} {'yes' if r['lm'] else 'no':>3} "
              f"{r['utt_per_s']:>9.1f} {ours / r['utt_per_s']:>8.2f}x {r['error_rate']:>7.2f}")
    if "flashlight-text" in outputs:
        ours, theirs = outputs["recog beam"], outputs["flashlight-text"]
        same = sum(a == b for a, b in zip(ours, theirs, strict=True))
        print(f"recog beam == flashlight-text (no LM) on {same} / {n_utts} utterances "
              f"({100.0 * same / n_utts:.2f} %)")
        better = more_probable(batches, ours, theirs)
        print(f"where they differ, the more probable labelling (exact CTC forward): ours "
              f"{better[0]}, flashlight-text's {better[1]}, equal {better[2]}")
        for r in records:
            if r["name"] == "recog beam":
                r["agreement_with_flashlight"] = same / n_utts
                r["differing_more_probable"] = dict(zip(("ours", "flashlight", "equal"),
                                                        better, strict=True))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records, indent=1) + "\n")
    return records


if __name__ == "__main__":
    main()
