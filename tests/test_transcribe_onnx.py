"""recog-transcribe --runtime onnx|pt2: every cell's network run by ONNX Runtime over its
export, or as its torch.export program, transcribes as PyTorch does (the same tokens, scores
within 1e-4 per frame), through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from recog.cli import transcribe
from recog.features.audio import AudioFeatureOptions
from recog.models import ConvLSTMOptions, CTCModel, ModelOptions, save_checkpoint
from recog.models.cells import LAYERS
from recog.tasks import TimitTask, front_end_record
from recog.tokens import timit_vocabulary

pytest.importorskip("onnxruntime")

CASES = [(cell, "none") for cell in ["lstm", *sorted(LAYERS)]] + [("cifg", "convlstm")]


def _run(capsys: pytest.CaptureFixture, *argv: str) -> list[dict]:
    transcribe([*argv, "--json"])
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("cell,frontend,runtime", [(*c, "onnx") for c in CASES] + [
    ("lstm", "none", "pt2"), ("cifg", "convlstm", "pt2")])  # pt2: every cell in test_export
def test_onnx_runtime_transcribes_as_pytorch(tmp_path: Path, capsys: pytest.CaptureFixture,
                                             cell: str, frontend: str, runtime: str) -> None:
    torch.manual_seed(0)
    features = AudioFeatureOptions()
    vocab = timit_vocabulary(61)
    model = CTCModel(features.dim, len(vocab), ModelOptions(
        cell=cell, hidden=6, layers=2, frontend=frontend, stack=2,
        convlstm=ConvLSTMOptions(maps=features.delta_order + 1)))
    ckpt = tmp_path / "best.pt"
    save_checkpoint(ckpt, model, vocab, {}, front_end=front_end_record(TimitTask(61, features)))
    rng = np.random.default_rng(0)
    wavs, out_frames = [], []
    for k, seconds in enumerate((0.4, 1.1, 0.7)):  # a ragged batch
        wavs.append(tmp_path / f"u{k}.wav")
        sf.write(wavs[-1], rng.normal(0, 0.1, int(16000 * seconds)).astype(np.float32), 16000)
        out_frames.append(int(100 * seconds) // 2 + 1)  # 10 ms frames, stacked by 2
    eager = _run(capsys, str(ckpt), *map(str, wavs))
    onnx = _run(capsys, str(ckpt), *map(str, wavs), "--runtime", runtime)
    assert [r["tokens"] for r in onnx] == [r["tokens"] for r in eager]
    assert any(r["tokens"] for r in eager)  # something was recognised, and compared
    for a, b, n in zip(eager, onnx, out_frames, strict=True):  # the best path's log-prob:
        assert abs(a["score"] - b["score"]) <= 1e-4 * n  # a sum of one per output frame


def test_the_transcription_benchmark_compares_both_runtimes_on_every_cell(tmp_path: Path
                                                                           ) -> None:
    from tests.bench_run import quick_bench

    records, stdout = quick_bench("transcribe.py", tmp_path)
    assert [r["cell"] for r in records] == [c for c, f in CASES if f == "none"]
    for r in records:  # both timed on the same files; the same transcriptions
        assert r["eager_rtf"] > 0 and r["onnxruntime_rtf"] > 0
        assert r["same_tokens"] == f"{r['files']}/{r['files']}"
        assert r["speedup"] == pytest.approx(r["eager_rtf"] / r["onnxruntime_rtf"], rel=1e-2)
    assert "speed-up" in stdout
