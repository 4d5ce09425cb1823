"""Self-contained checkpoints: weights, vocabulary, resolved config and training state in one
file, written atomically (temporary file, fsync, rename)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from recog.models.ctc import CTCModel, ModelOptions
from recog.tokens import Vocabulary


def save_checkpoint(path: str | Path, model: CTCModel, vocab: Vocabulary,
                    config: dict, **state: Any) -> None:
    """Write model + vocabulary + config (+ any training state) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": model.state_dict(),
        "model_options": model.options.as_dict(),
        "input_dim": model.input_dim,
        "vocab": list(vocab.tokens),
        "config": config,
        **state,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"
                    ) -> tuple[CTCModel, Vocabulary, dict]:
    """Rebuild the model and vocabulary from a checkpoint; also return the raw payload."""
    payload = torch.load(path, map_location=map_location, weights_only=False)
    vocab = Vocabulary(tuple(payload["vocab"]))
    options = ModelOptions.from_dict(payload["model_options"])
    model = CTCModel(payload["input_dim"], len(vocab), options)
    model.load_state_dict(payload["model"])
    return model, vocab, payload
