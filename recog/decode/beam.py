"""CTC prefix beam search over a whole batch: per frame, a few tensor operations on
(batch, beam, vocabulary) tensors, so the same code runs on CPU and GPU.

Each hypothesis is a label prefix with its blank-ending and non-blank-ending log-probabilities
(Graves 2012, ch. 7; Hannun et al. 2014). Equal prefixes are found by a 64-bit rolling hash
of the prefix and merged. Optional token-level n-gram shallow fusion (weight ``lm_weight``,
bonus ``insertion_bonus`` per token) and a lexicon automaton act through two tables indexed
by a per-hypothesis state. Frames where the blank's probability exceeds ``blank_skip`` are
dropped beforehand (their blank mass is kept), and without LM, lexicon or bonus only the
extensions that can still reach the beam are scored (``_Pairs``); both keep the search exact
up to the skipped frames' non-blank mass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from recog.decode.automaton import TokenAutomaton
from recog.decode.greedy import check_decoder_input
from recog.decode.lexicon import WordLM

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
    word_lm_weight: float = 0.5  # gamma: weight of the word LM (with a lexicon)


@dataclass(frozen=True)
class Hypothesis:
    """One decoded labelling with its fused score and the two parts of it (natural log)."""

    tokens: list[int]
    score: float  # acoustic + lm_weight * lm + insertion_bonus * len(tokens) (+ word LM)
    acoustic: float  # log of the summed CTC probability of every alignment kept
    lm: float  # LM log-probability of the labelling, end of sentence included


def check_inputs(log_probs: torch.Tensor, lengths: torch.Tensor) -> None:
    """Raise ValueError naming the problem for log-probs a CTC decoder cannot take: the
    shape and lengths (``check_decoder_input``), and a NaN within the lengths."""
    check_decoder_input(log_probs, lengths)
    t = log_probs.shape[1]
    if not bool(torch.isnan(log_probs.sum())):  # a NaN anywhere makes the sum NaN
        return
    frames = torch.arange(t, device=log_probs.device)[None, :] < lengths.to(
        log_probs.device)[:, None]
    bad = torch.isnan(log_probs).any(-1) & frames
    if bool(bad.any()):
        utt, frame = (int(i) for i in bad.nonzero()[0])
        raise ValueError(f"log_probs hold NaN (first: utterance {utt} of the batch, "
                         f"frame {frame})")


@dataclass
class _Frames:
    """The frames the search steps through, rows sorted by kept frames (longest first):
    kept frames packed to the left, pure-blank frames after them (they leave every
    prefix's probability as it is), and each kept frame's m likeliest non-blank tokens."""

    rows: torch.Tensor  # (B,) the original row of each sorted row
    kept: torch.Tensor  # (B,) frames kept per row
    x: torch.Tensor  # (B, T', V) log-probs
    cand_x: torch.Tensor  # (B, T', M) log-probs of the candidate tokens, best first
    cand_tok: torch.Tensor  # (B, T', M + 1) candidate tokens, then 0 (a stay's "token")
    cand_pos: torch.Tensor  # (B, T', V) each token's rank among them (M: not tried)
    skip_mass: torch.Tensor  # (B, T' + 1) blank log-mass of the frames skipped before
    skip_any: torch.Tensor  # (B, T' + 1) whether any were (last column: after the last)


def _frames(lp: torch.Tensor, lengths: torch.Tensor, threshold: float, m: int) -> _Frames:
    """Drop the frames whose P(blank) exceeds ``threshold`` (keeping their blank mass)."""
    b, t, v = lp.shape
    dev = lp.device
    frames = torch.arange(t, device=dev)[None, :] < lengths[:, None]
    keep = frames & (lp[..., 0] <= math.log(threshold)) if threshold < 1 else frames
    kept = keep.sum(1)
    rows = kept.argsort(descending=True)
    kept = kept[rows]
    width = int(kept[0]) if b else 0
    pos = keep.cumsum(1) - 1  # packed position of each kept frame
    skipped = frames & ~keep
    seg = (pos + 1).clamp_max(width)  # a skipped frame belongs before the next kept one
    skip_mass = lp.new_zeros(b, width + 1).scatter_add_(1, seg, torch.where(
        skipped, lp[..., 0], torch.zeros_like(lp[..., 0])))[rows]
    skip_any = lp.new_zeros(b, width + 1).scatter_add_(1, seg, skipped.to(lp.dtype))[rows] > 0
    src_r, src_c = keep.nonzero(as_tuple=True)
    sorted_row = torch.empty_like(rows)
    sorted_row[rows] = torch.arange(b, device=dev)
    at = (sorted_row[src_r], pos[src_r, src_c])
    x = lp[src_r, src_c]  # (N, V), the kept frames
    top_x, top_tok = x[:, 1:].topk(m, dim=1)
    packed = torch.full((b, width, v), NEG_INF, device=dev)
    packed[..., 0] = 0.0
    packed[at] = x
    cand_x = torch.full((b, width, m), NEG_INF, device=dev)
    cand_x[at] = top_x
    cand_tok = torch.zeros(b, width, m + 1, dtype=torch.long, device=dev)
    cand_tok[..., :m] = torch.arange(1, m + 1, device=dev)  # any tokens: -inf on padding
    cand_tok[at[0], at[1], :m] = top_tok + 1
    cand_pos = torch.full((b, width, v), m, dtype=torch.int16, device=dev)
    cand_pos[at] = torch.full((len(x), v), m, dtype=torch.int16, device=dev).scatter_(
        1, top_tok + 1, torch.arange(m, dtype=torch.int16, device=dev).expand(len(x), m))
    return _Frames(rows, kept, packed, cand_x, cand_tok, cand_pos, skip_mass, skip_any)


class _Pairs:
    """The extensions tried per frame: pairs (hypothesis i, i's r-th candidate token).

    With ``cut``, the beam is sorted by probability (no LM, lexicon or bonus), and (i, r)
    has at least (i + 1) * r - 1 other candidates at least as good: only each prefix's
    repeat of its last token (which extends its blank-ending part) may score lower, and an
    extension merged into a hypothesis is replaced by that hypothesis's stay. So pairs with
    (i + 1) * r <= K hold every one that can reach the beam: 66 of 272 at K = 16.
    Candidates are laid out as [P pairs, K stays, a column for writes with no place]."""

    def __init__(self, k: int, m: int, bsz: int, cut: bool, dev: torch.device):
        pairs = [(i, r) for i in range(k) for r in range(m) if not cut or (i + 1) * r <= k]
        self.n, self.k, self.m, self.bsz = len(pairs), k, m, bsz
        self.full = self.n == k * m  # then (B, K, M) broadcasting beats indexing
        hyp = torch.tensor([i for i, _ in pairs] + list(range(k)))
        rank = torch.tensor([r for _, r in pairs] + [m] * k)  # a stay's rank: m
        at = torch.full((k, m + 1), self.n + k, dtype=torch.long)
        at[hyp[:self.n], rank[:self.n]] = torch.arange(self.n)
        # column of pair (i, r): at[:, i * (m + 1) + r] (r = m: none, the spare column)
        self.at = at.to(dev).view(1, -1).expand(bsz, -1)
        self.own = torch.arange(0, k * (m + 1), m + 1, device=dev)  # pair (i, r): own[i] + r
        self.hyp = hyp.to(dev).expand(bsz, -1)  # per candidate column
        self.rank = rank.to(dev).expand(bsz, -1)
        self.hyp_idx, self.rank_idx = self.hyp[0, :self.n], self.rank[0, :self.n]

    def shrink(self, n: int) -> None:
        """Keep the first n rows of the batch."""
        self.at, self.hyp, self.rank, self.bsz = self.at[:n], self.hyp[:n], self.rank[:n], n

    def by_hyp(self, a: torch.Tensor) -> torch.Tensor:
        """A per-hypothesis (B, K) tensor, spread over the pairs (with ``by_tok``)."""
        return a[:, :, None] if self.full else a.index_select(1, self.hyp_idx)

    def by_tok(self, a: torch.Tensor) -> torch.Tensor:
        """A per-candidate-token (B, M) tensor, spread over the pairs."""
        return a[:, None, :self.m] if self.full else a.index_select(1, self.rank_idx)

    def spread(self, a: torch.Tensor) -> torch.Tensor:
        """A by_hyp/by_tok expression as (B, P)."""
        return a.expand(self.bsz, self.k, self.m).reshape(self.bsz, self.n) if self.full \
            else a


_STATE = ("pb", "pnb", "lm_sum", "nlab", "last", "hsh", "phsh", "lm_st", "lx_st", "w_st",
          "w_sum")


@dataclass
class _Beam:
    """The beam, (B, K) per tensor: each prefix's blank- and non-blank-ending log-probs, LM
    sum, label count (kept up only for the bonus), last token (0: none yet), the 64-bit hash
    of the prefix and of the prefix less its last token (dead hypotheses carry -2 and -1,
    which no live prefix's hash equals, but by chance), lexicon and word-LM states and
    word-LM sum. At first only hypothesis 0, the empty prefix, is alive."""

    pb: torch.Tensor
    pnb: torch.Tensor
    lm_sum: torch.Tensor
    nlab: torch.Tensor
    last: torch.Tensor
    hsh: torch.Tensor
    phsh: torch.Tensor
    lm_st: torch.Tensor
    lx_st: torch.Tensor
    w_st: torch.Tensor
    w_sum: torch.Tensor

    @classmethod
    def start(cls, bsz: int, k: int, dev: torch.device, starts: tuple[int, int, int]
              ) -> _Beam:
        """The empty prefix alone; ``starts``: the LM's, lexicon's and word LM's start."""
        def full(value: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.full((bsz, k), value, dtype=dtype, device=dev)

        long = torch.long
        beam = cls(full(NEG_INF), full(NEG_INF), full(0.0), full(0, long), full(0, long),
                   full(-2, long), full(-1, long), *(full(s, long) for s in starts),
                   full(0.0))
        beam.pb[:, 0] = 0.0
        beam.hsh[:, 0] = 0
        return beam

    def rows(self, s: slice) -> _Beam:
        return _Beam(*(getattr(self, f)[s] for f in _STATE))

    def final(self, total: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """What the end of the search needs of rows that leave: their summed log-prob and
        LM, lexicon and word-LM states and sums, and label counts."""
        return total, self.lm_sum, self.lm_st, self.lx_st, self.w_st, self.w_sum, self.nlab


class _Search:
    """One batch's search: its weights, frames and candidate layout; ``step`` advances the
    beam by one kept frame and returns its back-pointers."""

    def __init__(self, lp: torch.Tensor, lengths: torch.Tensor, options: BeamOptions,
                 lm: TokenAutomaton | None, lexicon: TokenAutomaton | None,
                 words: WordLM | None):
        self.options, self.lm, self.lexicon, self.words = options, lm, lexicon, words
        bsz, _, vsz = lp.shape
        self.k = k = options.beam
        self.alpha, self.beta = options.lm_weight, options.insertion_bonus
        self.gamma = options.word_lm_weight
        exact_cut = lm is None and lexicon is None and not self.beta
        m = vsz - 1  # tokens tried per frame: the m likeliest
        if options.beam_token:
            m = min(m, options.beam_token)
        elif exact_cut:
            m = min(m, k + 1)
        self.m = m
        self.fr = _frames(lp, lengths, options.blank_skip, m)
        self.width = self.fr.x.shape[1]
        self.pairs = _Pairs(k, m, bsz, exact_cut, lp.device)
        self.n_pairs = self.pairs.n
        self.n_at = (self.fr.kept[None, :] > torch.arange(self.width, device=lp.device)[
            :, None]).sum(1).tolist()
        self.collapse_at = self.fr.skip_any.any(0).tolist()

    def step(self, b: _Beam, total: torch.Tensor, frame: tuple[torch.Tensor, ...],
             inf_col: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Extend every prefix by the frame's candidates, merge equal prefixes, keep the K
        best (``b`` updated in place); returns each kept hypothesis's source and token."""
        x, cx, ctok, pos = frame
        pairs, lm, lexicon, words = self.pairs, self.lm, self.lexicon, self.words
        by_hyp, by_tok, spread = pairs.by_hyp, pairs.by_tok, pairs.spread
        x_last = x.gather(1, b.last)  # last = 0 (the blank) only where pnb is -inf
        rank = pos.gather(1, b.last)  # where each prefix's last token is tried
        # merge: hypothesis j = hypothesis i + token last[j] -> i's extension joins j
        has_parent, parent = (b.phsh[:, None, :] == b.hsh[:, :, None]).max(1)  # (B, j)
        p_pb, p_total, p_last = (a.gather(1, parent) for a in (b.pb, total, b.last))
        join = torch.where(p_last == b.last, p_pb, p_total) + x_last
        stay_pnb = torch.logaddexp(b.pnb + x_last, torch.where(has_parent, join, NEG_INF))
        stay_pb = total + x[:, :1]
        # acoustic log-prob of every candidate's non-blank-ending part; after its own
        # last token only the blank-ending part of a prefix may extend
        ac = torch.cat([spread(by_hyp(total) + by_tok(cx)), stay_pnb, inf_col], 1)
        ac.scatter_(1, pairs.at.gather(1, pairs.own + rank), b.pb + x_last)
        score = ac[:, :self.n_pairs]
        ext_lm = ext_w = word = w_next = lx_next = None
        if self.beta:
            score = score + spread(by_hyp(self.beta * (b.nlab + 1)))
        if lm is not None:
            ext_lm = spread(by_hyp(b.lm_sum) + lm.logp[by_hyp(b.lm_st), by_tok(ctok)])
            score = score + self.alpha * ext_lm
        if lexicon is not None:
            lx_next = lexicon.next[by_hyp(b.lx_st), by_tok(ctok)]
            score = score.masked_fill(spread(lx_next < 0), NEG_INF)
        if words is not None:  # a token that takes a word's end back to the root ends it
            word = words.column[b.lx_st]  # (B, K): the word ending at each state, 0: none
            w_logp, w_next = words.lm.score(b.w_st, word)  # only used where word > 0
            ends = (lx_next == 0) & by_hyp(word > 0)
            ext_w = spread(by_hyp(b.w_sum) + torch.where(ends, by_hyp(w_logp), 0.0))
            score = score + self.gamma * ext_w
        stay = torch.logaddexp(stay_pb, stay_pnb)
        if lm is not None:
            stay = stay + self.alpha * b.lm_sum
        if self.beta:
            stay = stay + self.beta * b.nlab
        if words is not None:
            stay = stay + self.gamma * b.w_sum
        # i's extension by last[j] is j itself: it joined j's stay above
        dead = torch.where(has_parent, pairs.at.gather(1, parent * (self.m + 1) + rank),
                           self.n_pairs + self.k)
        flat = torch.cat([score, stay, inf_col], 1).scatter_(
            1, dead, inf_col.expand(-1, self.k))[:, :-1]
        return self._keep(b, flat, ac, stay_pb, ctok, (ext_lm, ext_w, word, w_next))

    def _keep(self, b: _Beam, flat: torch.Tensor, ac: torch.Tensor, stay_pb: torch.Tensor,
              ctok: torch.Tensor, fused: tuple[torch.Tensor | None, ...]
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prune the candidates' fused scores ``flat`` to the K best and update ``b``."""
        ext_lm, ext_w, word, w_next = fused
        options, lm, lexicon, words, pairs = (self.options, self.lm, self.lexicon,
                                              self.words, self.pairs)
        if options.score_threshold > 0:
            best = flat.max(1, keepdim=True).values
            flat = flat.masked_fill(flat < best - options.score_threshold, NEG_INF)
        top, idx = flat.topk(self.k, dim=1)  # (B, K)
        pruned = top == NEG_INF  # picked only to fill the beam: dead
        src = pairs.hyp.gather(1, idx)
        tok = ctok.gather(1, pairs.rank.gather(1, idx))  # 0 for a stay
        is_ext = tok > 0
        old_hsh = b.hsh.gather(1, src)
        b.pnb = ac.gather(1, idx).masked_fill(pruned, NEG_INF)
        b.pb = torch.where(is_ext, NEG_INF, stay_pb.gather(1, src))  # -inf on a pruned stay
        if options.score_threshold > 0:  # which may prune a stay that has probability
            b.pb = b.pb.masked_fill(pruned, NEG_INF)
        b.last = torch.where(is_ext, tok, b.last.gather(1, src))
        b.hsh = torch.where(is_ext, old_hsh * _HASH_MUL + tok, old_hsh).masked_fill(pruned, -2)
        b.phsh = torch.where(is_ext, old_hsh, b.phsh.gather(1, src)).masked_fill(pruned, -1)
        if self.beta:
            b.nlab = b.nlab.gather(1, src) + is_ext.long()
        at = idx.clamp_max(self.n_pairs - 1)
        if lm is not None:
            b.lm_sum = torch.where(is_ext, ext_lm.gather(1, at), b.lm_sum.gather(1, src))
            b.lm_st = torch.where(is_ext, lm.next[b.lm_st.gather(1, src), tok],
                                  b.lm_st.gather(1, src))
        if words is not None:
            b.w_sum = torch.where(is_ext, ext_w.gather(1, at), b.w_sum.gather(1, src))
            word, b.w_st, w_next = (a.gather(1, src) for a in (word, b.w_st, w_next))
        if lexicon is not None:  # -1 only on dead hypotheses
            old_lx = b.lx_st.gather(1, src)
            b.lx_st = torch.where(is_ext, lexicon.next[old_lx, tok], old_lx).clamp_min(0)
            if words is not None:
                b.w_st = torch.where(is_ext & (b.lx_st == 0) & (word > 0), w_next, b.w_st)
        return src, tok

    def finish(self, done: list[tuple[torch.Tensor, ...]], back_k: list[torch.Tensor],
               back_tok: list[torch.Tensor]) -> list[list[Hypothesis]]:
        """The end-of-sentence scores of every row's final beam, then the n best
        labellings traced back through the pointers, in the batch's row order."""
        lm, lexicon, words = self.lm, self.lexicon, self.words
        acoustic, lm_sum, lm_st, lx_st, w_st, w_sum, nlab = (torch.cat(a) for a in
                                                              zip(*done[::-1], strict=True))
        lm_total = lm_sum + lm.final[lm_st] if lm is not None else lm_sum
        final = acoustic + self.alpha * lm_total + self.beta * nlab
        if words is not None:  # the last word, if the line ends in one, then </s>
            word = words.column[lx_st]
            w_logp, after = words.lm.score(w_st, word)
            final = final + self.gamma * (w_sum + torch.where(
                word > 0, w_logp + words.lm.final(after), words.lm.final(w_st)))
        if lexicon is not None:
            in_word = lexicon.final[lx_st] > NEG_INF
            final = torch.where(in_word | ~in_word.any(1, keepdim=True), final, NEG_INF)
        n, bsz = min(self.options.nbest, self.k), len(final)
        order = final.topk(n, dim=1).indices  # (B, N)
        seq = torch.zeros(self.width, bsz, n, dtype=torch.long, device=final.device)
        sel = order
        for t in range(self.width - 1, -1, -1):  # back through the pointers; row r: kept[r]
            head = sel[:self.n_at[t]]
            seq[t, :self.n_at[t]] = back_tok[t].gather(1, head)
            sel = torch.cat([back_k[t].gather(1, head), sel[self.n_at[t]:]])
        seq = seq.permute(1, 2, 0).cpu().numpy()
        fused, ac, lmv = (a.gather(1, order).cpu().tolist() for a in (final, acoustic,
                                                                       lm_total))
        out: list[list[Hypothesis]] = [[] for _ in range(bsz)]
        for i, row_of in enumerate(self.fr.rows.tolist()):
            for j in range(n):
                if fused[i][j] == NEG_INF:
                    break
                row = seq[i, j]
                out[row_of].append(Hypothesis(row[np.flatnonzero(row)].tolist(), fused[i][j],
                                              ac[i][j], lmv[i][j]))
        return out


def prefix_beam_search(log_probs: torch.Tensor, lengths: torch.Tensor,
                       options: BeamOptions | None = None,
                       lm: TokenAutomaton | None = None,
                       lexicon: TokenAutomaton | None = None,
                       words: WordLM | None = None) -> list[list[Hypothesis]]:
    """The ``options.nbest`` best labellings of each utterance, best first (blank = 0).

    ``lm`` adds ``lm_weight`` times its log-probability to every extension and its
    end-of-sentence score at the end; ``lexicon`` forbids extensions it has no arc for and
    hypotheses that end outside a word (unless no hypothesis of an utterance ends in one);
    ``words``, a word n-gram over the lexicon, adds ``word_lm_weight`` times its
    log-probability as each word ends, and its end-of-sentence score at the end.
    """
    options = options or BeamOptions()
    check_inputs(log_probs, lengths)
    dev = log_probs.device
    bsz, _, vsz = log_probs.shape
    for name, table in (("language model", lm), ("lexicon", lexicon)):
        if table is not None and table.next.shape[1] != vsz:
            raise ValueError(f"the {name} covers {table.next.shape[1]} tokens but the "
                             f"log-probs have {vsz}")
    if words is not None and lexicon is None:
        raise ValueError("a word LM is scored through a lexicon: give one")
    if bsz == 0:
        return []
    search = _Search(log_probs.detach().float(), lengths.to(dev).long(), options, lm,
                     lexicon, words)
    fr = search.fr
    beam = _Beam.start(bsz, search.k, dev, (lm.start if lm else 0,
                                            lexicon.start if lexicon else 0,
                                            words.lm.start if words else 0))
    inf_col = torch.full((bsz, 1), NEG_INF, device=dev)
    back_k, back_tok = [], []
    done: list[tuple[torch.Tensor, ...]] = []  # final states of the rows that have left
    # rows that have run out of frames see pure-blank frames, which change nothing, until
    # a quarter of the batch has: then they leave it
    now = bsz
    per_frame = (fr.x, fr.cand_x, fr.cand_tok, fr.cand_pos)
    frames = zip(*(a.unbind(1) for a in per_frame), strict=True)
    for t in range(search.width + 1):
        total = torch.logaddexp(beam.pb, beam.pnb)
        if search.collapse_at[t]:  # blank frames were skipped before this one: their mass
            collapse = fr.skip_any[:now, t, None]
            beam.pb = torch.where(collapse, total + fr.skip_mass[:now, t, None], beam.pb)
            beam.pnb = beam.pnb.masked_fill(collapse, NEG_INF)
            total = torch.logaddexp(beam.pb, beam.pnb)
        n = search.n_at[t] if t < search.width else 0
        if n < 0.75 * now:
            done.append(beam.rows(slice(n, None)).final(total[n:]))
            beam, total, inf_col, now = beam.rows(slice(n)), total[:n], inf_col[:n], n
            search.pairs.shrink(n)
            frames = zip(*(a[:n, t:].unbind(1) for a in per_frame), strict=True)
        if t == search.width:
            break
        src, tok = search.step(beam, total, next(frames), inf_col)
        back_k.append(src)
        back_tok.append(tok)
    return search.finish(done, back_k, back_tok)
