"""The second backend: flashlight-text's lexicon-free CTC beam search through torchaudio's
``ctc_decoder``, behind the same interface as ours, so the two can be compared. A token
n-gram is passed as a Python LM over the same tables our decoder uses (flashlight-text's
wheel has no KenLM here); it is scored at every token in lexicon-free mode."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from recog.decode.automaton import TokenAutomaton
from recog.decode.beam import BeamOptions, Hypothesis, check_inputs

_NEVER = -1e30  # log-probability of the silence column added for flashlight


def _python_lm(lm: TokenAutomaton, bonus: float = 0.0):  # noqa: ANN202 - needs torchaudio
    """Flashlight LM over the tables; ``bonus`` is added to every token's log-probability
    (flashlight multiplies the sum by the LM weight, so bonus = beta / alpha)."""
    from torchaudio.models.decoder import CTCDecoderLM, CTCDecoderLMState

    states = len(lm)  # the silence column (see FlashlightDecoder) is never emitted
    logp = torch.cat([lm.logp + bonus, torch.full((states, 1), _NEVER)], 1).tolist()
    nxt = torch.cat([lm.next, torch.arange(states)[:, None]], 1).tolist()
    final = lm.final.tolist()

    class TableLM(CTCDecoderLM):
        """Flashlight's LM callbacks over the n-gram tables; states are cached per id."""

        def __init__(self) -> None:
            super().__init__()
            self.states: dict[int, CTCDecoderLMState] = {}
            self.ids: dict[int, int] = {}

        def _state(self, s: int) -> CTCDecoderLMState:
            st = self.states.get(s)
            if st is None:
                st = self.states[s] = CTCDecoderLMState()
                self.ids[id(st)] = s
            return st

        def start(self, start_with_nothing: bool) -> CTCDecoderLMState:
            return self._state(lm.start)

        def score(self, state: CTCDecoderLMState, usr_token_idx: int
                  ) -> tuple[CTCDecoderLMState, float]:
            s = self.ids[id(state)]
            return self._state(nxt[s][usr_token_idx]), logp[s][usr_token_idx]

        def finish(self, state: CTCDecoderLMState) -> tuple[CTCDecoderLMState, float]:
            s = self.ids[id(state)]
            return state, final[s]

    return TableLM()


def _labelling(path: Sequence[int], frames: int) -> list[int]:
    """Flashlight's frame path (with its silence token added at each end) as a labelling."""
    if len(path) == frames + 2:
        path = path[1:-1]
    return [c for i, c in enumerate(path) if c != 0 and (i == 0 or path[i - 1] != c)]



class FlashlightDecoder:
    """torchaudio/flashlight-text CTC beam search (lexicon-free) with our options.

    Flashlight starts every hypothesis on its silence token, so a labelling that begins
    with that token would need a blank first; the silence is therefore an extra token that
    is never emitted, not one of the model's."""

    def __init__(self, tokens: Sequence[str], options: BeamOptions,
                 lm: TokenAutomaton | None = None):
        from torchaudio.models.decoder import ctc_decoder

        names = [f"tok{i}" for i in range(len(tokens) + 1)]  # any symbol, spaces included
        if lm is not None and options.insertion_bonus and not options.lm_weight:
            raise ValueError("flashlight's insertion bonus goes through the LM: it needs a "
                             "non-zero lm_weight")
        self.lm = _python_lm(lm, options.insertion_bonus / (options.lm_weight or 1.0)) \
            if lm is not None else None
        self.options = options
        self.decoder = ctc_decoder(
            lexicon=None, tokens=names, lm=self.lm, nbest=options.nbest,
            beam_size=options.beam, beam_size_token=options.beam_token or None,
            beam_threshold=options.score_threshold or 1e9,
            lm_weight=options.lm_weight if lm is not None else 0.0,
            log_add=True,
            blank_token=names[0], sil_token=names[-1])

    def nbest(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[Hypothesis]]:
        """The n best labellings per utterance with flashlight's scores."""
        check_inputs(log_probs, lengths)
        lp = log_probs.detach().float().cpu()
        emissions = torch.cat([lp, lp.new_full((*lp.shape[:2], 1), _NEVER)], 2)
        stride = 4 * emissions.stride(0)
        out = []
        for b, n in enumerate(lengths.tolist()):
            results = self.decoder.decoder.decode(emissions.data_ptr() + stride * b, n,
                                                  emissions.shape[2])
            out.append([Hypothesis(_labelling(r.tokens, n), float(r.score), float(r.score),
                                   0.0) for r in results[: self.options.nbest]])
        return out

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
        return [h[0].tokens if h else [] for h in self.nbest(log_probs, lengths)]
