"""Export of a checkpoint's network for serving: torch.export (``model.pt2``), TorchScript and
ONNX, features in, per-frame log-probabilities out, for every cell and front end.

The exported graph is the model's own ``exportable()`` form (recog.models.encoder's
protocol): input normalisation, front end, frame stacking, the recurrent stack (padded, the
backward direction of each layer on every sequence reversed within its length), linear,
log-softmax. ``lstm`` and ``indy`` layers run torch.lstm (ONNX: the ``LSTM`` operator); in
ONNX the other cells are ``LSTM`` operators too (graves' peepholes through its ``P`` input,
cifg's coupled gates through ``input_forget``; ``peephole``, whose gates read c_{t-1} instead
of h_{t-1}, as the operator over c alone with h = c, its output gate one product over all
steps afterwards), in TorchScript loops of their step equations. A
padded batch gives the eager model's log-probs, which the export checks on a ragged batch
before writing anything. Feature extraction stays outside (its options are written to
``front_end.json`` beside the model, the tokens to ``tokens.json``).

torch.export (TorchScript's successor upstream) traces the same forward with every
recurrence as torch's ``scan`` operator (recog.models.encoder.scan_time), so batch and length
stay dynamic. Like every torch.export graph it leaves out the sizes 0 and 1, which its shape
reasoning treats as special: the graph takes at least ``PT2_MIN_BATCH`` rows and
``PT2_MIN_OUT_FRAMES`` output frames, and ``pt2_runner`` pads a smaller batch up to them (the
padding follows each row's frames, so it changes no output).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from recog.atomic import atomic_path, atomic_write_text
from recog.data.utterance import DataError
from recog.models.checkpoint import load_checkpoint
from recog.models.ctc import CTCModel
from recog.models.onnx_lstm import OPSET
from recog.tasks import checkpoint_front_end

FORMATS = ("pt2", "torchscript", "onnx")
PT2_MIN_BATCH, PT2_MIN_OUT_FRAMES = 2, 2  # the smallest (batch, output frames) model.pt2 takes
TOLERANCE = 1e-4  # largest |log-prob| difference from the eager model an export may have

Runner = Callable[[torch.Tensor, torch.Tensor], tuple]


def _first_line(e: Exception) -> str:
    """An exporter's message, first line only (TorchScript's quote the source below it)."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def check_equal(eager: CTCModel, run: Runner, what: str, path: str | Path) -> None:
    """Raise ``DataError`` naming ``path`` unless ``run`` gives ``eager``'s log-probs (to
    ``TOLERANCE``) and output lengths on a ragged batch whose padding holds large values."""
    gen = torch.Generator().manual_seed(0)
    lengths = torch.tensor([29, 17, 3])
    feats = torch.randn(3, 29, eager.input_dim, generator=gen)
    for i, n in enumerate(lengths.tolist()):
        feats[i, n:] = 100.0
    with torch.no_grad():
        want, want_lengths = eager(feats, lengths)
        got, got_lengths = (torch.as_tensor(t) for t in run(feats, lengths))
    if got_lengths.tolist() != want_lengths.tolist():
        raise DataError(path, f"the {what} export gives output lengths {got_lengths.tolist()}, "
                        f"the model {want_lengths.tolist()}")
    diff = max(float((got[i, :n] - want[i, :n]).abs().max())
               for i, n in enumerate(want_lengths.tolist()))
    if diff > TOLERANCE:
        raise DataError(path, f"the {what} export differs from the model by {diff:.2e} "
                        f"(more than {TOLERANCE:g})")


def script(model: CTCModel, checkpoint: str | Path, onnx: bool = False
           ) -> torch.jit.ScriptModule:
    """The model's exportable form (for ``onnx``, the one ONNX is exported from) under
    TorchScript; a failure is a DataError naming ``checkpoint``."""
    try:
        return torch.jit.script(model.exportable(onnx))
    except Exception as e:  # TorchScript's errors have no common base class
        raise DataError(checkpoint, "cannot be compiled with TorchScript: "
                        f"{_first_line(e)}") from None


def export_program(model: CTCModel, checkpoint: str | Path) -> torch.export.ExportedProgram:
    """The model's exportable form under torch.export, batch and frames dynamic (at least
    ``PT2_MIN_BATCH`` rows and ``PT2_MIN_OUT_FRAMES`` output frames); a failure is a
    DataError naming ``checkpoint``."""
    dims = {0: torch.export.Dim.AUTO, 1: torch.export.Dim.AUTO}
    feats = torch.randn(PT2_MIN_BATCH + 1, 9 * model.options.stack + 1, model.input_dim)
    lengths = torch.tensor([feats.shape[1]] * feats.shape[0])
    try:
        with torch.no_grad():
            return torch.export.export(model.exportable(), (feats, lengths),
                                       dynamic_shapes={"feats": dims, "lengths": {0: dims[0]}})
    except Exception as e:  # the exporter's errors have no common base class
        raise DataError(checkpoint, f"cannot be exported with torch.export: "
                        f"{_first_line(e)}") from None


def pt2_runner(program: torch.export.ExportedProgram, stack: int) -> Runner:
    """(feats, lengths) -> (log_probs, out_lengths) through an exported program (of a model
    stacking ``stack`` frames), a batch smaller than the graph's smallest padded up to it."""
    module = program.module()

    def run(feats: torch.Tensor, lengths: torch.Tensor) -> tuple:
        b, t = feats.shape[:2]
        rows, frames = max(b, PT2_MIN_BATCH), max(t, PT2_MIN_OUT_FRAMES * stack)
        x = torch.nn.functional.pad(feats, (0, 0, 0, frames - t, 0, rows - b))
        n = torch.nn.functional.pad(lengths, (0, rows - b), value=frames)
        with torch.no_grad():
            log_probs, out_lengths = module(x, n)
        return log_probs[:b, :(t + stack - 1) // stack], out_lengths[:b]

    return run


def export(checkpoint: str | Path, out_dir: str | Path, formats: tuple[str, ...] = FORMATS
           ) -> list[Path]:
    """Write ``model.pt2`` (torch.export), ``model.ts`` (TorchScript) and/or ``model.onnx``
    with ``tokens.json`` and ``front_end.json`` into ``out_dir``; return the written paths.
    An export that cannot be made, or that does not give the model's outputs, is a
    ``DataError`` naming the file."""
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown export format(s) {sorted(unknown)}; known: {FORMATS}")
    model, vocab, payload = load_checkpoint(checkpoint)
    model.eval()
    scripted = script(model, checkpoint)
    check_equal(model, scripted, "TorchScript", checkpoint)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if "pt2" in formats:
        program = export_program(model, checkpoint)
        check_equal(model, pt2_runner(program, model.options.stack), "torch.export", checkpoint)
        with atomic_path(out / "model.pt2") as tmp:
            torch.export.save(program, str(tmp))
        written.append(out / "model.pt2")
    if "torchscript" in formats:
        with atomic_path(out / "model.ts") as tmp:
            scripted.save(str(tmp))
        written.append(out / "model.ts")
    if "onnx" in formats:
        with atomic_path(out / "model.onnx") as tmp:
            export_onnx(model, tmp, checkpoint)
        written.append(out / "model.onnx")
    atomic_write_text(out / "tokens.json", json.dumps(list(vocab.tokens), ensure_ascii=False))
    try:
        front_end = checkpoint_front_end(payload, checkpoint)
    except DataError:  # a bare checkpoint: nothing to say of its features
        front_end = {}
    atomic_write_text(out / "front_end.json", json.dumps(front_end, indent=1))
    return written + [out / "tokens.json", out / "front_end.json"]


def export_onnx(model: CTCModel, path: str | Path, checkpoint: str | Path,
                threads: int | None = None) -> object | None:
    """ONNX graph of ``model`` (from its ONNX form under TorchScript, so the loops that
    remain stay loops) with dynamic batch and length: inputs ``feats`` (B, T, D) float32
    and ``lengths`` (B,) int64; outputs ``log_probs`` and ``out_lengths``. Checked against
    the model with ONNX Runtime where it is installed; returns that session (on the CPU with
    ``threads`` intra-op threads, or ONNX Runtime's defaults), or None without onnxruntime."""
    scripted = script(model, checkpoint, onnx=True)
    feats, lengths = torch.randn(2, 23, model.input_dim), torch.tensor([23, 17])
    try:
        with warnings.catch_warnings():
            # the exporter warns that an LSTM exported at batch 2 may fail at another batch
            # size unless h0/c0 are inputs: here they are zeros sized from the batch inside the
            # graph, and check_equal below runs the graph on a ragged batch of 3
            warnings.filterwarnings("ignore", "Exporting a model to ONNX with a batch_size",
                                    UserWarning)
            torch.onnx.export(
                scripted, (feats, lengths), str(path), input_names=["feats", "lengths"],
                output_names=["log_probs", "out_lengths"], dynamo=False,
                dynamic_axes={"feats": {0: "batch", 1: "frames"}, "lengths": {0: "batch"},
                              "log_probs": {0: "batch", 1: "out_frames"},
                              "out_lengths": {0: "batch"}},
                opset_version=OPSET)  # the opset recog's own ONNX operator is registered for
    except ImportError as e:
        raise DataError(checkpoint, f"ONNX export needs the onnx package ({e}); "
                        "pip install onnx, or --format torchscript") from None
    except Exception as e:  # the exporter's errors have no common base class
        raise DataError(checkpoint, f"cannot be exported to ONNX: {_first_line(e)}") from None
    try:
        import onnxruntime
    except ImportError:
        return None
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = onnxruntime.InferenceSession(
        str(path), options, providers=["CPUExecutionProvider"] if threads else None)

    def run(x: torch.Tensor, n: torch.Tensor) -> tuple:
        return tuple(session.run(None, {"feats": x.numpy(), "lengths": n.numpy()}))

    check_equal(model, run, "ONNX", checkpoint)
    return session


def onnx_runner(model: CTCModel, checkpoint: str | Path, threads: int | None = None) -> Runner:
    """The model's network as ONNX Runtime runs it: exported as ``recog-export`` does (into a
    scratch folder; the export is checked against the model first), then the checking CPU
    session of ``threads`` intra-op threads (torch's count by default) as a (feats, lengths)
    -> (log_probs, out_lengths) tensor function, what ``recog-transcribe --runtime onnx``
    runs."""
    try:
        import onnxruntime  # noqa: F401 - export_onnx checks only where it is installed
    except ImportError:
        raise DataError(checkpoint, "--runtime onnx needs onnxruntime: pip install "
                        "'recog[onnx]' (or onnxruntime)") from None
    model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        session = export_onnx(model, Path(tmp) / "model.onnx", checkpoint,
                              threads or torch.get_num_threads())

    def run(feats: torch.Tensor, lengths: torch.Tensor) -> tuple:
        log_probs, out_lengths = session.run(None, {"feats": feats.cpu().numpy(),
                                                    "lengths": lengths.cpu().numpy()})
        return torch.from_numpy(log_probs), torch.from_numpy(out_lengths)

    return run
