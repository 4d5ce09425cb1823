"""ONNX's ``LSTM`` operator as a torch operator, ``torch.ops.recog.onnx_lstm``, so that cells
whose equations it covers (peepholes through its ``P`` input, coupled input and forget gates
through ``input_forget``, gates that read c_{t-1} through ``emit_cell``) export as one fused
operator per direction instead of a loop.

What the operator computes (ONNX's definition, one direction, zero initial state): gates in
the order [i, o, f, c]; i = sigma(W_i x + R_i h + b_i + P_i c_{t-1}), f likewise (or 1 - i
when ``coupled``), c_t = f c_{t-1} + i tanh(W_c x + R_c h + b_c), o = sigma(W_o x + R_o h +
b_o + P_o c_t), h = o tanh(c_t). With ``emit_cell`` the output is c_t itself, h = c_t: the
recurrent matrix R then reads c_{t-1} (ONNX: the output gate's rows of W and R zero and its
bias large, so o = 1, and the output activation the identity, ``Affine`` 1 c + 0). Its torch
kernel is that loop in plain ops (what a TorchScript run of the ONNX form executes); the
exporter writes it as ONNX ``LSTM``.
"""

from __future__ import annotations

import torch
from torch.onnx import register_custom_op_symbolic, symbolic_helper

Tensor = torch.Tensor
OPSET = 17

torch.library.define(
    "recog::onnx_lstm",
    "(Tensor x, Tensor w, Tensor r, Tensor b, Tensor p, int coupled, int emit_cell) -> Tensor")


@torch.library.impl("recog::onnx_lstm", "CompositeExplicitAutograd")
def _onnx_lstm(x: Tensor, w: Tensor, r: Tensor, b: Tensor, p: Tensor, coupled: int,
               emit_cell: int) -> Tensor:
    """x (T, B, in); w (4n, in), r (4n, n), b (4n), p (3n) in ONNX's gate order -> h (T, B, n)
    (c (T, B, n) with ``emit_cell``)."""
    n = r.shape[1]
    a_x = torch.addmm(b, x.reshape(-1, x.shape[2]), w.t()).view(x.shape[0], x.shape[1], 4 * n)
    h = x.new_zeros(x.shape[1], n)
    c = x.new_zeros(x.shape[1], n)
    p_i, p_o, p_f = p.split(n)
    out = []
    for t in range(x.shape[0]):
        a_i, a_o, a_f, a_c = torch.addmm(a_x[t], h, r.t()).split(n, 1)
        i = torch.sigmoid(a_i + p_i * c)
        f = 1 - i if coupled else torch.sigmoid(a_f + p_f * c)
        c = f * c + i * torch.tanh(a_c)
        h = c if emit_cell else torch.sigmoid(a_o + p_o * c) * torch.tanh(c)
        out.append(h)
    return torch.stack(out)


@symbolic_helper.parse_args("v", "v", "v", "v", "v", "i", "i")
def _symbolic(g, x, w, r, b, p, coupled: int, emit_cell: int):  # noqa: ANN001, ANN202
    """ONNX ``LSTM`` with a direction axis of 1 on every weight, the recurrent bias zero."""
    def batched(v, axis=0):  # noqa: ANN001, ANN202
        return g.op("Unsqueeze", v, g.op("Constant", value_t=torch.tensor([axis])))

    n = symbolic_helper._get_tensor_sizes(r)[1]
    bias = g.op("Concat", b, g.op("Constant", value_t=torch.zeros(4 * n)), axis_i=0)
    none = symbolic_helper._optional_input_placeholder_tensor
    # emit_cell: h = Affine(c) = 1 c + 0, the output gate o = 1 by the caller's weights
    cell = {"activations_s": ["Sigmoid", "Tanh", "Affine"], "activation_alpha_f": [1.0],
            "activation_beta_f": [0.0]} if emit_cell else {}
    y, _, _ = g.op("LSTM", x, batched(w), batched(r), batched(bias), none(g), none(g), none(g),
                   batched(p), hidden_size_i=n, input_forget_i=coupled, outputs=3, **cell)
    return g.op("Squeeze", y, g.op("Constant", value_t=torch.tensor([1])))  # (T, 1, B, n)


register_custom_op_symbolic("recog::onnx_lstm", _symbolic, OPSET)
