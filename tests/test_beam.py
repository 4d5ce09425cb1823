"""Prefix beam search against brute-force enumeration of every CTC alignment."""

import itertools
import math

import pytest
import torch

from recog.decode.automaton import TokenAutomaton
from recog.decode.beam import BeamOptions, prefix_beam_search
from recog.decode.greedy import greedy_decode


def brute_force(lp: torch.Tensor) -> dict[tuple[int, ...], float]:
    """log P(labelling) for every labelling, summing exp over all V**T alignments."""
    t, v = lp.shape
    probs: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(v), repeat=t):
        lab = tuple(c for i, c in enumerate(path) if c != 0 and (i == 0 or path[i - 1] != c))
        p = math.exp(sum(float(lp[i, c]) for i, c in enumerate(path)))
        probs[lab] = probs.get(lab, 0.0) + p
    return {k: math.log(p) for k, p in probs.items()}


def _random_log_probs(seed: int, b: int, t: int, v: int, sharp: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (sharp * torch.randn(b, t, v, generator=g, dtype=torch.float64)).log_softmax(-1)


@pytest.mark.parametrize("seed,t,v", [(0, 1, 2), (1, 3, 3), (2, 5, 4), (3, 6, 4), (4, 6, 3),
                                      (5, 4, 4)])
def test_full_beam_matches_brute_force(seed: int, t: int, v: int) -> None:
    lengths = torch.tensor([t, max(t - 2, 0), t])
    lp = _random_log_probs(seed, 3, t, v)
    n_prefixes = sum((v - 1) ** n for n in range(t + 1))
    opts = BeamOptions(beam=n_prefixes, nbest=n_prefixes, blank_skip=1.0)
    result = prefix_beam_search(lp, lengths, opts)
    for b in range(3):
        exact = brute_force(lp[b, : int(lengths[b])])
        got = {tuple(h.tokens): h.score for h in result[b]}
        assert set(got) == set(exact)  # every labelling, each once (prefixes merged)
        for lab, score in got.items():
            assert score == pytest.approx(exact[lab], abs=1e-5)
        best = max(exact, key=exact.get)
        assert tuple(result[b][0].tokens) == best
        assert [h.score for h in result[b]] == sorted(got.values(), reverse=True)


def test_narrow_beam_finds_the_best_labelling_on_peaky_input() -> None:
    lp = _random_log_probs(7, 8, 6, 4, sharp=4.0)
    lengths = torch.full((8,), 6)
    result = prefix_beam_search(lp, lengths, BeamOptions(beam=8, blank_skip=1.0))
    for b in range(8):
        exact = brute_force(lp[b])
        best = max(exact, key=exact.get)
        assert tuple(result[b][0].tokens) == best
        # a narrow beam may lose some alignments of a prefix, never add any
        assert result[b][0].score <= exact[best] + 1e-6


def test_blank_skipping_keeps_scores_when_blank_is_certain() -> None:
    # frames that are pure blank (P = 1) are skipped without changing any score
    lp = _random_log_probs(3, 2, 6, 4)
    lp[:, 2] = torch.log(torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64))
    lp[:, 5] = lp[:, 2]
    lengths = torch.tensor([6, 6])
    full = prefix_beam_search(lp, lengths, BeamOptions(beam=200, nbest=5, blank_skip=1.0))
    skip = prefix_beam_search(lp, lengths, BeamOptions(beam=200, nbest=5, blank_skip=0.9))
    for a, b in zip(full, skip, strict=True):
        assert [h.tokens for h in a] == [h.tokens for h in b]
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)


def test_repeats_need_a_blank_between_them() -> None:
    # frames: a, blank, a  -> "a a";  a, a -> "a"
    eye = torch.eye(3, dtype=torch.float64).clamp_min(1e-12).log()
    lp = torch.stack([eye[[1, 0, 1]], eye[[1, 1, 0]]])
    for skip in (1.0, 0.99):
        hyps = prefix_beam_search(lp, torch.tensor([3, 3]), BeamOptions(beam=4,
                                                                        blank_skip=skip))
        assert [h[0].tokens for h in hyps] == [[1, 1], [1]]


def test_agrees_with_greedy_on_peaky_batches_of_mixed_lengths() -> None:
    g = torch.Generator().manual_seed(0)
    lp = (8 * torch.randn(16, 40, 6, generator=g)).log_softmax(-1)
    lengths = torch.randint(0, 41, (16,), generator=g)
    hyps = prefix_beam_search(lp, lengths, BeamOptions(beam=4))
    assert [h[0].tokens for h in hyps] == greedy_decode(lp, lengths)


def test_lm_shallow_fusion_matches_rescoring_by_hand() -> None:
    # unigram-like LM (one state): fused score = acoustic + alpha * sum log p(c) + beta * n
    lp = _random_log_probs(5, 1, 5, 3)
    lm_logp = torch.log(torch.tensor([[1.0, 0.3, 0.6]]))
    lm = TokenAutomaton(torch.zeros(1, 3, dtype=torch.long), lm_logp.float(),
                        torch.log(torch.tensor([0.1])), 0)
    opts = BeamOptions(beam=200, nbest=200, blank_skip=1.0, lm_weight=0.7,
                       insertion_bonus=0.4)
    exact = brute_force(lp[0])
    for h in prefix_beam_search(lp, torch.tensor([5]), opts, lm=lm)[0]:
        lm_score = sum(float(lm_logp[0, c]) for c in h.tokens) + math.log(0.1)
        assert h.lm == pytest.approx(lm_score, abs=1e-5)
        assert h.score == pytest.approx(exact[tuple(h.tokens)] + 0.7 * lm_score
                                        + 0.4 * len(h.tokens), abs=1e-5)


@pytest.mark.parametrize("bad,message", [
    (lambda lp, n: (lp.index_fill(1, torch.tensor([2]), float("nan")), n), "NaN"),
    (lambda lp, n: (lp, n + 1), "lengths must lie in"),
    (lambda lp, n: (lp[0], n), "must be \\(batch, time, vocab\\)"),
])
def test_bad_input_is_a_clear_error(bad, message: str) -> None:
    lp, n = bad(_random_log_probs(0, 2, 4, 3), torch.tensor([4, 4]))
    with pytest.raises(ValueError, match=message):
        prefix_beam_search(lp, n)


def test_nan_in_padding_is_ignored() -> None:
    lp = _random_log_probs(0, 2, 4, 3)
    lp[1, 3] = float("nan")
    assert len(prefix_beam_search(lp, torch.tensor([4, 3]))) == 2


@pytest.mark.parametrize("beam,sharp", [(4, 1.5), (16, 1.0), (16, 3.0), (7, 0.5)])
def test_trying_fewer_extensions_without_lm_is_exact(beam: int, sharp: float) -> None:
    # without LM the search tries the pairs (hypothesis i, its r-th token) with
    # (i + 1) * r <= beam only; a one-state LM of log-probability 0 changes no score but
    # makes it try every pair, so the two must agree
    lp = _random_log_probs(9, 6, 30, 20, sharp=sharp)
    lengths = torch.tensor([30, 25, 30, 10, 30, 1])
    null_lm = TokenAutomaton(torch.zeros(1, 20, dtype=torch.long), torch.zeros(1, 20),
                             torch.zeros(1), 0)
    opts = BeamOptions(beam=beam, nbest=beam, blank_skip=1.0)
    cut = prefix_beam_search(lp, lengths, opts)
    full = prefix_beam_search(lp, lengths, opts, lm=null_lm)
    for a, b in zip(cut, full, strict=True):
        assert [h.tokens for h in a] == [h.tokens for h in b]
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)


def test_scores_do_not_depend_on_the_other_utterances_of_the_batch() -> None:
    # a short utterance ending in skipped blank frames scores the same alone and beside a
    # longer one (its skipped tail was once counted twice in a batch)
    lp = _random_log_probs(11, 2, 12, 5, sharp=1.0)
    lp[1, 6:9] = torch.tensor([4.0, 0, 0, 0, 0], dtype=torch.float64).log_softmax(-1)
    lengths = torch.tensor([12, 9])
    opts = BeamOptions(beam=8, nbest=3, blank_skip=0.5)
    both = prefix_beam_search(lp, lengths, opts)[1]
    alone = prefix_beam_search(lp[1:, :9], lengths[1:], opts)[0]
    assert [h.tokens for h in both] == [h.tokens for h in alone]
    assert [h.score for h in both] == pytest.approx([h.score for h in alone], abs=1e-5)
