"""Builds one small tone corpus twice: as JSONL manifests and as Kaldi data directories.

Training utterances are segments of longer recordings (Kaldi ``segments``, manifest
``offset``/``duration``); dev and test utterances are whole files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from tests.timit_tree import RATE, utterance

SIZES = {"train": (2, 3), "dev": (2, 1), "test": (2, 1)}  # split -> (files, utts per file)


def _phones(segments: list) -> list[str]:
    return [lab for _, _, lab in segments if lab not in ("h#", "q")]


def make_byo(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write the audio, ``root/manifest/<split>.jsonl`` and ``root/kaldi/<split>/``; return
    (manifest folder, kaldi folder)."""
    rng = np.random.default_rng(seed)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    for split, (n_files, per_file) in SIZES.items():
        lines, wav_scp, text, utt2spk, segments = [], [], [], [], []
        for f in range(n_files):
            speaker = f"spk{f}"
            rec = f"{split}{f}"
            pieces, pos = [], 0
            for k in range(per_file):
                audio, segs = utterance(rng, int(rng.integers(3, 6)))
                uid = f"{speaker}_{rec}_{k}" if per_file > 1 else f"{speaker}_{rec}"
                phones = " ".join(_phones(segs))
                entry = {"id": uid, "source": f"../audio/{rec}.wav", "text": phones,
                         "speaker": speaker}
                if per_file > 1:
                    entry |= {"offset": pos / RATE, "duration": len(audio) / RATE}
                    segments.append(f"{uid} {rec} {pos / RATE!r} {(pos + len(audio)) / RATE!r}")
                lines.append(json.dumps(entry))
                text.append(f"{uid} {phones}")
                utt2spk.append(f"{uid} {speaker}")
                pieces.append(audio)
                pos += len(audio)
            path = root / "audio" / f"{rec}.wav"
            sf.write(path, np.concatenate(pieces), RATE, subtype="PCM_16")
            wav_scp.append(f"{rec if per_file > 1 else uid} {path}")
        (root / "manifest").mkdir(exist_ok=True)
        (root / "manifest" / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
        kaldi = root / "kaldi" / split
        kaldi.mkdir(parents=True, exist_ok=True)
        for name, rows in (("wav.scp", wav_scp), ("text", text), ("utt2spk", utt2spk),
                           ("segments", segments)):
            if rows:
                (kaldi / name).write_text("\n".join(rows) + "\n")
    return root / "manifest", root / "kaldi"
