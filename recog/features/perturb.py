"""Waveform perturbations of the training copies that ``recog.augment`` describes in an
utterance's ``extra``: speed (torchaudio's resampling speed change: tempo and pitch, as in
Kaldi's speed-perturbed sets), quiet padding before and after (recordings trimmed to the word
teach a model nothing about the pauses and room noise around it in other recordings) and
additive white noise at a given SNR."""

from __future__ import annotations

import numpy as np
import torch
import torchaudio.functional as F


def perturb(waveform: torch.Tensor, rate: int, extra: dict) -> torch.Tensor:
    """``waveform`` (samples,) sped up by ``extra["speed"]``, padded by ``extra["pad"]``
    seconds (before, after) of white noise 40 dB below its power (from ``extra["pad_seed"]``)
    and with white noise at ``extra["noise_snr"]`` dB drawn from ``extra["noise_seed"]``;
    unchanged without them."""
    if extra.get("speed", 1.0) != 1.0:
        waveform, _ = F.speed(waveform[None], rate, float(extra["speed"]))
        waveform = waveform[0]
    if "pad" in extra:
        rng = np.random.default_rng(int(extra["pad_seed"]))
        lead, trail = (round(s * rate) for s in extra["pad"])
        quiet = torch.from_numpy(rng.standard_normal(lead + trail).astype(np.float32))
        quiet *= (waveform.square().mean() * 1e-4).sqrt()  # -40 dB
        waveform = torch.cat([quiet[:lead], waveform, quiet[lead:]])
    if "noise_snr" in extra:
        rng = np.random.default_rng(int(extra["noise_seed"]))
        noise = torch.from_numpy(rng.standard_normal(waveform.numel()).astype(np.float32))
        waveform = F.add_noise(waveform[None], noise[None],
                               torch.tensor([float(extra["noise_snr"])]))[0]
    return waveform
