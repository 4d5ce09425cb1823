"""Front ends (audio: Kaldi-compatible fbank/MFCC + deltas; pen: normalised trajectories)
and the feature cache."""

from recog.features.audio import AudioFeatureOptions, add_deltas, audio_features
from recog.features.cache import FeatureCache, build_cache, feature_stats
from recog.features.pen import PenFeatureOptions, normalize_ink, pen_features

__all__ = [
    "AudioFeatureOptions", "FeatureCache", "PenFeatureOptions", "add_deltas",
    "audio_features", "build_cache", "feature_stats", "normalize_ink", "pen_features",
]
