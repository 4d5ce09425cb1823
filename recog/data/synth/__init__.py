"""Synthetic corpora generated locally: eSpeak NG speech (TIMIT), Hershey ink (IAM-OnDB)."""

from recog.data.synth.iamondb import InkSynthOptions, generate_iamondb
from recog.data.synth.timit import SynthOptions, generate_timit

__all__ = ["InkSynthOptions", "SynthOptions", "generate_iamondb", "generate_timit"]
