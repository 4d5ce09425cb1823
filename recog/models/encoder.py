"""The protocol every recurrent stack and front end of recog implements, and the padded,
reversed-within-lengths layout they all run in.

``forward(x, lengths)``: (B, T, D) padded batch-first input and (B,) lengths -> (B, T, out),
zero past each length. ``layer_groups()``: the trainable parameters, one list per layer,
bottom first (what fine-tuning freezes and gives learning rates to). ``exportable()``: the
module as TorchScript can compile it (the same forward with a plain-op kernel where the
training kernel is a custom autograd.Function), for ``recog-export``; ``exportable(onnx=True)``
the form ONNX is exported from (ONNX's LSTM operator for the cells its equations cover).
Under ``torch.export`` (``exporting()``) every recurrence runs as ``scan_time``, one loop node
for any number of frames, where a Python loop or ``torch.lstm`` would be traced at the
example's length.

Layout: a layer's backward direction reads each sequence reversed within its own length, so
in both directions a row's frames come first and its padding after; a recurrence over the
padded tensor therefore never lets padding reach a valid frame, and no packing is needed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import nn

Tensor = torch.Tensor


@runtime_checkable
class Encoder(Protocol):
    """What recog asks of a cell's stack and of a front end."""

    output_dim: int

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """(B, T, D) input, (B,) lengths -> (B, T, output_dim), zero past each length."""
        ...

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Trainable parameters, one list per layer, the input side first."""
        ...

    def exportable(self, onnx: bool = False) -> nn.Module:
        """A module TorchScript compiles, computing what ``forward`` computes; for ``onnx``
        it may call operators meant for ONNX's exporter (recog.models.onnx_lstm)."""
        ...


@torch.jit.unused
def exporting() -> bool:
    """Whether torch.export is tracing the module (never under TorchScript)."""
    return torch.compiler.is_exporting()


@torch.jit.unused
def scan_time(step: Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]], zeros: Tensor,
              xs: Tensor) -> Tensor:
    """h_t of the cell ``step(x_t, h, c) -> (h, c)`` for every x_t along dim 0 of ``xs``,
    stacked, from h = c = ``zeros``, as torch's ``scan`` operator: what torch.export keeps
    as a loop of dynamic length."""
    from torch._higher_order_ops.scan import scan

    def combine(state: tuple[Tensor, Tensor], x: Tensor) -> tuple[tuple[Tensor, Tensor], Tensor]:
        h, c = step(x, *state)
        return (h.clone(), c.clone()), h.clone()  # scan's outputs may not alias

    # distinct tensors: an initial state given twice (h0 = c0 = zeros) would be traced as
    # one input, and the loop body would read c where it reads h
    return scan(combine, (zeros.clone(), zeros.clone()), xs)[1]


def lstm_update(a: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """h, c of the LSTM with forget gates from its gate pre-activations ``a`` = [i, f, g, o]
    along the last dim (nn.LSTM's order) and the previous c."""
    n = c.shape[-1]
    c = torch.sigmoid(a[..., n:2 * n]) * c + torch.sigmoid(a[..., :n]) * torch.tanh(
        a[..., 2 * n:3 * n])
    return torch.sigmoid(a[..., 3 * n:]) * torch.tanh(c), c


def reversal_index(lengths: Tensor, steps: int) -> Tensor:
    """(B, T) index that reverses each row within its length and leaves padding in place;
    applying it twice is the identity."""
    frame = torch.arange(steps, device=lengths.device)[None, :]
    mirrored = lengths[:, None] - 1 - frame
    return torch.where(frame < lengths[:, None], mirrored, frame)


def reverse_within(x: Tensor, index: Tensor) -> Tensor:
    """Time-major (T, B, F) ``x`` with each row reversed within its length (``index`` from
    ``reversal_index``, transposed to (T, B, 1))."""
    return x.gather(0, index.expand(-1, -1, x.shape[2]))


def time_index(lengths: Tensor, steps: int) -> Tensor:
    """``reversal_index`` laid out for time-major (T, B, F) tensors: (T, B, 1)."""
    return reversal_index(lengths, steps).t().unsqueeze(-1)


def zero_padding(y: Tensor, lengths: Tensor) -> Tensor:
    """Time-major (T, B, F) ``y`` with every frame past its row's length set to 0."""
    frame = torch.arange(y.shape[0], device=y.device)[:, None]
    return y.masked_fill((frame >= lengths.to(y.device)[None, :]).unsqueeze(-1), 0.0)
