"""Kaldi-compatible audio features: log mel filterbank (+ log energy) or MFCC, with deltas.

The Graves, Mohamed & Hinton (2013) input: 40 mel bands + log energy, with first and
second temporal derivatives = 123 dimensions. The static features are torchaudio's port of
Kaldi's ``compute-fbank-feats`` / ``compute-mfcc-feats``; the deltas are Kaldi's
``add-deltas`` (``DeltaFeatures``), written here because torchaudio's ``compute_deltas``
pads differently at the edges.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torchaudio.compliance.kaldi as kaldi
import torchaudio.functional as F

from recog.data.audio import resampler_rate

_AUDIO_RULES = {
    "kind": "fbank or mfcc", "sample_rate": "Hz, from 4000 to 192000",
    "num_mel_bins": "at least 3 bands", "num_ceps": "from 1 to num_mel_bins",
    "frame_length_ms": "a positive window", "frame_shift_ms": "a positive shift",
    "delta_order": "0 (none) or more", "delta_window": "at least 1",
    "energy_floor": "0 or more", "dither": "0 (none) or more", "trim_db": "0 (off) or more"}


@dataclass
class AudioFeatureOptions:
    """What the audio front end computes; every field enters the feature-cache key.
    Each default is Kaldi's, except where a comment says why not."""

    kind: str = "fbank"  # fbank | mfcc
    sample_rate: int = 16000
    num_mel_bins: int = 40  # Kaldi: 23 (the Graves 2013 set-up uses 40)
    num_ceps: int = 13
    use_energy: bool = True  # Kaldi: false for fbank, true for MFCC
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    delta_order: int = 2
    delta_window: int = 2
    # log energy floor in linear energy units; 0 (Kaldi's default) floors only at
    # FLT_EPSILON, so digital silence gets log(FLT_EPSILON) = -15.94 in the energy column
    energy_floor: float = 0.0
    # Gaussian dither in 16-bit sample units. Kaldi: 1.0; here 0 (deterministic features,
    # so a cache key names one result); with dither > 0, dither_seed makes it repeatable
    dither: float = 0.0
    dither_seed: int = 0
    # end-pointing: drop the frames before the first and after the last frame whose energy
    # is within trim_db of the loudest frame's (keeping TRIM_MARGIN_MS around them), so
    # that recordings with and without room noise around the word look alike; 0: keep all
    trim_db: float = 0.0

    def check(self) -> None:
        """Refuse options no filterbank can be computed with (before any audio is read):
        a ValueError naming the key."""
        bad = {"kind": self.kind not in ("fbank", "mfcc"),
               "sample_rate": not 4000 <= self.sample_rate <= 192000,
               "num_mel_bins": self.num_mel_bins < 3,
               "num_ceps": self.kind == "mfcc" and not 1 <= self.num_ceps <= self.num_mel_bins,
               "frame_length_ms": not self.frame_length_ms > 0,
               "frame_shift_ms": not self.frame_shift_ms > 0,
               "delta_order": self.delta_order < 0, "delta_window": self.delta_window < 1,
               "energy_floor": not self.energy_floor >= 0, "dither": not self.dither >= 0,
               "trim_db": not self.trim_db >= 0}
        for key, wrong in bad.items():
            if wrong:
                raise ValueError(f"features.audio.{key}={getattr(self, key)!r}: "
                                 f"{_AUDIO_RULES[key]}")

    @property
    def dim(self) -> int:
        base = self.num_mel_bins if self.kind == "fbank" else self.num_ceps
        if self.kind == "fbank" and self.use_energy:
            base += 1
        return base * (self.delta_order + 1)

    def as_dict(self) -> dict:
        return asdict(self)


TRIM_MARGIN_MS = 50.0  # kept beyond the first and last frame above the trim threshold


def frame_samples(opts: AudioFeatureOptions) -> tuple[int, int]:
    """Samples per analysis frame and per frame shift, as Kaldi rounds them."""
    return (int(opts.sample_rate * opts.frame_length_ms / 1000),
            int(opts.sample_rate * opts.frame_shift_ms / 1000))


def num_frames(num_samples: int, opts: AudioFeatureOptions) -> int:
    """Frames Kaldi computes for ``num_samples`` (snip_edges=true)."""
    length, shift = frame_samples(opts)
    return 0 if num_samples < length else 1 + (num_samples - length) // shift


def delta_kernels(order: int, window: int) -> list[torch.Tensor]:
    """Kaldi's ``DeltaFeatures`` scales: kernel i (1 <= i <= order) is the i-fold
    convolution of the first-order regression kernel j / (2 sum_n n^2), j = -window..window,
    so it spans 2 i window + 1 frames (order 2, window 2: [4,4,1,-4,-10,-4,1,4,4] / 100)."""
    if order < 0 or window < 1:
        raise ValueError(f"delta order must be >= 0 and window >= 1, got {order}, {window}")
    first = torch.arange(-window, window + 1, dtype=torch.float64)
    first /= 2 * sum(n * n for n in range(1, window + 1))
    kernels, k = [], torch.ones(1, dtype=torch.float64)
    for _ in range(order):
        k = torch.nn.functional.conv1d(k.view(1, 1, -1), first.flip(0).view(1, 1, -1),
                                       padding=2 * window).view(-1)  # full convolution
        kernels.append(k)
    return kernels


def add_deltas(feats: torch.Tensor, order: int = 2, window: int = 2) -> torch.Tensor:
    """Append ``order`` orders of deltas to (T, D) features as Kaldi's ``add-deltas`` does:
    order i is one kernel (``delta_kernels``) applied to the static features, frame indices
    clamped to [0, T - 1] — not the first-order formula applied i times."""
    out = [feats]
    t = feats.shape[0]
    for kernel in delta_kernels(order, window):
        half = (len(kernel) - 1) // 2
        idx = (torch.arange(t)[:, None] + torch.arange(-half, half + 1)[None, :]).clamp(0, t - 1)
        # (T, taps, D) gathered frames, weighted by the taps in double, as Kaldi sums them
        out.append(torch.einsum("tkd,k->td", feats[idx].double(), kernel).to(feats.dtype))
    return torch.cat(out, dim=1)


def audio_features(waveform: torch.Tensor, sample_rate: int, opts: AudioFeatureOptions,
                   warp: float = 1.0) -> torch.Tensor:
    """Features (T, opts.dim) of a mono waveform in [-1, 1]; computed as Kaldi would.
    ``warp`` is a VTLN warp factor of the mel filterbank (Kaldi's ``--vtln-warp``, with its
    default cut-offs), used for vocal tract length perturbation of training copies."""
    if sample_rate != opts.sample_rate:
        waveform = F.resample(waveform, resampler_rate(sample_rate, opts.sample_rate),
                              opts.sample_rate)
    if waveform.numel() < frame_samples(opts)[0]:
        raise ValueError(f"{waveform.numel()} samples: shorter than one "
                         f"{opts.frame_length_ms} ms analysis frame")
    # Kaldi reads 16-bit samples as integers; scale so that energies match its output.
    wav = (waveform * 32768.0).reshape(1, -1)
    common = dict(
        sample_frequency=opts.sample_rate, frame_length=opts.frame_length_ms,
        frame_shift=opts.frame_shift_ms, dither=opts.dither, num_mel_bins=opts.num_mel_bins,
        energy_floor=opts.energy_floor, use_energy=opts.use_energy, vtln_warp=float(warp),
    )
    if opts.kind not in ("fbank", "mfcc"):
        raise ValueError(f"unknown audio feature kind {opts.kind!r} (fbank or mfcc)")
    compute = kaldi.fbank if opts.kind == "fbank" else kaldi.mfcc
    if opts.kind == "mfcc":
        common["num_ceps"] = opts.num_ceps
    if opts.dither > 0:  # torchaudio draws the dither from the global generator
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(opts.dither_seed)
            feats = compute(wav, **common)
    else:
        feats = compute(wav, **common)
    feats = add_deltas(feats, opts.delta_order, opts.delta_window)
    return feats[speech_frames(wav[0], opts)] if opts.trim_db > 0 else feats


def speech_frames(wav: torch.Tensor, opts: AudioFeatureOptions) -> slice:
    """The frames from the first to the last whose energy (sum of squares over Kaldi's
    frame, snip_edges) is at most ``opts.trim_db`` below the loudest frame's, widened by
    ``TRIM_MARGIN_MS`` on each side (energy end-pointing, as a VAD would cut)."""
    energy = wav.unfold(0, *frame_samples(opts)).double().pow(2).sum(1)
    db = 10 * torch.log10(energy.clamp_min(1e-10))
    loud = torch.nonzero(db >= db.max() - opts.trim_db).flatten()
    margin = round(TRIM_MARGIN_MS / opts.frame_shift_ms)
    return slice(max(int(loud[0]) - margin, 0), int(loud[-1]) + margin + 1)
