"""The padded-batch LSTM equals nn.LSTM over the packed batch (outputs and gradients)."""

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from recog.models.encoder import reversal_index
from recog.models.padded_lstm import LSTMStack


def test_reversal_index_reverses_within_each_length() -> None:
    index = reversal_index(torch.tensor([3, 1, 4]), 4)
    assert index.tolist() == [[2, 1, 0, 3], [0, 1, 2, 3], [3, 2, 1, 0]]


@pytest.mark.parametrize("layers,bidirectional", [(1, False), (3, True)])
def test_padded_equals_packed(layers: int, bidirectional: bool) -> None:
    torch.manual_seed(0)
    rnn = LSTMStack(5, 7, layers, bidirectional=bidirectional)
    lengths = torch.tensor([9, 4, 1, 7])
    x = torch.randn(4, 9, 5) * (torch.arange(9)[None, :] < lengths[:, None])[..., None]
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    want, _ = pad_packed_sequence(torch.nn.LSTM.forward(rnn, packed)[0], batch_first=True,
                                  total_length=9)  # nn.LSTM's own packed computation
    got = rnn(x, lengths)
    assert torch.allclose(got, want, atol=1e-6)
    weights = torch.randn_like(want)  # a loss that weighs every output differently
    g_want = torch.autograd.grad((want * weights).sum(), list(rnn.parameters()))
    g_got = torch.autograd.grad((got * weights).sum(), list(rnn.parameters()))
    for a, b in zip(g_want, g_got, strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    scripted = torch.jit.script(rnn)  # the export form runs the same code
    assert torch.allclose(scripted(x, lengths), want, atol=1e-6)
