"""Self-contained checkpoints: weights, vocabulary, the front-end record, the run's config
and training state in one file, written atomically (temporary file, fsync, rename).

A checkpoint is something users download and share, so reading one must never run code:
every payload holds tensors and plain Python values only and is read with
``torch.load(weights_only=True)``, which refuses pickled objects of any other kind. A
SHA-256 of the contents (``content_hash``), stored beside them, is checked on every load,
so a damaged file (a flipped bit in a weight, a rewritten value) is an error, not a model
that quietly scores worse.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path
from typing import Any

import torch

from recog.atomic import atomic_open
from recog.data.utterance import DataError
from recog.models.ctc import CTCModel, ModelOptions
from recog.tokens import Vocabulary

# The payload layout: 1 = model, model_options, input_dim, vocab, config (+ training state);
# 2 = the same, tensors and plain values only, with a "sha256" of the rest (content_hash);
# 3 = the same plus "front_end", the versioned record of the front end that transcription,
# decoding, fine-tuning and export read (recog.tasks.front_end_record); "config" stays as
# the run's provenance and is read only to migrate layouts 1 and 2
# (recog.tasks.checkpoint_front_end). Layout 1 files are read without an integrity check.
FORMAT_VERSION = 3
_READABLE = (1, 2, 3)
_REQUIRED = ("model", "model_options", "input_dim", "vocab")


def content_hash(payload: dict) -> str:
    """SHA-256 of a payload's contents (the ``sha256`` entry left out): every tensor's dtype,
    shape and bytes, every plain value's type and repr, dict keys in sorted order."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k != "sha256"})
    return h.hexdigest()


def _feed(h: Any, value: object) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        h.update(f"D{len(value)}:".encode())
        for k in sorted(value, key=repr):
            _feed(h, k)
            _feed(h, value[k])
    elif isinstance(value, list | tuple):
        h.update(f"{type(value).__name__[0]}{len(value)}:".encode())
        for v in value:
            _feed(h, v)
    elif value is None or isinstance(value, bool | int | float | str | torch.Size):
        h.update(f"{type(value).__name__}:{value!r};".encode())
    else:  # weights_only could not read it back: refuse to write it
        raise TypeError(f"a checkpoint holds tensors and plain values only, not "
                        f"{type(value).__name__}")


def save_checkpoint(path: str | Path, model: CTCModel, vocab: Vocabulary,
                    config: dict, **state: Any) -> None:
    """Write model + vocabulary + config (+ any training state, tensors and plain values
    only) to ``path`` atomically, with its content hash. The file is serialised in memory
    first, so a full disk is an ``OSError`` naming ``path`` and the old file stays whole."""
    payload = {
        "format_version": FORMAT_VERSION,
        "model": model.state_dict(),
        "model_options": model.options.as_dict(),
        "input_dim": model.input_dim,
        "vocab": list(vocab.tokens),
        "config": config,
        **state,
    }
    payload["sha256"] = content_hash(payload)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_open(path, "wb") as f:
        f.write(buffer.getbuffer())


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
    if not all(torch.isfinite(t).all() for t in model.state_dict().values()
               if t.is_floating_point()):
        raise DataError(path, "checkpoint holds non-finite weights or normalisation "
                        "statistics (NaN or inf): the run that wrote it diverged; use an "
                        "earlier checkpoint or train again with a lower optim.lr")
    return model, vocab, payload


def read_payload(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """The checkpoint's contents, read without running any code it might hold, checked to be
    a whole recog checkpoint of a layout this version reads; anything else is a
    ``DataError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such checkpoint file (recog-train or recog-finetune, a "
                        "recipe's stage 3, writes best.pt)")
    if path.stat().st_size == 0:
        raise DataError(path, "not a readable checkpoint: the file is empty")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        why = _unpickler_reason(e)
        if "global" in why.lower():  # a class or function to call: what runs code
            raise DataError(path, "refused: the file holds pickled objects other than tensors "
                            f"and plain values ({why}), which could run code when loaded (a "
                            "recog checkpoint never does); do not use it") from None
        raise DataError(path, f"not a readable checkpoint (damaged or truncated?): "
                        f"{why}") from None
    except Exception as e:  # zip, torch and OS errors alike
        raise DataError(path, f"not a readable checkpoint (damaged or truncated?): "
                        f"{_first_line(e)}") from None
    if not isinstance(payload, dict) or any(k not in payload for k in _REQUIRED):
        raise DataError(path, "not a recog checkpoint (model, model_options, input_dim, vocab "
                        "expected)")
    version = payload.get("format_version", 1)
    if version not in _READABLE:
        raise DataError(path, f"checkpoint format version {version}; this version of recog "
                        f"reads versions {', '.join(map(str, _READABLE))}")
    # a hash is checked whenever one is there: a damaged "format_version" key must not make
    # a layout-2 file pass for an unhashed layout-1 one
    hashed = version >= 2 or "sha256" in payload
    if hashed and payload.get("sha256") != _hash_or_none(payload):
        raise DataError(path, "checkpoint content does not match its SHA-256 (the file was "
                        "damaged or edited after it was written); use another copy")
    return payload


def _hash_or_none(payload: dict) -> str | None:
    try:
        return content_hash(payload)
    except TypeError:
        return None


def _unpickler_reason(e: BaseException) -> str:
    """The line of torch's weights-only refusal that says what it met (its wording varies:
    a GLOBAL it would not import, or an opcode it could not read)."""
    lines = [ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()]
    for line in lines:
        if "global" in line.lower() and "documentation" not in line:
            return line.rstrip(".")
    if "WeightsUnpickler error:" in str(e):
        rest = str(e).split("WeightsUnpickler error:", 1)[1].strip().splitlines()
        if rest:
            return rest[0].strip()
    return _first_line(e)


def _first_line(e: BaseException) -> str:
    """The exception's type and first sentence (torch's zip reader appends advice)."""
    text = str(e).strip().splitlines()
    first = text[0].split(". ")[0].rstrip(".") if text else "(no message)"
    return f"{type(e).__name__}: {first}"

