"""Decoders: take log-probs (B, T, V) and lengths, never a model."""

from recog.decode.greedy import greedy_decode

__all__ = ["greedy_decode"]
