"""The corpora recog reads, by ``corpus.name``: each one's reader (building the synthetic
corpus first when asked), its task (the modality's ends) and its published split sizes;
and the check that every name in a config picks something."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from recog import distributed
from recog.batching import NORMALIZATIONS
from recog.config import Config
from recog.data import fsdd, iamondb, manifest, timit
from recog.data.timit_speakers import SPLIT_SIZES
from recog.data.utterance import ConfigError, Corpus
from recog.tasks import InkTask, SpeechTask, Task, TimitTask


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
    extra = None
    if c.digit_synth.speakers:
        from recog.data.synth.digits import generate_digits

        extra = generate_digits(Path(cfg.prepare.out), c.digit_synth, cfg.trainer.progress)
    return fsdd.read_fsdd(c.root, c.dev_speakers, c.test_speakers,
                          (c.train_split, c.dev_split, c.test_splits[0]), cfg.data.skip_bad,
                          extra, c.tokens)


def _speech_task(cfg: Config) -> Task:
    c = cfg.corpus
    token_list = manifest.read_token_list(c.token_list) if c.token_list else ()
    return SpeechTask(cfg.features.audio, c.tokens, token_list)


def _ink_task(cfg: Config) -> Task:
    if cfg.corpus.tokens != "chars":
        raise ValueError("ink corpora are transcribed in characters (corpus.tokens=chars)")
    return InkTask(cfg.features.pen)


# corpus.modality of a bring-your-own corpus (manifest, Kaldi directory) -> its task
MODALITIES: dict[str, Callable[[Config], Task]] = {"speech": _speech_task, "ink": _ink_task}


def _byo_task(cfg: Config) -> Task:
    c = cfg.corpus
    if c.modality not in MODALITIES:
        raise ValueError(f"unknown corpus.modality {c.modality!r} ({' or '.join(MODALITIES)})")
    return MODALITIES[c.modality](cfg)


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
    "fsdd": CorpusKind(_read_fsdd, lambda cfg: SpeechTask(  # the ten words' letters or words
        cfg.features.audio, cfg.corpus.tokens, fsdd.TOKEN_SETS.get(cfg.corpus.tokens, ()))),
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


def read_corpus(cfg: Config) -> Corpus:
    """Build the synthetic corpus if asked, then read the corpus with its own reader."""
    return corpus_kind(cfg).read(cfg)


def get_task(cfg: Config) -> Task:
    """The modality ends for the corpus: TIMIT-style speech, IAM-OnDB-style ink, or a
    bring-your-own corpus's speech or ink."""
    return corpus_kind(cfg).task(cfg)
