"""Transcription with nothing but a checkpoint: audio or stroke files in, tokens and text out.

The checkpoint holds the weights, the vocabulary, the normalisation statistics and the
resolved config, from which the front end (features) and the modality are rebuilt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from recog.batching import GroupNormalization, bucket_batches
from recog.config import Config
from recog.data.manifest import INK_SUFFIXES
from recog.data.utterance import DataError, Utterance
from recog.decode.decoder import DecodeOptions
from recog.decode.decoder import make_decoder as make_search
from recog.models.checkpoint import load_checkpoint
from recog.models.ctc import CTCModel
from recog.tasks import InkTask, SpeechTask, Task
from recog.tokens import Vocabulary

Decoder = Callable[[torch.Tensor, torch.Tensor], list[list[int]]]


@dataclass(frozen=True)
class TranscribeOptions:
    """How to decode: greedy (``beam`` 1) or beam search, optional token n-gram LM (ARPA)
    with its weight and insertion bonus, batch size, device."""

    beam: int = 1
    lm: str | None = None
    lm_weight: float = 0.5
    insertion_bonus: float = 0.0
    batch_frames: int = 30000
    device: str = "cpu"


def make_decoder(opts: TranscribeOptions, tokens: Sequence[str]) -> Decoder:
    """The one place where the decoder is chosen: log-probs and lengths -> token ids."""
    method = "greedy" if opts.beam <= 1 and opts.lm is None else "beam"
    return make_search(DecodeOptions(method=method, beam=max(opts.beam, 1), lm=opts.lm or "",
                                     lm_weight=opts.lm_weight,
                                     insertion_bonus=opts.insertion_bonus), tokens)


def kaldi_line(key: str, text: str) -> str:
    """One line of Kaldi text as ``recog-decode`` writes hyp.txt: the key, then the task's
    text (phones space-separated, characters joined: the words)."""
    return f"{key} {text}".rstrip()


def checkpoint_config(payload: dict, path: str | Path) -> Config:
    """The typed config a checkpoint was trained with (a token list file is not needed:
    the vocabulary is in the checkpoint)."""
    saved = payload.get("config")
    if not saved or "corpus" not in saved:
        raise DataError(path, "checkpoint holds no training config (corpus, features)")
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(Config), saved)
        cfg.corpus.token_list = None
        return OmegaConf.to_object(cfg)  # type: ignore[return-value]
    except OmegaConfBaseException as e:
        raise DataError(path, f"checkpoint config does not fit this version: {e}") from None


@dataclass
class Transcriber:
    """A loaded checkpoint ready to transcribe files."""

    model: CTCModel
    vocab: Vocabulary
    task: Task
    opts: TranscribeOptions

    @classmethod
    def load(cls, checkpoint: str | Path, opts: TranscribeOptions = TranscribeOptions()
             ) -> Transcriber:
        from recog.pipeline import get_task

        model, vocab, payload = load_checkpoint(checkpoint, opts.device)
        task = get_task(checkpoint_config(payload, checkpoint))
        return cls(model.to(opts.device).eval(), vocab, task, opts)

    @property
    def characters(self) -> bool:
        """Whether the tokens are characters (then the text is their concatenation)."""
        return isinstance(self.task, InkTask) or (
            isinstance(self.task, SpeechTask) and self.task.tokens == "chars")

    def features(self, path: str | Path) -> torch.Tensor:
        path = Path(path)
        if not path.is_file():
            raise DataError(path, "no such file")
        if isinstance(self.task, InkTask) != (path.suffix.lower() in INK_SUFFIXES):
            kind = "an ink model: give .xml, .json or .inkml stroke files" if isinstance(
                self.task, InkTask) else "a speech model: give audio files"
            raise DataError(path, f"the checkpoint is {kind}")
        return self.task.extract(Utterance(path.stem, "", str(path), ()))

    @torch.no_grad()
    def __call__(self, files: Sequence[str | Path]) -> list[dict]:
        """One ``{"file", "tokens", "text"}`` per file, in the order given; every file's
        features are computed (so a bad file fails before any output) and then decoded in
        length-bucketed batches."""
        feats = [self.features(f) for f in files]
        if self.model.options.normalize != "global":  # no speakers here: each file alone
            norm = GroupNormalization.of([f.numpy() for f in feats], [str(i) for i in
                                                                     range(len(feats))])
            feats = [torch.from_numpy(norm.apply(i, f.numpy())) for i, f in enumerate(feats)]
        decode = make_decoder(self.opts, self.vocab.tokens)
        device = torch.device(self.opts.device)
        out: list[dict] = [{} for _ in files]
        for batch in bucket_batches([len(f) for f in feats], self.opts.batch_frames):
            lengths = torch.tensor([len(feats[i]) for i in batch])
            x = torch.zeros(len(batch), int(lengths.max()), feats[batch[0]].shape[1])
            for row, i in enumerate(batch):
                x[row, : len(feats[i])] = feats[i]
            log_probs, out_lens = self.model(x.to(device), lengths.to(device))
            for i, ids in zip(batch, decode(log_probs, out_lens), strict=True):
                tokens = self.vocab.decode(ids)
                out[i] = {"file": str(files[i]), "tokens": tokens,
                          "text": self.task.to_text(tokens)}
        return out
