"""The audio front end against kaldi-native-fbank (k2-fsa's reimplementation of Kaldi's
feature code, an independent reference): fbank and MFCC, static and with Kaldi's deltas,
on speech, noise, silence-padded and odd-length audio; and the feature cache."""

from pathlib import Path

import kaldi_native_fbank as knf
import numpy as np
import pytest
import soundfile as sf
import torch

from recog.data.utterance import Utterance
from recog.features.audio import AudioFeatureOptions, add_deltas, audio_features, num_frames
from recog.features.cache import build_cache, feature_stats

SPEECH = Path(__file__).parent / "fixtures/fsdd/recordings"


def _signals() -> dict[str, tuple[np.ndarray, int]]:
    """Test signals in [-1, 1] with their sample rates."""
    rng = np.random.default_rng(0)
    speech = np.concatenate([sf.read(SPEECH / name)[0] for name in
                             ("0_george_0.wav", "7_george_3.wav")])
    t = np.arange(12001) / 16000  # odd length: 12,001 samples, 74 frames and a rest
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(len(t))
    silence = np.zeros(3200)  # digital silence: exact zeros
    return {
        "speech": (speech, 8000),
        "noise": (0.1 * rng.standard_normal(9600), 16000),
        "silence-padded": (np.concatenate([silence, tone[:8000], silence]), 16000),
        "odd-length": (tone, 16000),
    }


def _knf(wave: np.ndarray, rate: int, opts: AudioFeatureOptions) -> np.ndarray:
    """kaldi-native-fbank's features with Kaldi's add-deltas (knf.compute_deltas)."""
    o = knf.FbankOptions() if opts.kind == "fbank" else knf.MfccOptions()
    o.frame_opts.samp_freq = rate
    o.frame_opts.dither = 0.0
    o.frame_opts.frame_length_ms = opts.frame_length_ms
    o.frame_opts.frame_shift_ms = opts.frame_shift_ms
    o.mel_opts.num_bins = opts.num_mel_bins
    o.use_energy = opts.use_energy
    o.energy_floor = opts.energy_floor
    if opts.kind == "mfcc":
        o.num_ceps = opts.num_ceps
    online = knf.OnlineFbank(o) if opts.kind == "fbank" else knf.OnlineMfcc(o)
    online.accept_waveform(rate, (wave * 32768).astype(np.float32).tolist())
    online.input_finished()
    static = np.stack([online.get_frame(i) for i in range(online.num_frames_ready)])
    d = knf.DeltaOptions()
    d.order, d.window = opts.delta_order, opts.delta_window
    return knf.compute_deltas(d, static.astype(np.float32))


@pytest.mark.parametrize("kind,bins", [("fbank", 40), ("mfcc", 23)])
@pytest.mark.parametrize("name", ["speech", "noise", "silence-padded", "odd-length"])
def test_features_equal_kaldi_native_fbank(kind: str, bins: int, name: str) -> None:
    wave, rate = _signals()[name]
    opts = AudioFeatureOptions(kind=kind, num_mel_bins=bins, sample_rate=rate)
    ours = audio_features(torch.from_numpy(wave).float(), rate, opts).numpy()
    ref = _knf(wave, rate, opts)
    assert ours.shape == ref.shape == (num_frames(len(wave), opts), opts.dim)
    # every frame, every column: static, delta and delta-delta (edges included)
    assert np.abs(ours - ref).max() <= 1e-2, np.abs(ours - ref).max(1)


def test_digital_silence_gets_kaldis_energy_floor() -> None:
    wave = torch.zeros(1600)
    opts = AudioFeatureOptions(delta_order=0)
    energy = audio_features(wave, 16000, opts)[:, 0]
    assert torch.allclose(energy, torch.full_like(energy, np.log(np.finfo(np.float32).eps)))
    floored = audio_features(wave, 16000, AudioFeatureOptions(delta_order=0, energy_floor=1.0))
    assert torch.all(floored[:, 0] == 0.0)  # log(1.0)


def test_dither_is_seeded() -> None:
    wave = torch.zeros(3200)
    a, b, c = (audio_features(wave, 16000, AudioFeatureOptions(dither=1.0, dither_seed=s))
               for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a[:, 0].min() > -10  # dither lifts digital silence off the floor


def test_deltas_by_hand_at_the_edges() -> None:
    # x = 0, 0, 0, 1: delta at t = 3 is (1*(x3 - x2) + 2*(x3 - x1)) / 10 with x4, x5 := x3
    x = torch.tensor([[0.0], [0.0], [0.0], [1.0]])
    d = add_deltas(x, order=2, window=2)
    assert d[:, 1].tolist() == pytest.approx([0.0, 0.2, 0.3, 0.3])
    # second order: kernel [4,4,1,-4,-10,-4,1,4,4] / 100 over x with clamped indices;
    # t = 0: x[-4..4] -> taps on x3 = 1 are the last one (offset +3) and the clamped +4
    assert d[0, 2].item() == pytest.approx((4 + 4) / 100)
    assert d[3, 2].item() == pytest.approx((-10 - 4 + 1 + 4 + 4) / 100)


def test_resamples_other_rates() -> None:
    t = torch.arange(12800) / 16000
    wave = 0.3 * torch.sin(2 * torch.pi * 440 * t)
    down = torch.nn.functional.interpolate(wave[None, None], scale_factor=0.5)[0, 0]
    feats = audio_features(down, 8000, AudioFeatureOptions())
    assert abs(len(feats) - num_frames(len(wave), AudioFeatureOptions())) <= 1


def test_cache_builds_once_and_rebuilds_on_change(tmp_path) -> None:
    src = tmp_path / "a.txt"
    src.write_text("x")
    utts = [Utterance("u1", "s", str(src), ("a",)), Utterance("u2", "s", str(src), ("b",))]
    calls = []

    def extract(u: Utterance) -> torch.Tensor:
        calls.append(u.id)
        n = 3 if u.id == "u1" else 5
        return torch.arange(n * 2, dtype=torch.float32).reshape(n, 2) + len(u.id)

    c1 = build_cache(utts, extract, {"k": 1}, tmp_path / "cache", "train", progress=False)
    assert calls == ["u1", "u2"] and list(c1.lengths) == [3, 5]
    assert np.array_equal(c1[1], extract(utts[1]).numpy())
    calls.clear()
    c2 = build_cache(utts, extract, {"k": 1}, tmp_path / "cache", "train", progress=False)
    assert calls == [] and c2.index_path == c1.index_path
    c3 = build_cache(utts, extract, {"k": 2}, tmp_path / "cache", "train", progress=False)
    assert calls == ["u1", "u2"] and c3.index_path != c1.index_path
    mean, std = feature_stats(c1)
    allf = np.concatenate([c1[0], c1[1]])
    assert np.allclose(mean, allf.mean(0)) and np.allclose(std, allf.std(0), atol=1e-4)
    assert not list((tmp_path / "cache").glob("*.tmp"))


def test_trim_keeps_the_loud_part_and_a_margin() -> None:
    """features.audio.trim_db: 0.3 s of faint noise, 0.2 s of a tone, 0.4 s of noise; frames
    (25 ms every 10 ms) more than trim_db below the loudest are cut from both ends, 50 ms
    kept beyond; the kept rows equal the untrimmed features' rows (counted here by hand
    from the frame energies in NumPy); trim_db=0 keeps every frame."""
    rate = 16000
    rng = np.random.default_rng(0)
    t = np.arange(int(0.2 * rate)) / rate
    wav = np.concatenate([rng.normal(0, 1e-4, int(0.3 * rate)), 0.5 * np.sin(2 * np.pi * 440 * t),
                          rng.normal(0, 1e-4, int(0.4 * rate))]).astype(np.float32)
    whole = audio_features(torch.from_numpy(wav), rate, AudioFeatureOptions())
    trimmed = audio_features(torch.from_numpy(wav), rate, AudioFeatureOptions(trim_db=30.0))
    frames = np.stack([wav[i * 160:i * 160 + 400] for i in range(len(whole))]
                      ).astype(np.float64)
    db = 10 * np.log10((frames ** 2).sum(1))
    loud = np.flatnonzero(db >= db.max() - 30)
    first, last = loud[0] - 5, loud[-1] + 5
    # the tone (samples 4800-7999) reaches frames 28 (160 * 28 + 400 > 4800) to 49
    # (160 * 49 < 8000), the faint noise is ~70 dB below it: frames 23-54 stay
    assert (first, last) == (23, 54)
    assert torch.equal(trimmed, whole[first:last + 1])
    assert torch.equal(audio_features(torch.from_numpy(wav), rate, AudioFeatureOptions(
        trim_db=0.0)), whole)


@pytest.mark.parametrize("bad, message", [
    (dict(frame_shift_ms=0.0), "features.audio.frame_shift_ms=0.0: a positive shift"),
    (dict(kind="mfcc", num_ceps=50), "features.audio.num_ceps=50: from 1 to num_mel_bins"),
    (dict(sample_rate=0), "features.audio.sample_rate=0: Hz, from 4000 to 192000"),
    (dict(kind="plp"), "features.audio.kind='plp': fbank or mfcc"),
    (dict(num_mel_bins=2), "features.audio.num_mel_bins=2: at least 3 bands"),
    (dict(trim_db=-5.0), r"features.audio.trim_db=-5.0: 0 \(off\) or more"),  # ran
    (dict(dither=-1.0), r"features.audio.dither=-1.0: 0 \(none\) or more"),  # ran
])
def test_audio_options_no_filterbank_takes_are_refused_naming_the_key(
        bad: dict, message: str) -> None:
    """Each failed per utterance with torchaudio's assertion ("`window_shift` must be
    greater than 0"), blaming the first audio file, or ran, until session 14: a speech
    task now refuses them when it is built, before any audio is read."""
    from recog.tasks import SpeechTask

    with pytest.raises(ValueError, match=message):
        SpeechTask(AudioFeatureOptions(**bad))
    SpeechTask(AudioFeatureOptions(kind="mfcc", num_ceps=13, num_mel_bins=23))
