"""The typed configuration of a run: plain dataclasses, one per group, each reusing the
library's own options dataclass. ``recog.cli`` hands them to Hydra as its schema (so a YAML
key the library does not know, or a value of the wrong type, is an error naming the key);
the library itself knows no config framework."""

from __future__ import annotations

from dataclasses import dataclass, field

from recog.augment import AugmentOptions
from recog.data.limits import MAX_POINTS, MAX_SECONDS
from recog.data.synth.digits import DigitSynthOptions
from recog.data.synth.iamondb import InkSynthOptions
from recog.data.synth.shifted import ShiftedSynthOptions
from recog.data.synth.timit import SynthOptions
from recog.decode.decoder import DecodeOptions
from recog.features.audio import AudioFeatureOptions
from recog.features.pen import PenFeatureOptions
from recog.finetune import FinetuneOptions
from recog.models.ctc import ModelOptions
from recog.train import OptimOptions, TrainerOptions

MISSING = "???"  # a value that must be given (what Hydra and OmegaConf read as missing)


@dataclass
class CorpusConfig:
    """Which corpus and where; ``synthetic`` builds one at ``root`` when it is absent."""

    name: str = "timit"  # timit | iamondb | manifest | kaldi_dir | fsdd
    root: str = MISSING
    synthetic: bool = False
    train_split: str = "train"
    dev_split: str = "dev"  # model selection, learning-rate schedule, early stopping
    test_splits: list[str] = field(default_factory=lambda: ["test"])
    phone_set: int = 61  # TIMIT: training label set, 61, 48 or 39 (scoring is on 39)
    drop_sa: bool = True  # TIMIT: drop the SA sentences
    speech_synth: SynthOptions = field(default_factory=SynthOptions)
    ink_synth: InkSynthOptions = field(default_factory=InkSynthOptions)
    # bring-your-own corpora (name: manifest | kaldi_dir): <root>/<split>.jsonl or <root>/<split>/
    modality: str = "speech"  # speech | ink (manifest only)
    tokens: str = "phones"  # chars | phones | words | list (whitespace-separated, from token_list)
    token_list: str | None = None  # file with one token per line: the vocabulary, in order
    shifted_synth: ShiftedSynthOptions = field(default_factory=ShiftedSynthOptions)
    # FSDD (name: fsdd): split by speaker; every speaker not named here trains
    dev_speakers: list[str] = field(default_factory=list)
    test_speakers: list[str] = field(default_factory=list)
    # FSDD: eSpeak speakers saying the digits, added to the training split (in prepare.out)
    digit_synth: DigitSynthOptions = field(default_factory=DigitSynthOptions)


@dataclass
class FeaturesConfig:
    """Options of each front end; the corpus decides which one runs (audio for TIMIT, pen
    for IAM-OnDB)."""

    audio: AudioFeatureOptions = field(default_factory=AudioFeatureOptions)
    pen: PenFeatureOptions = field(default_factory=PenFeatureOptions)


@dataclass
class PrepareConfig:
    out: str = MISSING  # folder for <split>.jsonl and summary.json


@dataclass
class DataConfig:
    skip_bad: bool = False  # skip (and list) bad items instead of stopping at the first
    cache_dir: str = "${prepare.out}/features"
    max_seconds: float = MAX_SECONDS  # longer audio items are refused (recog.data.limits)
    max_points: int = MAX_POINTS  # ink items with more pen points are refused


@dataclass
class DecodeConfig(DecodeOptions):
    """The decoder's own options plus where to decode and how recog-lm builds and tunes."""

    splits: list[str] | None = None  # default: the dev split and the test splits
    checkpoint: str = "best.pt"  # file name inside exp_dir, or a path
    batch_frames: int = 30000
    results: str = "results"  # folder inside exp_dir for this decoding's outputs
    lm_order: int = 3  # recog-lm: order of the token n-gram trained on the train split
    lm_weights: list[float] = field(default_factory=list)  # recog-lm: alpha grid on dev
    insertion_bonuses: list[float] = field(default_factory=list)  # recog-lm: beta grid
    word_lm_order: int = 2  # recog-lm: order of the word n-gram (with decode.word_lm)
    # recog-lm: top the lexicon of training words up to this many with cmudict words
    # (0: the training words only; Graves et al. 2009: a 20,000-word dictionary)
    lexicon_size: int = 0
    word_lm_weights: list[float] = field(default_factory=list)  # recog-lm: gamma grid


@dataclass
class Config:
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    data: DataConfig = field(default_factory=DataConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    model: ModelOptions = field(default_factory=ModelOptions)
    optim: OptimOptions = field(default_factory=OptimOptions)
    trainer: TrainerOptions = field(default_factory=TrainerOptions)
    augment: AugmentOptions = field(default_factory=AugmentOptions)  # training only
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    finetune: FinetuneOptions = field(default_factory=FinetuneOptions)  # recog-finetune only
    recipe: str = "timit"
    name: str = "default"
    exp_dir: str = "exp/${recipe}/${name}"

    @property
    def decode_splits(self) -> list[str]:
        return self.decode.splits or [self.corpus.dev_split, *self.corpus.test_splits]
