"""Checkpoints of the previous layout (format 2: the training run's whole config, no
front-end record) still load, through the one migration (recog.tasks.checkpoint_front_end).

The two fixtures in tests/fixtures/checkpoints/ were written by recog at commit 243db97
(format 2) with ``save_checkpoint``: a 1-layer, 4-unit BLSTM over the default 123-dim
filterbanks and the 61 TIMIT phones (``timit_format2.pt``), and one over the default pen
features and 27 characters (``ink_format2.pt``), each with the resolved config of a run on
TIMIT / IAM-OnDB. They are not regenerated: they are what older files look like."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from recog.features.audio import AudioFeatureOptions
from recog.features.pen import PenFeatureOptions
from recog.models.checkpoint import read_payload
from recog.tasks import checkpoint_front_end, task_of_record
from recog.transcribe import Transcriber

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints"


def test_a_format_2_speech_checkpoint_migrates_to_the_record_a_new_one_holds() -> None:
    path = FIXTURES / "timit_format2.pt"
    payload = read_payload(path)
    assert payload["format_version"] == 2 and "front_end" not in payload
    record = checkpoint_front_end(payload, path)
    # what the format-2 config says, written out by hand
    assert record == {"version": 1, "modality": "speech", "task": "timit", "phone_set": 61,
                      "audio": AudioFeatureOptions().as_dict(), "token_kind": "phones",
                      "metrics": ["PER"], "selection": "PER"}
    task = task_of_record(record, path)
    assert task.phone_set == 61 and task.features == AudioFeatureOptions()


def test_a_format_2_checkpoint_still_transcribes(tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    sf.write(wav, np.random.default_rng(0).normal(0, 0.1, 8000).astype(np.float32), 16000)
    out = Transcriber.load(FIXTURES / "timit_format2.pt")([wav])
    assert out[0]["file"] == str(wav) and set(out[0]["tokens"]) <= set(
        Transcriber.load(FIXTURES / "timit_format2.pt").vocab.tokens[1:])


def test_a_format_2_ink_checkpoint_migrates(tmp_path: Path) -> None:
    path = FIXTURES / "ink_format2.pt"
    record = checkpoint_front_end(read_payload(path), path)
    assert (record["modality"], record["task"], record["token_kind"]) == ("ink", "ink", "chars")
    assert record["pen"] == PenFeatureOptions().as_dict() and "audio" not in record
    strokes = tmp_path / "l.json"
    strokes.write_text('{"strokes": [[[0, 0, 0], [1, 2, 0.01], [2, 4, 0.02]], '
                       '[[5, 0, 0.3], [5, 4, 0.31]]]}')
    assert Transcriber.load(path)([strokes])[0]["file"] == str(strokes)


def test_a_new_checkpoint_needs_no_config_only_its_record(tmp_path: Path) -> None:
    from recog.models import save_checkpoint
    from recog.models.checkpoint import load_checkpoint

    model, vocab, payload = load_checkpoint(FIXTURES / "timit_format2.pt")
    record = checkpoint_front_end(payload, "x")
    bare = tmp_path / "bare.pt"
    save_checkpoint(bare, model, vocab, {}, front_end=record)  # no config at all
    assert read_payload(bare)["format_version"] == 3
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(4000, dtype=np.float32), 16000)
    new, old = (Transcriber.load(p)([wav])[0]["tokens"] for p in
                (bare, FIXTURES / "timit_format2.pt"))
    assert new == old
