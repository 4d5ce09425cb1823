"""Batched affine maps for the custom cells, through oneDNN on the CPU.

torch's float32 matrix product on the CPU goes to its BLAS (MKL), whose kernels on AMD
processors run at about half the speed of oneDNN's, the library nn.LSTM's own CPU kernel
uses (measured on an AMD EPYC, one thread, 4,800 x 500 by 500 x 1,000: MKL 46-58 ms,
oneDNN 21-24 ms; on Intel processors the two are close). So the custom cells' products
(the input projections of all steps, forward and backward, the recurrent steps' and the
recurrent weights' gradients) call oneDNN's inner product where it is available and the
product has at least ``MIN_ROWS`` rows, and ``torch.baddbmm`` elsewhere (other devices and
dtypes, autocast, or a torch built without oneDNN): the same values to float32 rounding.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


MIN_ROWS = 16  # below, oneDNN's per-call cost outweighs its speed (one thread, AMD EPYC:
#               a step's 2 x (rows x 250 @ 250 x 1,000), rows 1: 60 vs 26 us, 16: 143 vs 186 us)


def _onednn(x: Tensor) -> bool:
    """Whether ``x`` (D, rows, in)'s products go through oneDNN."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and x.shape[1] >= MIN_ROWS
            and not torch.is_autocast_enabled("cpu") and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def _dense(m: Tensor) -> Tensor:
    """``m``, or a copy when its rows are not packed (oneDNN's slow path for such a matrix
    was measured 100x slower than the copy); a transposed matrix is read as it is."""
    return m if m.is_contiguous() or m.t().is_contiguous() else m.contiguous()


def _linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """x (N, in) @ weight.T (+ bias): ``weight`` is (out, in), as nn.Linear's."""
    return torch.ops.mkldnn._linear_pointwise(_dense(x), _dense(weight), bias, "none", [], "")


class _Affine(torch.autograd.Function):
    """y[k] = x[k] @ w[k] + b[k] for each k of the batch (D, N, in) x (D, in, out) + (D, out),
    every product through oneDNN."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, b: Tensor) -> Tensor:
        ctx.save_for_backward(x, w)
        return torch.stack([_linear(x[k], w[k].t(), b[k]) for k in range(x.shape[0])])

    @staticmethod
    def backward(ctx, dy: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        x, w = ctx.saved_tensors
        d = x.shape[0]
        dx = (torch.stack([_linear(dy[k], w[k], None) for k in range(d)])
              if ctx.needs_input_grad[0] else None)
        dw = (torch.stack([_linear(x[k].t(), dy[k].t(), None) for k in range(d)])
              if ctx.needs_input_grad[1] else None)
        db = dy.sum(1) if ctx.needs_input_grad[2] else None
        return dx, dw, db


def affine(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """x (D, N, in) @ w (D, in, out) + b (D, out) -> (D, N, out), differentiable."""
    if _onednn(x) and w.dtype == x.dtype:
        return _Affine.apply(x, w, b)
    return torch.baddbmm(b.unsqueeze(1), x, w)


def bmm(a: Tensor, b: Tensor) -> Tensor:
    """a (D, N, K) @ b (D, K, M) -> (D, N, M), not differentiable (for hand-written backwards)."""
    if _onednn(a):
        return torch.stack([_linear(a[k], b[k].t(), None) for k in range(a.shape[0])])
    return torch.bmm(a, b)


def addmm_(out: Tensor, a: Tensor, w: Tensor) -> Tensor:
    """out[k] += a[k] @ w[k].T for every k, in place: a (D, N, in), w (D, out, in) (nn.Linear's
    layout, what oneDNN reads without a copy); not differentiable (a recurrence's step)."""
    if _onednn(a):
        for k in range(a.shape[0]):
            out[k].add_(_linear(a[k], w[k], None))
        return out
    return out.baddbmm_(a, w.transpose(1, 2))
