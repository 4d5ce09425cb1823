"""Waveform perturbations of the training copies that ``recog.augment`` describes in an
utterance's ``extra``: speed (torchaudio's resampling speed change: tempo and pitch, as in
Kaldi's speed-perturbed sets), quiet padding before and after (recordings trimmed to the word
teach a model nothing about the pauses and room noise around it in other recordings) and
additive noise at a given SNR (white, or coloured: 1/f^beta), a synthetic room's
reverberation and random peaking filters (a microphone's response)."""

from __future__ import annotations

import numpy as np
import torch
import torchaudio.functional as F


def perturb(waveform: torch.Tensor, rate: int, extra: dict) -> torch.Tensor:
    """``waveform`` (samples,) sped up by ``extra["speed"]``, reverberated for
    ``extra["reverb_t60"]`` s, filtered by ``extra["eq"]``'s peaking filters, padded by
    ``extra["pad"]`` seconds (before, after) of white noise 40 dB below its power (from
    ``extra["pad_seed"]``) and with noise at ``extra["noise_snr"]`` dB drawn from
    ``extra["noise_seed"]`` (1/f^``extra["noise_colour"]``, white without it); unchanged
    without them."""
    if extra.get("speed", 1.0) != 1.0:
        waveform, _ = F.speed(waveform[None], rate, float(extra["speed"]))
        waveform = waveform[0]
    if "reverb_t60" in extra:
        rir = room_response(rate, float(extra["reverb_t60"]), int(extra["reverb_seed"]))
        wet = F.fftconvolve(waveform, rir)[: waveform.numel()]  # the length kept: same frames
        waveform = wet * (waveform.square().sum() / wet.square().sum().clamp_min(1e-20)).sqrt()
    for centre, q, gain in extra.get("eq", ()):
        waveform = peaking_filter(waveform, centre, q, gain)
    if "pad" in extra:
        rng = np.random.default_rng(int(extra["pad_seed"]))
        lead, trail = (round(s * rate) for s in extra["pad"])
        quiet = torch.from_numpy(rng.standard_normal(lead + trail).astype(np.float32))
        quiet *= (waveform.square().mean() * 1e-4).sqrt()  # -40 dB
        waveform = torch.cat([quiet[:lead], waveform, quiet[lead:]])
    if "noise_snr" in extra:
        rng = np.random.default_rng(int(extra["noise_seed"]))
        noise = coloured_noise(rng, waveform.numel(), float(extra.get("noise_colour", 0.0)))
        waveform = F.add_noise(waveform[None], noise[None],
                               torch.tensor([float(extra["noise_snr"])]))[0]
    return waveform


def coloured_noise(rng: np.random.Generator, n: int, beta: float) -> torch.Tensor:
    """``n`` samples of Gaussian noise whose power spectrum falls as 1/f^beta (0: white,
    drawn exactly as before coloured noise existed; 1: pink; 2: brown), unit variance."""
    white = rng.standard_normal(n)
    if beta == 0:
        return torch.from_numpy(white.astype(np.float32))
    spectrum = np.fft.rfft(white)
    f = np.arange(spectrum.size, dtype=np.float64)
    f[0] = 1.0  # no infinite DC gain
    noise = np.fft.irfft(spectrum * f ** (-beta / 2), n)
    return torch.from_numpy((noise / max(noise.std(), 1e-12)).astype(np.float32))


def room_response(rate: int, t60: float, seed: int) -> torch.Tensor:
    """A synthetic room impulse response: the direct sound, then Gaussian noise decaying by
    60 dB in ``t60`` seconds (Polack's statistical model) starting 1 ms later, normalised
    to a direct-to-reverberant energy ratio of 0 dB at t60 = 0.3 s, less for longer rooms."""
    rng = np.random.default_rng(seed)
    n = max(int(t60 * rate), 2)
    t = np.arange(n) / rate
    tail = rng.standard_normal(n) * 10 ** (-3 * t / t60)  # 60 dB of amplitude decay in t60
    tail[: max(1, rate // 1000)] = 0.0
    tail *= np.sqrt(t60 / 0.3 / max(np.square(tail).sum(), 1e-20))
    tail[0] = 1.0
    return torch.from_numpy(tail.astype(np.float32))


def peaking_filter(waveform: torch.Tensor, centre: float, q: float, gain_db: float
                   ) -> torch.Tensor:
    """A peaking equaliser (the biquad of R. Bristow-Johnson's Audio EQ Cookbook) at
    ``centre`` × the sample rate, unclipped (torchaudio's ``equalizer_biquad`` clamps to
    [-1, 1], which a boost of real audio would reach)."""
    w0 = 2 * np.pi * centre
    alpha, a = np.sin(w0) / (2 * q), 10 ** (gain_db / 40)
    b = [1 + alpha * a, -2 * np.cos(w0), 1 - alpha * a]
    den = [1 + alpha / a, -2 * np.cos(w0), 1 - alpha / a]
    return F.lfilter(waveform, torch.tensor(den, dtype=waveform.dtype),
                     torch.tensor(b, dtype=waveform.dtype), clamp=False)
