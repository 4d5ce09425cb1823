"""The recipe stages as library functions on a typed ``Config``: prepare, features, train,
decode. The CLI only turns Hydra's composition into a Config and calls these."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import torch

from recog.batching import CTCDataset
from recog.config import Config
from recog.data.timit import SPLITS, read_timit
from recog.data.timit_speakers import SPLIT_SIZES
from recog.data.utterance import (
    DataError,
    Rejections,
    Utterance,
    atomic_write_text,
    read_jsonl,
    write_jsonl,
)
from recog.decode.greedy import greedy_decode
from recog.features.cache import FeatureCache, build_cache, feature_stats
from recog.metrics import score, write_text, write_trn
from recog.models.checkpoint import load_checkpoint
from recog.models.ctc import CTCModel, ctc_min_frames
from recog.tasks import TimitTask, task_for
from recog.train import fit, run_model

log = logging.getLogger("recog")


def get_task(cfg: Config) -> TimitTask:
    return task_for(cfg.corpus.name, cfg.corpus.phone_set, cfg.features)


# --------------------------------------------------------------------------- prepare
def prepare(cfg: Config) -> dict:
    """Read the corpus (building the synthetic one first if asked), write <split>.jsonl and
    summary.json under ``prepare.out``, and return the summary."""
    root = Path(cfg.corpus.root)
    if cfg.corpus.synthetic:
        from recog.data.synth.timit import generate_timit

        generate_timit(root, cfg.corpus.synth, progress=cfg.trainer.progress)
    corpus = read_timit(root, drop_sa=cfg.corpus.drop_sa, skip_bad=cfg.data.skip_bad)
    out = Path(cfg.prepare.out)
    task = get_task(cfg)
    summary: dict = {"root": str(corpus.root), "splits": {}, "rejected": []}
    for split in SPLITS:
        utts = corpus.splits[split]
        write_jsonl(out / f"{split}.jsonl", utts)
        summary["splits"][split] = {
            "speakers": len({u.speaker for u in utts}),
            "utterances": len(utts),
            "tokens": sum(len(u.tokens) for u in utts),
            "scored_tokens": sum(len(task.normalize(u.tokens)) for u in utts),
            "published": dict(zip(("speakers", "utterances"), SPLIT_SIZES[split],
                                  strict=True)),
        }
    summary["rejected"] = [e.as_dict() for e in corpus.rejected]
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    return summary


def format_summary(summary: dict) -> str:
    """The prepare summary as a text table."""
    rows = [f"corpus: {summary['root']}",
            f"{'split':<10} {'speakers':>8} {'utts':>6} {'tokens':>8} {'scored(39)':>10}"
            f"   published (speakers/utts)"]
    for split, s in summary["splits"].items():
        p = s["published"]
        rows.append(f"{split:<10} {s['speakers']:>8} {s['utterances']:>6} {s['tokens']:>8} "
                    f"{s['scored_tokens']:>10}   {p['speakers']}/{p['utterances']}")
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


def dataset(cfg: Config, split: str, model: CTCModel | None = None,
            rejections: Rejections | None = None) -> tuple[CTCDataset, list[Utterance]]:
    """Cached features and encoded targets of a split; with a model, utterances whose
    labels cannot fit their output frames under CTC are reported (see ``ctc_fits``)."""
    task = get_task(cfg)
    utts = load_split(cfg, split)
    cache = features(cfg, split)
    vocab = task.vocabulary
    targets = [vocab.encode(task.targets(u)) for u in utts]
    if model is not None:
        keep = []
        for i, u in enumerate(utts):
            frames = int(model.output_lengths(torch.tensor(int(cache.lengths[i]))))
            need = ctc_min_frames(targets[i])
            if frames < need:
                (rejections if rejections is not None else Rejections()).add(DataError(
                    u.source, f"utterance {u.id}: {frames} output frames cannot hold its "
                    f"{len(targets[i])} labels under CTC (needs {need}); lower model.stack"))
            else:
                keep.append(i)
        if not keep:
            raise DataError(Path(cfg.prepare.out) / f"{split}.jsonl",
                            f"no utterance of split {split!r} fits under CTC")
        if len(keep) < len(utts):
            cache = cache.subset(keep)
            targets = [targets[i] for i in keep]
            utts = [utts[i] for i in keep]
    return CTCDataset(cache, targets), utts


# --------------------------------------------------------------------------- train
def train(cfg: Config, config_dict: dict) -> dict:
    """Train a model on ``data.train_split``, selecting on ``data.dev_split``."""
    task = get_task(cfg)
    exp_dir = Path(cfg.exp_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    if cfg.trainer.num_threads:
        torch.set_num_threads(cfg.trainer.num_threads)
    torch.manual_seed(cfg.trainer.seed)
    train_cache = features(cfg, cfg.data.train_split)
    model = CTCModel(train_cache.dim, len(task.vocabulary), cfg.model)
    mean, std = feature_stats(train_cache)
    model.set_normalization(torch.from_numpy(mean), torch.from_numpy(std))
    rejections = Rejections(cfg.data.skip_bad)
    train_set, _ = dataset(cfg, cfg.data.train_split, model, rejections)
    dev_set, _ = dataset(cfg, cfg.data.dev_split, model, rejections)
    skipped = [e.as_dict() for e in rejections.items]
    for e in rejections.items:
        log.warning("skipped: %s", e)
    atomic_write_text(exp_dir / "skipped.json", json.dumps(skipped, indent=1))
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model: %s, %d parameters, %d tokens; train %d utts (%d frames), dev %d utts",
             asdict(cfg.model), n_params, len(task.vocabulary), len(train_set),
             int(train_set.lengths.sum()), len(dev_set))
    result = fit(model, task.vocabulary, train_set, dev_set, cfg.optim, cfg.trainer,
                 exp_dir, config_dict, task.normalize)
    result["skipped"] = skipped
    return result


# --------------------------------------------------------------------------- decode
def decode(cfg: Config) -> dict:
    """Greedy-decode each of ``decode.splits`` with the experiment's checkpoint; write
    ref/hyp (Kaldi text and sclite trn, 39-folded), scores.json and report.md."""
    exp_dir = Path(cfg.exp_dir)
    ckpt = Path(cfg.decode.checkpoint)
    ckpt = ckpt if ckpt.is_file() else exp_dir / cfg.decode.checkpoint
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: no checkpoint (train first)")
    device = torch.device(cfg.trainer.device)
    model, vocab, payload = load_checkpoint(ckpt, device)
    model.to(device)
    task = get_task(cfg)
    if tuple(vocab.tokens) != tuple(task.vocabulary.tokens):
        raise ValueError(f"{ckpt}: its vocabulary differs from corpus.phone_set="
                         f"{cfg.corpus.phone_set}")
    results: dict = {"checkpoint": str(ckpt), "epoch": payload.get("epoch"), "splits": {}}
    for split in cfg.decode.splits:
        ds, utts = dataset(cfg, split)
        hyps_raw: dict[str, list[str]] = {}
        for batch, log_probs, out_lens in run_model(model, ds, cfg.decode.batch_frames, device):
            for i, ids in zip(batch.indices, greedy_decode(log_probs, out_lens), strict=True):
                hyps_raw[ds.ids[i]] = vocab.decode(ids)
        refs = {u.id: task.normalize(u.tokens) for u in utts}
        hyps = {k: task.normalize(v) for k, v in hyps_raw.items()}
        s = score(refs, hyps, utt2spk={u.id: u.speaker for u in utts})
        out = exp_dir / "results" / split
        write_text(out / "ref.txt", refs)
        write_text(out / "hyp.txt", hyps)
        write_trn(out / "ref.trn", refs)
        write_trn(out / "hyp.trn", hyps)
        write_text(out / "hyp.tokens.txt", hyps_raw)
        atomic_write_text(out / "scores.json", json.dumps(s.as_dict(), indent=1))
        results["splits"][split] = {k: v for k, v in s.as_dict().items() if k != "per_speaker"}
        results["splits"][split]["speakers"] = len(s.per_speaker)
    atomic_write_text(exp_dir / "results" / "scores.json", json.dumps(results, indent=1))
    atomic_write_text(exp_dir / "results" / "report.md", report(cfg, results, exp_dir))
    return results


def format_scores(results: dict) -> str:
    rows = [f"{'split':<10} {'spk':>4} {'utts':>5} {'N':>7} {'S':>6} {'D':>6} {'I':>6} "
            f"{'PER %':>7}"]
    for split, s in results["splits"].items():
        rows.append(f"{split:<10} {s['speakers']:>4} {s['utterances']:>5} {s['n']:>7} "
                    f"{s['sub']:>6} {s['del']:>6} {s['ins']:>6} {s['error_rate']:>7.2f}")
    return "\n".join(rows)


def report(cfg: Config, results: dict, exp_dir: Path) -> str:
    """A short markdown report: set-up, scores, skipped items."""
    skipped_path = exp_dir / "skipped.json"
    skipped = json.loads(skipped_path.read_text()) if skipped_path.is_file() else []
    lines = [
        f"# {cfg.recipe} / {cfg.name}", "",
        f"- corpus: `{cfg.corpus.root}` (prepared in `{cfg.prepare.out}`)",
        f"- features: {cfg.features.kind}, {cfg.features.dim} dims",
        f"- model: {cfg.model.layers} x {cfg.model.hidden} {cfg.model.cell}, "
        f"bidirectional={cfg.model.bidirectional}, stack={cfg.model.stack}, "
        f"trained on {cfg.corpus.phone_set} phones, scored on 39 (Kaldi folding, q deleted)",
        f"- checkpoint: `{results['checkpoint']}` (epoch {results['epoch']}, chosen on dev)",
        f"- decoding: {cfg.decode.method}", "",
        "```", format_scores(results), "```", "",
        f"Skipped items: {len(skipped)}",
    ]
    lines += [f"- `{s['path']}`: {s['reason']}" for s in skipped]
    return "\n".join(lines) + "\n"
