"""The convolutional LSTM of Shi et al. (2015) as a speech front end: it scans time over each
frame's feature maps along the frequency axis (for fbank + deltas: 3 maps x 41 bins).

    i_t = sigmoid(W_i * x_t + U_i * h_{t-1} + V_i o c_{t-1} + b_i)    (* convolution over
    f_t = sigmoid(W_f * x_t + U_f * h_{t-1} + V_f o c_{t-1} + b_f)     frequency, o Hadamard)
    c_t = f_t o c_{t-1} + i_t o tanh(W_c * x_t + U_c * h_{t-1} + b_c)
    o_t = sigmoid(W_o * x_t + U_o * h_{t-1} + V_o o c_t + b_o),   h_t = o_t o tanh(c_t)

The input convolutions of all frames are one call; the recurrence runs over the padded batch
in plain ops (the same code trains, and compiles with TorchScript for export), and outputs
past each length are 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from recog.models.encoder import exporting, scan_time, zero_padding


@dataclass
class ConvLSTMOptions:
    """The ``convlstm`` front end: ``channels`` state maps, kernels ``kernel`` bins wide; each
    input frame is read as ``maps`` maps (static, delta, delta-delta) of dim / maps bins;
    ``maps`` 0 is the features' own blocks, set by recog-train (audio: the delta order + 1;
    pen: 1, the whole vector)."""

    channels: int = 4
    kernel: int = 5
    maps: int = 0


class ConvLSTMFrontEnd(nn.Module):
    """(B, T, maps * F) frames and lengths -> (B, T, channels * F) ConvLSTM outputs."""

    def __init__(self, input_dim: int, options: ConvLSTMOptions):
        super().__init__()
        if options.maps == 0:
            raise ValueError("model.convlstm.maps=0 (the features' own blocks) is set by "
                             "recog-train from the features; a model built directly needs it")
        if options.kernel % 2 == 0 or options.maps < 1 or input_dim % options.maps:
            raise ValueError(f"model.convlstm: kernel must be odd ({options.kernel}) and maps "
                             f"({options.maps}) a divisor of the feature dimension ({input_dim})")
        c, k = options.channels, options.kernel
        self.maps, self.channels, self.bins = options.maps, c, input_dim // options.maps
        self.conv_x = nn.Conv1d(options.maps, 4 * c, k, padding=k // 2)
        self.conv_h = nn.Conv1d(c, 4 * c, k, padding=k // 2, bias=False)
        self.peep = nn.Parameter(torch.empty(3, c, self.bins).uniform_(-0.1, 0.1))  # V_i, V_f, V_o
        self.output_dim = c * self.bins

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        b, t_len, _ = x.shape
        c_, f_ = self.channels, self.bins
        px = self.conv_x(x.reshape(b * t_len, self.maps, f_)).view(b, t_len, 4, c_, f_)
        h = x.new_zeros(b, c_, f_)
        c = x.new_zeros(b, c_, f_)
        if not torch.jit.is_scripting():
            if exporting():  # torch.export: the loop below would be traced at one length
                return zero_padding(self._scan(px, h), lengths).transpose(0, 1)
        outs = []
        for t in range(t_len):  # padding follows each row's frames: it never reaches them
            h, c = self.step(px[:, t], h, c)
            outs.append(h.reshape(b, -1))
        return zero_padding(torch.stack(outs), lengths).transpose(0, 1)

    def step(self, px: torch.Tensor, h: torch.Tensor, c: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame: its input convolutions px (B, 4, channels, bins), h and c -> h, c."""
        a = px + self.conv_h(h).view(px.shape)
        i = torch.sigmoid(a[:, 0] + self.peep[0] * c)
        f = torch.sigmoid(a[:, 1] + self.peep[1] * c)
        c = f * c + i * torch.tanh(a[:, 2])
        return torch.sigmoid(a[:, 3] + self.peep[2] * c) * torch.tanh(c), c

    @torch.jit.unused
    def _scan(self, px: torch.Tensor, zeros: torch.Tensor) -> torch.Tensor:
        """The recurrence under ``scan_time``: (T, B, channels * bins)."""
        return scan_time(self.step, zeros, px.transpose(0, 1)).flatten(2)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """One layer: the convolutions and the peepholes."""
        return [list(self.parameters())]

    def exportable(self, onnx: bool = False) -> nn.Module:
        return self
