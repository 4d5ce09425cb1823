"""A deterministic automaton over token ids, the form in which the beam search consumes a
language model or a lexicon: one table row per state, so a whole beam steps by indexing."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TokenAutomaton:
    """``next[s, c]``: state after token c from state s (-1: not allowed); ``logp[s, c]``:
    log-probability of c in state s (natural log); ``final[s]``: log-probability of ending
    in s (-inf: may not end there). Column 0 (the blank) is unused."""

    next: torch.Tensor  # (S, V) long
    logp: torch.Tensor  # (S, V) float
    final: torch.Tensor  # (S,) float
    start: int = 0

    def to(self, device: torch.device | str) -> TokenAutomaton:
        return TokenAutomaton(self.next.to(device), self.logp.to(device),
                              self.final.to(device), self.start)

    def __len__(self) -> int:
        return self.next.shape[0]
