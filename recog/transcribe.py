"""Transcription with nothing but a checkpoint: audio or stroke files in, tokens and text out.

The checkpoint holds the weights, the vocabulary, the normalisation statistics and the
resolved config, from which the front end (features) and the modality are rebuilt. The
decoding set-up that ``recog-lm`` tuned (LM, lexicon, word LM and their weights) is kept
beside the checkpoint as ``decode_<name>.json`` (``tuned_setup``), which ``--tuned NAME``
reads back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from recog.atomic import atomic_write_text
from recog.batching import GroupNormalization, bucket_batches, pad
from recog.data.manifest import INK_SUFFIXES
from recog.data.utterance import DataError, Utterance
from recog.decode.beam import Hypothesis
from recog.decode.decoder import DecodeOptions, check_warps
from recog.decode.decoder import make_decoder as make_search
from recog.evaluate import mean_posterior
from recog.models.checkpoint import load_checkpoint
from recog.models.ctc import CTCModel
from recog.tasks import Task, checkpoint_front_end, task_of_record
from recog.tokens import Vocabulary, fold_timit

Decoder = Callable[[torch.Tensor, torch.Tensor], list[list[int]]]
# the keys of a tuned set-up file (decode_<name>.json) that transcription takes
SETUP_KEYS = ("method", "beam", "lm", "lm_weight", "insertion_bonus", "lexicon", "word_lm",
              "word_lm_weight", "warps")


@dataclass(frozen=True)
class TranscribeOptions:
    """How to decode (``decode``: greedy, beam search with its token LM, lexicon and word
    LM, or isolated words; ``decode.nbest`` hypotheses kept), batch size, device, whether
    to print TIMIT phones folded to the 39 scoring classes, and what runs the network
    (``torch``, or ``onnx``: ONNX Runtime on the CPU, over the checkpoint's export)."""

    decode: DecodeOptions = field(default_factory=DecodeOptions)
    batch_frames: int = 30000
    device: str = "cpu"
    fold39: bool = False
    runtime: str = "torch"  # torch | onnx


RUNTIMES = ("torch", "onnx", "pt2")


def decode_options(beam: int | None = None, **setup: object) -> DecodeOptions:
    """DecodeOptions for transcription: greedy without a beam width, LM, lexicon or n-best,
    else beam search, 16 wide unless ``beam`` says (or the ``method`` ``setup`` names, e.g.
    isolated_word). ``None`` values are left at their defaults."""
    given = {k: v for k, v in setup.items() if v is not None}
    searched = (beam or 1) > 1 or given.get("lm") or given.get("lexicon") or int(
        given.get("nbest") or 1) > 1  # type: ignore[call-overload]
    method = given.pop("method", None) or ("beam" if searched else "greedy")
    width = beam or (DecodeOptions.beam if searched else 1)
    return DecodeOptions(method=method, beam=width, **given)  # type: ignore[arg-type]


def tuned_setup(path: str | Path) -> dict:
    """The decoding set-up ``recog-lm`` stored (``write_tuned_setup``); paths absolute."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no tuned decoding set-up here: run recog-lm with this "
                        "decode=NAME first (it writes decode_NAME.json beside best.pt)")
    try:
        setup = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(path, f"not JSON: {e}") from None
    if not isinstance(setup, dict) or "method" not in setup:
        raise DataError(path, "not a decoding set-up (no 'method')")
    return {k: setup[k] for k in SETUP_KEYS if k in setup}


def write_tuned_setup(path: str | Path, options: DecodeOptions, tuned: dict) -> None:
    """Store a decoding set-up (``options`` with the ``tuned`` weights and their dev score)
    for ``recog-transcribe --tuned``; file paths are made absolute."""
    setup = {k: getattr(options, k) for k in SETUP_KEYS}
    setup["warps"] = [float(w) for w in setup["warps"]]
    for k in ("lm", "lexicon", "word_lm"):
        setup[k] = str(Path(setup[k]).resolve()) if setup[k] else ""
    atomic_write_text(path, json.dumps({**setup, **tuned}, indent=1) + "\n")


def make_decoder(opts: TranscribeOptions, tokens: Sequence[str]) -> Decoder:
    """The one place where the decoder is chosen: log-probs and lengths -> token ids."""
    return make_search(opts.decode, tokens)


def kaldi_line(key: str, text: str) -> str:
    """One line of Kaldi text as ``recog-decode`` writes hyp.txt: the key, then the task's
    text (phones space-separated, characters joined: the words)."""
    return f"{key} {text}".rstrip()


def read_list(path: str | Path, scp: bool) -> list[tuple[str, Path]]:
    """(key, file) per line of a Kaldi ``wav.scp`` (``<key> <path>``; commands refused) or
    of a list of paths (one a line, keyed by file name without suffix). Relative paths are
    relative to the working directory, as Kaldi reads them."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such list file")
    out: list[tuple[str, Path]] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if not scp:
            out.append((Path(line.strip()).stem, Path(line.strip())))
            continue
        fields_ = line.split()
        if len(fields_) != 2 or fields_[-1] == "|":
            raise DataError(path, "expected '<key> <file path>' (commands are not supported)",
                            n)
        out.append((fields_[0], Path(fields_[1])))
    if not out:
        raise DataError(path, "lists no file")
    return out


@dataclass
class Transcriber:
    """A loaded checkpoint ready to transcribe files."""

    model: CTCModel
    vocab: Vocabulary
    task: Task
    opts: TranscribeOptions
    network: Callable | None = None  # what runs the model's network (None: the model)

    @classmethod
    def load(cls, checkpoint: str | Path, opts: TranscribeOptions = TranscribeOptions()
             ) -> Transcriber:
        from recog.distributed import available_device

        if opts.runtime not in RUNTIMES:
            raise DataError(checkpoint, f"--runtime {opts.runtime}: one of {', '.join(RUNTIMES)}")
        if opts.runtime != "torch" and opts.device != "cpu":
            raise DataError(checkpoint, f"--runtime {opts.runtime} runs on the CPU: drop --device")
        device = available_device(opts.device, "--device")
        model, vocab, payload = load_checkpoint(checkpoint, device)
        task = task_of_record(checkpoint_front_end(payload, checkpoint), checkpoint)
        if opts.fold39:
            try:
                fold_timit(vocab.tokens[1:], 39)
            except KeyError as e:
                raise DataError(checkpoint, f"--fold39 folds TIMIT phones, and this model's "
                                f"tokens are not all TIMIT phones ({e.args[0]})") from None
        network = None
        if opts.runtime == "onnx":
            from recog.export import onnx_runner

            network = onnx_runner(model, checkpoint)
        elif opts.runtime == "pt2":
            from recog.export import export_program, pt2_runner

            network = pt2_runner(export_program(model.eval(), checkpoint), model.options.stack)
        return cls(model.to(device).eval(), vocab, task, opts, network)

    @property
    def characters(self) -> bool:
        """Whether the tokens are characters (then the text is their concatenation)."""
        return self.task.characters

    @property
    def suffixes(self) -> frozenset[str]:
        return self.task.suffixes

    def expand(self, paths: Sequence[str | Path]) -> list[Path]:
        """The files to transcribe: each path, a folder standing for the files in it (and
        below) that this model reads, sorted."""
        out: list[Path] = []
        for p in map(Path, paths):
            if not p.is_dir():
                out.append(p)
                continue
            found = sorted(f for f in p.rglob("*") if f.is_file()
                           and f.suffix.lower() in self.suffixes)
            if not found:
                raise DataError(p, f"a folder without files this model reads "
                                f"({', '.join(sorted(self.suffixes))})")
            out += found
        return out

    def features(self, path: str | Path, warp: float = 1.0) -> torch.Tensor:
        """The checkpoint's features of one file (speech: the mel filterbank warped by
        ``warp``, test-time VTLN)."""
        path = Path(path)
        if path.is_dir():
            raise DataError(path, "a folder: give files, or the folder alone on the command "
                            "line to transcribe the files in it")
        if not path.is_file():
            raise DataError(path, "no such file")
        ink = self.task.modality == "ink"
        if ink != (path.suffix.lower() in INK_SUFFIXES):
            kind = ("an ink model: give .xml, .json or .inkml stroke files" if ink else
                    "a speech model: give audio files")
            raise DataError(path, f"the checkpoint is {kind}")
        try:
            extra = {"vtlp": warp} if warp != 1.0 else {}
            return self.task.extract(Utterance(path.stem, "", str(path), (), extra=extra))
        except DataError:
            raise
        except ValueError as e:  # the front end's own message does not know the file
            raise DataError(path, str(e)) from None

    def seconds_per_frame(self) -> float | None:
        """Duration of one output frame (speech), None for ink (frames are pen points)."""
        feats = getattr(self.task, "features", None)
        shift = getattr(feats, "frame_shift_ms", None)
        return None if shift is None else shift / 1000.0 * self.model.options.stack

    def _tokens(self, ids: Sequence[int]) -> list[str]:
        tokens = self.vocab.decode(list(ids))
        return fold_timit(tokens, 39) if self.opts.fold39 else tokens

    def _times(self, log_probs: torch.Tensor, ids: list[int]) -> list[dict]:
        """Each token's output frames [start, end) (and seconds, for speech), from the CTC
        forced alignment of the hypothesis."""
        import torchaudio.functional as AF

        if not ids:
            return []
        try:
            frames, scores = AF.forced_align(log_probs[None].float().cpu(),
                                             torch.tensor([ids], dtype=torch.int32), blank=0)
        except RuntimeError:  # cannot happen for a decoder's output; keep the text anyway
            return []
        step = self.seconds_per_frame()
        out = []
        for span in AF.merge_tokens(frames[0], scores[0].exp()):
            token = self.vocab.tokens[span.token]
            if self.opts.fold39:
                folded = fold_timit([token], 39)
                if not folded:
                    continue
                token = folded[0]
            entry: dict = {"token": token, "frame_start": span.start, "frame_end": span.end}
            if step is not None:
                entry["start"], entry["end"] = round(span.start * step, 3), round(
                    span.end * step, 3)
            out.append(entry)
        return out

    def _normalized(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each file's features with its own CMVN when the model normalises per utterance
        or speaker (a file is its own speaker here); as they are for ``global``."""
        if self.model.options.normalize == "global":
            return feats
        norm = GroupNormalization.of([f.numpy() for f in feats], [str(i) for i in
                                                                 range(len(feats))])
        return [torch.from_numpy(norm.apply(i, f.numpy())) for i, f in enumerate(feats)]

    @torch.no_grad()
    def __call__(self, files: Sequence[str | Path], keys: Sequence[str] | None = None
                 ) -> list[dict]:
        """One result per file, in the order given: ``file``, ``key``, ``tokens``, ``text``,
        ``score`` (the decoder's fused log score; greedy: the best path's log-probability),
        ``acoustic`` and ``lm`` (its parts), ``times`` (each token's frames and seconds)
        and ``nbest`` (``decode.nbest`` hypotheses, best first). Every file's features are
        computed first (so a bad file fails before any output), then decoded in
        length-bucketed batches; with ``decode.warps``, from the posteriors averaged over
        the features at each warp."""
        keys = list(keys) if keys is not None else [Path(f).stem for f in files]
        warps = check_warps(self.opts.decode.warps, self.task.modality) or [1.0]
        views = [self._normalized([self.features(f, w) for f in files]) for w in warps]
        decoder = make_search(self.opts.decode, self.vocab.tokens)
        device = next(self.model.parameters()).device
        run = self.network or self.model
        out: list[dict] = [{} for _ in files]
        for batch in bucket_batches([len(f) for f in views[0]], self.opts.batch_frames):
            runs = []
            for feats in views:
                x, lengths = pad([feats[i] for i in batch], feats[batch[0]].shape[1])
                runs.append(run(x.to(device), lengths.to(device)))
            out_lens = runs[0][1]
            log_probs = mean_posterior([lp for lp, _ in runs]) if len(runs) > 1 else runs[0][0]
            nbest = decoder.nbest(log_probs, out_lens)  # type: ignore[attr-defined]
            for row, (i, hyps) in enumerate(zip(batch, nbest, strict=True)):
                best = hyps[0] if hyps else Hypothesis([], float("-inf"), float("-inf"), 0.0)
                tokens = self._tokens(best.tokens)
                out[i] = {"file": str(files[i]), "key": keys[i], "tokens": tokens,
                          "text": self.task.to_text(tokens),
                          "score": best.score, "acoustic": best.acoustic, "lm": best.lm,
                          "times": self._times(log_probs[row, : int(out_lens[row])],
                                               best.tokens),
                          "nbest": [{"tokens": self._tokens(h.tokens),
                                     "text": self.task.to_text(self._tokens(h.tokens)),
                                     "score": h.score, "acoustic": h.acoustic, "lm": h.lm}
                                    for h in hyps]}
        return out

