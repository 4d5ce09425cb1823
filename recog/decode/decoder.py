"""One entry point for every decoder: ``make_decoder(options, tokens)`` gives a callable
(log_probs (B, T, V), lengths (B,)) -> token ids per utterance, with ``.nbest`` for the
n best hypotheses and their scores. The method is a name resolved by a small registry."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Protocol

import torch
import torch.nn.functional as F

from recog.data.utterance import DataError
from recog.decode.automaton import TokenAutomaton
from recog.decode.beam import BeamOptions, Hypothesis, check_inputs, prefix_beam_search
from recog.decode.greedy import greedy_decode
from recog.decode.lexicon import WordLM


@dataclass
class DecodeOptions(BeamOptions):
    """``decode.method`` (greedy | beam | flashlight | isolated_word) and its options;
    ``lm`` is an ARPA token n-gram, ``lexicon`` a word list and ``word_lm`` an ARPA word
    n-gram over it (the last two beam only; isolated_word needs the lexicon), empty for
    none."""

    method: str = "greedy"
    lm: str = ""
    lexicon: str = ""
    word_lm: str = ""
    # speech: test-time VTLN, the posteriors averaged over the features at these filterbank
    # warp factors (e.g. [0.9, 0.95, 1.0, 1.05, 1.1]); empty: the features as trained
    warps: list[float] = field(default_factory=list)


WARP_RANGE = (0.5, 2.0)  # Kaldi's VTLN warps stay near 1; augment.vtlp takes the same range


def check_warps(warps: Sequence[float], modality: str) -> list[float]:
    """``decode.warps`` as floats; a warp outside ``WARP_RANGE`` or warps for an ink model
    (no filterbank to warp) is a ValueError naming the option."""
    out = [float(w) for w in warps]
    if out and modality != "speech":
        raise ValueError("decode.warps warps a speech front end's mel filterbank: this is "
                         f"a {modality} model; leave it empty")
    bad = [w for w in out if not WARP_RANGE[0] <= w <= WARP_RANGE[1]]
    if bad:
        raise ValueError(f"decode.warps: {bad} outside [{WARP_RANGE[0]}, {WARP_RANGE[1]}]")
    return out


class Decoder(Protocol):
    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]: ...
    def nbest(self, log_probs: torch.Tensor, lengths: torch.Tensor
              ) -> list[list[Hypothesis]]: ...


class GreedyDecoder:
    """Best path; its one hypothesis is scored by the path's log-probability."""

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        check_inputs(log_probs, lengths)
        return greedy_decode(log_probs, lengths)

    def nbest(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[Hypothesis]]:
        best = log_probs.max(-1).values
        frames = torch.arange(best.shape[1], device=best.device)[None] < lengths.to(
            best.device)[:, None]
        path = torch.where(frames, best, torch.zeros_like(best)).sum(1).tolist()
        return [[Hypothesis(ids, s, s, 0.0)] for ids, s in
                zip(self(log_probs, lengths), path, strict=True)]


class BeamSearch:
    """Our prefix beam search, with the options' n-gram LM and lexicon loaded once."""

    def __init__(self, options: BeamOptions, tokens: Sequence[str],
                 lm: TokenAutomaton | None = None, lexicon: TokenAutomaton | None = None,
                 words: WordLM | None = None):
        self.options = BeamOptions(**{f.name: getattr(options, f.name)
                                      for f in fields(BeamOptions)})
        self.tokens, self.lm, self.lexicon, self.words = tuple(tokens), lm, lexicon, words

    def with_options(self, **changes: object) -> BeamSearch:
        """Another search over the same loaded tables, its options ``replace``d (a grid
        point of the LM weights): this one is left as it is."""
        return BeamSearch(replace(self.options, **changes), self.tokens, self.lm,
                          self.lexicon, self.words)

    def nbest(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[Hypothesis]]:
        dev = log_probs.device
        if self.lm is not None and self.lm.next.device != dev:
            self.lm = self.lm.to(dev)
        if self.lexicon is not None and self.lexicon.next.device != dev:
            self.lexicon = self.lexicon.to(dev)
        if self.words is not None and self.words.column.device != dev:
            self.words = self.words.to(dev)
        return prefix_beam_search(log_probs, lengths, self.options, self.lm, self.lexicon,
                                  self.words)

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        return [h[0].tokens if h else [] for h in self.nbest(log_probs, lengths)]


class IsolatedWordDecoder:
    """Exactly one word per utterance: of the lexicon's words (a word that is one of the
    model's tokens is that token, any other is spelt in its character tokens), the one with
    the highest CTC probability, summed over all its alignments by torch's CTC forward pass.
    A word too long for an utterance's frames has probability 0; an utterance no word fits
    decodes to nothing. Costs one CTC forward per word and utterance: meant for small
    vocabularies (digits, commands, a grammar's list)."""

    def __init__(self, words: Sequence[str], tokens: Sequence[str],
                 source: str = "<lexicon>", nbest: int = 1, max_cells: int = 1 << 24):
        index = {t: i for i, t in enumerate(tokens) if i > 0}
        self.words = sorted(set(words))
        unknown = [w for w in self.words if w not in index and any(c not in index for c in w)]
        if unknown:
            raise DataError(source, f"word(s) {unknown[:5]} cannot be spelt with the model's "
                            "tokens")
        if not self.words:
            raise DataError(source, "the lexicon holds no word")
        self.spellings = [[index[w]] if w in index else [index[c] for c in w]
                          for w in self.words]
        self.n, self.max_cells = nbest, max_cells  # cells: frames x pairs x tokens per call

    def scores(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, W) log P(word | utterance) for every word of the lexicon."""
        check_inputs(log_probs, lengths)
        b, t, v = log_probs.shape
        lp = log_probs.float().transpose(0, 1)  # (T, B, V)
        lengths = lengths.to(log_probs.device)
        out = torch.empty(b, len(self.words), device=log_probs.device)
        chunk = max(1, self.max_cells // max(t * b * v, 1))
        for start in range(0, len(self.words), chunk):
            spelt = self.spellings[start:start + chunk]
            w = len(spelt)
            targets = torch.tensor([c for s in spelt for c in s] * b, device=lp.device)
            target_lens = torch.tensor([len(s) for s in spelt] * b, device=lp.device)
            nll = F.ctc_loss(lp.repeat_interleave(w, dim=1), targets,
                             lengths.repeat_interleave(w), target_lens, blank=0,
                             reduction="none", zero_infinity=False)
            out[:, start:start + w] = -nll.view(b, w)
        return out

    def nbest(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[Hypothesis]]:
        scores = self.scores(log_probs, lengths).cpu()
        out = []
        for row in scores:
            order = torch.argsort(row, descending=True).tolist()
            out.append([Hypothesis(self.spellings[k], float(row[k]), float(row[k]), 0.0)
                        for k in order[:max(self.n, 1)] if math.isfinite(float(row[k]))])
        return out

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        return [h[0].tokens if h else [] for h in self.nbest(log_probs, lengths)]


def _isolated_word(options: DecodeOptions, tokens: Sequence[str]) -> Decoder:
    from recog.decode.lexicon import read_word_list

    if not options.lexicon:
        raise ValueError("decode.method=isolated_word chooses among the words of "
                         "decode.lexicon: set it (recog-lm writes the training text's words)")
    if options.lm or options.word_lm:
        raise ValueError("decode.method=isolated_word takes no LM (every word is one "
                         "utterance): unset decode.lm and decode.word_lm")
    return IsolatedWordDecoder(read_word_list(options.lexicon), tokens, options.lexicon,
                               options.nbest)


def _greedy(options: DecodeOptions, tokens: Sequence[str]) -> Decoder:
    return GreedyDecoder()


def _beam(options: DecodeOptions, tokens: Sequence[str]) -> Decoder:
    from recog.decode.lexicon import load_lexicon
    from recog.decode.ngram import load_lm

    if options.word_lm and not options.lexicon:
        raise ValueError("decode.word_lm is scored through a lexicon: set decode.lexicon")
    lm = load_lm(options.lm, tokens) if options.lm else None
    lexicon, words = load_lexicon(options.lexicon, tokens, options.word_lm) \
        if options.lexicon else (None, None)
    return BeamSearch(options, tokens, lm, lexicon, words)


def _flashlight(options: DecodeOptions, tokens: Sequence[str]) -> Decoder:
    from recog.decode.flashlight import FlashlightDecoder
    from recog.decode.ngram import load_lm

    if options.lexicon or options.word_lm:
        raise ValueError("decode.lexicon and decode.word_lm are for method 'beam'; the "
                         "flashlight backend runs lexicon-free here")
    lm = load_lm(options.lm, tokens) if options.lm else None
    return FlashlightDecoder(tokens, options, lm)


DECODERS: dict[str, Callable[[DecodeOptions, Sequence[str]], Decoder]] = {
    "greedy": _greedy, "beam": _beam, "flashlight": _flashlight,
    "isolated_word": _isolated_word}


def make_decoder(options: DecodeOptions, tokens: Sequence[str]) -> Decoder:
    """The decoder ``options.method`` names, over the model's tokens (blank first)."""
    if options.method not in DECODERS:
        raise ValueError(f"unknown decode.method {options.method!r}; known: {sorted(DECODERS)}")
    for key in ("beam", "nbest"):
        if getattr(options, key) < 1:
            raise ValueError(f"decode.{key} must be >= 1, not {getattr(options, key)}")
    if options.beam_token < 0:
        raise ValueError(f"decode.beam_token must be >= 0 (0: all), not {options.beam_token}")
    for key in ("lm_weight", "insertion_bonus", "word_lm_weight", "blank_skip",
                "score_threshold"):
        if not math.isfinite(getattr(options, key)):
            raise ValueError(f"decode.{key} must be a finite number, not {getattr(options, key)}")
    return DECODERS[options.method](options, tokens)
