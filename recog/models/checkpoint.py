"""Self-contained checkpoints: weights, vocabulary, resolved config and training state in one
file, written atomically (temporary file, fsync, rename)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from recog.atomic import atomic_open
from recog.data.utterance import DataError
from recog.models.ctc import CTCModel, ModelOptions
from recog.tokens import Vocabulary


def save_checkpoint(path: str | Path, model: CTCModel, vocab: Vocabulary,
                    config: dict, **state: Any) -> None:
    """Write model + vocabulary + config (+ any training state) to ``path`` atomically."""
    payload = {
        "model": model.state_dict(),
        "model_options": model.options.as_dict(),
        "input_dim": model.input_dim,
        "vocab": list(vocab.tokens),
        "config": config,
        **state,
    }
    with atomic_open(path, "wb") as f:
        torch.save(payload, f)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"
                    ) -> tuple[CTCModel, Vocabulary, dict]:
    """Rebuild the model and vocabulary from a checkpoint; also return the raw payload."""
    if not Path(path).is_file():
        raise DataError(path, "no checkpoint (train first)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
        vocab = Vocabulary(tuple(payload["vocab"]))
        model = CTCModel(payload["input_dim"], len(vocab),
                         ModelOptions(**payload["model_options"]))
        model.load_state_dict(payload["model"])
    except (pickle.UnpicklingError, EOFError, RuntimeError, KeyError, TypeError,
            ValueError) as e:
        raise DataError(path, f"not a readable recog checkpoint ({type(e).__name__}: {e})"
                        ) from None
    return model, vocab, payload
