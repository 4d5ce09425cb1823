"""Synthetic corpora generated locally (eSpeak NG speech in TIMIT layout)."""

from recog.data.synth.timit import SynthOptions, generate_timit

__all__ = ["SynthOptions", "generate_timit"]
