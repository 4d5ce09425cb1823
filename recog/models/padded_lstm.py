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

from recog.models.encoder import reverse_within, time_index, zero_padding

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
                h = torch.lstm(inp, (zeros, zeros), w[j:j + 4], True, 1, 0.0, self.training,
                               False, False)[0]
                outputs.append(h if d == 0 else reverse_within(h, index))
            y = torch.cat(outputs, -1)
        return zero_padding(y, lengths).transpose(0, 1)

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
