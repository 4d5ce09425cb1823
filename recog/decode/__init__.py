"""Decoders: take log-probs (B, T, V) and lengths, never a model."""

from recog.decode.beam import BeamOptions, Hypothesis, prefix_beam_search
from recog.decode.decoder import BeamSearch, DecodeOptions, Decoder, make_decoder
from recog.decode.greedy import greedy_decode

__all__ = ["BeamOptions", "BeamSearch", "DecodeOptions", "Decoder", "Hypothesis",
           "greedy_decode", "make_decoder", "prefix_beam_search"]
