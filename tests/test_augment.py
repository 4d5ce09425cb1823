"""Augmentation: each kind is deterministic for a seed, does what it says (checked against
numpy computations of the masks, lengths and SNRs), and never reaches decoding."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from recog.augment import AugmentOptions, SpecAugment, perturbed_copies, time_warp
from recog.batching import GroupNormalization
from recog.data.utterance import Utterance
from recog.features.audio import AudioFeatureOptions, audio_features
from recog.features.perturb import perturb


def _spec(opts: AugmentOptions, seed: int, blocks: int = 3) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(99)
    feats = torch.randn(3, 50, 3 * 10, generator=gen) + 5.0
    lengths = torch.tensor([50, 37, 20])
    mean = torch.full((30,), 5.0)
    torch.manual_seed(seed)
    return feats, lengths, mean, SpecAugment(opts, blocks, mean)(feats, lengths)


def test_spec_augment_is_deterministic_for_a_seed() -> None:
    opts = AugmentOptions(spec_augment=True, freq_width=4, time_width=10)
    a = _spec(opts, 0)[-1]
    b = _spec(opts, 0)[-1]
    c = _spec(opts, 1)[-1]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_spec_augment_masks_bands_of_every_block_and_frames_within_lengths() -> None:
    opts = AugmentOptions(spec_augment=True, freq_masks=1, freq_width=6, time_masks=1,
                          time_width=10, time_fraction=1.0)
    feats, lengths, mean, out = _spec(opts, 3)
    masked = (out == mean) & (feats != mean)  # (B, T, D): a masked value is the mean
    for b, n in enumerate(lengths.tolist()):
        assert torch.equal(out[b, n:], feats[b, n:])  # padding untouched
        m = masked[b, :n].numpy()
        frames = m.all(axis=1)  # time-masked frames: every dimension
        cols = m[~frames].all(axis=0) if (~frames).any() else np.zeros(30, bool)
        blocks = cols.reshape(3, 10)
        assert (blocks == blocks[0]).all()  # the same bands in each delta block
        assert blocks[0].sum() < 6 and frames.sum() < 10
        changed = (out[b, :n] != feats[b, :n]).numpy()
        assert (changed == (frames[:, None] | cols[None, :])).all()  # nothing else moved


def test_time_warp_keeps_the_length_and_the_end_frames() -> None:
    x = torch.arange(40.0)[:, None].repeat(1, 2)
    torch.manual_seed(0)
    y = time_warp(x, 5)
    assert y.shape == x.shape
    assert y[0, 0] == pytest.approx(x[0, 0], abs=0.5) and y[-1, 0] == pytest.approx(39, abs=0.5)
    assert bool((y[1:, 0] >= y[:-1, 0]).all())  # monotone: a warp, not a shuffle


def _utts() -> list[Utterance]:
    return [Utterance(f"u{i}", "s", f"/x/u{i}.wav", ("a",)) for i in range(20)]


def test_perturbed_copies_are_one_per_factor_and_seeded() -> None:
    opts = AugmentOptions(speed_factors=[0.9, 1.0, 1.1], noise_prob=0.5, seed=4)
    copies = perturbed_copies(_utts(), opts)
    assert len(copies) == 60
    assert [c.extra.get("speed", 1.0) for c in copies[::20]] == [0.9, 1.0, 1.1]
    assert copies[0].id.startswith("u0-sp0.9") and copies[20].id.split("-")[0] == "u0"
    noisy = [c for c in copies if "noise_snr" in c.extra]
    assert 15 < len(noisy) < 45 and all(10 <= c.extra["noise_snr"] <= 30 for c in noisy)
    again = perturbed_copies(_utts(), opts)
    assert [c.id for c in again] == [c.id for c in copies]
    other = perturbed_copies(_utts(), AugmentOptions(speed_factors=[0.9, 1.0, 1.1],
                                                     noise_prob=0.5, seed=5))
    assert [c.id for c in other] != [c.id for c in copies]
    with pytest.raises(ValueError, match="speed_factors"):
        perturbed_copies(_utts(), AugmentOptions(speed_factors=[0.0]))


def test_vtlp_draws_a_seeded_warp_per_copy_and_leaves_the_other_draws_alone() -> None:
    base = AugmentOptions(speed_factors=[0.9, 1.0], noise_prob=0.5, seed=4)
    warped = perturbed_copies(_utts(), replace(base, vtlp=[0.9, 1.1]))
    plain = perturbed_copies(_utts(), base)
    factors = [c.extra["vtlp"] for c in warped]
    assert all(0.9 <= f <= 1.1 for f in factors) and len(set(factors)) > 30
    ids = [p.id + f"-w{f:.4f}" for p, f in zip(plain, factors, strict=True)]
    assert [c.id for c in warped] == ids
    assert [c.extra.get("noise_snr") for c in warped] == [p.extra.get("noise_snr")
                                                          for p in plain]
    again = perturbed_copies(_utts(), replace(base, vtlp=[0.9, 1.1]))
    assert [c.extra["vtlp"] for c in again] == factors
    assert AugmentOptions(vtlp=[0.9, 1.1]).copies and not AugmentOptions().copies
    with pytest.raises(ValueError, match="vtlp"):
        AugmentOptions(vtlp=[1.1, 0.9]).check()


@pytest.mark.parametrize("freq", [700.0, 1500.0, 3000.0])
def test_vtlp_warp_moves_a_tone_to_the_band_kaldi_defines(freq: float) -> None:
    # Kaldi's VTLN maps filter frequencies f -> f / warp between its cut-offs, so a tone at
    # freq peaks in the band whose unwarped centre is nearest freq * warp. The centres by
    # hand: 40 bands equally spaced on the mel scale 1127 ln(1 + f/700) from 20 Hz to 8 kHz.
    rate = 16000
    opts = AudioFeatureOptions(kind="fbank", sample_rate=rate, num_mel_bins=40,
                               use_energy=False, delta_order=0)
    mel = np.linspace(1127 * np.log(1 + 20 / 700), 1127 * np.log(1 + 8000 / 700), 42)
    centres = (700 * (np.exp(mel / 1127) - 1))[1:-1]
    t = np.arange(rate) / rate
    tone = torch.from_numpy((0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32))
    for warp in (0.9, 1.0, 1.1):
        peak = int(audio_features(tone, rate, opts, warp=warp).mean(0).argmax())
        assert peak == int(np.abs(centres - freq * warp).argmin())


def test_speed_changes_length_and_pitch_and_noise_has_its_snr() -> None:
    rate = 8000
    t = np.arange(rate) / rate
    tone = torch.from_numpy((0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    fast = perturb(tone, rate, {"speed": 1.1}).numpy()
    assert len(fast) == pytest.approx(rate / 1.1, abs=2)
    peak = np.argmax(np.abs(np.fft.rfft(fast))) * rate / len(fast)  # Hz
    assert peak == pytest.approx(440 * 1.1, abs=3)
    noisy = perturb(tone, rate, {"noise_snr": 12.0, "noise_seed": 7}).numpy()
    noise = noisy - tone.numpy()
    snr = 10 * np.log10((tone.numpy() ** 2).sum() / (noise ** 2).sum())
    assert snr == pytest.approx(12.0, abs=0.01)
    assert np.array_equal(noisy, perturb(tone, rate, {"noise_snr": 12.0,
                                                      "noise_seed": 7}).numpy())
    assert torch.equal(perturb(tone, rate, {}), tone)


def test_group_normalization_matches_numpy_per_speaker() -> None:
    rng = np.random.default_rng(0)
    frames = [rng.normal(k, 1 + k, (n, 3)).astype(np.float32)
              for k, n in zip([0, 1, 0, 2], [5, 7, 9, 4], strict=True)]
    keys = ["a", "b", "a", "c"]
    norm = GroupNormalization.of(frames, keys)
    pooled_a = np.concatenate([frames[0], frames[2]])
    expected = (frames[2] - pooled_a.mean(0)) / pooled_a.std(0)
    assert np.allclose(norm.apply(2, frames[2]), expected, atol=1e-5)
    alone = (frames[3] - frames[3].mean(0)) / frames[3].std(0)
    assert np.allclose(norm.apply(3, frames[3]), alone, atol=1e-5)


def test_pad_draws_seeded_quiet_around_each_copy_and_leaves_the_other_draws_alone() -> None:
    base = AugmentOptions(speed_factors=[0.9, 1.0], noise_prob=0.5, vtlp=[0.9, 1.1], seed=4)
    padded = perturbed_copies(_utts(), replace(base, pad=[0.0, 0.3]))
    plain = perturbed_copies(_utts(), base)
    pads = [c.extra["pad"] for c in padded]
    assert all(0 <= a <= 0.3 and 0 <= b <= 0.3 for a, b in pads)
    assert len({a for a, _ in pads}) > 30
    assert [c.id for c in padded] == [p.id + f"-p{a:.3f}+{b:.3f}"
                                      for p, (a, b) in zip(plain, pads, strict=True)]
    assert [c.extra.get("vtlp") for c in padded] == [p.extra.get("vtlp") for p in plain]
    assert [c.extra["pad"] for c in perturbed_copies(_utts(), replace(base, pad=[0, 0.3]))
            ] == pads
    with pytest.raises(ValueError, match="augment.pad"):
        AugmentOptions(pad=[0.3, 0.1]).check()
    # the waveform: 0.25 s before and 0.5 s after at 8 kHz, quiet 40 dB below the signal
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal(4000).astype(np.float32))
    y = perturb(x, 8000, {"pad": [0.25, 0.5], "pad_seed": 7})
    assert y.numel() == 2000 + 4000 + 4000 and torch.equal(y[2000:6000], x)
    quiet = torch.cat([y[:2000], y[6000:]])
    ratio_db = 10 * math.log10(float(quiet.square().mean() / x.square().mean()))
    assert -41 < ratio_db < -39
    assert torch.equal(y, perturb(x, 8000, {"pad": [0.25, 0.5], "pad_seed": 7}))


def test_room_eq_and_colour_draws_are_seeded_and_leave_the_other_draws_alone() -> None:
    base = AugmentOptions(speed_factors=[0.9, 1.0], noise_prob=0.5, pad=[0.0, 0.3], seed=4)
    more = replace(base, noise_colour=[0.0, 2.0], reverb_prob=0.5, eq_bands=2, eq_gain=6.0)
    plain, copies = perturbed_copies(_utts(), base), perturbed_copies(_utts(), more)
    for p, c in zip(plain, copies, strict=True):  # speed, noise, pad: drawn as before
        assert c.id.startswith(p.id)
        assert {k: c.extra[k] for k in p.extra} == p.extra
        assert ("noise_colour" in c.extra) == ("noise_snr" in c.extra)
        assert len(c.extra["eq"]) == 2
        assert all(0.02 <= f <= 0.45 and 0.7 <= q <= 2 and abs(g) <= 6 for f, q, g in c.extra["eq"])
    reverberant = [c for c in copies if "reverb_t60" in c.extra]
    assert 8 < len(reverberant) < 32
    assert all(0.1 <= c.extra["reverb_t60"] <= 0.5 for c in reverberant)
    assert [c.extra for c in perturbed_copies(_utts(), more)] == [c.extra for c in copies]
    assert AugmentOptions(reverb_prob=0.1).copies and AugmentOptions(eq_bands=1).copies
    for bad in ({"noise_colour": [2.0, 1.0]}, {"reverb_t60": [0.0, 0.5]},
                {"reverb_prob": 1.5}, {"eq_bands": -1}):
        with pytest.raises(ValueError, match="augment"):
            replace(AugmentOptions(), **bad).check()


def _band_power(x: np.ndarray, rate: int, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / rate)
    return float(spec[(f >= lo) & (f < hi)].mean())


def test_coloured_noise_falls_by_beta_times_3_db_per_octave() -> None:
    x = torch.zeros(64000)
    x[::2000] = 1.0  # a click train: the noise dominates every band but its harmonics
    for beta in (1.0, 2.0):
        y = perturb(x, 8000, {"noise_snr": -20.0, "noise_seed": 3, "noise_colour": beta})
        y = (y - x).numpy()  # the noise alone
        drop = 10 * math.log10(_band_power(y, 8000, 200, 400) / _band_power(y, 8000, 1600, 3200))
        assert drop == pytest.approx(3 * 3.01 * beta, abs=1.0)  # three octaves apart
        snr = 10 * math.log10(float(x.square().sum()) / float(np.square(y).sum()))
        assert snr == pytest.approx(-20.0, abs=0.01)
    white = (perturb(x, 8000, {"noise_snr": -20.0, "noise_seed": 3}) - x).numpy()
    assert abs(10 * math.log10(_band_power(white, 8000, 200, 400)
                               / _band_power(white, 8000, 1600, 3200))) < 0.5


def test_reverb_adds_a_tail_that_decays_60_db_in_t60() -> None:
    x = torch.zeros(8000)
    x[0] = 1.0  # an impulse: the output is the room's response
    y = perturb(x, 8000, {"reverb_t60": 0.4, "reverb_seed": 1}).numpy()
    assert y.size == 8000  # the tail past the end is cut: the copy keeps its frames
    energy = np.convolve(y[1:] ** 2, np.ones(160), "valid")  # 20 ms windows after the direct
    early, late = energy[80], energy[80 + 1600]  # 10 ms and 210 ms in
    assert 10 * math.log10(early / late) == pytest.approx(60 * 0.2 / 0.4, abs=5)
    assert np.array_equal(y, perturb(x, 8000, {"reverb_t60": 0.4, "reverb_seed": 1}).numpy())


def test_eq_raises_the_band_it_names_by_its_gain() -> None:
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal(64000).astype(np.float32))  # peaks past 1
    y = perturb(x, 8000, {"eq": [[0.125, 1.0, 9.0]]}).numpy()  # +9 dB at 1 kHz, unclipped

    def gain(lo: float, hi: float) -> float:
        return 10 * math.log10(_band_power(y, 8000, lo, hi) / _band_power(x.numpy(), 8000, lo, hi))

    assert gain(950, 1050) == pytest.approx(9.0, abs=1.0)
    assert abs(gain(3500, 3900)) < 1.0
