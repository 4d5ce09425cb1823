"""CTC prefix beam search over a whole batch: per frame, a few tensor operations on
(batch, beam, vocabulary) tensors, so the same code runs on CPU and GPU.

Each hypothesis is a label prefix with its blank-ending and non-blank-ending log-probabilities
(Graves 2012, ch. 7; Hannun et al. 2014). Equal prefixes are found by a 64-bit rolling hash
of the prefix and merged. Optional token-level n-gram shallow fusion (weight ``lm_weight``,
bonus ``insertion_bonus`` per token) and a lexicon automaton act through two tables indexed
by a per-hypothesis state. Frames where the blank's probability exceeds ``blank_skip`` are
dropped beforehand (their blank mass is kept), which is where most of the speed comes from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from recog.decode.automaton import TokenAutomaton

NEG_INF = float("-inf")
_HASH_MUL = 0x100000001B3  # FNV-1a 64-bit prime; products wrap modulo 2**64


@dataclass
class BeamOptions:
    """Beam search settings; defaults are the ones the recipes use."""

    beam: int = 16  # hypotheses kept per utterance
    beam_token: int = 0  # tokens tried per frame, the most likely ones (0: all)
    blank_skip: float = 0.999  # skip frames whose P(blank) exceeds this (>= 1: none)
    score_threshold: float = 0.0  # drop hypotheses this far below the best (0: keep all)
    nbest: int = 1
    lm_weight: float = 0.5  # alpha: weight of the LM log-probability (natural log)
    insertion_bonus: float = 0.0  # beta: added per emitted token


@dataclass(frozen=True)
class Hypothesis:
    """One decoded labelling with its fused score and the two parts of it (natural log)."""

    tokens: list[int]
    score: float  # acoustic + lm_weight * lm + insertion_bonus * len(tokens)
    acoustic: float  # log of the summed CTC probability of every alignment kept
    lm: float  # LM log-probability of the labelling, end of sentence included


def check_inputs(log_probs: torch.Tensor, lengths: torch.Tensor) -> None:
    """Raise ValueError naming the problem for log-probs a CTC decoder cannot take."""
    if log_probs.dim() != 3:
        raise ValueError(f"log_probs must be (batch, time, vocab), got shape "
                         f"{tuple(log_probs.shape)}")
    b, t, _ = log_probs.shape
    if lengths.dim() != 1 or lengths.shape[0] != b:
        raise ValueError(f"lengths must have shape ({b},), got {tuple(lengths.shape)}")
    if b and (int(lengths.max()) > t or int(lengths.min()) < 0):
        raise ValueError(f"lengths must lie in [0, {t}] (the log-probs' time axis), got "
                         f"min {int(lengths.min())}, max {int(lengths.max())}")
    frames = torch.arange(t, device=log_probs.device)[None, :] < lengths.to(
        log_probs.device)[:, None]
    bad = torch.isnan(log_probs).any(-1) & frames
    if bool(bad.any()):
        utt, frame = (int(i) for i in bad.nonzero()[0])
        raise ValueError(f"log_probs hold NaN (first: utterance {utt} of the batch, "
                         f"frame {frame})")


def _skip_blank_frames(lp: torch.Tensor, lengths: torch.Tensor, threshold: float
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pack the frames to keep to the left. Returns the packed log-probs (B, T', V), kept
    counts (B,), and per packed position (B, T'+1) the blank log-mass of the frames skipped
    just before it and whether any were (the last column: skipped after the last kept)."""
    b, t, _ = lp.shape
    frames = torch.arange(t, device=lp.device)[None, :] < lengths[:, None]
    keep = frames & (lp[..., 0] <= math.log(threshold)) if threshold < 1 else frames
    kept = keep.sum(1)
    width = int(kept.max()) if b else 0
    pos = keep.cumsum(1) - 1  # packed position of each kept frame
    packed = lp.new_zeros(b, width, lp.shape[2])
    rows, cols = keep.nonzero(as_tuple=True)
    packed[rows, pos[rows, cols]] = lp[rows, cols]
    skipped = frames & ~keep
    seg = (pos + 1).clamp_max(width)  # a skipped frame belongs before the next kept one
    skip_mass = lp.new_zeros(b, width + 1).scatter_add_(1, seg, torch.where(
        skipped, lp[..., 0], torch.zeros_like(lp[..., 0])))
    skip_any = lp.new_zeros(b, width + 1).scatter_add_(1, seg, skipped.to(lp.dtype)) > 0
    return packed, kept, skip_mass, skip_any


def prefix_beam_search(log_probs: torch.Tensor, lengths: torch.Tensor,
                       options: BeamOptions | None = None,
                       lm: TokenAutomaton | None = None,
                       lexicon: TokenAutomaton | None = None) -> list[list[Hypothesis]]:
    """The ``options.nbest`` best labellings of each utterance, best first (blank = 0).

    ``lm`` adds ``lm_weight`` times its log-probability to every extension and its
    end-of-sentence score at the end; ``lexicon`` forbids extensions it has no arc for and
    hypotheses that end outside a word (unless no hypothesis of an utterance ends in one).
    """
    options = options or BeamOptions()
    check_inputs(log_probs, lengths)
    dev = log_probs.device
    bsz, _, vsz = log_probs.shape
    for name, table in (("language model", lm), ("lexicon", lexicon)):
        if table is not None and table.next.shape[1] != vsz:
            raise ValueError(f"the {name} covers {table.next.shape[1]} tokens but the "
                             f"log-probs have {vsz}")
    if bsz == 0:
        return []
    lp = log_probs.detach().float()
    lengths = lengths.to(dev).long()
    packed, kept, skip_mass, skip_any = _skip_blank_frames(lp, lengths, options.blank_skip)
    k = options.beam
    alpha, beta = options.lm_weight, options.insertion_bonus
    inf = torch.tensor(NEG_INF, device=dev)
    ar_b = torch.arange(bsz, device=dev)

    # state of the beam, (B, K); only hypothesis 0, the empty prefix, is alive at first
    pb = torch.full((bsz, k), NEG_INF, device=dev)
    pb[:, 0] = 0.0
    pnb = torch.full((bsz, k), NEG_INF, device=dev)
    lm_sum = torch.zeros(bsz, k, device=dev)
    nlab = torch.zeros(bsz, k, dtype=torch.long, device=dev)
    last = torch.zeros(bsz, k, dtype=torch.long, device=dev)  # 0: no label yet
    hsh = torch.zeros(bsz, k, dtype=torch.long, device=dev)
    phsh = torch.full((bsz, k), -1, dtype=torch.long, device=dev)
    lm_st = torch.full((bsz, k), lm.start if lm else 0, dtype=torch.long, device=dev)
    lx_st = torch.full((bsz, k), lexicon.start if lexicon else 0, dtype=torch.long,
                       device=dev)
    back_k, back_tok = [], []
    # tokens tried per frame: without LM or lexicon the K + 1 most likely ones hold every
    # candidate that can reach the beam (an extension scores prefix + token, and only the
    # repeat of a prefix's last token scores lower), so the cut is exact
    m = vsz - 1
    if options.beam_token:
        m = min(m, options.beam_token)
    elif lm is None and lexicon is None:
        m = min(m, k + 1)
    keep_ids = torch.arange(k, device=dev).expand(bsz, k)
    tok_all = torch.arange(1, vsz, device=dev).expand(bsz, vsz - 1)
    m_ids = torch.arange(m, device=dev)
    k_ids = torch.arange(k, device=dev)[None, :, None]

    for t in range(packed.shape[1]):
        active = (t < kept)[:, None]  # (B, 1)
        x = packed[:, t]  # (B, V)
        collapse = skip_any[:, t][:, None]
        total = torch.logaddexp(pb, pnb)
        pb = torch.where(collapse, total + skip_mass[:, t][:, None], pb)
        pnb = torch.where(collapse, inf, pnb)
        total = torch.logaddexp(pb, pnb)
        alive = total > NEG_INF
        x_last = torch.where(last > 0, x.gather(1, last), inf)
        if m < vsz - 1:
            cx, ctok = x[:, 1:].topk(m, dim=1)
            ctok = ctok + 1
        else:
            cx, ctok = x[:, 1:], tok_all
        # extensions (B, K, M): prefix k + token ctok[m]; after its own last token only
        # the blank-ending part of the prefix may extend
        is_rep = ctok[:, None, :] == last[..., None]
        ext = torch.where(is_rep, pb[..., None], total[..., None]) + cx[:, None, :]
        stay_pb = total + x[:, :1]
        stay_pnb = pnb + x_last
        # merge: hypothesis j = hypothesis i + token last[j] -> i's extension joins j
        match = (phsh[:, None, :] == hsh[:, :, None]) & (nlab[:, None, :] == nlab[:, :, None]
                                                          + 1) & alive[:, :, None] \
            & alive[:, None, :]  # (B, i, j)
        has_parent = match.any(1)
        parent = (match.long() * k_ids).sum(1)  # (B, j)
        p_pb, p_total, p_last = (a.gather(1, parent) for a in (pb, total, last))
        join = torch.where(p_last == last, p_pb, p_total) + x_last
        stay_pnb = torch.where(has_parent, torch.logaddexp(stay_pnb, join), stay_pnb)
        where_last = ctok[:, None, :] == last[..., None]  # (B, j, M)
        slot = (where_last.long() * m_ids).sum(2)
        dead = torch.where(has_parent & where_last.any(2), parent * m + slot, k * m)
        ext = torch.cat([ext.view(bsz, -1), inf.expand(bsz, 1)], 1).scatter(
            1, dead, inf.expand(bsz, k))[:, :-1].view(bsz, k, m)

        score = ext + beta * (nlab + 1)[..., None]
        if lm is not None:
            ext_lm = lm_sum[..., None] + lm.logp[lm_st[..., None], ctok[:, None, :]]
            score = score + alpha * ext_lm
        if lexicon is not None:
            score = score.masked_fill(lexicon.next[lx_st[..., None], ctok[:, None, :]] < 0,
                                      NEG_INF)
        stay = torch.logaddexp(stay_pb, stay_pnb) + alpha * lm_sum + beta * nlab
        flat = torch.cat([stay[..., None], score], 2).view(bsz, -1)  # column 0: stay
        if options.score_threshold > 0:
            best = flat.max(1, keepdim=True).values
            flat = flat.masked_fill(flat < best - options.score_threshold, NEG_INF)
        top, idx = flat.topk(k, dim=1)  # (B, K)
        pruned = top == NEG_INF  # picked only to fill the beam: dead
        src, col = idx // (m + 1), idx % (m + 1)
        is_ext = col > 0
        ext_idx = src * m + (col - 1).clamp_min(0)
        tok = torch.where(is_ext, ctok.gather(1, (col - 1).clamp_min(0)), 0)

        def pick(a: torch.Tensor, src: torch.Tensor = src) -> torch.Tensor:
            return a.gather(1, src)

        new_pnb = torch.where(is_ext, ext.view(bsz, -1).gather(1, ext_idx), pick(stay_pnb))
        new_pnb = new_pnb.masked_fill(pruned, NEG_INF)
        new_pb = torch.where(is_ext | pruned, inf, pick(stay_pb))
        new_last = torch.where(is_ext, tok, pick(last))
        new_hsh = torch.where(is_ext, pick(hsh) * _HASH_MUL + tok, pick(hsh))
        new_phsh = torch.where(is_ext, pick(hsh), pick(phsh))
        new_nlab = pick(nlab) + is_ext.long()
        if lm is not None:
            new_lm_sum = torch.where(is_ext, ext_lm.view(bsz, -1).gather(1, ext_idx),
                                     pick(lm_sum))
            new_lm_st = torch.where(is_ext, lm.next[pick(lm_st), tok], pick(lm_st))
            lm_sum = torch.where(active, new_lm_sum, lm_sum)
            lm_st = torch.where(active, new_lm_st, lm_st)
        if lexicon is not None:
            new_lx = torch.where(is_ext, lexicon.next[pick(lx_st), tok], pick(lx_st)
                                 ).clamp_min(0)  # -1 only on dead hypotheses
            lx_st = torch.where(active, new_lx, lx_st)
        pb = torch.where(active, new_pb, pb)
        pnb = torch.where(active, new_pnb, pnb)
        last = torch.where(active, new_last, last)
        hsh = torch.where(active, new_hsh, hsh)
        phsh = torch.where(active, new_phsh, phsh)
        nlab = torch.where(active, new_nlab, nlab)
        back_k.append(torch.where(active, src, keep_ids))
        back_tok.append(torch.where(active, tok, 0))

    # skipped frames after the last kept one, then the end-of-sentence scores
    tail = skip_any[ar_b, kept][:, None]
    total = torch.logaddexp(pb, pnb)
    acoustic = torch.where(tail, total + skip_mass[ar_b, kept][:, None], total)
    lm_total = lm_sum + lm.final[lm_st] if lm is not None else lm_sum
    final = acoustic + alpha * lm_total + beta * nlab
    if lexicon is not None:
        in_word = lexicon.final[lx_st] > NEG_INF
        final = torch.where(in_word | ~in_word.any(1, keepdim=True), final, inf)
    n = min(options.nbest, k)
    order = final.topk(n, dim=1).indices  # (B, N)
    sel, toks = order, []
    for bk, bt in zip(reversed(back_k), reversed(back_tok), strict=True):
        toks.append(bt.gather(1, sel))
        sel = bk.gather(1, sel)
    seq = (torch.stack(toks[::-1], 2) if toks else
           torch.zeros(bsz, n, 0, dtype=torch.long, device=dev)).cpu().numpy()
    fused, ac, lmv = (a.gather(1, order).cpu().tolist() for a in (final, acoustic, lm_total))
    out = []
    for b in range(bsz):
        hyps = []
        for j in range(n):
            if fused[b][j] == NEG_INF:
                break
            row = seq[b, j]
            hyps.append(Hypothesis(row[np.flatnonzero(row)].tolist(), fused[b][j], ac[b][j],
                                   lmv[b][j]))
        out.append(hyps)
    return out
