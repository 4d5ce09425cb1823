"""Token n-gram language models: an interpolated Kneser-Ney trainer (Chen & Goodman 1999,
one discount per order, D = n1 / (n1 + 2 n2)), ARPA writing and reading, and compilation
into the automaton the beam search steps through.

Tokens are the model's symbols (phones, characters); a symbol holding whitespace is written
to ARPA under a name of its own (``arpa_symbol``), since ARPA separates words by spaces.
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

from recog.data.utterance import DataError, atomic_write_text
from recog.decode.automaton import TokenAutomaton

BOS, EOS = "<s>", "</s>"
_NAMED = {" ": "<space>", "\t": "<tab>"}
_LN10 = math.log(10.0)
NO_PROB = -99.0  # ARPA's log10 probability of <s>, which is never predicted


def arpa_symbol(token: str) -> str:
    """The ARPA word for a model token (whitespace gets a name, e.g. ' ' -> '<space>')."""
    if token in _NAMED:
        return _NAMED[token]
    if not token or any(c.isspace() for c in token):
        raise ValueError(f"token {token!r} cannot be an ARPA word")
    return token


@dataclass
class NGramModel:
    """n-grams (tuples of ARPA words) per order -> (log10 probability, log10 backoff)."""

    order: int
    grams: list[dict[tuple[str, ...], tuple[float, float]]] = field(default_factory=list)

    def logprob10(self, history: Sequence[str], word: str) -> float:
        """log10 P(word | history) by ARPA back-off (a direct reference for the tables)."""
        h = tuple(history)[-(self.order - 1):] if self.order > 1 else ()
        bow = 0.0
        while True:
            entry = self.grams[len(h) + 1].get((*h, word))
            if entry is not None:
                return bow + entry[0]
            if not h:
                raise KeyError(word)
            ctx = self.grams[len(h)].get(h)
            bow += ctx[1] if ctx else 0.0
            h = h[1:]


def _discount(counts: Iterable[int]) -> float:
    cc = Counter(c for c in counts if c <= 2)
    n1, n2 = cc[1], cc[2]
    return n1 / (n1 + 2 * n2) if n1 and n2 else 0.5


def train_kneser_ney(sentences: Iterable[Sequence[str]], order: int,
                     vocabulary: Sequence[str]) -> NGramModel:
    """Interpolated Kneser-Ney n-gram of ``order`` over the ARPA words of ``vocabulary``
    (every one gets a unigram; unseen ones share the uniform floor)."""
    if order < 1:
        raise ValueError(f"n-gram order must be >= 1, got {order}")
    words = [arpa_symbol(t) for t in vocabulary]
    highest: Counter[tuple[str, ...]] = Counter()
    raw: list[Counter[tuple[str, ...]]] = [Counter() for _ in range(order + 1)]
    for sent in sentences:
        seq = (BOS, *(arpa_symbol(t) for t in sent), EOS)
        for k in range(1, order + 1):
            for i in range(max(len(seq) - k + 1, 0)):
                gram = seq[i:i + k]
                if gram == (BOS,):
                    continue
                raw[k][gram] += 1
    highest = raw[order]
    # lower orders: continuation counts, except n-grams starting at <s> (no left context)
    counts: list[Counter[tuple[str, ...]]] = [Counter() for _ in range(order + 1)]
    counts[order] = highest
    for k in range(1, order):
        cont: Counter[tuple[str, ...]] = Counter()
        for gram in raw[k + 1]:
            cont[gram[1:]] += 1
        counts[k] = Counter({g: (raw[k][g] if g[0] == BOS else cont[g]) for g in raw[k]})
    predicted = sorted(set(words) | {EOS})
    probs: list[dict[tuple[str, ...], float]] = [{} for _ in range(order + 1)]
    gammas: dict[tuple[str, ...], float] = {}
    # unigrams, interpolated with the uniform distribution
    d1 = _discount(counts[1].values())
    total1 = sum(counts[1].values())
    if total1 == 0:
        raise ValueError("no training sentences for the n-gram")
    floor = d1 * len(counts[1]) / total1 / len(predicted)
    for w in predicted:
        probs[1][(w,)] = max(counts[1][(w,)] - d1, 0) / total1 + floor
    for k in range(2, order + 1):
        d = _discount(counts[k].values())
        ctx_total: defaultdict[tuple[str, ...], int] = defaultdict(int)
        ctx_types: defaultdict[tuple[str, ...], int] = defaultdict(int)
        for g, c in counts[k].items():
            ctx_total[g[:-1]] += c
            ctx_types[g[:-1]] += 1
        for h, tot in ctx_total.items():
            gammas[h] = d * ctx_types[h] / tot
        for g, c in counts[k].items():
            lower = _lower(probs, gammas, g[1:])
            probs[k][g] = (c - d) / ctx_total[g[:-1]] + gammas[g[:-1]] * lower
    model = NGramModel(order, [{}])
    for k in range(1, order + 1):
        model.grams.append({
            g: (math.log10(p), math.log10(gammas[g]) if g in gammas and k < order else 0.0)
            for g, p in sorted(probs[k].items())})
    model.grams[1][(BOS,)] = (NO_PROB, math.log10(gammas[(BOS,)]) if (BOS,) in gammas
                              and order > 1 else 0.0)
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


def lm_automaton(model: NGramModel, tokens: Sequence[str], source: str | Path = "<lm>"
                 ) -> TokenAutomaton:
    """Tables of the back-off n-gram over the model's token ids (index 0 = blank): one state
    per listed history, log-probs in natural log. Every token must have a unigram."""
    words = [arpa_symbol(t) for t in tokens[1:]]
    missing = [t for t, w in zip(tokens[1:], words, strict=True) if (w,) not in model.grams[1]]
    if missing:
        raise DataError(source, f"the LM's vocabulary does not cover {len(missing)} model "
                        f"token(s): {missing[:20]}")
    if (EOS,) not in model.grams[1]:
        raise DataError(source, f"the LM has no {EOS} unigram")
    ids = {w: i + 1 for i, w in enumerate(words)}
    ids[BOS] = 0  # histories use 0 for <s>; the blank never enters a history
    vsz = len(tokens)
    eos = vsz  # column of </s> in the work rows
    # states: the empty history and every listed n-gram of order < N over known words
    states: dict[tuple[int, ...], int] = {(): 0}
    entries: list[dict[tuple[int, ...], tuple[float, float]]] = [{}]
    for k in range(1, model.order + 1):
        level = {}
        for g, pb in model.grams[k].items():
            if all(w in ids for w in g[:-1]) and (g[-1] in ids or g[-1] == EOS):
                level[tuple(ids[w] for w in g[:-1]) + (ids.get(g[-1], eos),)] = pb
        entries.append(level)
        if k < model.order:
            for g in level:
                if g[-1] != eos:
                    states.setdefault(g, len(states))
    n_states = len(states)
    logp = np.zeros((n_states, vsz + 1))
    nxt = np.zeros((n_states, vsz), dtype=np.int64)
    children: defaultdict[tuple[int, ...], list[int]] = defaultdict(list)
    for g in states:
        if g:
            children[g[:-1]].append(g[-1])
    by_ctx: defaultdict[tuple[int, ...], list[tuple[int, float]]] = defaultdict(list)
    for level in entries:
        for g, (p, _) in level.items():
            by_ctx[g[:-1]].append((g[-1], p))
    for h, s in sorted(states.items(), key=lambda kv: len(kv[0])):
        if h:
            back = _longest_state(states, h[1:])
            bow = entries[len(h)].get(h, (0.0, 0.0))[1]
            logp[s] = logp[back] + bow
            nxt[s] = nxt[back]
        else:
            nxt[s] = 0
        for c, p in by_ctx.get(h, ()):
            logp[s, c] = p
        for c in children[h]:
            nxt[s, c] = states[(*h, c)]
    nxt[:, 0] = np.arange(n_states)
    logp *= _LN10
    logp[:, 0] = 0.0
    start = states.get((0,), 0)
    return TokenAutomaton(torch.from_numpy(nxt), torch.from_numpy(logp[:, :vsz]).float(),
                          torch.from_numpy(logp[:, eos]).float(), start)


def _longest_state(states: dict[tuple[int, ...], int], h: tuple[int, ...]) -> int:
    while h not in states:
        h = h[1:]
    return states[h]


def load_lm(path: str | Path, tokens: Sequence[str]) -> TokenAutomaton:
    """Read an ARPA file and compile it for the model's tokens."""
    return lm_automaton(read_arpa(path), tokens, path)
