"""The CTC acoustic model: features in, per-frame log-probabilities over tokens + blank out.

Input normalisation lives in the model (buffers saved with it), so a checkpoint alone turns
features into log-probs. The loss is computed in the training loop, not here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import partial

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from recog.models.cells import PeepholeOptions, StackedRecurrent
from recog.models.convlstm import ConvLSTMFrontEnd, ConvLSTMOptions
from recog.models.padded_lstm import lstm_padded

# model.cell -> recurrent stack class; ``lstm`` is nn.LSTM (cuDNN on GPU), the others are the
# fused cells of recog.models.cells (equations in its docstrings and in the README)
CELLS = {
    "lstm": nn.LSTM,
    "peephole": partial(StackedRecurrent, "peephole"),
    "graves": partial(StackedRecurrent, "graves"),
    "cifg": partial(StackedRecurrent, "cifg"),
}
FRONTENDS = {"convlstm": ConvLSTMFrontEnd}  # model.frontend -> module before frame stacking


@dataclass
class ModelOptions:
    """Shape of the network: ``layers`` BLSTM layers of ``hidden`` cells per direction."""

    cell: str = "lstm"  # lstm | peephole | graves | cifg
    hidden: int = 250
    layers: int = 5
    bidirectional: bool = True
    dropout: float = 0.0
    stack: int = 1  # frames stacked (and the frame rate divided) before the first layer
    frontend: str = "none"  # none | convlstm (scans time over feature maps along frequency)
    # input CMVN: global (the training set's statistics, kept in the model), utterance or
    # speaker (each utterance or speaker normalised by its own frames before the model)
    normalize: str = "global"
    peephole: PeepholeOptions = field(default_factory=PeepholeOptions)
    convlstm: ConvLSTMOptions = field(default_factory=ConvLSTMOptions)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelOptions:
        """Inverse of as_dict (also reads checkpoints written before the options blocks)."""
        d = dict(d)
        for name, kind in (("peephole", PeepholeOptions), ("convlstm", ConvLSTMOptions)):
            if isinstance(d.get(name), dict):
                d[name] = kind(**d[name])
        return cls(**d)


def ctc_min_frames(labels: list[int]) -> int:
    """Frames CTC needs for a label sequence: one per label plus a blank between repeats."""
    return len(labels) + sum(a == b for a, b in zip(labels, labels[1:], strict=False))


def stack_frames(x: torch.Tensor, lengths: torch.Tensor, k: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate each run of ``k`` frames into one: (B, T, D) -> (B, ceil(T/k), k*D)."""
    if k == 1:
        return x, lengths
    b, t, d = x.shape
    # zero what lies past each length, so a partial last group never sees padding values
    x = x * (torch.arange(t, device=x.device)[None, :] < lengths.to(x.device)[:, None])[..., None]
    pad = (-t) % k
    if pad:
        x = torch.nn.functional.pad(x, (0, 0, 0, pad))
    return x.reshape(b, (t + pad) // k, k * d), (lengths + k - 1) // k


class CTCModel(nn.Module):
    """Normaliser -> frame stacking -> stacked (B)LSTM -> linear -> log-softmax."""

    def __init__(self, input_dim: int, vocab_size: int, options: ModelOptions):
        super().__init__()
        if options.cell not in CELLS:
            raise ValueError(f"unknown model.cell {options.cell!r}; known: {sorted(CELLS)}")
        if options.frontend != "none" and options.frontend not in FRONTENDS:
            raise ValueError(f"unknown model.frontend {options.frontend!r}; known: "
                             f"{['none', *sorted(FRONTENDS)]}")
        self.options = options
        self.input_dim, self.vocab_size = input_dim, vocab_size
        self.register_buffer("feat_mean", torch.zeros(input_dim))
        self.register_buffer("feat_std", torch.ones(input_dim))
        self.frontend = (FRONTENDS[options.frontend](input_dim, options.convlstm)
                         if options.frontend != "none" else None)
        frame_dim = self.frontend.output_dim if self.frontend is not None else input_dim
        extra = {"batch_first": True} if options.cell == "lstm" else {"peephole": options.peephole}
        self.rnn = CELLS[options.cell](
            input_size=frame_dim * options.stack,
            hidden_size=options.hidden,
            num_layers=options.layers,
            bidirectional=options.bidirectional,
            dropout=options.dropout if options.layers > 1 else 0.0,
            **extra,
        )
        self.dropout = nn.Dropout(options.dropout)
        self.output = nn.Linear(options.hidden * (2 if options.bidirectional else 1), vocab_size)

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store the training set's feature statistics (applied to every input)."""
        self.feat_mean.copy_(torch.as_tensor(mean))
        self.feat_std.copy_(torch.as_tensor(std).clamp_min(1e-5))

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames for inputs of ``lengths`` frames."""
        return (lengths + self.options.stack - 1) // self.options.stack

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D) padded features and their lengths -> (B, T', V) log-probs, lengths."""
        x = (feats - self.feat_mean) / self.feat_std
        if self.frontend is not None:
            x = self.frontend(x, lengths)
        x, lengths = stack_frames(x, lengths, self.options.stack)
        if not isinstance(self.rnn, nn.LSTM):  # the fused cells take lengths themselves
            y = self.rnn(x, lengths)
        elif x.device.type == "cpu" and not torch.is_autocast_enabled("cpu"):
            y = lstm_padded(self.rnn, x, lengths)  # torch's fused CPU kernel (fp32)
        else:  # packed: cuDNN's own variable-length path on GPUs
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True,
                                          enforce_sorted=False)
            y, _ = self.rnn(packed)
            y, _ = pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
        return self.output(self.dropout(y)).log_softmax(dim=-1), lengths
