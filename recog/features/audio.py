"""Kaldi-compatible audio features: log mel filterbank (+ log energy) or MFCC, with deltas.

The Graves, Mohamed & Hinton (2013) input: 40 mel bands + log energy, with first and
second temporal derivatives = 123 dimensions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torchaudio.compliance.kaldi as kaldi
import torchaudio.functional as F


@dataclass
class AudioFeatureOptions:
    """What the audio front end computes; every field enters the feature-cache key."""

    kind: str = "fbank"  # fbank | mfcc
    sample_rate: int = 16000
    num_mel_bins: int = 40
    num_ceps: int = 13
    use_energy: bool = True
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    delta_order: int = 2
    delta_window: int = 2

    @property
    def dim(self) -> int:
        base = self.num_mel_bins if self.kind == "fbank" else self.num_ceps
        if self.kind == "fbank" and self.use_energy:
            base += 1
        return base * (self.delta_order + 1)

    def as_dict(self) -> dict:
        return asdict(self)


def num_frames(num_samples: int, opts: AudioFeatureOptions) -> int:
    """Frames Kaldi computes for ``num_samples`` (snip_edges=true)."""
    length = int(opts.sample_rate * opts.frame_length_ms / 1000)
    shift = int(opts.sample_rate * opts.frame_shift_ms / 1000)
    return 0 if num_samples < length else 1 + (num_samples - length) // shift


def add_deltas(feats: torch.Tensor, order: int = 2, window: int = 2) -> torch.Tensor:
    """Append ``order`` orders of regression deltas (Kaldi's add-deltas formula) to (T, D)."""
    out = [feats]
    for _ in range(order):
        out.append(F.compute_deltas(out[-1].T, win_length=2 * window + 1).T)
    return torch.cat(out, dim=1)


def audio_features(waveform: torch.Tensor, sample_rate: int, opts: AudioFeatureOptions,
                   warp: float = 1.0) -> torch.Tensor:
    """Features (T, opts.dim) of a mono waveform in [-1, 1]; computed as Kaldi would.
    ``warp`` is a VTLN warp factor of the mel filterbank (Kaldi's ``--vtln-warp``, with its
    default cut-offs), used for vocal tract length perturbation of training copies."""
    if sample_rate != opts.sample_rate:
        waveform = F.resample(waveform, sample_rate, opts.sample_rate)
    if waveform.numel() < int(opts.sample_rate * opts.frame_length_ms / 1000):
        raise ValueError(f"{waveform.numel()} samples: shorter than one "
                         f"{opts.frame_length_ms} ms analysis frame")
    # Kaldi reads 16-bit samples as integers; scale so that energies match its output.
    wav = (waveform * 32768.0).reshape(1, -1)
    common = dict(
        sample_frequency=opts.sample_rate, frame_length=opts.frame_length_ms,
        frame_shift=opts.frame_shift_ms, dither=0.0, num_mel_bins=opts.num_mel_bins,
        vtln_warp=float(warp),
    )
    if opts.kind == "fbank":
        feats = kaldi.fbank(wav, use_energy=opts.use_energy, **common)
    elif opts.kind == "mfcc":
        feats = kaldi.mfcc(wav, num_ceps=opts.num_ceps, use_energy=opts.use_energy, **common)
    else:
        raise ValueError(f"unknown audio feature kind {opts.kind!r} (fbank or mfcc)")
    return add_deltas(feats, opts.delta_order, opts.delta_window)
