"""A small bring-your-own corpus for the fine-tuning recipe: new eSpeak speakers, moved to a
new domain and written as a JSONL manifest with FLAC files.

The speech of a small synthetic TIMIT-format corpus (another seed: other speakers and
sentences) is played ``warp`` times faster (pitch, formants and tempo all scale, as for a
shorter vocal tract) and band-limited to ``sample_rate`` (telephone-like 8 kHz); labels are
TIMIT's 39 folded phones, so the token set differs from a 61-phone model's (``sil`` is
new, 23 phones are gone). ``<root>/{train,dev,test}.jsonl`` list ``audio/<split>/<id>.flac``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional

from recog.data.audio import read_audio
from recog.data.synth.staging import staged_folder
from recog.data.synth.timit import SynthOptions, generate_timit
from recog.data.timit import read_timit
from recog.tokens import fold_timit

SPLITS = ("train", "dev", "test")


@dataclass
class ShiftedSynthOptions:
    """Size, seed and domain shift of the demonstration corpus."""

    seed: int = 7
    n_train_speakers: int = 16
    n_dev_speakers: int = 8
    n_test_speakers: int = 16
    warp: float = 1.25  # speed-up factor of the audio (pitch, formants, tempo)
    sample_rate: int = 8000
    phone_set: int = 39
    workers: int = 2


def shift_audio(samples: np.ndarray, rate: int, warp: float, out_rate: int) -> np.ndarray:
    """Play ``samples`` ``warp`` times faster and resample to ``out_rate`` (band-limiting)."""
    wave = torch.from_numpy(samples.astype(np.float32))
    return torchaudio.functional.resample(wave, round(rate * warp), out_rate).numpy()


def generate_shifted(root: Path, options: ShiftedSynthOptions, progress: bool = True) -> Path:
    """Write the corpus at ``root`` (unless its manifests exist) and return ``root``."""
    root = Path(root)
    if all((root / f"{s}.jsonl").is_file() for s in SPLITS):
        return root
    with staged_folder(root) as staging:
        synth = SynthOptions(seed=options.seed, n_train_speakers=options.n_train_speakers,
                             n_dev_speakers=options.n_dev_speakers,
                             n_test_speakers=options.n_test_speakers, workers=options.workers)
        tree = generate_timit(staging / "timit", synth, progress=progress)
        corpus = read_timit(tree)
        for split in SPLITS:
            lines = []
            (staging / "audio" / split).mkdir(parents=True)
            for u in corpus.splits[split]:
                samples, rate = read_audio(u.source)
                name = f"audio/{split}/{u.id}.flac"
                soundfile.write(staging / name, shift_audio(samples, rate, options.warp,
                                                            options.sample_rate),
                                options.sample_rate, format="FLAC", subtype="PCM_16")
                phones = fold_timit(u.tokens, options.phone_set)
                lines.append(json.dumps({"id": u.id, "source": name, "speaker": u.speaker,
                                         "text": " ".join(phones)}))
            (staging / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
        shutil.rmtree(staging / "timit")
    return root
