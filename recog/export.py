"""Export of a checkpoint's network for serving: TorchScript and ONNX, features in, per-frame
log-probabilities out.

The exported graph is the model's front-end adapters (input normalisation, frame stacking)
and encoder (BLSTM stack, linear, log-softmax). Packed sequences do not export, so each
direction of each layer runs as its own one-layer LSTM, the backward one on every sequence
reversed within its length: padding never reaches a valid frame, and a padded batch gives
the eager model's log-probs. Feature extraction stays outside (its options are written to
``front_end.json`` beside the model, the tokens to ``tokens.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from recog.atomic import atomic_path
from recog.data.utterance import atomic_write_text
from recog.models.checkpoint import load_checkpoint
from recog.models.ctc import CTCModel
from recog.models.padded_lstm import reversal_index

FORMATS = ("torchscript", "onnx")


class _Direction(nn.Module):
    """One layer of one or both directions; the backward one reads each sequence reversed
    within its length (``index``) and writes its outputs back in time order."""

    def __init__(self, forward: nn.LSTM, backward: nn.LSTM | None):
        super().__init__()
        self.fwd = forward
        self.bwd = backward if backward is not None else nn.Identity()
        self.bidirectional = backward is not None

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        y, _ = self.fwd(x)
        if not self.bidirectional:
            return y
        flipped = torch.gather(x, 1, index[..., None].expand(-1, -1, x.shape[2]))
        z, _ = self.bwd(flipped)
        z = torch.gather(z, 1, index[..., None].expand(-1, -1, z.shape[2]))
        return torch.cat([y, z], dim=2)


def _one_layer(model: CTCModel, layer: int, suffix: str, width: int) -> nn.LSTM:
    lstm = nn.LSTM(width, model.options.hidden, batch_first=True)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(lstm, f"{name}_l0").copy_(getattr(model.rnn, f"{name}_l{layer}{suffix}"))
    return lstm


class ExportableCTC(nn.Module):
    """A ``CTCModel`` rewritten without packed sequences (same weights, same outputs)."""

    def __init__(self, model: CTCModel):
        super().__init__()
        o = model.options
        self.stack = o.stack
        self.register_buffer("feat_mean", model.feat_mean.detach().clone())
        self.register_buffer("feat_std", model.feat_std.detach().clone())
        layers = []
        width = model.input_dim * o.stack
        for layer in range(o.layers):
            backward = _one_layer(model, layer, "_reverse", width) if o.bidirectional else None
            layers.append(_Direction(_one_layer(model, layer, "", width), backward))
            width = o.hidden * (2 if o.bidirectional else 1)
        self.layers = nn.ModuleList(layers)
        self.output = nn.Linear(width, model.vocab_size)
        self.output.load_state_dict(model.output.state_dict())

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D) features and (B,) lengths -> (B, T', V) log-probs and (B,) lengths."""
        x = (feats - self.feat_mean) / self.feat_std
        b, t, d = x.shape
        k = self.stack
        valid = torch.arange(t, device=x.device)[None, :] < lengths[:, None]
        x = x * valid[..., None].to(x.dtype)
        pad = (k - t % k) % k
        x = torch.nn.functional.pad(x, (0, 0, 0, pad))
        x = x.reshape(b, (t + pad) // k, k * d)
        lengths = torch.div(lengths + k - 1, k, rounding_mode="floor")
        index = reversal_index(lengths, x.shape[1])
        for layer in self.layers:
            x = layer(x, index)
        return self.output(x).log_softmax(dim=-1), lengths


def export(checkpoint: str | Path, out_dir: str | Path, formats: tuple[str, ...] = FORMATS
           ) -> list[Path]:
    """Write ``model.ts`` (TorchScript) and/or ``model.onnx`` with ``tokens.json`` and
    ``front_end.json`` into ``out_dir``; return the written paths."""
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown export format(s) {sorted(unknown)}; known: {FORMATS}")
    model, vocab, payload = load_checkpoint(checkpoint)
    net = ExportableCTC(model.eval()).eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if "torchscript" in formats:
        scripted = torch.jit.script(net)
        with atomic_path(out / "model.ts") as tmp:
            scripted.save(str(tmp))
        written.append(out / "model.ts")
    if "onnx" in formats:
        with atomic_path(out / "model.onnx") as tmp:
            export_onnx(net, model.input_dim, tmp)
        written.append(out / "model.onnx")
    atomic_write_text(out / "tokens.json", json.dumps(list(vocab.tokens), ensure_ascii=False))
    features = (payload.get("config") or {}).get("features", {})
    atomic_write_text(out / "front_end.json", json.dumps(features, indent=1))
    return written + [out / "tokens.json", out / "front_end.json"]


def export_onnx(net: ExportableCTC, input_dim: int, path: str | Path) -> None:
    """ONNX graph with dynamic batch and length: inputs ``feats`` (B, T, D) float32 and
    ``lengths`` (B,) int64; outputs ``log_probs`` and ``out_lengths``."""
    feats = torch.randn(2, 23, input_dim)
    lengths = torch.tensor([23, 17])
    torch.onnx.export(
        net, (feats, lengths), str(path), input_names=["feats", "lengths"],
        output_names=["log_probs", "out_lengths"], dynamo=False,
        dynamic_axes={"feats": {0: "batch", 1: "frames"}, "lengths": {0: "batch"},
                      "log_probs": {0: "batch", 1: "out_frames"}, "out_lengths": {0: "batch"}},
        opset_version=17)
