"""Best-path (greedy) CTC decoding."""

from __future__ import annotations

import torch


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0
                  ) -> list[list[int]]:
    """Most likely token per frame, repeats merged, blanks removed; one list per utterance."""
    best = log_probs.argmax(dim=-1)  # (B, T)
    keep = torch.ones_like(best, dtype=torch.bool)
    keep[:, 1:] = best[:, 1:] != best[:, :-1]
    keep &= best != blank
    frame = torch.arange(best.shape[1], device=best.device)
    keep &= frame[None, :] < lengths.to(best.device)[:, None]
    return [row[mask].tolist() for row, mask in zip(best.cpu(), keep.cpu(), strict=True)]
