"""The decoder registry, the flashlight backend against ours, and the benchmark's smoke run."""

import json
import sys
from pathlib import Path

import pytest
import torch

from recog.decode import DecodeOptions, make_decoder
from recog.decode.beam import BeamOptions, prefix_beam_search
from recog.decode.ngram import train_kneser_ney, write_arpa

ROOT = Path(__file__).resolve().parent.parent
TOKENS = ("<blk>", " ", "a", "b", "c")


def _peaky(seed: int, b: int = 24, t: int = 40, v: int = 5, sharp: float = 3.0
           ) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = sharp * torch.randn(b, t, v, generator=g)
    logits[..., 0] += 2.0
    return logits.log_softmax(-1), torch.randint(t // 2, t + 1, (b,), generator=g)


def _best_path(lp: torch.Tensor, n: int) -> tuple[list[int], float]:
    """Best path by hand: the likeliest token per frame, repeats merged, blanks dropped."""
    path = [max(range(lp.shape[1]), key=lambda c: float(lp[t, c])) for t in range(n)]
    labels = [c for i, c in enumerate(path) if c and (i == 0 or path[i - 1] != c)]
    return labels, sum(float(lp[t, c]) for t, c in enumerate(path))


def test_registry_resolves_names_and_rejects_unknown_ones(tmp_path: Path) -> None:
    lp, n = _peaky(0)
    greedy = make_decoder(DecodeOptions(method="greedy"), TOKENS)
    hyps = greedy.nbest(lp, n)
    for b, (labels, score) in enumerate(_best_path(lp[b], int(n[b])) for b in range(len(n))):
        assert greedy(lp, n)[b] == hyps[b][0].tokens == labels
        assert hyps[b][0].score == pytest.approx(score, abs=1e-4)
    beam = make_decoder(DecodeOptions(method="beam", beam=1, blank_skip=1.0), TOKENS)
    assert len(beam(lp, n)) == 24
    with pytest.raises(ValueError, match="unknown decode.method 'viterbi'"):
        make_decoder(DecodeOptions(method="viterbi"), TOKENS)


def test_lm_and_lexicon_files_reach_the_beam_search(tmp_path: Path) -> None:
    write_arpa(train_kneser_ney([list("ab ab"), list("ba")], 2, TOKENS[1:]), tmp_path / "lm")
    (tmp_path / "words").write_text("ab\nba\n")
    lp, n = _peaky(1)
    dec = make_decoder(DecodeOptions(method="beam", lm=str(tmp_path / "lm"),
                                     lexicon=str(tmp_path / "words")), TOKENS)
    for hyps in dec.nbest(lp, n):
        words = "".join(TOKENS[c] for c in hyps[0].tokens).split(" ")
        # whole words are known; the last may stop inside one when no hypothesis of the
        # beam ended a word
        assert all(w in ("ab", "ba") for w in words[:-1] if w)
        assert any(w.startswith(words[-1]) for w in ("ab", "ba"))
        assert hyps[0].lm < 0


def test_flashlight_agrees_with_ours_without_lm() -> None:
    pytest.importorskip("flashlight.lib.text")
    opts = DecodeOptions(method="flashlight", beam=16, nbest=1)
    fl = make_decoder(opts, TOKENS)
    ours = make_decoder(DecodeOptions(method="beam", beam=16), TOKENS)
    same = total = 0
    for seed in range(4):
        lp, n = _peaky(seed, sharp=8.0)  # as peaky as a trained model's outputs
        a, b = fl(lp, n), ours(lp, n)
        same += sum(x == y for x, y in zip(a, b, strict=True))
        total += len(a)
    assert same / total >= 0.95, f"{same} / {total}"


def test_flashlight_scores_with_a_token_lm(tmp_path: Path) -> None:
    pytest.importorskip("flashlight.lib.text")
    write_arpa(train_kneser_ney([list("ab ab ab")] * 5, 2, TOKENS[1:]), tmp_path / "lm")
    lp, n = _peaky(2, b=4)
    plain = make_decoder(DecodeOptions(method="flashlight", beam=8), TOKENS)(lp, n)
    fused = make_decoder(DecodeOptions(method="flashlight", beam=8, lm=str(tmp_path / "lm"),
                                       lm_weight=5.0), TOKENS)(lp, n)
    assert plain != fused  # a heavy LM changes what flashlight finds


def test_bench_quick_writes_one_record_per_decoder(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "scripts/bench"))
    try:
        import decode as bench
    finally:
        sys.path.pop(0)
    records = bench.main(["--quick", "--json", str(tmp_path / "bench.json")])
    assert json.loads((tmp_path / "bench.json").read_text()) == records
    by_name = {r["name"]: r for r in records}
    assert {"greedy", "recog beam", "recog beam (blank_skip=1.0)",
            "recog beam+LM (blank_skip=1.0)", "recog beam+20k lexicon+bigram"} <= set(by_name)
    for r in records:
        assert {"name", "beam", "lm", "utt_per_s", "error_rate", "peer"} <= set(r)
        assert r["utt_per_s"] > 0 and r["peer"] in by_name
    # like for like: flashlight steps through every frame, as recog with blank_skip=1.0
    if "flashlight-text" in by_name:
        assert by_name["flashlight-text"]["peer"] == "recog beam (blank_skip=1.0)"
        assert by_name["flashlight-text+KenLM"]["peer"] == "recog beam+LM (blank_skip=1.0)"
    beam, greedy = by_name["recog beam"], by_name["greedy"]
    assert beam["error_rate"] <= greedy["error_rate"] + 1.0
    lexicon = by_name["recog beam+20k lexicon+bigram"]
    assert lexicon["lexicon_words"] == 20000 and 0 < lexicon["table_mb"] <= 300


def test_every_beam_option_reaches_the_beam_search() -> None:
    # a value unlike each default, set through DecodeOptions, arrives in the decoder's
    # BeamOptions (and the search runs with them)
    changed = {"beam": 7, "beam_token": 3, "blank_skip": 0.5, "score_threshold": 9.0,
               "nbest": 2, "lm_weight": 0.25, "insertion_bonus": 0.75, "word_lm_weight": 0.1}
    assert set(changed) == set(BeamOptions.__dataclass_fields__)
    assert all(changed[k] != getattr(BeamOptions(), k) for k in changed)
    lp, n = _peaky(3)
    got = make_decoder(DecodeOptions(method="beam", **changed), TOKENS).nbest(lp, n)
    assert got == prefix_beam_search(lp, n, BeamOptions(**changed))
    assert got != prefix_beam_search(lp, n, BeamOptions())
    assert all(len(h) == 2 for h in got)


@pytest.mark.parametrize("bad, message", [
    (dict(beam=0), "decode.beam must be >= 1, not 0"),  # was an IndexError inside beam.py
    (dict(beam=-3), "decode.beam must be >= 1, not -3"),  # "selected index k out of range"
    (dict(nbest=0), "decode.nbest must be >= 1, not 0"),
    (dict(beam_token=-1), r"decode.beam_token must be >= 0 \(0: all\), not -1"),
    (dict(insertion_bonus=float("nan")), "decode.insertion_bonus must be a finite number"),
    (dict(lm_weight=float("inf")), "decode.lm_weight must be a finite number"),
])
def test_decoder_settings_that_cannot_search_are_errors_naming_the_key(
        bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_decoder(DecodeOptions(method="beam", **bad), ["<blk>", "a", "b"])


def test_a_tuning_grid_with_a_value_that_is_not_a_number_is_refused_before_decoding(
        tmp_path: Path) -> None:
    """recog-lm wrote lm_weight=nan into the tuned set-up (every point scored the same, so
    it "won"); the grid is checked before the model is even looked for (absent here)."""
    from recog.config import Config, CorpusConfig
    from recog.stages.lm import tune

    cfg = Config(corpus=CorpusConfig(name="manifest", root=str(tmp_path)),
                 exp_dir=str(tmp_path / "absent"))
    cfg.decode.method, cfg.decode.lm_weights = "beam", [0.1, float("nan")]
    with pytest.raises(ValueError, match=r"decode.lm_weights: a grid of finite numbers"):
        tune(cfg)
