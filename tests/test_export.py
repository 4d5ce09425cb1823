"""Exported models (TorchScript, ONNX) give the eager model's log-probs on several lengths,
for every cell and front end; an export that cannot be made is a clear error."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from recog.data.utterance import DataError
from recog.export import PT2_MIN_BATCH, check_equal, export, pt2_runner
from recog.models import CELLS, CTCModel, ModelOptions, save_checkpoint
from recog.models.cells import PeepholeOptions
from recog.models.convlstm import ConvLSTMOptions
from recog.tokens import Vocabulary

LENGTHS = [[31], [31, 12, 5], [40, 39, 7, 1]]
VOCAB = Vocabulary.from_symbols(["a", "b", "c", "d"])
FRONTENDS = ("none", "convlstm")


def _model(cell: str = "lstm", frontend: str = "none", stack: int = 1,
           bidirectional: bool = True) -> CTCModel:
    torch.manual_seed(stack)
    model = CTCModel(6, len(VOCAB), ModelOptions(
        cell=cell, hidden=7, layers=2, stack=stack, bidirectional=bidirectional,
        frontend=frontend, convlstm=ConvLSTMOptions(channels=2, kernel=3, maps=2)))
    model.set_normalization(torch.randn(6), torch.rand(6) + 0.5)
    return model.eval()


def _inputs(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(len(lengths))
    feats = torch.randn(len(lengths), max(lengths), 6)
    for i, n in enumerate(lengths):
        feats[i, n:] = 100.0  # padding must not leak into valid frames
    return feats, torch.tensor(lengths)


def _run_without_recog(tmp_path: Path, load: str, model: Path, lengths: list[int]) -> tuple:
    """(log_probs, lengths) of the exported ``model``, loaded by the expression ``load`` in a
    Python process that never imports recog (which it asserts), on ``_inputs(lengths)``."""
    feats, lens = _inputs(lengths)
    torch.save({"feats": feats, "lens": lens}, tmp_path / "in.pt")
    code = (f"import sys, torch; m = {load}; i = torch.load(sys.argv[2]); "
            "torch.save(m(i['feats'], i['lens']), sys.argv[3]); "
            "assert not any(k.startswith('recog') for k in sys.modules)")
    subprocess.run([sys.executable, "-c", code, str(model), str(tmp_path / "in.pt"),
                    str(tmp_path / "out.pt")], check=True, cwd=tmp_path,
                   env={**os.environ, "PYTHONPATH": ""})
    return torch.load(tmp_path / "out.pt")


def _assert_same(eager: CTCModel, run, lengths: list[int]) -> None:  # noqa: ANN001
    feats, lens = _inputs(lengths)
    with torch.no_grad():
        want, want_lens = eager(feats, lens)
    got, got_lens = run(feats, lens)
    got, got_lens = torch.as_tensor(got), torch.as_tensor(got_lens)
    assert got_lens.tolist() == want_lens.tolist()
    for i, n in enumerate(want_lens.tolist()):
        assert torch.allclose(got[i, :n], want[i, :n], atol=1e-4), (lengths, i)


@pytest.mark.parametrize("onnx", [False, True])
@pytest.mark.parametrize("stack,bidirectional", [(1, True), (3, True), (2, False)])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_scripted_network_matches_eager(cell: str, stack: int, bidirectional: bool,
                                        onnx: bool) -> None:
    """The TorchScript form runs each cell's step equations in plain ops; eager training runs
    the fused autograd.Functions (nn.LSTM: the same code): they agree on ragged batches. The
    ONNX form runs graves, cifg and peephole through ONNX's LSTM equations
    (torch.ops.recog.onnx_lstm's kernel) with the weights rearranged: the same outputs
    again."""
    eager = _model(cell, stack=stack, bidirectional=bidirectional)
    scripted = torch.jit.script(eager.exportable(onnx))
    for lengths in LENGTHS:
        with torch.no_grad():
            _assert_same(eager, scripted, lengths)


@pytest.mark.parametrize("frontend", FRONTENDS)
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_torchscript_and_onnx_exports_match_eager(tmp_path: Path, cell: str,
                                                  frontend: str) -> None:
    eager = _model(cell, frontend, stack=2)
    ckpt = tmp_path / "best.pt"
    save_checkpoint(ckpt, eager, VOCAB, {"features": {"audio": {"kind": "fbank"}}})
    written = export(ckpt, tmp_path / "out", ("torchscript",))
    assert json.loads((tmp_path / "out/tokens.json").read_text()) == list(VOCAB.tokens)
    assert json.loads((tmp_path / "out/front_end.json").read_text())["audio"]["kind"] == "fbank"
    scripted = torch.jit.load(str(tmp_path / "out/model.ts"))
    for lengths in LENGTHS:
        with torch.no_grad():
            _assert_same(eager, scripted, lengths)
    assert tmp_path / "out/model.ts" in written
    pytest.importorskip("onnx")  # the exporter needs onnx (and onnxscript), the test onnxruntime
    ort = pytest.importorskip("onnxruntime")
    assert tmp_path / "out/model.onnx" in export(ckpt, tmp_path / "out", ("onnx",))
    session = ort.InferenceSession(str(tmp_path / "out/model.onnx"))

    def run(feats: torch.Tensor, lens: torch.Tensor) -> tuple:
        return session.run(None, {"feats": feats.numpy(), "lengths": lens.numpy()})

    for lengths in LENGTHS:  # other batch sizes and lengths than the export's
        _assert_same(eager, run, lengths)


@pytest.mark.parametrize("cell,frontend", [  # every cell, the front end behind two (suite time)
    ("lstm", "none"), ("peephole", "convlstm"), ("graves", "none"), ("cifg", "convlstm"),
    ("indy", "none")])
def test_torch_export_program_matches_eager_at_any_batch_and_length(
        tmp_path: Path, cell: str, frontend: str) -> None:
    """model.pt2 (torch.export) of every cell and front end: its recurrences are scan loops,
    so batches and lengths other than the export's give the eager model's log-probs, through
    pt2_runner down to one row of two frames (padded up to the graph's smallest shape)."""
    eager = _model(cell, frontend, stack=2)
    ckpt = tmp_path / "best.pt"
    save_checkpoint(ckpt, eager, VOCAB, {})
    assert tmp_path / "out/model.pt2" in export(ckpt, tmp_path / "out", ("pt2",))
    program = torch.export.load(str(tmp_path / "out/model.pt2"))
    for lengths in [*LENGTHS, [2], [3, 1], [57] * PT2_MIN_BATCH]:
        _assert_same(eager, pt2_runner(program, stack=2), lengths)
    nodes = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert "scan" in nodes and "aten.lstm.input" not in nodes


def test_torch_export_program_loads_without_recog(tmp_path: Path) -> None:
    """model.pt2 needs torch alone: a process that never imports recog loads and runs it on
    a batch of another size and length than the export's."""
    eager = _model("lstm", "convlstm", stack=2)
    ckpt = tmp_path / "best.pt"
    save_checkpoint(ckpt, eager, VOCAB, {})
    export(ckpt, tmp_path / "out", ("pt2",))
    got = _run_without_recog(tmp_path, "torch.export.load(sys.argv[1]).module()",
                             tmp_path / "out/model.pt2", [41, 12, 5, 4])
    _assert_same(eager, lambda f, n: got, [41, 12, 5, 4])


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_onnx_graph_has_one_lstm_operator_per_direction(tmp_path: Path, cell: str) -> None:
    """Every cell's layers are ONNX LSTM operators, no Loop (peephole's: the recurrence of
    c, its output gate outside); the exporter's warning that an LSTM exported at one batch
    size may fail at another is not shown (the export is checked at another batch size)."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    ckpt = tmp_path / "best.pt"
    save_checkpoint(ckpt, _model(cell), VOCAB, {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export(ckpt, tmp_path / "out", ("onnx",))
    assert not [w for w in caught if "batch_size" in str(w.message)]
    ops = [n.op_type for n in onnx.load(str(tmp_path / "out/model.onnx")).graph.node]
    assert ops.count("LSTM") == 2 * 2 and "Loop" not in ops, ops  # 2 layers x 2 directions


def test_peephole_with_identity_sigma_h_exports_equal(tmp_path: Path) -> None:
    """sigma_h = identity (h = o c) takes the same ONNX path as tanh: ORT equals eager."""
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    eager = CTCModel(6, len(VOCAB), ModelOptions(
        cell="peephole", hidden=7, layers=2, peephole=PeepholeOptions(sigma_h="identity")))
    eager.eval()
    ckpt = tmp_path / "best.pt"
    save_checkpoint(ckpt, eager, VOCAB, {})
    export(ckpt, tmp_path / "out", ("onnx",))
    session = ort.InferenceSession(str(tmp_path / "out/model.onnx"))
    for lengths in LENGTHS:
        _assert_same(eager, lambda f, n: session.run(None, {"feats": f.numpy(),
                                                            "lengths": n.numpy()}), lengths)


@pytest.mark.parametrize("cell", ["graves", "cifg"])
def test_torchscript_export_loads_without_recog(tmp_path: Path, cell: str) -> None:
    """model.ts uses torch's own operators only (the ONNX form's recog::onnx_lstm is not in
    it): a process that never imports recog loads and runs it."""
    eager = _model(cell)
    ckpt = tmp_path / "best.pt"
    save_checkpoint(ckpt, eager, VOCAB, {})
    export(ckpt, tmp_path / "out", ("torchscript",))
    got = _run_without_recog(tmp_path, "torch.jit.load(sys.argv[1])",
                             tmp_path / "out/model.ts", [31, 12, 5])
    _assert_same(eager, lambda f, n: got, [31, 12, 5])


def test_an_export_that_differs_is_an_error_naming_the_checkpoint() -> None:
    eager = _model("graves")
    broken = _model("graves")
    with torch.no_grad():
        broken.rnn.layers[0].weight_peep.add_(0.5)  # a kernel that computes something else
    with pytest.raises(DataError, match=r"best.pt: the TorchScript export differs"):
        check_equal(eager, broken, "TorchScript", "best.pt")
    check_equal(eager, eager, "TorchScript", "best.pt")  # and the same model passes


def test_unknown_format_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown export format"):
        export(tmp_path / "x.pt", tmp_path, ("tflite",))


class _Unscriptable(torch.nn.Module):
    def forward(self, *inputs):  # noqa: ANN002, ANN202 (varargs: TorchScript refuses them)
        return inputs


def test_an_export_that_cannot_be_made_exits_2_with_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from recog import cli

    ckpt = tmp_path / "best.pt"
    save_checkpoint(ckpt, _model("graves"), VOCAB, {})
    monkeypatch.setattr(CTCModel, "exportable", lambda self, onnx=False: _Unscriptable())
    monkeypatch.delenv("RECOG_DEBUG", raising=False)
    with pytest.raises(SystemExit) as stop:
        cli.export([str(ckpt), str(tmp_path / "out")])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "best.pt" in err[0] and "TorchScript" in err[0], err
    assert not (tmp_path / "out").exists()


def test_export_benchmark_quick(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "export.json"
    run = subprocess.run([sys.executable, str(root / "scripts/bench/export.py"), "--quick",
                          "--repeats", "2", "--json", str(out)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(root)})
    assert run.returncode == 0, run.stderr[-2000:]
    records = json.loads(out.read_text())
    assert [r["cell"] for r in records] == ["lstm", "peephole", "graves", "cifg", "indy"]
    for r in records:
        assert r["max_abs_diff"] < 1e-4, r  # ONNX Runtime gives the eager log-probs
        assert abs(r["speedup"] - r["eager_ms"] / r["onnxruntime_ms"]) < 0.05 * r["speedup"]
        assert r["pt2_max_abs_diff"] < 1e-4, r  # and so does the torch.export program
        assert abs(r["pt2_speedup"] - r["eager_ms"] / r["pt2_ms"]) < 0.05 * r["pt2_speedup"]
