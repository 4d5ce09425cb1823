"""Builds small TIMIT trees for the tests, in the three on-disk layouts recog reads.

Each phone is a tone of its own frequency, so a model can learn the tiny task exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from recog.config import Config
from recog.models.ctc import ModelOptions

RATE = 16000
TONES = {"aa": 300.0, "iy": 700.0, "s": 2500.0, "m": 150.0, "sh": 4000.0, "q": 1100.0}
SPEAKERS = {  # part, dialect region, speaker
    "fxyz0": ("TRAIN", "DR1"), "mabc1": ("TRAIN", "DR2"),
    "faks0": ("TEST", "DR1"),  # dev list
    "mdab0": ("TEST", "DR1"),  # core-test list
    "mzzz9": ("TEST", "DR3"),  # complete test only
}
SENTENCES = ("SA1", "SA2", "SI1027", "SX37", "SX127")


def utterance(rng: np.random.Generator, n_phones: int) -> tuple[np.ndarray, list]:
    """Samples and (start, end, phone) segments: h#, tones, h#."""
    labels = ["h#", *rng.choice(sorted(TONES), n_phones).tolist(), "h#"]
    segments, pieces, pos = [], [], 0
    for lab in labels:
        n = int(rng.integers(1200, 2000))
        t = np.arange(n) / RATE
        x = (0.3 * np.sin(2 * np.pi * TONES[lab] * t) if lab in TONES
             else np.zeros(n)) + 0.003 * rng.standard_normal(n)
        pieces.append(x)
        segments.append((pos, pos + n, lab))
        pos += n
    return np.concatenate(pieces).astype(np.float32), segments


def make_tree(root: Path, layout: str = "upper", seed: int = 0,
              speakers: dict = SPEAKERS) -> Path:
    """Write a TIMIT tree under root: layout 'upper', 'lower' or 'redist' (data/ + .WAV.wav)."""
    rng = np.random.default_rng(seed)
    base = root / "data" if layout == "redist" else root / "TIMIT"
    case = str.lower if layout == "lower" else str.upper
    for spk, (part, dr) in speakers.items():
        folder = base / case(part) / case(dr) / case(spk)
        folder.mkdir(parents=True, exist_ok=True)
        for sent in SENTENCES:
            audio, segs = utterance(rng, int(rng.integers(3, 6)))
            stem = folder / case(sent)
            wav = stem.with_suffix(case(".wav"))
            sf.write(wav, audio, RATE, format="NIST", subtype="PCM_16")
            if layout == "redist":
                sf.write(str(wav) + ".wav", audio, RATE, format="WAV", subtype="PCM_16")
            stem.with_suffix(case(".phn")).write_text(
                "".join(f"{s} {e} {lab}\n" for s, e, lab in segs))
            words = [(segs[1][0], segs[-2][1], "tone")]
            stem.with_suffix(case(".wrd")).write_text(
                "".join(f"{s} {e} {w}\n" for s, e, w in words))
            stem.with_suffix(case(".txt")).write_text(f"0 {len(audio)} Tone sentence.\n")
    return base


def tiny_config(tmp: Path) -> Config:
    """A typed Config over a tree at ``tmp/corpus`` (made if absent; prepared into
    ``tmp/prep``), with a model and a schedule small enough to train in seconds."""
    if not (tmp / "corpus").exists():
        make_tree(tmp / "corpus")
    cfg = Config()
    cfg.corpus.root, cfg.prepare.out = str(tmp / "corpus"), str(tmp / "prep")
    cfg.data.cache_dir, cfg.exp_dir = str(tmp / "prep/features"), str(tmp / "exp")
    cfg.model = ModelOptions(hidden=8, layers=1)
    cfg.trainer.progress, cfg.trainer.epochs, cfg.trainer.batch_frames = False, 1, 2000
    return cfg
