"""Best-path (greedy) CTC decoding."""

from __future__ import annotations

import torch


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0
                  ) -> list[list[int]]:
    """Most likely token per frame, repeats merged, blanks removed; one list per utterance."""
    check_decoder_input(log_probs, lengths)
    best = log_probs.argmax(dim=-1)  # (B, T)
    keep = torch.ones_like(best, dtype=torch.bool)
    keep[:, 1:] = best[:, 1:] != best[:, :-1]
    keep &= best != blank
    frame = torch.arange(best.shape[1], device=best.device)
    keep &= frame[None, :] < lengths.to(best.device)[:, None]
    return [row[mask].tolist() for row, mask in zip(best.cpu(), keep.cpu(), strict=True)]


def check_decoder_input(log_probs: torch.Tensor, lengths: torch.Tensor) -> None:
    """Raise ValueError unless ``log_probs`` is (B, T, V) and every length is in [0, T]:
    a decoder given the wrong thing says so instead of decoding garbage or padding (every
    decoder's check: the beam search adds one for NaN)."""
    if log_probs.dim() != 3:
        raise ValueError(f"log_probs must be (batch, time, vocab), i.e. (batch, frames, "
                         f"tokens): got shape {tuple(log_probs.shape)}")
    if lengths.dim() != 1 or len(lengths) != log_probs.shape[0]:
        raise ValueError(f"lengths must hold one length per utterance ({log_probs.shape[0]}), "
                         f"got shape {tuple(lengths.shape)}")
    if len(lengths) and (int(lengths.min()) < 0 or int(lengths.max()) > log_probs.shape[1]):
        raise ValueError(f"lengths must lie in [0, {log_probs.shape[1]}] (the frames given), "
                         f"got {lengths.tolist()}")
