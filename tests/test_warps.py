"""Test-time VTLN's averaging (``decode.warps``): the log of the mean posterior, and
``run_model`` averaging the runs over several views of a split, checked against the same
average worked out here in float64 NumPy (the verbs: tests/test_transcribe_options.py and
tests/test_fsdd_recipe_path.py)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from recog.batching import CTCDataset
from recog.data.utterance import Utterance
from recog.evaluate import mean_posterior, run_model
from recog.features.cache import build_cache
from recog.models.ctc import CTCModel, ModelOptions


def _log_mean_exp(runs: list[np.ndarray]) -> np.ndarray:
    """log of the mean probability over runs, by hand in float64."""
    return np.log(np.mean(np.exp(np.stack(runs).astype(np.float64)), axis=0))


def test_mean_posterior_is_the_log_of_the_mean_probability() -> None:
    rng = np.random.default_rng(0)
    runs = [torch.log_softmax(torch.from_numpy(rng.normal(0, 3, (2, 7, 5))), -1).float()
            for _ in range(3)]
    got = mean_posterior(runs)
    assert np.allclose(got.numpy(), _log_mean_exp([r.numpy() for r in runs]), atol=1e-5)
    assert np.allclose(got.exp().sum(-1).numpy(), 1.0, atol=1e-5)  # still a distribution
    assert np.allclose(mean_posterior([runs[0]] * 4).numpy(), runs[0].numpy(), atol=1e-6)


def _dataset(folder: Path, name: str, feats: list[np.ndarray]) -> CTCDataset:
    utts = [Utterance(f"u{k}", "s", f"{folder}/u{k}", ("a",)) for k in range(len(feats))]
    cache = build_cache(utts, lambda u: torch.from_numpy(feats[int(u.id[1:])]), {"n": name},
                        folder, name, False)
    return CTCDataset(cache, [[1] for _ in feats])


def test_run_model_averages_the_warped_runs_utterance_by_utterance(tmp_path: Path) -> None:
    """Each utterance's log-probs are the mean posterior of the model run on each view of
    it alone (no batch, no padding), whatever the batching does."""
    torch.manual_seed(0)
    model = CTCModel(6, 4, ModelOptions(hidden=5, layers=1)).eval()
    rng = np.random.default_rng(1)
    lengths = [9, 4, 12, 7]
    views = [[rng.normal(size=(n, 6)).astype(np.float32) for n in lengths] for _ in range(3)]
    got = {}
    sets = [_dataset(tmp_path, f"view{k}", v) for k, v in enumerate(views)]
    for batch, lp, n in run_model(model, sets[0], 20, torch.device("cpu"), sets[1:]):
        for row, i in enumerate(batch.indices):
            got[i] = lp[row, : int(n[row])].numpy()
    assert sorted(got) == [0, 1, 2, 3]
    with torch.no_grad():
        for i, t in enumerate(lengths):
            alone = [model(torch.from_numpy(v[i])[None], torch.tensor([t]))[0][0].numpy()
                     for v in views]
            assert np.allclose(got[i], _log_mean_exp(alone), atol=1e-5)
    with pytest.raises(ValueError, match="not of the same utterances"):
        next(run_model(model, sets[0], 20, torch.device("cpu"),
                       [_dataset(tmp_path, "short", views[1][:3])]))
