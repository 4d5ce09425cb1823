"""The README's four recipes for extending recog, each followed once: a corpus, a cell, a
decoder and a modality are each one class or function plus one registry entry, and then
work through the stages like the built-in ones."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import soundfile as sf
import torch

from recog import pipeline
from recog.config import Config, CorpusConfig, DataConfig, PrepareConfig
from recog.data.utterance import Corpus, Utterance
from recog.decode import decoder as decoders
from recog.decode.beam import Hypothesis
from recog.decode.greedy import greedy_decode
from recog.models import cells, ctc
from recog.models.ctc import CTCModel, ModelOptions
from recog.stages import corpora
from recog.tasks import TASKS, TimitTask
from recog.tokens import Vocabulary, timit_vocabulary
from recog.train import OptimOptions, TrainerOptions
from tests.timit_tree import RATE, utterance

SPLITS = {"train": 6, "dev": 2, "test": 2}


def _quick(cfg: Config) -> Config:
    """A one-epoch, one-layer, eight-unit run: the recipe's wiring, not its accuracy."""
    return Config(corpus=cfg.corpus, prepare=cfg.prepare, data=cfg.data,
                  model=ModelOptions(hidden=8, layers=1, cell=cfg.model.cell),
                  optim=OptimOptions(lr=1e-2), decode=cfg.decode,
                  trainer=TrainerOptions(epochs=1, batch_frames=4000, progress=False),
                  exp_dir=cfg.exp_dir)


def _csv_corpus(root: Path) -> None:
    """<root>/<split>.csv with id, speaker, wav, phones; the tone utterances of timit_tree."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for split, n in SPLITS.items():
        with open(root / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "speaker", "wav", "phones"])
            for k in range(n):
                audio, segs = utterance(rng, 3)
                wav = root / f"{split}{k}.wav"
                sf.write(wav, audio, RATE)
                phones = [lab for _, _, lab in segs if lab not in ("h#", "q")]
                w.writerow([f"s{k % 2}_{split}{k}", f"s{k % 2}", wav.name, " ".join(phones)])


def _read_csv(cfg: Config) -> Corpus:
    """The whole reader of the new corpus: one Utterance per CSV row."""
    root = Path(cfg.corpus.root)
    splits = {}
    for split in SPLITS:
        with open(root / f"{split}.csv", newline="") as f:
            splits[split] = [Utterance(r["id"], r["speaker"], str(root / r["wav"]),
                                       tuple(r["phones"].split())) for r in csv.DictReader(f)]
    return Corpus(root, splits)


def _cfg(tmp_path: Path, name: str, root: Path, **corpus: object) -> Config:
    return Config(corpus=CorpusConfig(name=name, root=str(root), **corpus),
                  prepare=PrepareConfig(out=str(tmp_path / "prep")),
                  data=DataConfig(cache_dir=str(tmp_path / "prep" / "features")),
                  exp_dir=str(tmp_path / "exp"))


def _trained_csv_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    """The new corpus registered, prepared and a model trained on it."""
    _csv_corpus(tmp_path / "csv")
    monkeypatch.setitem(corpora.CORPORA, "csv", corpora.CorpusKind(
        _read_csv, lambda cfg: TimitTask(61, cfg.features.audio)))  # TIMIT's phones
    cfg = _quick(_cfg(tmp_path, "csv", tmp_path / "csv"))
    pipeline.check_choices(cfg)
    summary = pipeline.prepare(cfg)
    assert {s: v["utterances"] for s, v in summary["splits"].items()} == SPLITS
    pipeline.train(cfg, {})
    return cfg


def test_a_new_corpus_is_a_reader_and_a_registry_entry(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _trained_csv_run(tmp_path, monkeypatch)
    results = pipeline.decode(cfg)
    assert results["splits"]["test"]["PER"]["utterances"] == SPLITS["test"]
    assert (Path(cfg.exp_dir) / "results" / "test" / "hyp.txt").is_file()


class ElmanLayer(cells.RecurrentLayer):
    """h_t = tanh(W x_t + U h_{t-1} + b): the simplest recurrent cell, as a new cell is
    written (its training path the plain loop, which autograd differentiates)."""

    gates, recurrent = 1, 1

    def step(self, p: torch.Tensor, h: torch.Tensor, c: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.tanh(p + torch.bmm(h, self.weight_hh))
        return h, h

    def fused(self, p: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        return self.loop(p)


def test_a_new_cell_is_a_layer_class_and_a_registry_line(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.setitem(cells.LAYERS, "elman", ElmanLayer)
    assert "elman" in ctc.CELLS
    model = CTCModel(5, 4, ModelOptions(hidden=3, layers=1, cell="elman"))
    stack = model.rnn
    x, lengths = torch.randn(2, 7, 5), torch.tensor([7, 4])
    y = stack(x, lengths)  # (B, T, 2 * 3): forward then backward direction
    layer = stack.layers[0]
    w, u, b = layer.weight_ih.detach(), layer.weight_hh.detach(), layer.bias.detach()
    for row, n in enumerate(lengths.tolist()):  # the recurrence by hand, each direction
        for d, frames in ((0, range(n)), (1, range(n - 1, -1, -1))):
            h = torch.zeros(3)
            for t in frames:
                h = torch.tanh(x[row, t] @ w[d] + b[d] + h @ u[d])
                assert torch.allclose(y[row, t, 3 * d:3 * d + 3], h, atol=1e-6)
        assert not y[row, n:].any()  # zero past the length
    log_probs, out = model(x, lengths)
    log_probs[0, :7].sum().backward()  # and it trains: gradients reach the new weights
    assert out.tolist() == [7, 4] and layer.weight_hh.grad.abs().sum() > 0


class NoRepeats:
    """Greedy, then any output token equal to the one before it dropped."""

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        return [[t for i, t in enumerate(ids) if i == 0 or ids[i - 1] != t]
                for ids in greedy_decode(log_probs, lengths)]

    def nbest(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[Hypothesis]]:
        return [[Hypothesis(ids, 0.0, 0.0, 0.0)] for ids in self(log_probs, lengths)]


def test_a_new_decoder_is_a_factory_and_a_registry_entry(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.setitem(decoders.DECODERS, "no_repeats", lambda options, tokens: NoRepeats())
    dec = decoders.make_decoder(decoders.DecodeOptions(method="no_repeats"), ["-", "a", "b"])
    # frames a, -, a, b: greedy gives a a b, the new decoder a b
    lp = torch.log(torch.tensor([[[.1, .8, .1], [.8, .1, .1], [.1, .8, .1], [.1, .1, .8]]]))
    assert dec(lp, torch.tensor([4])) == [[1, 2]]
    cfg = _trained_csv_run(tmp_path, monkeypatch)
    cfg = replace(cfg, decode=replace(cfg.decode, method="no_repeats", results="mine"))
    pipeline.check_choices(cfg)
    results = pipeline.decode(cfg)
    hyps = (Path(cfg.exp_dir) / "mine" / "test" / "hyp.tokens.txt").read_text().splitlines()
    assert results["splits"]["test"]["PER"]["utterances"] == len(hyps) == SPLITS["test"]
    for line in hyps:  # what the new decoder does: no token twice in a row
        tokens = line.split()[1:]
        assert all(a != b for a, b in zip(tokens, tokens[1:], strict=False))


@dataclass(frozen=True)
class VectorOptions:
    """The new modality's front end: none (the source holds the frames); its dimension."""

    dim: int = 123
    kind: str = "vectors"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class VectorTask:
    """Precomputed feature matrices (T, D) in .npy files, transcribed in phones."""

    features: VectorOptions
    modality: ClassVar[str] = "vectors"
    front_end: ClassVar[str] = "vectors"
    suffixes: ClassVar[frozenset[str]] = frozenset({".npy"})
    metrics: ClassVar[dict] = {"PER": list}
    selection: ClassVar[str] = "PER"
    characters: ClassVar[bool] = False
    token_kind: ClassVar[str] = "phones"
    kind: ClassVar[str] = "vectors"
    feature_blocks: ClassVar[int] = 1

    def vocabulary(self, train: list[Utterance]) -> Vocabulary:
        return timit_vocabulary(61)  # the sources' phones are TIMIT's

    def targets(self, utt: Utterance) -> list[str]:
        return list(utt.tokens)

    def to_text(self, tokens: list[str]) -> str:
        return " ".join(tokens)

    def extract(self, utt: Utterance) -> torch.Tensor:
        return torch.from_numpy(np.load(utt.source)).float()

    def copies(self, utts: list[Utterance], augment: object) -> None:
        return None

    def resized(self, utt: Utterance) -> bool:
        return False

    def picture(self, utt: Utterance, view: object) -> Path:
        from recog import plots

        return plots.posteriorgram(view.feats, view.log_probs, view.tokens, view.ref_ids,
                                   view.out / "posteriorgram.png", view.caption, view.stack)

    @property
    def feature_key(self) -> dict:
        return {"front_end": self.front_end, **self.features.as_dict()}

    def record_options(self) -> dict:
        return {}

    @classmethod
    def from_record(cls, record: dict) -> VectorTask:
        return cls(VectorOptions(**record["vectors"]))


def test_a_new_modality_is_a_task_class_and_a_registry_entry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from recog.features.audio import AudioFeatureOptions, audio_features
    from recog.transcribe import Transcriber

    _csv_corpus(tmp_path / "csv")  # its audio, as precomputed filterbank matrices
    root = tmp_path / "vectors"
    root.mkdir()
    for split, utts in _read_csv(Config(corpus=CorpusConfig(root=str(tmp_path / "csv")))
                                 ).splits.items():
        lines = []
        for u in utts:
            audio, rate = sf.read(u.source, dtype="float32")
            frames = audio_features(torch.from_numpy(audio), rate, AudioFeatureOptions())
            np.save(root / f"{u.id}.npy", frames.numpy())
            lines.append(json.dumps({"id": u.id, "speaker": u.speaker, "source": f"{u.id}.npy",
                                     "tokens": list(u.tokens)}))
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    monkeypatch.setitem(corpora.MODALITIES, "vectors", lambda cfg: VectorTask(VectorOptions()))
    monkeypatch.setitem(TASKS, "vectors", VectorTask)  # what reads it back from a checkpoint
    cfg = _quick(_cfg(tmp_path, "manifest", root, modality="vectors"))
    pipeline.prepare(cfg)
    pipeline.train(cfg, {})
    results = pipeline.decode(cfg)
    assert results["splits"]["test"]["PER"]["utterances"] == SPLITS["test"]
    out = Transcriber.load(Path(cfg.exp_dir) / "best.pt")(sorted(root.glob("s0_test*.npy")))
    test_hyps = dict(line.split(" ", 1) if " " in line else (line, "") for line in (
        Path(cfg.exp_dir) / "results" / "test" / "hyp.txt").read_text().splitlines())
    assert [r["text"] for r in out] == [test_hyps[Path(r["file"]).stem] for r in out]
