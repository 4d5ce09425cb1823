"""The CTC acoustic model: features in, per-frame log-probabilities over tokens + blank out.

Input normalisation lives in the model (buffers saved with it), so a checkpoint alone turns
features into log-probs. The loss is computed in the training loop, not here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial

import torch
from torch import nn

from recog.models.cells import LAYERS, PeepholeOptions, StackedRecurrent
from recog.models.convlstm import ConvLSTMFrontEnd, ConvLSTMOptions
from recog.models.padded_lstm import LSTMStack


# model.cell -> recurrent stack (recog.models.encoder's protocol); ``lstm`` is nn.LSTM
# (cuDNN on GPU), the others the fused cells of recog.models.cells (equations in its
# docstrings and in the README)
class _Cells(Mapping):
    """``lstm`` and every layer of ``LAYERS`` (read when asked, so one line in LAYERS is
    all a new cell needs)."""

    def __getitem__(self, cell: str) -> Callable[..., nn.Module]:
        if cell == "lstm":
            return LSTMStack
        if cell not in LAYERS:
            raise KeyError(cell)
        return partial(StackedRecurrent, cell)

    def __iter__(self) -> Iterator[str]:
        return iter(["lstm", *LAYERS])

    def __len__(self) -> int:
        return 1 + len(LAYERS)


CELLS: Mapping[str, Callable[..., nn.Module]] = _Cells()
FRONTENDS = {"convlstm": ConvLSTMFrontEnd}  # model.frontend -> module before frame stacking


@dataclass
class ModelOptions:
    """Shape of the network: ``layers`` BLSTM layers of ``hidden`` cells per direction."""

    cell: str = "lstm"  # lstm | peephole | graves | cifg | indy
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
    # padded to a multiple of k, by 0 frames too (torch.export must not branch on the length)
    pad = (k - t % k) % k
    x = torch.nn.functional.pad(x, (0, 0, 0, pad))
    return x.reshape(b, (t + pad) // k, k * d), torch.div(lengths + k - 1, k,
                                                            rounding_mode="floor")


class CTCModel(nn.Module):
    """Normaliser -> front end -> frame stacking -> stacked (B)LSTM -> linear -> log-softmax.

    Its parts are encoders of recog.models.encoder's protocol; ``parts()`` gives their
    layer groups and ``exportable()`` the TorchScript-compilable form, so nothing outside
    recog.models needs to know a parameter's name."""

    __jit_ignored_attributes__ = ["options"]

    def __init__(self, input_dim: int, vocab_size: int, options: ModelOptions):
        super().__init__()
        for key, value in (("hidden", options.hidden), ("layers", options.layers),
                           ("stack", options.stack)):
            if value < 1:
                raise ValueError(f"model.{key} must be >= 1, not {value}")
        if not 0 <= options.dropout < 1:
            raise ValueError(f"model.dropout is a probability in [0, 1), not {options.dropout}")
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
        extra = {} if options.cell == "lstm" else {"peephole": options.peephole}
        self.rnn = CELLS[options.cell](
            input_size=frame_dim * options.stack,
            hidden_size=options.hidden,
            num_layers=options.layers,
            bidirectional=options.bidirectional,
            dropout=options.dropout if options.layers > 1 else 0.0,
            **extra,
        )
        self.stack = options.stack
        self.dropout = nn.Dropout(options.dropout)
        self.output = nn.Linear(self.rnn.output_dim, vocab_size)

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
        x, lengths = stack_frames(x, lengths, self.stack)
        y = self.rnn(x, lengths)
        return self.output(self.dropout(y)).log_softmax(dim=-1), lengths

    def parts(self) -> dict[str, list[list[nn.Parameter]]]:
        """The trainable parameters by part, each a list of layers from the input side:
        ``frontend`` (only with one), ``encoder`` (the recurrent layers) and ``output``."""
        parts = {"frontend": self.frontend.layer_groups()} if self.frontend is not None else {}
        return {**parts, "encoder": self.rnn.layer_groups(),
                "output": [list(self.output.parameters())]}

    def resize_output(self, rows: Sequence[int | None]) -> CTCModel:
        """A copy over ``len(rows)`` tokens: output row i is this model's row ``rows[i]``, or
        freshly initialised (from torch's global generator) where it is None; the rest of the
        network is copied unchanged."""
        out = CTCModel(self.input_dim, len(rows), self.options)
        out.load_state_dict({k: v for k, v in self.state_dict().items()
                             if not k.startswith("output.")}, strict=False)
        with torch.no_grad():
            for i, j in enumerate(rows):
                if j is not None:
                    out.output.weight[i] = self.output.weight[j]
                    out.output.bias[i] = self.output.bias[j]
        return out

    def exportable(self, onnx: bool = False) -> nn.Module:
        """An inference copy TorchScript compiles (for ``onnx``, the form ONNX exports from):
        features and lengths in, log-probs and output lengths out, the normalisation inside."""
        net = copy.deepcopy(self).eval()
        net.rnn = net.rnn.exportable(onnx)
        if net.frontend is not None:
            net.frontend = net.frontend.exportable(onnx)
        return net
