"""The LSTM variants of the seed article as fast stacked (B)RNN layers: ``peephole``, ``graves``
and ``cifg`` (``lstm`` is nn.LSTM itself, see recog.models.ctc.CELLS).

Speed: the input projections of all steps and both directions are one batched matrix product;
the recurrence is a torch.autograd.Function whose forward and hand-written backward each do
one batched (both directions) matrix product and a few in-place elementwise ops per step; all
step-independent derivative factors are computed for the whole sequence at once. Variable
lengths: the batch is sorted by length and each step works on the rows still active, the
backward direction runs on each sequence reversed within its own length, so no step computes
on padding. Layout inside a layer: (directions, time, batch, features).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from recog.models.padded_lstm import reversal_index

Tensor = torch.Tensor


@dataclass
class PeepholeOptions:
    """Options of the ``peephole`` cell: the cell-output squashing function sigma_h."""

    sigma_h: str = "tanh"  # tanh | identity (the identity is what the peephole paper suggests)


def _sig_deriv(a: Tensor) -> Tensor:
    return a * (1 - a)


def _work(p: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The forward pass's tensors for a cell whose h_{t-1} feeds its gates: the gates (P,
    completed in place), c (with c_0 = 0 first), tanh(c), h and h_0 = 0."""
    d, t_len, b, _ = p.shape
    return (p.clone(), p.new_zeros(d, t_len + 1, b, n), p.new_zeros(d, t_len, b, n),
            p.new_zeros(d, t_len, b, n), p.new_zeros(d, b, n))


def _dh_step(dh: Tensor, dh_out: Tensor, dgates: Tensor, ut: Tensor, t: int, bs: int
             ) -> Tensor:
    """d loss / d h_t of the first ``bs`` rows, written into ``dh``: from the output at t
    and, before the last step, through the gates of step t + 1."""
    dht = dh[:, :bs]
    if t == dh_out.shape[1] - 1:
        dht.copy_(dh_out[:, t, :bs])
    else:
        torch.baddbmm(dh_out[:, t, :bs], dgates[:, t + 1, :bs], ut, out=dht)
    return dht


class _GravesFn(torch.autograd.Function):
    """Gers/Graves peephole LSTM recurrence over pre-projected inputs P = W x + b.

    Gates [i, f, g, o] read h_{t-1}; i and f peek at c_{t-1}, o at c_t (diagonal weights)."""

    @staticmethod
    def forward(ctx, p: Tensor, u: Tensor, peep: Tensor, sizes: list[int]) -> Tensor:
        d, t_len, b, g4 = p.shape
        n = g4 // 4
        gates, c, tc, h, h0 = _work(p, n)
        p_if, p_o = peep[:, None, 0:2], peep[:, None, 2]
        for t, bs in enumerate(sizes):
            gt = gates[:, t, :bs]
            gt.baddbmm_(h0[:, :bs] if t == 0 else h[:, t - 1, :bs], u)
            g = gt.view(d, bs, 4, n)
            cp, cn = c[:, t, :bs], c[:, t + 1, :bs]
            g[:, :, 0:2].addcmul_(cp.unsqueeze(2), p_if).sigmoid_()
            g[:, :, 2].tanh_()
            torch.mul(g[:, :, 1], cp, out=cn)
            cn.addcmul_(g[:, :, 0], g[:, :, 2])
            g[:, :, 3].addcmul_(cn, p_o).sigmoid_()
            torch.tanh(cn, out=tc[:, t, :bs])
            torch.mul(g[:, :, 3], tc[:, t, :bs], out=h[:, t, :bs])
        ctx.save_for_backward(u, peep, gates, c, tc, h)
        ctx.sizes = sizes
        return h

    @staticmethod
    def backward(ctx, dh_out: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:
        u, peep, gates, c, tc, h = ctx.saved_tensors
        sizes = ctx.sizes
        d, t_len, b, g4 = gates.shape
        n = g4 // 4
        gv = gates.view(d, t_len, b, 4, n)
        i, f, g, o = gv.unbind(3)
        cp = c[:, :-1]
        # step-independent factors, for the whole sequence at once
        q_o = tc * _sig_deriv(o)  # d a_o / d h
        r = o * (1 - tc * tc) + q_o * peep[:, None, None, 2]  # d c / d h (through tanh and o)
        k = torch.stack([g * _sig_deriv(i), cp * _sig_deriv(f), i * (1 - g * g)], 3)
        m = f + k[:, :, :, 0] * peep[:, None, None, 0] + k[:, :, :, 1] * peep[:, None, None, 1]
        dgates = torch.zeros_like(gates)
        dgv = dgates.view(d, t_len, b, 4, n)
        dc = gates.new_zeros(d, b, n)
        dh = gates.new_zeros(d, b, n)
        ut = u.transpose(1, 2)
        for t in range(t_len - 1, -1, -1):
            bs = sizes[t]
            dht, dct = _dh_step(dh, dh_out, dgates, ut, t, bs), dc[:, :bs]
            torch.mul(dht, q_o[:, t, :bs], out=dgv[:, t, :bs, 3])
            dct.addcmul_(dht, r[:, t, :bs])
            torch.mul(dct.unsqueeze(2), k[:, t, :bs], out=dgv[:, t, :bs, 0:3])
            dct.mul_(m[:, t, :bs])
        du = torch.bmm(h[:, :-1].reshape(d, -1, n).transpose(1, 2),
                       dgates[:, 1:].reshape(d, -1, g4))
        dpeep = torch.stack([(dgv[:, :, :, 0] * cp).sum((1, 2)),
                             (dgv[:, :, :, 1] * cp).sum((1, 2)),
                             (dgv[:, :, :, 3] * c[:, 1:]).sum((1, 2))], 1)
        return dgates, du, dpeep, None


class _PeepholeFn(torch.autograd.Function):
    """The article's peephole LSTM over P = W x + b: gates [i, f, o] read c_{t-1} (full
    matrices U), the cell input g = tanh(P_g) has no recurrent term, h = o * sigma_h(c)."""

    @staticmethod
    def forward(ctx, p: Tensor, u: Tensor, sizes: list[int], identity: bool) -> Tensor:
        d, t_len, b, g4 = p.shape
        n = g4 // 4
        gates = p.clone()
        gates[..., 3 * n:].tanh_()  # g does not depend on the recurrence
        c = p.new_zeros(d, t_len + 1, b, n)
        h = p.new_zeros(d, t_len, b, n)
        s = c[:, 1:] if identity else p.new_zeros(d, t_len, b, n)
        for t, bs in enumerate(sizes):
            gt = gates[:, t, :bs]
            cp, cn = c[:, t, :bs], c[:, t + 1, :bs]
            gt[..., :3 * n].baddbmm_(cp, u).sigmoid_()
            g = gt.view(d, bs, 4, n)
            torch.mul(g[:, :, 1], cp, out=cn)
            cn.addcmul_(g[:, :, 0], g[:, :, 3])
            if not identity:
                torch.tanh(cn, out=s[:, t, :bs])
            torch.mul(g[:, :, 2], s[:, t, :bs], out=h[:, t, :bs])
        ctx.save_for_backward(u, gates, c, s)
        ctx.sizes, ctx.identity = sizes, identity
        return h

    @staticmethod
    def backward(ctx, dh_out: Tensor) -> tuple[Tensor, Tensor, None, None]:
        u, gates, c, s = ctx.saved_tensors
        sizes = ctx.sizes
        d, t_len, b, g4 = gates.shape
        n = g4 // 4
        i, f, o, g = gates.view(d, t_len, b, 4, n).unbind(3)
        active = (torch.arange(b, device=gates.device)[None, :]
                  < torch.tensor(sizes, device=gates.device)[:, None])
        dh = dh_out * active[None, :, :, None]  # no gradient from padding
        dgates = torch.zeros_like(gates)
        dgv = dgates.view(d, t_len, b, 4, n)
        dgv[:, :, :, 2] = dh * s * _sig_deriv(o)
        e = dh * o if ctx.identity else dh * o * (1 - s * s)  # d loss / d c_t through h_t
        k = torch.stack([g * _sig_deriv(i), c[:, :-1] * _sig_deriv(f)], 3)
        dcs = torch.zeros_like(e)
        dc = gates.new_zeros(d, b, n)
        ut = u.transpose(1, 2)
        for t in range(t_len - 1, -1, -1):
            bs = sizes[t]
            dct = dcs[:, t, :bs]
            torch.add(dc[:, :bs], e[:, t, :bs], out=dct)
            torch.mul(dct.unsqueeze(2), k[:, t, :bs], out=dgv[:, t, :bs, 0:2])
            torch.mul(dct, f[:, t, :bs], out=dc[:, :bs])
            dc[:, :bs].baddbmm_(dgates[:, t, :bs, :3 * n], ut)
        dgv[:, :, :, 3] = dcs * i * (1 - g * g)
        du = torch.bmm(c[:, 1:-1].reshape(d, -1, n).transpose(1, 2),
                       dgates[:, 1:, :, :3 * n].reshape(d, -1, 3 * n))
        return dgates, du, None, None


class _CIFGFn(torch.autograd.Function):
    """Coupled input-forget gate LSTM over P = W x + b: gates [o, f, g] read h_{t-1},
    c_t = f c_{t-1} + (1 - f) g, h_t = o tanh(c_t)."""

    @staticmethod
    def forward(ctx, p: Tensor, u: Tensor, sizes: list[int]) -> Tensor:
        d, t_len, b, g3 = p.shape
        n = g3 // 3
        gates, c, tc, h, h0 = _work(p, n)
        for t, bs in enumerate(sizes):
            gt = gates[:, t, :bs]
            gt.baddbmm_(h0[:, :bs] if t == 0 else h[:, t - 1, :bs], u)
            gt[..., :2 * n].sigmoid_()
            gt[..., 2 * n:].tanh_()
            g = gt.view(d, bs, 3, n)
            cp, cn = c[:, t, :bs], c[:, t + 1, :bs]
            torch.sub(cp, g[:, :, 2], out=cn)
            cn.mul_(g[:, :, 1]).add_(g[:, :, 2])
            torch.tanh(cn, out=tc[:, t, :bs])
            torch.mul(g[:, :, 0], tc[:, t, :bs], out=h[:, t, :bs])
        ctx.save_for_backward(u, gates, c, tc, h)
        ctx.sizes = sizes
        return h

    @staticmethod
    def backward(ctx, dh_out: Tensor) -> tuple[Tensor, Tensor, None]:
        u, gates, c, tc, h = ctx.saved_tensors
        sizes = ctx.sizes
        d, t_len, b, g3 = gates.shape
        n = g3 // 3
        o, f, g = gates.view(d, t_len, b, 3, n).unbind(3)
        q_o = tc * _sig_deriv(o)
        r = o * (1 - tc * tc)
        k = torch.stack([(c[:, :-1] - g) * _sig_deriv(f), (1 - f) * (1 - g * g)], 3)
        dgates = torch.zeros_like(gates)
        dgv = dgates.view(d, t_len, b, 3, n)
        dc = gates.new_zeros(d, b, n)
        dh = gates.new_zeros(d, b, n)
        ut = u.transpose(1, 2)
        for t in range(t_len - 1, -1, -1):
            bs = sizes[t]
            dht, dct = _dh_step(dh, dh_out, dgates, ut, t, bs), dc[:, :bs]
            torch.mul(dht, q_o[:, t, :bs], out=dgv[:, t, :bs, 0])
            dct.addcmul_(dht, r[:, t, :bs])
            torch.mul(dct.unsqueeze(2), k[:, t, :bs], out=dgv[:, t, :bs, 1:3])
            dct.mul_(f[:, t, :bs])
        du = torch.bmm(h[:, :-1].reshape(d, -1, n).transpose(1, 2),
                       dgates[:, 1:].reshape(d, -1, g3))
        return dgates, du, None


class _Reverse(torch.autograd.Function):
    """Reverse each sequence of a (T, B, D) batch within its length (padding stays put); a
    permutation that is its own inverse, so the backward is the same gather."""

    @staticmethod
    def forward(ctx, x: Tensor, index: Tensor) -> Tensor:
        ctx.save_for_backward(index)
        return x.gather(0, index.expand_as(x))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (index,) = ctx.saved_tensors
        return grad.gather(0, index.expand_as(grad)), None


# cell -> (gate blocks in the input projection, gate blocks fed by the recurrence, peepholes)
_SHAPES = {"graves": (4, 4, 3), "peephole": (4, 3, 0), "cifg": (3, 3, 0)}


class RecurrentLayer(nn.Module):
    """One layer of a cell in all its directions: (D, T, B, in) inputs -> (D, T, B, hidden)."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, directions: int,
                 peephole: PeepholeOptions | None = None):
        super().__init__()
        if cell not in _SHAPES:
            raise ValueError(f"unknown cell {cell!r}; known: {sorted(_SHAPES)}")
        gates, recurrent, peepholes = _SHAPES[cell]
        self.cell, self.hidden_size = cell, hidden_size
        self.identity = (peephole or PeepholeOptions()).sigma_h == "identity"
        if (peephole or PeepholeOptions()).sigma_h not in ("tanh", "identity"):
            raise ValueError(f"model.peephole.sigma_h must be tanh or identity, "
                             f"not {peephole.sigma_h!r}")
        k = hidden_size ** -0.5  # nn.LSTM's initialisation
        d, n = directions, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(d, input_size, gates * n).uniform_(-k, k))
        self.bias = nn.Parameter(torch.empty(d, gates * n).uniform_(-k, k))
        self.weight_hh = nn.Parameter(torch.empty(d, n, recurrent * n).uniform_(-k, k))
        self.weight_peep = (nn.Parameter(torch.empty(d, peepholes, n).uniform_(-k, k))
                            if peepholes else None)

    def forward(self, x: Tensor, sizes: list[int]) -> Tensor:
        """x: (D, T, B, in), batch sorted by length; sizes[t]: rows still active at step t."""
        d, t_len, b, _ = x.shape
        p = torch.baddbmm(self.bias.unsqueeze(1), x.reshape(d, t_len * b, -1),
                          self.weight_ih).view(d, t_len, b, -1)
        # the recurrence runs in the weights' precision even under autocast (mixed dtypes
        # would break its in-place products; a low-precision cell state would drift)
        p = p.to(self.weight_hh.dtype)
        with torch.autocast(p.device.type, enabled=False):
            if self.cell == "graves":
                return _GravesFn.apply(p, self.weight_hh, self.weight_peep, sizes)
            if self.cell == "peephole":
                return _PeepholeFn.apply(p, self.weight_hh, sizes, self.identity)
            return _CIFGFn.apply(p, self.weight_hh, sizes)


class StackedRecurrent(nn.Module):
    """``num_layers`` layers of one cell, uni- or bidirectional, on padded batch-first input
    (B, T, in) with lengths -> (B, T, directions * hidden), zero past each length."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = True, dropout: float = 0.0,
                 peephole: PeepholeOptions | None = None):
        super().__init__()
        d = 2 if bidirectional else 1
        self.directions, self.dropout = d, dropout
        self.layers = nn.ModuleList(
            RecurrentLayer(cell, input_size if k == 0 else d * hidden_size, hidden_size, d,
                           peephole) for k in range(num_layers))

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        b, t_len, _ = x.shape
        lengths = lengths.cpu()
        order = torch.argsort(lengths, descending=True, stable=True)
        sorted_lengths = lengths[order]
        t_max = int(sorted_lengths[0])
        sizes = (sorted_lengths[None, :] > torch.arange(t_max)[:, None]).sum(1).tolist()
        y = x[order.to(x.device), :t_max].transpose(0, 1)  # (T, B, in), longest first
        index = reversal_index(sorted_lengths.to(x.device), t_max).t().unsqueeze(-1)
        for k, layer in enumerate(self.layers):
            if k and self.dropout:
                y = nn.functional.dropout(y, self.dropout, self.training)
            if self.directions == 2:
                h = layer(torch.stack([y, _Reverse.apply(y, index)]), sizes)
                y = torch.cat([h[0], _Reverse.apply(h[1], index)], -1)
            else:
                y = layer(y.unsqueeze(0), sizes)[0]
        y = y.transpose(0, 1)[torch.argsort(order).to(x.device)]
        return nn.functional.pad(y, (0, 0, 0, t_len - t_max))
