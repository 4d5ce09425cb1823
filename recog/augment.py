"""Training-time data augmentation, all off by default, seeded, and never applied when
decoding (decoders and ``recog-transcribe`` never see these options):

- SpecAugment (Park et al. 2019) on each training batch through torchaudio's transform:
  frequency masks (the same bands in every delta block), time masks, optional time warp;
  masked values are the training mean, so they read as 0 once the model normalises;
- perturbed copies of the training utterances, made once and cached (as Kaldi's
  speed-perturbed training sets are): one copy per speed factor, each copy noisy with
  probability ``noise_prob`` at an SNR drawn uniformly from ``noise_snr`` (dB), and its
  filterbank warped by a factor drawn uniformly from ``vtlp`` (vocal tract length
  perturbation, Jaitly & Hinton 2013: new voices for a corpus of few speakers); with
  ``noise_colour`` the noise's spectrum falls as 1/f^beta (0 white, 1 pink, 2 brown), with
  ``reverb_prob`` the copy is convolved with a synthetic room response of a reverberation
  time drawn from ``reverb_t60``, and with ``eq_bands`` it passes that many peaking filters
  of random centre, width and gain (within ±``eq_gain`` dB): the rooms and microphones of
  a corpus recorded at home. The draws of each copy depend only on ``seed`` and its id.

The waveform side lives in ``recog.features.perturb``, the ink side (``augment.ink``:
perturbed copies of pen strokes) in ``recog.features.ink_augment``.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torchaudio.transforms as T

from recog.data.utterance import Utterance
from recog.features.ink_augment import InkAugmentOptions


@dataclass
class AugmentOptions:
    """The ``augment`` config group (recorded in config.yaml with the rest)."""

    spec_augment: bool = False
    freq_masks: int = 2  # masks per utterance over the feature bands
    freq_width: int = 8  # F: each covers up to this many bands (of every delta block)
    time_masks: int = 2
    time_width: int = 20  # T: each covers up to this many frames ...
    time_fraction: float = 0.2  # ... and at most this fraction of the utterance
    time_warp: int = 0  # W: warp the time axis by up to this many frames (0: off)
    speed_factors: list[float] = field(default_factory=lambda: [1.0])  # one copy each
    noise_prob: float = 0.0  # chance that a copy gets additive white noise ...
    noise_snr: list[float] = field(default_factory=lambda: [10.0, 30.0])  # ... at this SNR
    vtlp: list[float] = field(default_factory=lambda: [1.0, 1.0])  # warp factor range
    pad: list[float] = field(default_factory=lambda: [0.0, 0.0])  # s of quiet before, after
    noise_colour: list[float] = field(default_factory=lambda: [0.0, 0.0])  # beta of 1/f^beta
    reverb_prob: float = 0.0  # chance that a copy is reverberated ...
    reverb_t60: list[float] = field(default_factory=lambda: [0.1, 0.5])  # ... with this RT60 (s)
    eq_bands: int = 0  # random peaking filters per copy (0: none) ...
    eq_gain: float = 10.0  # ... each of a gain within ±eq_gain dB
    ink: InkAugmentOptions = field(default_factory=InkAugmentOptions)  # pen strokes' copies
    seed: int = 0

    @property
    def copies(self) -> bool:
        """Whether the training set is replaced by perturbed copies of itself."""
        return (list(self.speed_factors) != [1.0] or self.noise_prob > 0
                or list(self.vtlp) != [1.0, 1.0] or list(self.pad) != [0.0, 0.0]
                or self.reverb_prob > 0 or self.eq_bands > 0)

    def as_dict(self) -> dict:
        return asdict(self)

    def check(self) -> None:
        self.ink.check()
        if not self.speed_factors or any(f <= 0 for f in self.speed_factors):
            raise ValueError(f"augment.speed_factors must be positive, not "
                             f"{list(self.speed_factors)}")
        if len(self.noise_snr) != 2 or self.noise_snr[0] > self.noise_snr[1]:
            raise ValueError(f"augment.noise_snr is [low, high] in dB, not "
                             f"{list(self.noise_snr)}")
        if len(self.vtlp) != 2 or not 0.5 <= self.vtlp[0] <= self.vtlp[1] <= 2.0:
            raise ValueError(f"augment.vtlp is [low, high] warp factors within [0.5, 2], "
                             f"not {list(self.vtlp)}")
        if len(self.pad) != 2 or not 0 <= self.pad[0] <= self.pad[1] <= 5:
            raise ValueError(f"augment.pad is [low, high] seconds within [0, 5], not "
                             f"{list(self.pad)}")
        low, high = (list(self.noise_colour) + [-1.0, -1.0])[:2]
        if len(self.noise_colour) != 2 or not 0 <= low <= high <= 3:
            raise ValueError(f"augment.noise_colour is [low, high] exponents within [0, 3], "
                             f"not {list(self.noise_colour)}")
        if len(self.reverb_t60) != 2 or not 0.05 <= self.reverb_t60[0] <= self.reverb_t60[1] <= 2:
            raise ValueError(f"augment.reverb_t60 is [low, high] seconds within [0.05, 2], "
                             f"not {list(self.reverb_t60)}")
        if self.eq_bands < 0 or not 0 <= self.eq_gain <= 30:
            raise ValueError(f"augment.eq_bands must be >= 0 and augment.eq_gain within "
                             f"[0, 30] dB, not {self.eq_bands}, {self.eq_gain}")
        if not all(0 <= p <= 1 for p in (self.noise_prob, self.reverb_prob, self.time_fraction)):
            raise ValueError("augment.noise_prob, augment.reverb_prob and "
                             "augment.time_fraction lie in [0, 1]")


def perturbed_copies(utts: Sequence[Utterance], opts: AugmentOptions) -> list[Utterance]:
    """One copy of every utterance per speed factor, ids suffixed ``-sp<factor>`` (none for
    1.0), ``-n<snr>`` when noisy, ``-w<factor>`` when warped and ``-p<lead>+<trail>`` when
    padded; the perturbation is in ``extra`` (``speed``, ``noise_snr``, ``noise_seed``,
    ``vtlp``, ``pad``, ``pad_seed``, ``noise_colour``, ``reverb_t60``, ``reverb_seed``,
    ``eq``: (centre as a fraction of the sample rate, Q, gain dB) per filter) for the front
    end; ids get ``-r<t60>`` when reverberated and ``-eq`` when filtered."""
    opts.check()
    out = []
    for factor in opts.speed_factors:
        for u in utts:
            rng = np.random.default_rng([opts.seed, zlib.crc32(f"{u.id}/{factor}".encode())])
            extra, suffix = dict(u.extra), ""
            if factor != 1.0:
                extra["speed"], suffix = float(factor), f"-sp{factor:g}"
            if rng.random() < opts.noise_prob:
                snr = float(rng.uniform(*opts.noise_snr))
                extra["noise_snr"], extra["noise_seed"] = snr, int(rng.integers(2**31))
                suffix += f"-n{snr:.1f}"
            if list(opts.vtlp) != [1.0, 1.0]:  # drawn last: the other draws stay as they were
                extra["vtlp"] = round(float(rng.uniform(*opts.vtlp)), 4)
                suffix += f"-w{extra['vtlp']:.4f}"
            if list(opts.pad) != [0.0, 0.0]:  # drawn after the others, which stay as they were
                extra["pad"] = [round(float(rng.uniform(*opts.pad)), 3) for _ in range(2)]
                extra["pad_seed"] = int(rng.integers(2**31))
                suffix += "-p{:.3f}+{:.3f}".format(*extra["pad"])
            # drawn after the others, which stay as they were
            if "noise_snr" in extra and list(opts.noise_colour) != [0.0, 0.0]:
                extra["noise_colour"] = round(float(rng.uniform(*opts.noise_colour)), 3)
                suffix += f"-c{extra['noise_colour']:.3f}"
            if opts.reverb_prob > 0 and rng.random() < opts.reverb_prob:
                extra["reverb_t60"] = round(float(rng.uniform(*opts.reverb_t60)), 3)
                extra["reverb_seed"] = int(rng.integers(2**31))
                suffix += f"-r{extra['reverb_t60']:.3f}"
            if opts.eq_bands > 0:
                extra["eq"] = [[round(float(np.exp(rng.uniform(np.log(0.02), np.log(0.45)))), 4),
                                round(float(rng.uniform(0.7, 2.0)), 3),
                                round(float(rng.uniform(-opts.eq_gain, opts.eq_gain)), 2)]
                               for _ in range(opts.eq_bands)]
                suffix += f"-eq{opts.eq_bands}"
            out.append(replace(u, id=u.id + suffix, extra=extra))
    return out


class SpecAugment:
    """SpecAugment of padded (B, T, D) features within each utterance's length.

    ``blocks`` is how many delta blocks the feature vector holds (a frequency mask covers
    the same bands in each); ``mean`` (D,) is what masked values become (the model's input
    mean). Random draws come from torch's global generator, whose state training saves and
    restores, so a resumed run draws the same masks."""

    def __init__(self, opts: AugmentOptions, blocks: int, mean: torch.Tensor):
        self.opts, self.blocks, self.mean = opts, blocks, mean.detach().float().cpu()
        self.masks = T.SpecAugment(opts.time_masks, opts.time_width, opts.freq_masks,
                                   opts.freq_width, iid_masks=False, p=opts.time_fraction,
                                   zero_masking=True)

    def __call__(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out = feats.clone()
        d = feats.shape[2]
        if d % self.blocks:
            raise ValueError(f"{d} feature dimensions do not split into {self.blocks} blocks")
        for b, n in enumerate(lengths.tolist()):
            x = feats[b, :n] - self.mean  # (n, D), centred: masks fill in the mean
            if self.opts.time_warp > 0:
                x = time_warp(x, self.opts.time_warp)
            x = self.masks(x.T.reshape(self.blocks, d // self.blocks, n))
            out[b, :n] = x.reshape(d, n).T + self.mean
        return out


def time_warp(x: torch.Tensor, width: int) -> torch.Tensor:
    """Move a random frame c (away from the ends) to c + w, w uniform in [-W, W], stretching
    the frames before it and squeezing those after it (or the other way round) linearly:
    SpecAugment's time warp, on (T, D) features."""
    n = x.shape[0]
    if n <= 2 * width + 1:
        return x
    c = int(torch.randint(width + 1, n - width, (1,)))
    w = int(torch.randint(-width, width + 1, (1,)))
    if w == 0:
        return x
    y = x.T[None]  # (1, D, T)
    left = torch.nn.functional.interpolate(y[..., :c], size=c + w, mode="linear",
                                           align_corners=False)
    right = torch.nn.functional.interpolate(y[..., c:], size=n - c - w, mode="linear",
                                            align_corners=False)
    return torch.cat([left, right], dim=2)[0].T
