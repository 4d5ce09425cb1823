import numpy as np
import torch
import torchaudio.compliance.kaldi as kaldi

from recog.data.utterance import Utterance
from recog.features.audio import AudioFeatureOptions, add_deltas, audio_features, num_frames
from recog.features.cache import build_cache, feature_stats


def _kaldi_deltas(x: np.ndarray, window: int = 2) -> np.ndarray:
    """Kaldi's regression formula, written out: sum_n n (x[t+n] - x[t-n]) / (2 sum_n n^2),
    with the edge frames repeated."""
    t = len(x)
    pad = np.concatenate([np.repeat(x[:1], window, 0), x, np.repeat(x[-1:], window, 0)])
    denom = 2 * sum(n * n for n in range(1, window + 1))
    return sum(n * (pad[window + n : window + n + t] - pad[window - n : window - n + t])
               for n in range(1, window + 1)) / denom


def _wave(seconds: float = 0.8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(16000 * seconds)) / 16000
    return 0.3 * torch.sin(2 * torch.pi * 440 * t) + 0.01 * torch.randn(len(t), generator=g)


def test_fbank_matches_torchaudio_kaldi() -> None:
    wave = _wave()
    feats = audio_features(wave, 16000, AudioFeatureOptions())
    assert feats.shape == (num_frames(len(wave), AudioFeatureOptions()), 123)
    ref = kaldi.fbank((wave * 32768).reshape(1, -1), num_mel_bins=40, use_energy=True,
                      dither=0.0, sample_frequency=16000)
    assert torch.allclose(feats[:, :41], ref, atol=1e-4)
    d1 = _kaldi_deltas(ref.numpy())
    assert np.allclose(feats[:, 41:82].numpy(), d1, atol=1e-3)
    assert np.allclose(feats[:, 82:].numpy(), _kaldi_deltas(d1), atol=1e-3)


def test_mfcc_matches_torchaudio_kaldi() -> None:
    wave = _wave()
    opts = AudioFeatureOptions(kind="mfcc", num_mel_bins=23)  # Kaldi's MFCC default
    feats = audio_features(wave, 16000, opts)
    assert feats.shape[1] == opts.dim == 39
    ref = kaldi.mfcc((wave * 32768).reshape(1, -1), num_ceps=13, use_energy=True,
                     dither=0.0, sample_frequency=16000)
    assert torch.allclose(feats[:, :13], ref, atol=1e-3)


def test_resamples_other_rates() -> None:
    wave = _wave()
    down = torch.nn.functional.interpolate(wave[None, None], scale_factor=0.5)[0, 0]
    feats = audio_features(down, 8000, AudioFeatureOptions())
    assert abs(len(feats) - num_frames(len(wave), AudioFeatureOptions())) <= 1


def test_deltas_shape() -> None:
    x = torch.randn(10, 3)
    assert add_deltas(x, 2).shape == (10, 9)
    assert torch.allclose(add_deltas(x, 1)[:, 3:], torch.from_numpy(
        _kaldi_deltas(x.numpy())).float(), atol=1e-5)


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
