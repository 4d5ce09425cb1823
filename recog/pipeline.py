"""The recipe stages as library functions on a typed ``Config``: prepare, features, train,
decode. The CLI only turns Hydra's composition into a Config and calls these."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from recog import distributed
from recog.batching import CTCDataset
from recog.config import Config
from recog.data import iamondb, timit
from recog.data.timit_speakers import SPLIT_SIZES
from recog.data.utterance import (
    Corpus,
    DataError,
    Rejections,
    Utterance,
    atomic_write_text,
    read_jsonl,
    write_jsonl,
)
from recog.decode.greedy import greedy_decode
from recog.features.cache import FeatureCache, build_cache, feature_stats
from recog.metrics import Score, score, write_score, write_text, write_trn
from recog.models.checkpoint import load_checkpoint
from recog.models.ctc import CTCModel, ctc_min_frames
from recog.tasks import InkTask, Task, TimitTask
from recog.tokens import Vocabulary
from recog.train import fit, run_model

log = logging.getLogger("recog")


# --------------------------------------------------------------------------- corpora
def _read(cfg: Config) -> Corpus:
    """Build the synthetic corpus if asked, then read the corpus with its own reader."""
    root, c = Path(cfg.corpus.root), cfg.corpus
    if c.name == "timit":
        if c.synthetic:
            from recog.data.synth.timit import generate_timit

            generate_timit(root, c.speech_synth, progress=cfg.trainer.progress)
        return timit.read_timit(root, drop_sa=c.drop_sa, skip_bad=cfg.data.skip_bad)
    if c.name == "iamondb":
        if c.synthetic:
            from recog.data.synth.iamondb import generate_iamondb

            generate_iamondb(root, c.ink_synth, progress=cfg.trainer.progress)
        return iamondb.read_iamondb(root, skip_bad=cfg.data.skip_bad,
                                    unpack_dir=Path(cfg.prepare.out) / "unpacked")
    raise ValueError(f"unknown corpus.name {c.name!r} (timit or iamondb)")


PUBLISHED: dict[str, Callable[[str], str]] = {
    "timit": lambda s: "{}/{}".format(*SPLIT_SIZES[s]) if s in SPLIT_SIZES else "",
    "iamondb": lambda s: f"-/{iamondb.PUBLISHED_LINES[s]}" if s in iamondb.PUBLISHED_LINES
    else "",
}


def get_task(cfg: Config) -> Task:
    """The modality ends for the corpus: TIMIT-style speech or IAM-OnDB-style ink."""
    if cfg.corpus.name == "timit":
        return TimitTask(cfg.corpus.phone_set, cfg.features.audio)
    if cfg.corpus.name == "iamondb":
        return InkTask(cfg.features.pen)
    raise ValueError(f"unknown corpus.name {cfg.corpus.name!r} (timit or iamondb)")


# --------------------------------------------------------------------------- prepare
def prepare(cfg: Config) -> dict:
    """Read the corpus (building the synthetic one first if asked), write <split>.jsonl and
    summary.json under ``prepare.out``, and return the summary."""
    corpus = _read(cfg)
    out = Path(cfg.prepare.out)
    task = get_task(cfg)
    published = PUBLISHED[cfg.corpus.name]
    summary: dict = {"root": str(corpus.root), "splits": {}, "rejected": []}
    for split, utts in corpus.splits.items():
        write_jsonl(out / f"{split}.jsonl", utts)
        summary["splits"][split] = {
            "speakers": len({u.speaker for u in utts}),
            "utterances": len(utts),
            "tokens": sum(len(u.tokens) for u in utts),
            "scored_tokens": {name: sum(len(f(u.tokens)) for u in utts)
                              for name, f in task.metrics.items()},
            "published": published(split),
        }
    summary["rejected"] = [e.as_dict() for e in corpus.rejected]
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    return summary


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


def load_split(cfg: Config, split: str) -> list[Utterance]:
    path = Path(cfg.prepare.out) / f"{split}.jsonl"
    utts = read_jsonl(path)
    if not utts:
        raise DataError(path, f"split {split!r} is empty")
    return utts


# --------------------------------------------------------------------------- features
def features(cfg: Config, split: str) -> FeatureCache:
    """The feature cache of one split (built if its inputs or configuration changed)."""
    task = get_task(cfg)
    return build_cache(load_split(cfg, split), task.extract, task.feature_key,
                       cfg.data.cache_dir, split, progress=cfg.trainer.progress)


def dataset(cfg: Config, split: str, vocab: Vocabulary, model: CTCModel | None = None,
            rejections: Rejections | None = None) -> tuple[CTCDataset, list[Utterance]]:
    """Cached features and encoded targets of a split. A token outside ``vocab`` and, with a
    model, labels that cannot fit their output frames under CTC are bad items."""
    rejections = rejections if rejections is not None else Rejections()
    task = get_task(cfg)
    utts = load_split(cfg, split)
    cache = features(cfg, split)
    index = vocab.index
    jsonl = Path(cfg.prepare.out) / f"{split}.jsonl"
    keep, targets = [], []
    for i, u in enumerate(utts):
        labels = task.targets(u)
        unknown = sorted({t for t in labels if t not in index})
        if unknown:
            rejections.add(DataError(jsonl, f"utterance {u.id} ({u.source}): token(s) "
                                     f"{unknown} not in the model's vocabulary", i + 1))
            continue
        ids = [index[t] for t in labels]
        if model is not None:
            frames = int(model.output_lengths(torch.tensor(int(cache.lengths[i]))))
            if frames < ctc_min_frames(ids):
                rejections.add(DataError(
                    u.source, f"utterance {u.id}: {frames} output frames cannot hold its "
                    f"{len(ids)} labels under CTC (needs {ctc_min_frames(ids)}); "
                    "lower model.stack"))
                continue
        keep.append(i)
        targets.append(ids)
    if not keep:
        raise DataError(jsonl, f"no utterance of split {split!r} is usable")
    if len(keep) < len(utts):
        cache, utts = cache.subset(keep), [utts[i] for i in keep]
    return CTCDataset(cache, targets), utts


# --------------------------------------------------------------------------- train
def train(cfg: Config, config_dict: dict) -> dict:
    """Train a model on the corpus's train split, selecting on its dev split (under torchrun:
    in every process of the group, rank 0 building the feature caches first)."""
    distributed.init(cfg.trainer.device, cfg.trainer.backend, cfg.trainer.dist_timeout_s)
    try:
        return _train(cfg, config_dict)
    finally:
        distributed.shutdown()


def _train(cfg: Config, config_dict: dict) -> dict:
    task = get_task(cfg)
    exp_dir = Path(cfg.exp_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    torch.manual_seed(cfg.trainer.seed)
    train_split, dev_split = cfg.corpus.train_split, cfg.corpus.dev_split
    vocab = task.vocabulary(load_split(cfg, train_split))
    with distributed.main_first():  # one process builds the caches, the others read them
        train_cache = features(cfg, train_split)
        model = CTCModel(train_cache.dim, len(vocab), cfg.model)
        mean, std = feature_stats(train_cache)
        model.set_normalization(torch.from_numpy(mean), torch.from_numpy(std))
        rejections = Rejections(cfg.data.skip_bad)
        train_set, _ = dataset(cfg, train_split, vocab, model, rejections)
        dev_set, _ = dataset(cfg, dev_split, vocab, model, rejections)
    skipped = [e.as_dict() for e in rejections.items]
    for e in rejections.items:
        log.warning("skipped: %s", e)
    atomic_write_text(exp_dir / "skipped.json", json.dumps(skipped, indent=1))
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model: %s, %d parameters, %d tokens; %s %d utts (%d frames), %s %d utts",
             asdict(cfg.model), n_params, len(vocab), train_split, len(train_set),
             int(train_set.lengths.sum()), dev_split, len(dev_set))
    normalize = next(iter(task.metrics.values()))
    result = fit(model, vocab, train_set, dev_set, cfg.optim, cfg.trainer, exp_dir,
                 config_dict, normalize)
    result["skipped"] = skipped
    return result


# --------------------------------------------------------------------------- decode
def decode(cfg: Config) -> dict:
    """Greedy-decode each split with the experiment's checkpoint; write ref/hyp (Kaldi text
    and sclite trn, as scored), scores.json and report.md."""
    exp_dir = Path(cfg.exp_dir)
    ckpt = Path(cfg.decode.checkpoint)
    ckpt = ckpt if ckpt.is_file() else exp_dir / cfg.decode.checkpoint
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: no checkpoint (train first)")
    device = torch.device(cfg.trainer.device)
    model, vocab, payload = load_checkpoint(ckpt, device)
    model.to(device)
    task = get_task(cfg)
    rejections = Rejections(cfg.data.skip_bad)
    results: dict = {"checkpoint": str(ckpt), "epoch": payload.get("epoch"),
                     "metrics": list(task.metrics), "splits": {}}
    for split in cfg.decode_splits:
        ds, utts = dataset(cfg, split, vocab, rejections=rejections)
        hyps: dict[str, list[str]] = {}
        for batch, log_probs, out_lens in run_model(model, ds, cfg.decode.batch_frames, device):
            for i, ids in zip(batch.indices, greedy_decode(log_probs, out_lens), strict=True):
                hyps[ds.ids[i]] = vocab.decode(ids)
        refs = {u.id: list(u.tokens) for u in utts}
        utt2spk = {u.id: u.speaker for u in utts}
        out = exp_dir / "results" / split
        scored, first_score = {}, None
        for name, normalize in task.metrics.items():
            s = score(refs, hyps, normalize, utt2spk)
            first_score = first_score or s
            write_score(s, out / name, f"{cfg.recipe} / {cfg.name}: {split} {name}")
            scored[name] = {k: v for k, v in s.as_dict().items() if k != "per_speaker"}
            scored[name]["speakers"] = len(s.per_speaker)
        first = next(iter(task.metrics.values()))
        as_text = {"ref": {k: task.to_text(first(v)) for k, v in refs.items()},
                   "hyp": {k: task.to_text(first(v)) for k, v in hyps.items()}}
        for side, entries in as_text.items():
            write_text(out / f"{side}.txt", {k: v.split(" ") if v else [] for k, v in
                                             entries.items()})
            write_trn(out / f"{side}.trn", {k: [v] for k, v in entries.items()})
        write_text(out / "hyp.tokens.txt", hyps)
        results["splits"][split] = scored
        if split == cfg.decode_splits[-1]:  # the last test split gets the pictures
            results["pictures"] = pictures(cfg, model, vocab, task, ds, utts, hyps,
                                           first_score, exp_dir / "results", device)
    skipped = [e.as_dict() for e in rejections.items]
    results["skipped"] = skipped
    atomic_write_text(exp_dir / "results" / "scores.json", json.dumps(results, indent=1))
    atomic_write_text(exp_dir / "results" / "report.md", report(cfg, results, exp_dir))
    return results


def pictures(cfg: Config, model: CTCModel, vocab: Vocabulary, task: Task, ds: CTCDataset,
             utts: list[Utterance], hyps: dict[str, list[str]], first: Score, out: Path,
             device: torch.device) -> list[str]:
    """Training curves, the confusion matrix of the first metric (scored as ``first``), and
    for the first utterance a posteriorgram (speech) or its ink coloured by the aligned
    characters (handwriting)."""
    from recog import plots

    paths = []
    history = Path(cfg.exp_dir) / "history.json"
    name = next(iter(task.metrics))
    if history.is_file():
        paths.append(plots.training_curves(json.loads(history.read_text()),
                                           out / "training_curves.png", f"dev {name}"))
    pairs = first.pairs()
    labels = sorted({t for pair in pairs for t in pair if t is not None})
    paths.append(plots.confusion_matrix(pairs, labels, out / f"confusion_{name}.png",
                                        f"{cfg.name}: {name} confusions ({len(utts)} utts)"))
    feats = np.array(ds.cache[0])  # a writable copy of the memory-mapped frames
    model.eval()
    with torch.no_grad():
        log_probs, _ = model(torch.from_numpy(feats)[None].to(device),
                             torch.tensor([len(feats)], device=device))
    log_probs = log_probs[0].cpu().numpy()
    ref_ids, utt = ds.targets[0], utts[0]
    hyp = hyps.get(utt.id, [])
    if isinstance(task, InkTask):
        strokes = task.points(utt)
        n_points = sum(len(stroke) for stroke in strokes)
        ids = plots.align_points(log_probs, ref_ids, n_points, model.options.stack)
        chars = [vocab.tokens[i] if i is not None else None for i in ids]
        paths.append(plots.ink(strokes, chars, out / "ink.png",
                               task.to_text(utt.tokens), task.to_text(hyp)))
    else:
        paths.append(plots.posteriorgram(
            feats, log_probs, vocab.tokens, ref_ids, out / "posteriorgram.png",
            f"{utt.id}: ref {task.to_text(task.targets(utt))}", model.options.stack))
    return [str(p) for p in paths]


def format_scores(results: dict) -> str:
    rows = [f"{'split':<10} {'metric':<6} {'spk':>4} {'utts':>5} {'N':>7} {'S':>6} {'D':>6} "
            f"{'I':>6} {'ERR %':>7}  95 % CI"]
    for split, scored in results["splits"].items():
        for name, s in scored.items():
            lo, hi = s["ci95"]
            rows.append(f"{split:<10} {name:<6} {s['speakers']:>4} {s['utterances']:>5} "
                        f"{s['n']:>7} {s['sub']:>6} {s['del']:>6} {s['ins']:>6} "
                        f"{s['error_rate']:>7.2f}  {lo:.2f}-{hi:.2f}")
    return "\n".join(rows)


def report(cfg: Config, results: dict, exp_dir: Path) -> str:
    """A short markdown report: set-up, scores, skipped items."""
    skipped_path = exp_dir / "skipped.json"
    skipped = json.loads(skipped_path.read_text()) if skipped_path.is_file() else []
    skipped += results.get("skipped", [])
    feats = cfg.features.audio if cfg.corpus.name == "timit" else cfg.features.pen
    lines = [
        f"# {cfg.recipe} / {cfg.name}", "",
        f"- corpus: {cfg.corpus.name} at `{cfg.corpus.root}` (prepared in "
        f"`{cfg.prepare.out}`)",
        f"- features: {feats.kind}, {feats.dim} dims",
        f"- model: {cfg.model.layers} x {cfg.model.hidden} {cfg.model.cell}, "
        f"bidirectional={cfg.model.bidirectional}, stack={cfg.model.stack}",
        f"- checkpoint: `{results['checkpoint']}` (epoch {results['epoch']}, chosen on "
        f"{cfg.corpus.dev_split} {results['metrics'][0]})",
        f"- decoding: {cfg.decode.method}; metrics: {', '.join(results['metrics'])}", "",
        "```", format_scores(results), "```", "",
        f"Skipped items: {len(skipped)}",
    ]
    pictures = [Path(p) for p in results.get("pictures", [])]
    if pictures:
        lines[-1:-1] = [f"![{p.stem}]({p.name})" for p in pictures] + [""]
    lines += [f"- `{s['path']}`{':' + str(s['line']) if s['line'] else ''}: {s['reason']}"
              for s in skipped]
    return "\n".join(lines) + "\n"
