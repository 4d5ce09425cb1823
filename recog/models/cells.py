"""The LSTM variants of the seed article as fast stacked (B)RNN layers: ``peephole``, ``graves``
and ``cifg`` (``lstm`` is nn.LSTM itself, see recog.models.padded_lstm). A cell is one
``RecurrentLayer`` subclass and one line in ``LAYERS``.

Speed: the input projections of all steps are one matrix product per direction (through
oneDNN on the CPU: recog.models.gemm); the recurrence is a torch.autograd.Function whose
forward and hand-written backward each do one matrix product per direction and a few
in-place elementwise ops per step; all
step-independent derivative factors are computed for the whole sequence at once. Variable
lengths: the batch is sorted by length and each step works on the rows still active, the
backward direction runs on each sequence reversed within its own length, so no step computes
on padding. Layout inside a layer: (directions, time, batch, features). Under TorchScript
(export) each layer runs its ``step`` equations in plain ops over the padded batch instead.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from recog.models import gemm, onnx_lstm  # noqa: F401 - onnx_lstm registers its operator
from recog.models.encoder import (
    exporting,
    lstm_update,
    reverse_within,
    scan_time,
    time_index,
    zero_padding,
)

Tensor = torch.Tensor


@dataclass
class PeepholeOptions:
    """Options of the ``peephole`` cell: the cell-output squashing function sigma_h."""

    sigma_h: str = "tanh"  # tanh | identity (the identity is what the peephole paper suggests)


def _sig_deriv(a: Tensor) -> Tensor:
    return a * (1 - a)


def _zero_tails(x: Tensor, sizes: list[int]) -> Tensor:
    """``x`` (D, T, B, ...) with the rows past ``sizes[t]`` of every step t set to 0 (none,
    when every sequence is full length); returns ``x``."""
    b = x.shape[2]
    for t, bs in enumerate(sizes):
        if bs < b:
            x[:, t, bs:] = 0
    return x


def _work(p: Tensor, n: int, sizes: list[int]
          ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The forward pass's tensors for a cell whose h_{t-1} feeds its gates: the gates (P,
    completed in place), c (with c_0 = 0 first), tanh(c), h and h_0 = 0. Only what the
    steps do not write is zeroed (c_0 and the rows past each length of c and h)."""
    d, t_len, b, _ = p.shape
    c = p.new_empty(d, t_len + 1, b, n)
    c[:, 0] = 0
    _zero_tails(c[:, 1:], sizes)
    return (p.clone(), c, p.new_empty(d, t_len, b, n),
            _zero_tails(p.new_empty(d, t_len, b, n), sizes), p.new_zeros(d, b, n))


def _emit_h(o: Tensor, cn: Tensor, tc: Tensor, h: Tensor, t: int, bs: int) -> None:
    """h_t = o tanh(c_t) for the first ``bs`` rows, tanh(c_t) kept in ``tc`` for the backward."""
    torch.tanh(cn, out=tc[:, t, :bs])
    torch.mul(o, tc[:, t, :bs], out=h[:, t, :bs])


def _dh_step(dh: Tensor, dh_out: Tensor, dgates: Tensor, u: Tensor, t: int, bs: int
             ) -> Tensor:
    """d loss / d h_t of the first ``bs`` rows, written into ``dh``: from the output at t
    and, before the last step, through the gates of step t + 1 (``u``: the recurrent
    weights, (D, n, gates * n))."""
    dht = dh[:, :bs]
    dht.copy_(dh_out[:, t, :bs])
    if t < dh_out.shape[1] - 1:
        gemm.addmm_(dht, dgates[:, t + 1, :bs], u)
    return dht


class _GravesFn(torch.autograd.Function):
    """Gers/Graves peephole LSTM recurrence over pre-projected inputs P = W x + b.

    Gates [i, f, g, o] read h_{t-1}; i and f peek at c_{t-1}, o at c_t (diagonal weights)."""

    @staticmethod
    def forward(ctx, p: Tensor, u: Tensor, peep: Tensor, sizes: list[int]) -> Tensor:
        d, t_len, b, g4 = p.shape
        n = g4 // 4
        gates, c, tc, h, h0 = _work(p, n, sizes)
        p_if, p_o = peep[:, None, 0:2], peep[:, None, 2]
        ut = u.transpose(1, 2).contiguous()  # (D, out, in): oneDNN's layout
        for t, bs in enumerate(sizes):
            gt = gates[:, t, :bs]
            gemm.addmm_(gt, h0[:, :bs] if t == 0 else h[:, t - 1, :bs], ut)
            g = gt.view(d, bs, 4, n)
            cp, cn = c[:, t, :bs], c[:, t + 1, :bs]
            g[:, :, 0:2].addcmul_(cp.unsqueeze(2), p_if).sigmoid_()
            g[:, :, 2].tanh_()
            torch.mul(g[:, :, 1], cp, out=cn)
            cn.addcmul_(g[:, :, 0], g[:, :, 2])
            g[:, :, 3].addcmul_(cn, p_o).sigmoid_()
            _emit_h(g[:, :, 3], cn, tc, h, t, bs)
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
        dgates = _zero_tails(torch.empty_like(gates), sizes)
        dgv = dgates.view(d, t_len, b, 4, n)
        dc = gates.new_zeros(d, b, n)
        dh = gates.new_zeros(d, b, n)
        for t in range(t_len - 1, -1, -1):
            bs = sizes[t]
            dht, dct = _dh_step(dh, dh_out, dgates, u, t, bs), dc[:, :bs]
            torch.mul(dht, q_o[:, t, :bs], out=dgv[:, t, :bs, 3])
            dct.addcmul_(dht, r[:, t, :bs])
            torch.mul(dct.unsqueeze(2), k[:, t, :bs], out=dgv[:, t, :bs, 0:3])
            dct.mul_(m[:, t, :bs])
        du = gemm.bmm(h[:, :-1].reshape(d, -1, n).transpose(1, 2),
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
        ut = u.transpose(1, 2).contiguous()  # (D, out, in): oneDNN's layout
        for t, bs in enumerate(sizes):
            gt = gates[:, t, :bs]
            cp, cn = c[:, t, :bs], c[:, t + 1, :bs]
            gemm.addmm_(gt[..., :3 * n], cp, ut).sigmoid_()
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
        for t in range(t_len - 1, -1, -1):
            bs = sizes[t]
            dct = dcs[:, t, :bs]
            torch.add(dc[:, :bs], e[:, t, :bs], out=dct)
            torch.mul(dct.unsqueeze(2), k[:, t, :bs], out=dgv[:, t, :bs, 0:2])
            torch.mul(dct, f[:, t, :bs], out=dc[:, :bs])
            gemm.addmm_(dc[:, :bs], dgates[:, t, :bs, :3 * n], u)
        dgv[:, :, :, 3] = dcs * i * (1 - g * g)
        du = gemm.bmm(c[:, 1:-1].reshape(d, -1, n).transpose(1, 2),
                       dgates[:, 1:, :, :3 * n].reshape(d, -1, 3 * n))
        return dgates, du, None, None


class _CIFGFn(torch.autograd.Function):
    """Coupled input-forget gate LSTM over P = W x + b: gates [o, f, g] read h_{t-1},
    c_t = f c_{t-1} + (1 - f) g, h_t = o tanh(c_t)."""

    @staticmethod
    def forward(ctx, p: Tensor, u: Tensor, sizes: list[int]) -> Tensor:
        d, t_len, b, g3 = p.shape
        n = g3 // 3
        gates, c, tc, h, h0 = _work(p, n, sizes)
        ut = u.transpose(1, 2).contiguous()  # (D, out, in): oneDNN's layout
        for t, bs in enumerate(sizes):
            gt = gates[:, t, :bs]
            gemm.addmm_(gt, h0[:, :bs] if t == 0 else h[:, t - 1, :bs], ut)
            gt[..., :2 * n].sigmoid_()
            gt[..., 2 * n:].tanh_()
            g = gt.view(d, bs, 3, n)
            cp, cn = c[:, t, :bs], c[:, t + 1, :bs]
            torch.sub(cp, g[:, :, 2], out=cn)
            cn.mul_(g[:, :, 1]).add_(g[:, :, 2])
            _emit_h(g[:, :, 0], cn, tc, h, t, bs)
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
        dgates = _zero_tails(torch.empty_like(gates), sizes)
        dgv = dgates.view(d, t_len, b, 3, n)
        dc = gates.new_zeros(d, b, n)
        dh = gates.new_zeros(d, b, n)
        for t in range(t_len - 1, -1, -1):
            bs = sizes[t]
            dht, dct = _dh_step(dh, dh_out, dgates, u, t, bs), dc[:, :bs]
            torch.mul(dht, q_o[:, t, :bs], out=dgv[:, t, :bs, 0])
            dct.addcmul_(dht, r[:, t, :bs])
            torch.mul(dct.unsqueeze(2), k[:, t, :bs], out=dgv[:, t, :bs, 1:3])
            dct.mul_(f[:, t, :bs])
        du = gemm.bmm(h[:, :-1].reshape(d, -1, n).transpose(1, 2),
                       dgates[:, 1:].reshape(d, -1, g3))
        return dgates, du, None


def _blocks(m: Tensor, n: int, order: list[int]) -> Tensor:
    """The gate blocks of ``m`` (rows of n each) in ``order``."""
    return torch.cat([m[j * n:(j + 1) * n] for j in order])


def _coupled_blocks(m: Tensor, n: int) -> Tensor:
    """``cifg``'s [o, f, g] blocks as ONNX's [i, o, f, c] with i = -f (f unused: coupled)."""
    return torch.cat([-m[n:2 * n], m[:n], torch.zeros_like(m[:n]), m[2 * n:]])


class RecurrentLayer(nn.Module):
    """One layer of a cell in all its directions: (D, T, B, in) inputs -> (D, T, B, hidden).

    A cell is a subclass: its gate blocks (``gates`` in the input projection, ``recurrent``
    fed back, ``peepholes`` diagonal vectors), ``step`` (its equations in plain torch ops:
    what TorchScript and ONNX run; or ``scripted``, where a fused operator computes the same
    equations) and ``fused`` (the same recurrence as an autograd.Function with a hand-written
    backward: what training runs)."""

    gates, recurrent, peepholes = 4, 4, 0
    coupled = 0  # ONNX LSTM's input_forget, for cells whose ``onnx_weights`` exist
    emit_cell = 0  # 1: the ONNX LSTM computes c_t and feeds c_{t-1} back (recog.models.onnx_lstm)
    __constants__ = ["as_onnx_lstm", "coupled", "emit_cell"]

    def __init__(self, input_size: int, hidden_size: int, directions: int,
                 peephole: PeepholeOptions | None = None):
        super().__init__()
        self.hidden_size, self.directions = hidden_size, directions
        self.as_onnx_lstm = False  # set on the ONNX form of cells ONNX's LSTM can express
        k = hidden_size ** -0.5  # nn.LSTM's initialisation
        d, n = directions, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(d, input_size, self.gates * n).uniform_(-k, k))
        self.bias = nn.Parameter(torch.empty(d, self.gates * n).uniform_(-k, k))
        self.weight_hh = nn.Parameter(torch.empty(self.recurrent_shape(d, n)).uniform_(-k, k))
        self.weight_peep = (nn.Parameter(torch.empty(d, self.peepholes, n).uniform_(-k, k))
                            if self.peepholes else None)

    def recurrent_shape(self, d: int, n: int) -> tuple[int, int, int]:
        """Shape of the recurrent weights (full matrices: each gate block reads all units)."""
        return (d, n, self.recurrent * n)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """x: (D, T, B, in) and lengths (B,); outside TorchScript the rows come sorted by
        length, longest first."""
        if torch.jit.is_scripting():
            return self.scripted(x)
        return self._fused(self.project(x), lengths)

    def project(self, x: Tensor) -> Tensor:
        """P = W x + b for every step and direction: (D, T, B, gates * n); plain ops under
        TorchScript (the exported form), ``recog.models.gemm.affine`` otherwise."""
        d, t_len, b, _ = x.shape
        x = x.reshape(d, t_len * b, -1)
        if torch.jit.is_scripting():
            p = torch.baddbmm(self.bias.unsqueeze(1), x, self.weight_ih)
        else:
            p = self._affine(x)
        return p.view(d, t_len, b, -1)

    @torch.jit.unused
    def _affine(self, x: Tensor) -> Tensor:
        if exporting():
            return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight_ih)
        return gemm.affine(x, self.weight_ih, self.bias)

    def scripted(self, x: Tensor) -> Tensor:
        """The layer under TorchScript (export): ``step`` over every row and step, or, in the
        ONNX form, ONNX's LSTM operator per direction."""
        if self.as_onnx_lstm:
            return self.onnx_lstm(x)
        return self.loop(self.project(x))

    def onnx_weights(self, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Direction ``k``'s weights as ONNX's LSTM operator takes them (gates [i, o, f, c]):
        W (4n, in), R (4n, n), b (4n), P (3n); only cells its equations cover have them."""
        raise NotImplementedError

    def onnx_lstm(self, x: Tensor) -> Tensor:
        """(D, T, B, in) -> (D, T, B, n) by torch.ops.recog.onnx_lstm, one call per direction
        (constant indices: the exporter folds the weights into constants)."""
        w, r, b, p = self.onnx_weights(0)
        outs = [torch.ops.recog.onnx_lstm(x[0], w, r, b, p, self.coupled, self.emit_cell)]
        if self.directions == 2:
            w, r, b, p = self.onnx_weights(1)
            outs.append(torch.ops.recog.onnx_lstm(x[1], w, r, b, p, self.coupled,
                                                  self.emit_cell))
        return self.onnx_output(x, torch.stack(outs))

    def onnx_output(self, x: Tensor, y: Tensor) -> Tensor:
        """The layer's output from the inputs x and the operators' outputs y: y itself."""
        return y

    def loop(self, p: Tensor) -> Tensor:
        """The recurrence over every row and step by ``step`` (padding included: it follows
        each row's frames, so it never reaches them)."""
        d, t_len, b, _ = p.shape
        h = p.new_zeros(d, b, self.hidden_size)
        c = p.new_zeros(d, b, self.hidden_size)
        outs = []
        for t in range(t_len):
            h, c = self.step(p[:, t], h, c)
            outs.append(h)
        return torch.stack(outs, 1)

    def step(self, p: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """One step over all directions: projected input p (D, B, gates * n), h and c
        (D, B, n) of the previous step -> h, c."""
        raise NotImplementedError

    @torch.jit.unused
    def traced(self, p: Tensor) -> Tensor:
        """``loop`` as torch.export keeps it: ``step`` under ``scan_time``."""
        zeros = p.new_zeros(p.shape[0], p.shape[2], self.hidden_size)
        return scan_time(self.step, zeros, p.transpose(0, 1)).transpose(0, 1)

    @torch.jit.unused
    def _fused(self, p: Tensor, lengths: Tensor) -> Tensor:
        if exporting():
            return self.traced(p)
        t_len = p.shape[1]
        sizes = (lengths.cpu()[None, :] > torch.arange(t_len)[:, None]).sum(1).tolist()
        # the recurrence runs in the weights' precision even under autocast (mixed dtypes
        # would break its in-place products; a low-precision cell state would drift)
        p = p.to(self.weight_hh.dtype)
        with torch.autocast(p.device.type, enabled=False):
            return self.fused(p, sizes)

    def fused(self, p: Tensor, sizes: list[int]) -> Tensor:
        """The recurrence on the rows still active at each step (``sizes[t]`` of them)."""
        raise NotImplementedError


class GravesLayer(RecurrentLayer):
    """``graves``: gates [i, f, g, o] read h_{t-1}; i, f peek at c_{t-1}, o at c_t."""

    gates, recurrent, peepholes = 4, 4, 3

    def step(self, p: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        n, peep = self.hidden_size, self.weight_peep
        assert peep is not None
        a = p + torch.bmm(h, self.weight_hh)
        i = torch.sigmoid(a[..., :n] + peep[:, None, 0] * c)
        f = torch.sigmoid(a[..., n:2 * n] + peep[:, None, 1] * c)
        c = f * c + i * torch.tanh(a[..., 2 * n:3 * n])
        return torch.sigmoid(a[..., 3 * n:] + peep[:, None, 2] * c) * torch.tanh(c), c

    def fused(self, p: Tensor, sizes: list[int]) -> Tensor:
        return _GravesFn.apply(p, self.weight_hh, self.weight_peep, sizes)

    def onnx_weights(self, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """ONNX's LSTM with peepholes is this cell: the gate blocks reordered."""
        peep = self.weight_peep
        assert peep is not None
        n, order = self.hidden_size, [0, 3, 1, 2]  # [i, f, g, o] -> [i, o, f, c]
        return (_blocks(self.weight_ih[k].t(), n, order), _blocks(self.weight_hh[k].t(), n, order),
                _blocks(self.bias[k], n, order), torch.cat([peep[k, 0], peep[k, 2], peep[k, 1]]))


class PeepholeLayer(RecurrentLayer):
    """``peephole``: gates [i, f, o] read c_{t-1}, g = tanh(W_g x + b_g), h = o sigma_h(c)."""

    gates, recurrent, peepholes = 4, 3, 0
    emit_cell = 1  # its ONNX form: the LSTM operator over c alone, then the output gate

    def __init__(self, input_size: int, hidden_size: int, directions: int,
                 peephole: PeepholeOptions | None = None):
        super().__init__(input_size, hidden_size, directions)
        sigma_h = (peephole or PeepholeOptions()).sigma_h
        if sigma_h not in ("tanh", "identity"):
            raise ValueError(f"model.peephole.sigma_h must be tanh or identity, not {sigma_h!r}")
        self.identity = sigma_h == "identity"

    def step(self, p: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        n = self.hidden_size
        a = torch.sigmoid(p[..., :3 * n] + torch.bmm(c, self.weight_hh))
        c = a[..., n:2 * n] * c + a[..., :n] * torch.tanh(p[..., 3 * n:])
        return a[..., 2 * n:] * (c if self.identity else torch.tanh(c)), c

    def fused(self, p: Tensor, sizes: list[int]) -> Tensor:
        return _PeepholeFn.apply(p, self.weight_hh, sizes, self.identity)

    def onnx_weights(self, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The recurrence of c alone as ONNX's LSTM with h = c (``emit_cell``): its i, f
        read c_{t-1} through R, its output gate held open, g without recurrent weights;
        ``onnx_output`` applies this cell's own output gate afterwards. (sigma(1e4) = 1 in
        float32.)"""
        n = self.hidden_size
        w, r, b = self.weight_ih[k].t(), self.weight_hh[k].t(), self.bias[k]
        zero = torch.zeros_like(w[:n])
        return (torch.cat([w[:n], zero, w[n:2 * n], w[3 * n:]]),
                torch.cat([r[:n], torch.zeros_like(r[:n]), r[n:2 * n], torch.zeros_like(r[:n])]),
                torch.cat([b[:n], torch.full_like(b[:n], 1e4), b[n:2 * n], b[3 * n:]]),
                b.new_zeros(3 * n))

    def onnx_output(self, x: Tensor, c: Tensor) -> Tensor:
        """From c_t of every step (ONNX's LSTM), the output gate o_t = sigma(W_o x_t + b_o +
        U_o c_{t-1}) of all steps at once, h_t = o_t sigma_h(c_t)."""
        d, t_len, b, n = c.shape
        before = torch.cat([torch.zeros_like(c[:, :1]), c[:, :-1]], 1).reshape(d, t_len * b, n)
        a_o = torch.baddbmm(self.bias[:, None, 2 * n:3 * n], x.reshape(d, t_len * b, -1),
                            self.weight_ih[:, :, 2 * n:3 * n])
        o = torch.sigmoid(torch.baddbmm(a_o, before, self.weight_hh[:, :, 2 * n:]))
        return o.view(d, t_len, b, n) * (c if self.identity else torch.tanh(c))


class CIFGLayer(RecurrentLayer):
    """``cifg``: gates [o, f, g] read h_{t-1}; c_t = f c_{t-1} + (1 - f) g."""

    gates, recurrent, peepholes = 3, 3, 0
    coupled = 1

    def step(self, p: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        n = self.hidden_size
        a = p + torch.bmm(h, self.weight_hh)
        f = torch.sigmoid(a[..., n:2 * n])
        c = f * c + (1 - f) * torch.tanh(a[..., 2 * n:])
        return torch.sigmoid(a[..., :n]) * torch.tanh(c), c

    def fused(self, p: Tensor, sizes: list[int]) -> Tensor:
        return _CIFGFn.apply(p, self.weight_hh, sizes)

    def onnx_weights(self, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """ONNX's LSTM with input_forget=1 (f = 1 - i) is this cell with its input gate the
        negated forget gate: i = sigma(-a_f) = 1 - f, so f c + (1 - f) g; P zero."""
        n = self.hidden_size
        return (_coupled_blocks(self.weight_ih[k].t(), n),
                _coupled_blocks(self.weight_hh[k].t(), n),
                _coupled_blocks(self.bias[k], n), self.bias.new_zeros(3 * n))


class IndyLayer(RecurrentLayer):
    """``indy``, the IndyLSTM of Gonnet & Deselaers (ICASSP 2020, arXiv:1903.08023): the
    ``lstm`` equations with diagonal recurrent weights, each unit's gates reading only its
    own h_{t-1}: a = W x + u o h_{t-1} + b for [i, f, g, o], so recurrent parameters and
    FLOPs grow linearly with the width. ``weight_hh`` is (directions, 4, n)."""

    class _Fn(torch.autograd.Function):
        """The recurrence over P = W x + b with u (D, 4, n): forward and hand-written
        backward, elementwise per step."""

        @staticmethod
        def forward(ctx, p: Tensor, u: Tensor, sizes: list[int]) -> Tensor:
            d, t_len, b, g4 = p.shape
            n = g4 // 4
            gates, c, tc, h, h0 = _work(p, n, sizes)
            uv = u.unsqueeze(1)
            for t, bs in enumerate(sizes):
                g = gates[:, t, :bs].view(d, bs, 4, n)
                g.addcmul_((h0[:, :bs] if t == 0 else h[:, t - 1, :bs]).unsqueeze(2), uv)
                g[:, :, 0:2].sigmoid_()
                g[:, :, 2].tanh_()
                g[:, :, 3].sigmoid_()
                cp, cn = c[:, t, :bs], c[:, t + 1, :bs]
                torch.mul(g[:, :, 1], cp, out=cn)
                cn.addcmul_(g[:, :, 0], g[:, :, 2])
                _emit_h(g[:, :, 3], cn, tc, h, t, bs)
            ctx.save_for_backward(u, gates, c, tc, h)
            ctx.sizes = sizes
            return h

        @staticmethod
        def backward(ctx, dh_out: Tensor) -> tuple[Tensor, Tensor, None]:
            # the derivative factors are formed step by step, on the rows still active
            # (no whole-sequence factor tensors: less memory, the same speed as measured)
            u, gates, c, tc, h = ctx.saved_tensors
            sizes = ctx.sizes
            d, t_len, b, g4 = gates.shape
            n = g4 // 4
            gv = gates.view(d, t_len, b, 4, n)
            dgates = _zero_tails(torch.empty_like(gates), sizes)
            dgv = dgates.view(d, t_len, b, 4, n)
            dc = gates.new_zeros(d, b, n)
            dh = gates.new_zeros(d, b, n)
            uv = u.unsqueeze(1)
            for t in range(t_len - 1, -1, -1):
                bs = sizes[t]
                dht, dct, dg = dh[:, :bs], dc[:, :bs], dgv[:, t, :bs]
                if t == t_len - 1:
                    dht.copy_(dh_out[:, t, :bs])
                else:  # through the gates of step t + 1, each reading its own unit
                    torch.add(dh_out[:, t, :bs], (dgv[:, t + 1, :bs] * uv).sum(2), out=dht)
                i, f, g, o = gv[:, t, :bs].unbind(2)
                tct = tc[:, t, :bs]
                torch.mul(dht, tct, out=dg[:, :, 3]).mul_(o - o * o)
                dct.addcmul_(dht * o, 1 - tct * tct)
                torch.mul(dct, g, out=dg[:, :, 0]).mul_(i - i * i)
                torch.mul(dct, c[:, t, :bs], out=dg[:, :, 1]).mul_(f - f * f)
                torch.mul(dct, i, out=dg[:, :, 2]).mul_(1 - g * g)
                dct.mul_(f)
            # d u: every step's gate gradients times h_{t-1}, summed once (zero past lengths)
            du = (dgv[:, 1:] * h[:, :-1].unsqueeze(3)).sum((1, 2))
            return dgates, du, None

    def recurrent_shape(self, d: int, n: int) -> tuple[int, int, int]:
        return (d, self.recurrent, n)

    def step(self, p: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        return lstm_update(p + (self.weight_hh.unsqueeze(1) * h.unsqueeze(2)).flatten(2), c)

    def scripted(self, x: Tensor) -> Tensor:
        """torch.lstm (exported as ONNX's LSTM operator) with u o h as a diagonal matrix:
        the same equations, one fused operator per direction."""
        outs = [self._lstm(x[0], 0)]
        if self.directions == 2:  # constant indices: the exporter needs fixed weights
            outs.append(self._lstm(x[1], 1))
        return torch.stack(outs)

    def _lstm(self, x: Tensor, k: int) -> Tensor:
        n = self.hidden_size
        eye = torch.eye(n, dtype=x.dtype, device=x.device).repeat(4, 1)  # (4n, n)
        zeros = x.new_zeros(1, x.shape[1], n)
        weights = [self.weight_ih[k].t(), self.weight_hh[k].reshape(4 * n, 1) * eye,
                   self.bias[k], torch.zeros_like(self.bias[k])]
        return torch.lstm(x, (zeros, zeros), weights, True, 1, 0.0, False, False, False)[0]

    def fused(self, p: Tensor, sizes: list[int]) -> Tensor:
        return self._Fn.apply(p, self.weight_hh, sizes)


# model.cell -> its layer class (``lstm``, nn.LSTM itself, is recog.models.padded_lstm)
LAYERS: dict[str, type[RecurrentLayer]] = {
    "peephole": PeepholeLayer,
    "graves": GravesLayer,
    "cifg": CIFGLayer,
    "indy": IndyLayer,
}


class StackedRecurrent(nn.Module):
    """``num_layers`` layers of one cell, uni- or bidirectional, on padded batch-first input
    (B, T, in) with lengths -> (B, T, directions * hidden), zero past each length (the
    encoder protocol of recog.models.encoder)."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = True, dropout: float = 0.0,
                 peephole: PeepholeOptions | None = None):
        super().__init__()
        if cell not in LAYERS:
            raise ValueError(f"unknown cell {cell!r}; known: {sorted(LAYERS)}")
        d = 2 if bidirectional else 1
        self.directions, self.dropout = d, dropout
        self.output_dim = d * hidden_size
        self.layers = nn.ModuleList(
            LAYERS[cell](input_size if k == 0 else d * hidden_size, hidden_size, d, peephole)
            for k in range(num_layers))

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        if not torch.jit.is_scripting():
            return self._sorted(x, lengths)
        return self._layers(x, lengths)

    @torch.jit.unused
    def _sorted(self, x: Tensor, lengths: Tensor) -> Tensor:
        """Rows longest first, so that the fused kernels work on a prefix of the rows at
        each step; the result in the caller's row order. (torch.export: as they come.)"""
        if exporting():
            return self._layers(x, lengths)
        order = torch.argsort(lengths.cpu(), descending=True, stable=True).to(x.device)
        y = self._layers(x.index_select(0, order), lengths.to(x.device).index_select(0, order))
        return y.index_select(0, torch.argsort(order))

    def _layers(self, x: Tensor, lengths: Tensor) -> Tensor:
        y = x.transpose(0, 1)  # (T, B, in)
        index = time_index(lengths, y.shape[0])
        k = 0
        for layer in self.layers:
            if k > 0 and self.dropout > 0:
                y = nn.functional.dropout(y, self.dropout, self.training)
            if self.directions == 2:
                h = layer(torch.stack([y, reverse_within(y, index)]), lengths)
                y = torch.cat([h[0], reverse_within(h[1], index)], -1)
            else:
                y = layer(y.unsqueeze(0), lengths)[0]
            k += 1
        return zero_padding(y, lengths).transpose(0, 1)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Each layer's parameters, both directions."""
        return [list(layer.parameters()) for layer in self.layers]

    def exportable(self, onnx: bool = False) -> nn.Module:
        """This stack (TorchScript runs ``step`` loops), or for ``onnx`` a copy whose layers
        that ONNX's LSTM can express call it (torch.ops.recog.onnx_lstm)."""
        if not onnx:
            return self
        net = copy.deepcopy(self)
        for layer in net.layers:
            layer.as_onnx_lstm = type(layer).onnx_weights is not RecurrentLayer.onnx_weights
        return net
