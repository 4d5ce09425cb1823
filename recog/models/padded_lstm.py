"""The ``lstm`` cell: a (bidirectional, stacked) ``nn.LSTM`` run on the padded batch, each
direction of each layer through torch's fused kernel, the backward one on every sequence
reversed within its length. It computes exactly what nn.LSTM computes over the packed batch,
but through the fused CPU kernel (oneDNN), which packed input cannot use (2-4x faster than
packed on a 2-core CPU), and it compiles with TorchScript and exports to ONNX's ``LSTM``.

On a GPU outside TorchScript the packed path is kept (cuDNN's own variable-length kernel),
and under CPU autocast too (the fused CPU kernel is float32 only): a device detail behind the
same ``forward(x, lengths)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from recog.models.encoder import (
    exporting,
    lstm_update,
    reverse_within,
    scan_time,
    time_index,
    zero_padding,
)

Tensor = torch.Tensor


class LSTMStack(nn.LSTM):
    """nn.LSTM (its parameters and their names) with the encoder protocol of
    recog.models.encoder: (B, T, D) and lengths in, (B, T, directions * hidden) out."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = True, dropout: float = 0.0):
        super().__init__(input_size, hidden_size, num_layers, batch_first=True,
                         bidirectional=bidirectional, dropout=dropout)
        self.output_dim = hidden_size * (2 if bidirectional else 1)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:  # type: ignore[override]
        if not torch.jit.is_scripting():
            if x.is_cuda or torch.is_autocast_enabled("cpu"):  # see the module docstring
                return self._packed(x, lengths)
        directions = 2 if self.bidirectional else 1
        y = x.transpose(0, 1)  # (T, B, D)
        index = time_index(lengths.to(x.device), y.shape[0])
        zeros = y.new_zeros(1, y.shape[1], self.hidden_size)
        w = self._flat_weights
        for layer in range(self.num_layers):
            if layer and self.dropout > 0:
                y = F.dropout(y, self.dropout, self.training)
            outputs = []
            for d in range(directions):
                j = 4 * (directions * layer + d)
                inp = y if d == 0 else reverse_within(y, index)
                h = self._direction(inp, zeros, w[j:j + 4], directions * layer + d)
                outputs.append(h if d == 0 else reverse_within(h, index))
            y = torch.cat(outputs, -1)
        return zero_padding(y, lengths).transpose(0, 1)

    def _direction(self, x: Tensor, zeros: Tensor, weights: list[Tensor], k: int) -> Tensor:
        """One direction of one layer (the ``k``-th) over time-major x: torch's fused kernel,
        or under torch.export (which would trace it at the example's length) ``_scan``."""
        if not torch.jit.is_scripting():
            if exporting():
                return self._scan(x, k)
        return torch.lstm(x, (zeros, zeros), weights, True, 1, 0.0, self.training, False,
                          False)[0]

    @torch.jit.unused
    def _scan(self, x: Tensor, k: int) -> Tensor:
        """nn.LSTM's equations for its ``k``-th layer-direction over time-major x (T, B, in)
        under ``scan_time`` (the weights by their names: torch.export lifts only those)."""
        w_ih, w_hh, b_ih, b_hh = (getattr(self, name) for name in self._all_weights[k])

        def step(g: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
            return lstm_update(g + h @ w_hh.t(), c)

        return scan_time(step, x.new_zeros(x.shape[1], self.hidden_size),
                         F.linear(x, w_ih, b_ih + b_hh))

    @torch.jit.unused
    def _packed(self, x: Tensor, lengths: Tensor) -> Tensor:
        """cuDNN's variable-length path (packed sequences), outside TorchScript."""
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        y, _ = super().forward(packed)
        return pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])[0]

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Each layer's weights and biases, both directions."""
        per_layer = 4 * (2 if self.bidirectional else 1)
        w = list(self._flat_weights)
        return [w[k * per_layer:(k + 1) * per_layer] for k in range(self.num_layers)]

    def exportable(self, onnx: bool = False) -> nn.Module:
        return self
