"""The LSTM cells: each step against a NumPy computation of its equations (the fused training
kernel and the TorchScript step alike), float64 gradient checks of the hand-written
backwards, the error carousel, and padding invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from recog.models import (
    CELLS,
    CTCModel,
    Encoder,
    ModelOptions,
    gemm,
    load_checkpoint,
    save_checkpoint,
)
from recog.models.cells import PeepholeOptions, StackedRecurrent
from recog.models.convlstm import ConvLSTMFrontEnd, ConvLSTMOptions
from recog.tokens import Vocabulary

FUSED = ("peephole", "graves", "cifg", "indy")
# gate blocks of each cell's input projection, in the order the implementation keeps them
ORDER = {"lstm": "ifgo", "graves": "ifgo", "peephole": "ifog", "cifg": "ofg", "indy": "ifgo"}


def sig(a: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-a))


def numpy_steps(cell: str, w: dict, xs: np.ndarray, sigma_h=np.tanh) -> np.ndarray:
    """The issue's equations, step by step, for one sequence xs (T, D); returns h (T, H)."""
    n = w["b_f"].shape[0]
    h, c, out = np.zeros(n), np.zeros(n), []
    for x in xs:
        def a(g: str, rec: np.ndarray, x: np.ndarray = x) -> np.ndarray:
            return w[f"W_{g}"] @ x + w[f"U_{g}"] @ rec + w[f"b_{g}"]
        if cell == "lstm":
            i, f, o = sig(a("i", h)), sig(a("f", h)), sig(a("o", h))
            c = f * c + i * np.tanh(a("g", h))
            h = o * np.tanh(c)
        elif cell == "peephole":  # gates read c_{t-1} instead of h_{t-1}
            i, f, o = sig(a("i", c)), sig(a("f", c)), sig(a("o", c))
            c = f * c + i * np.tanh(w["W_g"] @ x + w["b_g"])
            h = o * sigma_h(c)
        elif cell == "graves":  # i, f peek at c_{t-1}, o at c_t
            i = sig(a("i", h) + w["p_i"] * c)
            f = sig(a("f", h) + w["p_f"] * c)
            c = f * c + i * np.tanh(a("g", h))
            h = sig(a("o", h) + w["p_o"] * c) * np.tanh(c)
        elif cell == "indy":  # diagonal recurrence: each unit reads only its own h_{t-1}
            z = {g: w[f"W_{g}"] @ x + w[f"u_{g}"] * h + w[f"b_{g}"] for g in "ifgo"}
            c = sig(z["f"]) * c + sig(z["i"]) * np.tanh(z["g"])
            h = sig(z["o"]) * np.tanh(c)
        elif cell == "cifg":  # i = 1 - f
            f, o = sig(a("f", h)), sig(a("o", h))
            c = f * c + (1 - f) * np.tanh(a("g", h))
            h = o * np.tanh(c)
        out.append(h)
    return np.stack(out)


def random_weights(cell: str, d: int, n: int, rng: np.random.Generator) -> dict:
    w = {}
    for g in ORDER[cell]:
        w[f"W_{g}"], w[f"U_{g}"] = rng.normal(0, 0.6, (n, d)), rng.normal(0, 0.6, (n, n))
        w[f"b_{g}"] = rng.normal(0, 0.3, n)
        w[f"u_{g}"] = rng.normal(0, 0.6, n)  # indy's diagonal recurrent weights
    for g in "ifo":
        w[f"p_{g}"] = rng.normal(0, 0.6, n)
    return w


def load(module: nn.Module, cell: str, w: dict) -> None:
    """Write article-form weights into the module's own layout."""
    order = ORDER[cell]
    t = {k: torch.from_numpy(v) for k, v in w.items()}
    with torch.no_grad():
        if cell == "lstm":
            module.weight_ih_l0.copy_(torch.cat([t[f"W_{g}"] for g in order]))
            module.weight_hh_l0.copy_(torch.cat([t[f"U_{g}"] for g in order]))
            module.bias_ih_l0.copy_(torch.cat([t[f"b_{g}"] for g in order]))
            module.bias_hh_l0.zero_()
            return
        layer = module.layers[0]
        layer.weight_ih[0].copy_(torch.cat([t[f"W_{g}"] for g in order]).T)
        layer.bias[0].copy_(torch.cat([t[f"b_{g}"] for g in order]))
        recurrent = order.replace("g", "") if cell == "peephole" else order
        if cell == "indy":
            layer.weight_hh[0].copy_(torch.stack([t[f"u_{g}"] for g in order]))
        else:
            layer.weight_hh[0].copy_(torch.cat([t[f"U_{g}"] for g in recurrent]).T)
        if cell == "graves":
            layer.weight_peep[0].copy_(torch.stack([t["p_i"], t["p_f"], t["p_o"]]))


def make(cell: str, d: int, n: int, layers: int = 1, bidirectional: bool = False,
         sigma_h: str = "tanh") -> nn.Module:
    if cell == "lstm":
        return nn.LSTM(d, n, layers, batch_first=True, bidirectional=bidirectional).double()
    return StackedRecurrent(cell, d, n, layers, bidirectional,
                            peephole=PeepholeOptions(sigma_h)).double()


def run(module: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    if isinstance(module, nn.LSTM):
        return module(x)[0]
    return module(x, lengths)


@pytest.mark.parametrize("cell,sigma_h", [("lstm", "tanh"), ("peephole", "tanh"),
                                          ("peephole", "identity"), ("graves", "tanh"),
                                          ("cifg", "tanh"), ("indy", "tanh")])
def test_steps_equal_numpy_equations(cell: str, sigma_h: str) -> None:
    rng = np.random.default_rng(0)
    d, n, t = 3, 4, 5
    w = random_weights(cell, d, n, rng)
    module = make(cell, d, n, sigma_h=sigma_h)
    load(module, cell, w)
    xs = rng.normal(size=(t, d))
    got = run(module, torch.from_numpy(xs)[None], torch.tensor([t]))[0].detach().numpy()
    want = numpy_steps(cell, w, xs, np.tanh if sigma_h == "tanh" else (lambda c: c))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    if cell != "lstm":  # the export form: the layer's step equations under TorchScript
        scripted = torch.jit.script(module)
        got = scripted(torch.from_numpy(xs)[None], torch.tensor([t]))[0].detach().numpy()
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_convlstm_steps_equal_numpy_equations() -> None:
    torch.manual_seed(0)
    opts = ConvLSTMOptions(channels=2, kernel=3, maps=2)
    front = ConvLSTMFrontEnd(2 * 5, opts).double()
    x = torch.randn(1, 4, 10, dtype=torch.float64)
    got = front(x, torch.tensor([4]))[0].detach().numpy()
    wx, bx = front.conv_x.weight.detach().numpy(), front.conv_x.bias.detach().numpy()
    wh, v = front.conv_h.weight.detach().numpy(), front.peep.detach().numpy()

    def conv(w: np.ndarray, m: np.ndarray) -> np.ndarray:  # 'same' cross-correlation
        k = w.shape[2]
        mp = np.pad(m, ((0, 0), (k // 2, k // 2)))
        return np.stack([sum(np.correlate(mp[ci], w[co, ci], "valid")
                             for ci in range(m.shape[0])) for co in range(w.shape[0])])

    h, c = np.zeros((2, 5)), np.zeros((2, 5))
    for t in range(4):
        a = (conv(wx, x[0, t].numpy().reshape(2, 5)) + bx[:, None] + conv(wh, h)).reshape(4, 2, 5)
        i, f = sig(a[0] + v[0] * c), sig(a[1] + v[1] * c)
        c = f * c + i * np.tanh(a[2])
        h = sig(a[3] + v[2] * c) * np.tanh(c)
        np.testing.assert_allclose(got[t], h.reshape(-1), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell,sigma_h,bidirectional", [
    ("peephole", "tanh", True), ("peephole", "identity", False), ("graves", "tanh", True),
    ("graves", "tanh", False), ("cifg", "tanh", True), ("cifg", "tanh", False),
    ("indy", "tanh", True), ("indy", "tanh", False)])
def test_gradcheck(cell: str, sigma_h: str, bidirectional: bool) -> None:
    torch.manual_seed(0)
    module = make(cell, 2, 3, layers=2, bidirectional=bidirectional, sigma_h=sigma_h)
    x = torch.randn(3, 5, 2, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([3, 5, 2])  # unsorted, with padding
    assert torch.autograd.gradcheck(lambda x, *p: module(x, lengths),
                                    (x, *module.parameters()), eps=1e-6, atol=1e-7,
                                    fast_mode=True)


def test_convlstm_gradcheck() -> None:
    torch.manual_seed(0)
    front = ConvLSTMFrontEnd(6, ConvLSTMOptions(channels=2, kernel=3, maps=2)).double()
    x = torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, *p: front(x, torch.tensor([3, 4])),
                                    (x, *front.parameters()), eps=1e-6, atol=1e-7,
                                    fast_mode=True)


@pytest.mark.parametrize("cell", FUSED)
def test_each_sequence_as_if_alone(cell: str) -> None:
    """Padding and batch-mates change nothing, in both directions; padding outputs are 0."""
    torch.manual_seed(0)
    module = make(cell, 3, 4, layers=2, bidirectional=True)
    x = torch.randn(3, 7, 3, dtype=torch.float64)
    lengths = torch.tensor([5, 7, 2])
    y = module(x, lengths)
    for j, n in enumerate(lengths.tolist()):
        alone = module(x[j:j + 1, :n], lengths[j:j + 1])[0]
        torch.testing.assert_close(y[j, :n], alone, rtol=1e-12, atol=1e-12)
        assert not y[j, n:].any()


def carousel(cell: str, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Forget gate saturated open, input gate shut except at step 1 (where x opens it):
    returns h over time and d h_T / d x_1."""
    big, n = 40.0, 1
    w = {f"{k}_{g}": np.zeros((n, 1)) if k in "WU" else np.zeros(n)
         for g in "ifgo" for k in ("W", "U", "b", "p", "u")}
    w["W_g"][:] = 0.5
    w["W_i"][:], w["b_i"][:] = 2 * big, -big  # open only while x = 1
    w["b_f"][:] = big
    if cell == "cifg":  # i = 1 - f: x shuts f at step 1 instead
        w["W_f"][:] = -2 * big
    module = make(cell, 1, n)
    load(module, cell, w)
    x = torch.zeros(1, steps, 1, dtype=torch.float64)
    x[0, 0, 0] = 1.0
    x.requires_grad_(True)
    h = run(module, x, torch.tensor([steps]))[0, :, 0]
    (grad,) = torch.autograd.grad(h[-1], x)
    return h.detach(), grad[0, :, 0]


@pytest.mark.parametrize("cell", ("lstm", *FUSED))
def test_error_carousel(cell: str) -> None:
    h, grad = carousel(cell, 1000)
    assert h[0] > 0.1  # something was stored at step 1 ...
    torch.testing.assert_close(h, h[0].expand(1000), rtol=0, atol=1e-12)  # ... and kept
    _, grad_one = carousel(cell, 1)
    assert grad[0] > 0.1  # the error reaching step 1 over 999 steps is that of a 1-step path
    torch.testing.assert_close(grad[0], grad_one[0], rtol=1e-9, atol=0)


def test_plain_rnn_gradient_vanishes_where_the_carousel_keeps_it() -> None:
    """The same 1000-step path through a tanh RNN unit (the contrast the carousel test makes)."""
    rnn = nn.RNN(1, 1, batch_first=True).double()
    with torch.no_grad():
        rnn.weight_ih_l0.fill_(0.5)
        rnn.weight_hh_l0.fill_(0.9)
        rnn.bias_ih_l0.zero_()
        rnn.bias_hh_l0.zero_()
    x = torch.zeros(1, 1000, 1, dtype=torch.float64)
    x[0, 0, 0] = 1.0
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(rnn(x)[0][0, -1, 0], x)
    assert abs(grad[0, 0, 0]) < 1e-30


@pytest.mark.parametrize("options", [
    ModelOptions(cell="peephole", hidden=5, layers=2, stack=2,
                 peephole=PeepholeOptions("identity")),
    ModelOptions(cell="graves", hidden=5, layers=2, bidirectional=False),
    ModelOptions(cell="cifg", hidden=5, layers=1, dropout=0.1),
    ModelOptions(cell="lstm", hidden=5, layers=1, stack=3, frontend="convlstm",
                 convlstm=ConvLSTMOptions(channels=2, kernel=3, maps=3))])
def test_ctc_model_with_each_cell_round_trips(tmp_path, options: ModelOptions) -> None:
    torch.manual_seed(0)
    vocab = Vocabulary.from_symbols(["a", "b", "c"])
    model = CTCModel(6, len(vocab), options)
    x, lengths = torch.randn(3, 9, 6), torch.tensor([9, 4, 7])
    log_probs, out_lens = model(x, lengths)
    log_probs.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    save_checkpoint(tmp_path / "m.pt", model, vocab, {})
    loaded, _, _ = load_checkpoint(tmp_path / "m.pt")
    assert loaded.options == options
    torch.testing.assert_close(loaded.eval()(x, lengths)[0], model.eval()(x, lengths)[0])


def test_bad_options_are_named() -> None:
    with pytest.raises(ValueError, match="model.cell"):
        CTCModel(6, 3, ModelOptions(cell="gru"))
    with pytest.raises(ValueError, match="model.frontend"):
        CTCModel(6, 3, ModelOptions(frontend="cnn"))
    with pytest.raises(ValueError, match="sigma_h"):
        CTCModel(6, 3, ModelOptions(cell="peephole", peephole=PeepholeOptions("relu")))
    with pytest.raises(ValueError, match="model.convlstm"):
        CTCModel(7, 3, ModelOptions(frontend="convlstm"))


@pytest.mark.parametrize("cell", FUSED)
def test_fused_cells_run_under_autocast(cell: str) -> None:
    """bf16 autocast on CPU (as a mixed-precision training loop would use it) gives the
    float32 result up to the bf16 input projection's rounding."""
    torch.manual_seed(0)
    module = StackedRecurrent(cell, 3, 4, 1, True)
    x, lengths = torch.randn(2, 5, 3), torch.tensor([5, 3])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = module(x, lengths)
    y.sum().backward()
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, module(x, lengths), rtol=0, atol=0.05)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_every_stack_and_the_front_end_implement_the_encoder_protocol(cell: str) -> None:
    """layer_groups() holds every parameter once, group k exactly layer k's (read here from
    the parameter names each stack gives: nn.LSTM's ``_l{k}``, the fused cells' ``layers.k.``)."""
    model = CTCModel(6, 4, ModelOptions(cell=cell, hidden=3, layers=3, frontend="convlstm",
                                        convlstm=ConvLSTMOptions(channels=2, kernel=3, maps=2)))
    assert isinstance(model.rnn, Encoder) and isinstance(model.frontend, Encoder)
    assert model.rnn.output_dim == 6 and model.frontend.output_dim == 2 * 3
    names = {id(p): n for n, p in model.rnn.named_parameters()}
    groups = model.rnn.layer_groups()
    assert len(groups) == 3
    assert sorted(id(p) for g in groups for p in g) == sorted(names)
    for k, group in enumerate(groups):
        for p in group:
            n = names[id(p)]
            assert n.startswith(f"layers.{k}.") or n.removesuffix("_reverse").endswith(f"_l{k}")
    assert [id(p) for p in model.frontend.layer_groups()[0]] == [
        id(p) for p in model.frontend.parameters()]


@pytest.mark.parametrize("cell", FUSED)
def test_onednn_products_equal_the_float64_path(cell: str) -> None:
    """In float32 on the CPU the cells' matrix products go through oneDNN (recog.models.gemm);
    outputs and every gradient equal the float64 copy's, which runs torch.bmm / baddbmm
    (gradchecked above), to float32 rounding."""
    torch.manual_seed(0)
    module = make(cell, 6, 8, layers=2, bidirectional=True).float()
    x = torch.randn(18, 7, 6)  # >= gemm.MIN_ROWS rows: steps through oneDNN too
    assert gemm._onednn(x.transpose(0, 1)) == torch.backends.mkldnn.is_available()
    lengths = torch.tensor([7] * 16 + [4, 6])
    weights = torch.randn(18, 7, 16)
    results = []
    for dtype in (torch.float32, torch.float64):
        m = module.to(dtype)
        m.zero_grad()
        xi = x.to(dtype).detach().requires_grad_()
        y = m(xi, lengths)
        (y * weights.to(dtype)).sum().backward()
        results.append([y.detach(), xi.grad] + [p.grad.clone() for p in m.parameters()])
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)
