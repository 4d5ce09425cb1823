"""Front ends (audio: Kaldi-compatible fbank/MFCC + deltas) and the feature cache."""

from recog.features.audio import AudioFeatureOptions, add_deltas, audio_features
from recog.features.cache import FeatureCache, build_cache, feature_stats

__all__ = [
    "AudioFeatureOptions", "FeatureCache", "add_deltas", "audio_features", "build_cache",
    "feature_stats",
]
