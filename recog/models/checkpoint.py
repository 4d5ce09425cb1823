"""Self-contained checkpoints: weights, vocabulary, resolved config and training state in one
file, written atomically (temporary file, fsync, rename)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from recog.atomic import atomic_open
from recog.data.utterance import DataError
from recog.models.ctc import CTCModel, ModelOptions
from recog.tokens import Vocabulary

# The payload layout: 1 = model, model_options, input_dim, vocab, config (+ training state).
# Checkpoints written before the field existed have layout 1.
FORMAT_VERSION = 1
_REQUIRED = ("model", "model_options", "input_dim", "vocab")


def save_checkpoint(path: str | Path, model: CTCModel, vocab: Vocabulary,
                    config: dict, **state: Any) -> None:
    """Write model + vocabulary + config (+ any training state) to ``path`` atomically."""
    payload = {
        "format_version": FORMAT_VERSION,
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
    payload = read_payload(path, map_location)
    vocab = Vocabulary(tuple(payload["vocab"]))
    try:
        model = CTCModel(payload["input_dim"], len(vocab),
                         ModelOptions.from_dict(payload["model_options"]))
        model.load_state_dict(payload["model"])
    except (TypeError, ValueError, RuntimeError) as e:
        raise DataError(path, f"checkpoint does not fit this version's model: {e}") from None
    return model, vocab, payload


def read_payload(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """The checkpoint's contents, checked to be a recog checkpoint of a layout this version
    reads; anything else is a ``DataError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # pickle, zip and torch errors alike
        raise DataError(path, f"not a readable checkpoint: {e}") from None
    if not isinstance(payload, dict) or any(k not in payload for k in _REQUIRED):
        raise DataError(path, "not a recog checkpoint (model, model_options, input_dim, vocab "
                        "expected)")
    version = payload.get("format_version", 1)
    if version != FORMAT_VERSION:
        raise DataError(path, f"checkpoint format version {version}; this version of recog "
                        f"reads version {FORMAT_VERSION}")
    return payload
