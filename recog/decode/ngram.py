"""Token and word n-gram language models: a modified Kneser-Ney trainer as KenLM's lmplz
builds one (Chen & Goodman 1998: three discounts per order, D1, D2 and D3+, from the counts
of adjusted counts; interpolated, unigrams interpolated with the uniform distribution over
the vocabulary with ``<unk>``), count pruning, ARPA writing and reading, and compilation
into the automaton the beam search steps through.

Tokens are the model's symbols (phones, characters, words); a symbol holding whitespace is
written to ARPA under a name of its own (``arpa_symbol``), since ARPA separates words by
spaces. A token outside the LM's vocabulary is scored as ``<unk>``.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from recog.atomic import atomic_write_text
from recog.data.utterance import DataError
from recog.decode.automaton import TokenAutomaton

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
_NAMED = {" ": "<space>", "\t": "<tab>"}
_LN10 = math.log(10.0)
NO_PROB = -99.0  # ARPA's log10 probability of <s>, which is never predicted
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)  # lmplz --discount_fallback's D1, D2, D3+


def arpa_symbol(token: str) -> str:
    """The ARPA word for a model token (whitespace gets a name, e.g. ' ' -> '<space>')."""
    if token in _NAMED:
        return _NAMED[token]
    if not token or any(c.isspace() for c in token):
        raise ValueError(f"token {token!r} cannot be an ARPA word")
    return token


@dataclass
class NGramModel:
    """n-grams (tuples of ARPA words) per order -> (log10 probability, log10 backoff);
    ``discounts[k]``: the (D1, D2, D3+) the trainer used at order k (empty when read)."""

    order: int
    grams: list[dict[tuple[str, ...], tuple[float, float]]] = field(default_factory=list)
    discounts: list[tuple[float, float, float]] = field(default_factory=list)

    def word(self, w: str) -> str:
        """``w`` itself if it has a unigram, else ``<unk>`` (a KeyError naming ``w`` if the
        model has no ``<unk>`` either)."""
        if (w,) in self.grams[1]:
            return w
        if (UNK,) in self.grams[1]:
            return UNK
        raise KeyError(f"{w!r} is not in the LM's vocabulary, which has no {UNK}")

    def logprob10(self, history: Sequence[str], word: str) -> float:
        """log10 P(word | history) by ARPA back-off (a direct reference for the tables);
        words outside the vocabulary are ``<unk>``."""
        h = tuple(history)[-(self.order - 1):] if self.order > 1 else ()
        h = tuple(x if x == BOS else self.word(x) for x in h)
        word = self.word(word)
        bow = 0.0
        while True:
            entry = self.grams[len(h) + 1].get((*h, word))
            if entry is not None:
                return bow + entry[0]
            ctx = self.grams[len(h)].get(h)
            bow += ctx[1] if ctx else 0.0
            h = h[1:]

    def perplexity(self, sentences: Iterable[Sequence[str]]) -> float:
        """Perplexity over the sentences, </s> included, <s> not (as KenLM's query)."""
        total, n = 0.0, 0
        for sent in sentences:
            history = [BOS]
            for w in [*(arpa_symbol(t) for t in sent), EOS]:
                total += self.logprob10(history, w)
                history.append(w)
                n += 1
        return 10 ** (-total / max(n, 1))


def discounts(adjusted: Iterable[int]) -> tuple[float, float, float]:
    """Modified Kneser-Ney discounts (D1, D2, D3+) from adjusted counts (Chen & Goodman
    eq. 26): Y = n1 / (n1 + 2 n2), Dj = j - (j + 1) Y n(j+1) / nj. lmplz's fallback
    (0.5, 1, 1.5) where a count of counts is 0 or a discount falls outside [0, j]."""
    n = Counter(c for c in adjusted if 1 <= c <= 4)
    if not all(n[j] for j in (1, 2, 3, 4)):
        return FALLBACK_DISCOUNTS
    y = n[1] / (n[1] + 2 * n[2])
    d = tuple(j - (j + 1) * y * n[j + 1] / n[j] for j in (1, 2, 3))
    return d if all(0 <= dj <= j for j, dj in enumerate(d, 1)) else FALLBACK_DISCOUNTS


def train_kneser_ney(sentences: Iterable[Sequence[str]], order: int,
                     vocabulary: Sequence[str], prune: Sequence[int] = ()) -> NGramModel:
    """Interpolated modified Kneser-Ney n-gram of ``order`` over the ARPA words of
    ``vocabulary`` (every one gets a unigram, unseen ones the uniform share; tokens outside
    it count as ``<unk>``), as lmplz estimates one. ``prune[k - 2]``: drop the k-grams
    (k >= 2) seen at most that many times (lmplz --prune; thresholds must not decrease);
    their probability mass goes to the back-off."""
    if order < 1:
        raise ValueError(f"n-gram order must be >= 1, got {order}")
    prune = list(prune)
    if len(prune) > order - 1 or prune != sorted(prune) or any(p < 0 for p in prune):
        raise ValueError(f"prune needs at most {order - 1} non-decreasing counts >= 0 (from "
                         f"the 2-grams up), got {prune}")
    thresholds = [0, 0] + prune + [prune[-1] if prune else 0] * (order - 1 - len(prune))
    words = {arpa_symbol(t) for t in vocabulary} - {BOS, EOS, UNK}
    raw: list[Counter[tuple[str, ...]]] = [Counter() for _ in range(order + 1)]
    for sent in sentences:
        seq = (BOS, *(w if w in words else UNK for w in map(arpa_symbol, sent)), EOS)
        for k in range(1, order + 1):
            for i in range(max(len(seq) - k + 1, 0)):
                if k > 1 or i > 0:  # the unigram <s> is never predicted
                    raw[k][seq[i:i + k]] += 1
    if not raw[1]:
        raise ValueError("no training sentences for the n-gram")
    # adjusted counts: raw at the highest order and for n-grams starting at <s> (no left
    # context), else the number of distinct words seen before (continuation counts)
    counts: list[Counter[tuple[str, ...]]] = [Counter() for _ in range(order + 1)]
    counts[order] = raw[order]
    for k in range(1, order):
        cont: Counter[tuple[str, ...]] = Counter(g[1:] for g in raw[k + 1])
        counts[k] = Counter({g: raw[k][g] if g[0] == BOS else cont[g] for g in raw[k]})
    model = NGramModel(order, [{}], [()])  # type: ignore[list-item]
    vocab = sorted(words | {EOS, UNK})
    probs: list[dict[tuple[str, ...], float]] = [{} for _ in range(order + 1)]
    gammas: dict[tuple[str, ...], float] = {}
    for k in range(1, order + 1):
        d = discounts(counts[k].values())
        model.discounts.append(d)
        kept = {g: c for g, c in counts[k].items() if k == 1 or raw[k][g] > thresholds[k]}
        total: defaultdict[tuple[str, ...], int] = defaultdict(int)
        mass: defaultdict[tuple[str, ...], float] = defaultdict(float)
        for g, c in counts[k].items():
            total[g[:-1]] += c
            # a kept n-gram gives up its discount, a pruned one all of its count
            mass[g[:-1]] += d[min(c, 3) - 1] if g in kept else c
        for h, tot in total.items():
            gammas[h] = mass[h] / tot
        if k == 1:
            uniform = gammas[()] / len(vocab)
            for w in vocab:
                c = counts[1].get((w,), 0)
                probs[1][(w,)] = (c - d[min(c, 3) - 1] if c else 0) / total[()] + uniform
            continue
        for g, c in kept.items():
            lower = _lower(probs, gammas, g[1:])
            probs[k][g] = (c - d[min(c, 3) - 1]) / total[g[:-1]] + gammas[g[:-1]] * lower
    for k in range(1, order + 1):  # a context none of whose extensions is kept: bow 1
        contexts = {g[:-1] for g in probs[k + 1]} if k < order else set()
        model.grams.append({g: (math.log10(p), math.log10(gammas[g]) if g in contexts
                                else 0.0) for g, p in sorted(probs[k].items())})
    bos_bow = math.log10(gammas[(BOS,)]) if order > 1 and any(
        g[0] == BOS for g in probs[2]) else 0.0
    model.grams[1][(BOS,)] = (NO_PROB, bos_bow)
    return model


def _lower(probs: list[dict], gammas: dict, gram: tuple[str, ...]) -> float:
    """P(gram[-1] | gram[:-1]) of the already computed lower orders, by interpolation."""
    if gram in probs[len(gram)]:
        return probs[len(gram)][gram]
    return gammas.get(gram[:-1], 1.0) * _lower(probs, gammas, gram[1:])


def write_arpa(model: NGramModel, path: str | Path) -> None:
    """Write ``model`` as an ARPA file (atomically)."""
    lines = ["", "\\data\\"]
    lines += [f"ngram {k}={len(model.grams[k])}" for k in range(1, model.order + 1)]
    for k in range(1, model.order + 1):
        lines += ["", f"\\{k}-grams:"]
        for g, (p, b) in model.grams[k].items():
            lines.append(f"{p:.6f}\t{' '.join(g)}" + (f"\t{b:.6f}" if k < model.order and b
                                                       else ""))
    lines += ["", "\\end\\", ""]
    atomic_write_text(Path(path), "\n".join(lines))


_COUNT = re.compile(r"ngram (\d+)\s*=\s*(\d+)$")
_SECTION = re.compile(r"\\(\d+)-grams:$")


def read_arpa(path: str | Path) -> NGramModel:
    """Read an ARPA file; a malformed one is a DataError naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read the ARPA file: {e}") from None
    declared: dict[int, int] = {}
    grams: dict[int, dict[tuple[str, ...], tuple[float, float]]] = {}
    section: int | None = None
    state = "start"
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if state == "start":
            if line == "\\data\\":
                state = "counts"
            continue  # text before \data\ is a comment
        if line == "\\end\\":
            state = "end"
            break
        if state == "counts" and (m := _COUNT.match(line)):
            declared[int(m.group(1))] = int(m.group(2))
            continue
        if m := _SECTION.match(line):
            section = int(m.group(1))
            if section not in declared:
                raise DataError(path, f"section {line} has no 'ngram {section}=' count", n)
            grams[section] = {}
            state = "grams"
            continue
        if state != "grams" or section is None:
            raise DataError(path, f"expected 'ngram N=COUNT' or a section header, got "
                            f"{raw!r}", n)
        parts = line.split()
        if len(parts) not in (section + 1, section + 2):
            raise DataError(path, f"a {section}-gram line needs a log-probability, {section} "
                            f"word(s) and an optional back-off, got {raw!r}", n)
        try:
            prob = float(parts[0])
            bow = float(parts[section + 1]) if len(parts) == section + 2 else 0.0
        except ValueError:
            raise DataError(path, f"not a number in {raw!r}", n) from None
        if not (math.isfinite(prob) and math.isfinite(bow)) or prob > 0:
            raise DataError(path, f"log10 probability must be finite and <= 0: {raw!r}", n)
        grams[section][tuple(parts[1:section + 1])] = (prob, bow)
    if state != "end":
        raise DataError(path, "no \\data\\ header" if state == "start" else
                        "truncated: no \\end\\ line")
    if not declared or sorted(declared) != list(range(1, max(declared) + 1)):
        raise DataError(path, f"n-gram orders must be 1..N, got {sorted(declared)}")
    for k, count in declared.items():
        got = len(grams.get(k, {}))
        if got != count:
            raise DataError(path, f"header declares {count} {k}-grams, the file has {got}")
    order = max(declared)
    return NGramModel(order, [{}] + [grams[k] for k in range(1, order + 1)])


@dataclass
class _Compiled:
    """An ARPA model over integer ids: ``states`` maps each listed history (tuple of ids,
    0 = <s>) of order < N to a state; ``entries[k]`` the k-grams over ids -> (log10 p,
    log10 bow). ``eos`` and ``unk`` are the ids of </s> and <unk> (-1: none)."""

    states: dict[tuple[int, ...], int]
    entries: list[dict[tuple[int, ...], tuple[float, float]]]
    eos: int
    unk: int

    def back(self, h: tuple[int, ...]) -> int:
        """The state of the longest listed suffix of ``h``."""
        while h not in self.states:
            h = h[1:]
        return self.states[h]


def _compile(model: NGramModel, tokens: Sequence[str], source: str | Path) -> _Compiled:
    """Map ``tokens`` (ids 1..W) onto the model's words; the ones it lacks become <unk>
    (id W + 2) or, without one, a DataError naming them. </s> is id W + 1."""
    if (EOS,) not in model.grams[1]:
        raise DataError(source, f"the LM has no {EOS} unigram")
    eos, unk = len(tokens) + 1, len(tokens) + 2
    words = [arpa_symbol(t) for t in tokens]
    ids = {w: i + 1 for i, w in enumerate(words) if (w,) in model.grams[1]}
    missing = [t for t, w in zip(tokens, words, strict=True) if w not in ids]
    if missing and (UNK,) not in model.grams[1]:
        raise DataError(source, f"the LM's vocabulary does not cover {len(missing)} model "
                        f"token(s): {missing[:20]} (and it has no {UNK})")
    ids.update({BOS: 0, EOS: eos, UNK: unk})  # the blank never enters a history
    states: dict[tuple[int, ...], int] = {(): 0}
    entries: list[dict[tuple[int, ...], tuple[float, float]]] = [{}]
    for k in range(1, model.order + 1):
        level = {tuple(ids[w] for w in g): pb for g, pb in model.grams[k].items()
                 if all(w in ids for w in g)}  # (<s>,) too: the history of a start
        entries.append(level)
        if k < model.order:
            for g in level:
                if g[-1] != eos:
                    states.setdefault(g, len(states))
    return _Compiled(states, entries, eos, unk if (UNK,) in model.grams[1] else -1)


def lm_automaton(model: NGramModel, tokens: Sequence[str], source: str | Path = "<lm>"
                 ) -> TokenAutomaton:
    """Dense tables of the back-off n-gram over the model's token ids (index 0 = blank):
    one state per listed history, log-probs in natural log. A token the LM lacks is scored
    as <unk> (a DataError if the LM has none)."""
    words = [arpa_symbol(t) for t in tokens[1:]]
    c = _compile(model, tokens[1:], source)
    vsz = len(tokens)
    width = vsz + 2  # work columns: the tokens, </s>, <unk>
    n_states = len(c.states)
    logp = np.zeros((n_states, width))
    nxt = np.zeros((n_states, width), dtype=np.int64)
    children: defaultdict[tuple[int, ...], list[int]] = defaultdict(list)
    for g in c.states:
        if g:
            children[g[:-1]].append(g[-1])
    by_ctx: defaultdict[tuple[int, ...], list[tuple[int, float]]] = defaultdict(list)
    for level in c.entries:
        for g, (p, _) in level.items():
            by_ctx[g[:-1]].append((g[-1], p))
    for h, s in sorted(c.states.items(), key=lambda kv: len(kv[0])):
        if h:
            back = c.back(h[1:])
            logp[s] = logp[back] + c.entries[len(h)].get(h, (0.0, 0.0))[1]
            nxt[s] = nxt[back]
        for col, p in by_ctx.get(h, ()):
            logp[s, col] = p
        for col in children[h]:
            nxt[s, col] = c.states[(*h, col)]
    if c.unk >= 0:  # every token the LM lacks behaves as <unk>, in history too
        lacking = [i + 1 for i, w in enumerate(words) if (w,) not in model.grams[1]]
        logp[:, lacking] = logp[:, [c.unk]]
        nxt[:, lacking] = nxt[:, [c.unk]]
    nxt[:, 0] = np.arange(n_states)
    logp *= _LN10
    logp[:, 0] = 0.0
    start = c.states.get((0,), 0)
    return TokenAutomaton(torch.from_numpy(nxt[:, :vsz]).contiguous(),
                          torch.from_numpy(logp[:, :vsz]).float().contiguous(),
                          torch.from_numpy(logp[:, c.eos]).float(), start)


@dataclass(frozen=True)
class SparseLM:
    """A back-off n-gram over word ids 1..W stored sparsely (one row per listed n-gram),
    for vocabularies too large for dense (states x words) tables. ``chain[s]``: s and the
    states it backs off to (N of them, the empty history repeated at the end), ``acc[s]``
    the summed back-off weights on the way; a lookup tries all N at once and takes the
    first listed one. ``alias[w]``: the id w is scored as (<unk> for the words the LM
    lacks); id W + 1 is </s>."""

    keys: torch.Tensor  # (E,) long, state * stride + word, sorted
    logp: torch.Tensor  # (E,) natural log-probability of each listed n-gram
    dest: torch.Tensor  # (E,) state after it
    chain: torch.Tensor  # (S, N) long
    acc: torch.Tensor  # (S, N) natural-log back-off weight to each state of the chain
    alias: torch.Tensor  # (W + 2,) long
    stride: int
    start: int

    def to(self, device: torch.device | str) -> SparseLM:
        return SparseLM(*(getattr(self, f).to(device) for f in
                          ("keys", "logp", "dest", "chain", "acc", "alias")),
                        self.stride, self.start)

    def score(self, state: torch.Tensor, word: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """log P(word | state) (natural log) and the state after it, elementwise (NaN and
        state 0 for word 0, which is no word)."""
        key = self.chain[state] * self.stride + self.alias[word][..., None]  # (..., N)
        pos = torch.searchsorted(self.keys, key).clamp_max(len(self.keys) - 1)
        hit = self.keys[pos] == key
        first = hit.to(torch.uint8).argmax(-1, keepdim=True)  # the empty history lists all
        at = pos.gather(-1, first)[..., 0]
        logp = self.acc[state].gather(-1, first)[..., 0] + self.logp[at]
        ok = hit.any(-1)
        return logp.masked_fill(~ok, float("nan")), self.dest[at].masked_fill(~ok, 0)

    def final(self, state: torch.Tensor) -> torch.Tensor:
        """log P(</s> | state)."""
        return self.score(state, torch.full_like(state, self.stride - 2))[0]

    @property
    def nbytes(self) -> int:
        return sum(t.element_size() * t.numel() for t in (self.keys, self.logp, self.dest,
                                                          self.chain, self.acc, self.alias))


def sparse_lm(model: NGramModel, words: Sequence[str], source: str | Path = "<lm>"
              ) -> SparseLM:
    """The back-off n-gram over ``words`` (ids 1..W) as a ``SparseLM``; a word the LM
    lacks is scored as <unk> (a DataError if it has none)."""
    c = _compile(model, words, source)
    stride = len(words) + 3  # ids 0..W, </s>, <unk>
    rows = [(c.states[g[:-1]], g[-1], p * _LN10, c.states[g] if g in c.states
             else c.back(g[1:])) for level in c.entries[1:] for g, (p, _) in level.items()
            if g[:-1] in c.states and g[-1] != 0]  # <s> is never predicted
    rows.sort(key=lambda r: r[0] * stride + r[1])
    n = len(c.states)
    chain, acc = np.zeros((n, model.order), dtype=np.int64), np.zeros((n, model.order))
    for h, s in c.states.items():
        for j in range(1, model.order):  # the state j back-offs away, and their weights
            chain[s, j] = c.back(h[j:]) if j <= len(h) else 0
            bow = c.entries[len(h) - j + 1].get(h[j - 1:], (0.0, 0.0))[1] if j <= len(h) \
                else 0.0
            acc[s, j] = acc[s, j - 1] + bow * _LN10
    alias = np.arange(stride)
    if c.unk >= 0:
        alias[[i + 1 for i, w in enumerate(words) if (arpa_symbol(w),) not in
               model.grams[1]]] = c.unk
    chain[:, 0] = np.arange(n)
    return SparseLM(torch.tensor([r[0] * stride + r[1] for r in rows], dtype=torch.long),
                    torch.tensor([r[2] for r in rows], dtype=torch.float32),
                    torch.tensor([r[3] for r in rows], dtype=torch.long),
                    torch.from_numpy(chain), torch.from_numpy(acc).float(),
                    torch.from_numpy(alias), stride, c.states.get((0,), 0))


def load_lm(path: str | Path, tokens: Sequence[str]) -> TokenAutomaton:
    """Read an ARPA file and compile it for the model's tokens."""
    return lm_automaton(read_arpa(path), tokens, path)
