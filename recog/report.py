"""What a run tells its reader: the prepare summary, the score table, the markdown
report of a decoding and its pictures."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from recog.batching import CTCDataset
from recog.config import Config
from recog.data.utterance import Utterance, read_json
from recog.metrics import Score
from recog.models.ctc import CTCModel
from recog.stages.corpora import get_task
from recog.tasks import Picture, Task
from recog.tokens import Vocabulary


def format_summary(summary: dict) -> str:
    """The prepare summary as a text table."""
    metrics = list(next(iter(summary["splits"].values()))["scored_tokens"])
    rows = [f"corpus: {summary['root']}",
            f"{'split':<10} {'spk/wrt':>8} {'utts':>6} {'tokens':>8} "
            + " ".join(f"{'N(' + m + ')':>8}" for m in metrics)
            + "   published (speakers/utts)"]
    for split, s in summary["splits"].items():
        rows.append(f"{split:<10} {s['speakers']:>8} {s['utterances']:>6} {s['tokens']:>8} "
                    + " ".join(f"{s['scored_tokens'][m]:>8}" for m in metrics)
                    + f"   {s['published']}")
    rows.append(f"rejected: {len(summary['rejected'])}")
    rows += [f"  {r['path']}{':' + str(r['line']) if r['line'] else ''}: {r['reason']}"
             for r in summary["rejected"]]
    return "\n".join(rows)


def format_tuning(rows: list[dict], split: str) -> str:
    """``recog-lm``'s grid, best first: each point's weights and its error rate on ``split``."""
    *options, metric = list(rows[0])
    lines = [" ".join(f"{o:>15}" for o in options) + f" {metric + ' %':>7}  ({split})"]
    lines += [" ".join(f"{r[o]:>15.2f}" for o in options) + f" {r[metric]:>7.2f}"
              for r in rows]
    return "\n".join(lines)


def format_speakers(s: Score, seed: int = 0) -> str:
    """``recog-score``'s table: per speaker N, correct, S, D, I and the error rate, then the
    total with its bootstrap 95 % interval (``seed``)."""
    lo, hi = s.confidence_interval(seed=seed)
    lines = [f"{'speaker':<12} {'N':>7} {'Cor':>7} {'S':>6} {'D':>6} {'I':>6} {'ERR %':>7}"]
    lines += [f"{spk:<12} {c.n:>7} {c.correct:>7} {c.sub:>6} {c.dele:>6} {c.ins:>6} "
              f"{c.rate:>7.2f}" for spk, c in sorted(s.per_speaker.items())]
    t = s.total
    lines.append(f"{'total':<12} {t.n:>7} {t.correct:>7} {t.sub:>6} {t.dele:>6} {t.ins:>6} "
                 f"{t.rate:>7.2f}  (95 % CI {lo:.2f}-{hi:.2f})")
    return "\n".join(lines)


def format_scores(results: dict) -> str:
    """The scores of every split and metric as a text table."""
    rows = [f"{'split':<10} {'metric':<6} {'spk':>4} {'utts':>5} {'N':>7} {'S':>6} {'D':>6} "
            f"{'I':>6} {'ERR %':>7}  95 % CI"]
    for split, scored in results["splits"].items():
        for name, s in scored.items():
            lo, hi = s["ci95"]
            rows.append(f"{split:<10} {name:<6} {s['speakers']:>4} {s['utterances']:>5} "
                        f"{s['n']:>7} {s['sub']:>6} {s['del']:>6} {s['ins']:>6} "
                        f"{s['error_rate']:>7.2f}  {lo:.2f}-{hi:.2f}")
    return "\n".join(rows)


def _describe(cfg: Config) -> str:
    d = cfg.decode
    if d.method == "greedy":
        return "greedy"
    parts = [f"{d.method}, beam {d.beam}" if d.method in ("beam", "flashlight") else d.method]
    if d.lm:
        parts.append(f"LM `{d.lm}` (weight {d.lm_weight}, bonus {d.insertion_bonus})")
    if d.lexicon:
        parts.append(f"lexicon `{d.lexicon}`")
    if d.word_lm:
        parts.append(f"word LM `{d.word_lm}` (weight {d.word_lm_weight})")
    return ", ".join(parts)


def report(cfg: Config, results: dict, exp_dir: Path) -> str:
    """A short markdown report: set-up, scores, skipped items."""
    skipped_path = exp_dir / "skipped.json"
    skipped = (read_json(skipped_path, list, ("path", "reason")) if skipped_path.is_file()
               else [])
    skipped += results.get("skipped", [])
    summary_path = Path(cfg.prepare.out) / "summary.json"
    rejected = (read_json(summary_path, dict).get("rejected", [])
                if summary_path.is_file() else [])
    feats = get_task(cfg).features
    lines = [
        f"# {cfg.recipe} / {cfg.name}", "",
        f"- corpus: {cfg.corpus.name} at `{cfg.corpus.root}` (prepared in "
        f"`{cfg.prepare.out}`)",
        f"- features: {feats.kind}, {feats.dim} dims",
        f"- model: {cfg.model.layers} x {cfg.model.hidden} {cfg.model.cell}, "
        f"bidirectional={cfg.model.bidirectional}, stack={cfg.model.stack}",
        f"- checkpoint: `{results['checkpoint']}` (epoch {results['epoch']}, chosen on "
        f"{cfg.corpus.dev_split} {results.get('selection', results['metrics'][0])})",
        f"- decoding: {_describe(cfg)}; metrics: {', '.join(results['metrics'])}", "",
        "```", format_scores(results), "```", "",
        f"Skipped items: {len(skipped)}",
    ]
    pictures = [Path(p) for p in results.get("pictures", [])]
    if pictures:
        lines[-1:-1] = [f"![{p.stem}]({os.path.relpath(p, exp_dir / cfg.decode.results)})"
                        for p in pictures] + [""]
    lines += [f"- `{s['path']}`{':' + str(s['line']) if s['line'] else ''}: {s['reason']}"
              for s in skipped]
    lines += ["", f"Items rejected by `recog-prepare`: {len(rejected)}"]
    lines += [f"- `{s['path']}`{':' + str(s['line']) if s['line'] else ''}: {s['reason']}"
              for s in rejected]
    return "\n".join(lines) + "\n"


def pictures(cfg: Config, model: CTCModel, vocab: Vocabulary, task: Task, ds: CTCDataset,
             utts: list[Utterance], hyps: dict[str, list[str]], chosen: Score, out: Path,
             device: torch.device) -> list[str]:
    """Training curves, the confusion matrix of the selection metric (scored as
    ``chosen``), and the task's picture of the first utterance (a posteriorgram, or the ink
    coloured by the aligned characters)."""
    from recog import plots

    paths = []
    history = Path(cfg.exp_dir) / "history.json"
    name = task.selection
    if history.is_file():  # one per experiment, beside history.json, whatever the decoding
        paths.append(plots.training_curves(read_json(history, list, ("epoch",)),
                                           Path(cfg.exp_dir) / "training_curves.png",
                                           f"{cfg.corpus.dev_split} {name}"))
    pairs = chosen.pairs()
    labels = sorted({t for pair in pairs for t in pair if t is not None})
    split = cfg.decode_splits[-1]
    paths.append(plots.confusion_matrix(
        pairs, labels, out / f"confusion_{name}.png",
        f"{cfg.name}, {split} ({len(utts)} utterances), {_describe(cfg)}: {name} confusions"))
    feats = np.array(ds.cache[0])  # a writable copy of the memory-mapped frames
    if ds.norm is not None:
        feats = ds.norm.apply(0, feats)
    model.eval()
    with torch.no_grad():
        log_probs, _ = model(torch.from_numpy(feats)[None].to(device),
                             torch.tensor([len(feats)], device=device))
    utt, hyp = utts[0], hyps.get(utts[0].id, [])
    caption = (f"{utt.id} ({split})\nref: {task.to_text(task.targets(utt))}\n"
               f"hyp: {task.to_text(hyp)} ({_describe(cfg)})")
    paths.append(task.picture(utt, Picture(feats, log_probs[0].cpu().numpy(), ds.targets[0],
                                           hyp, vocab.tokens, model.options.stack, out,
                                           caption)))
    return [str(p) for p in paths]
