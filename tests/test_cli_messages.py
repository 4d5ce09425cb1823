"""What a new user meets first: --help per verb, experiments found from anywhere, keys the
schema does not know refused (with or without '+'), and one-line errors with a hint where
there were tracebacks or silence."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from recog import cli, pipeline
from recog.cli import commandline
from recog.cli.schema import check_keys, register
from recog.data.utterance import ConfigError
from recog.metrics import read_text

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HYDRA_VERBS = ["prepare", "features", "train", "decode", "lm", "finetune"]
register()


def _compose(overrides: list[str]):  # noqa: ANN202 - a DictConfig
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides)


@pytest.mark.parametrize("verb", HYDRA_VERBS)
def test_help_says_what_the_verb_does_its_options_and_the_experiments(
        verb: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(sys, "argv", [f"recog-{verb}", "--help"])
    getattr(cli, verb)()
    out = capsys.readouterr().out
    assert "powered by Hydra" not in out and len(out.splitlines()) < 60
    assert out.splitlines()[2].startswith(f"recog-{verb}")  # the verb's own description
    main = commandline.MAIN_OPTIONS[verb][0].split()[0]
    assert main in out
    for recipe in ("timit", "iam_ondb", "fsdd", "finetune"):
        names = sorted(p.stem for p in (ROOT / "recipes" / recipe / "conf/experiment").glob(
            "*.yaml"))
        assert f"  {recipe:<9} {', '.join(names)}" in out
    assert "relative to the working directory" in out


@pytest.mark.parametrize("verb", ["score", "transcribe", "export"])
def test_argparse_verbs_have_help(verb: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stop:
        getattr(cli, verb)(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert stop.value.code == 0 and f"recog-{verb}" in out
    assert "timit: cells, graves2013_ctc, synthetic" in out  # where the models come from


def test_experiments_are_found_without_a_searchpath() -> None:
    timit = str(ROOT / "recipes/timit/conf")
    assert commandline.with_experiment(["+experiment=graves2013_ctc", "x=1"]) == [
        f"hydra.searchpath=[file://{timit}]", "+experiment=graves2013_ctc", "x=1"]
    assert commandline.with_experiment(["experiment=timit/synthetic"])[1] == (
        "+experiment=synthetic")
    assert commandline.with_experiment(["recipe=iam_ondb", "+experiment=synthetic"])[0] == (
        f"hydra.searchpath=[file://{ROOT / 'recipes/iam_ondb/conf'}]")
    given = ["hydra.searchpath=[file:///mine]", "+experiment=synthetic"]
    assert commandline.with_experiment(given) == given  # the recipes' own way, untouched
    with pytest.raises(ConfigError, match=r"'synthetic' is an experiment of the recipes "
                       r"iam_ondb, timit: say which, e.g. \+experiment=iam_ondb/synthetic"):
        commandline.with_experiment(["+experiment=synthetic"])
    with pytest.raises(ConfigError, match=r"no experiment 'synthtic': looked in .*recipes/\*/"
                       r"conf/experiment/ \(there: .*timit/synthetic"):
        commandline.with_experiment(["+experiment=synthtic"])
    cfg = _compose(commandline.with_experiment(["+experiment=graves2013_ctc"]))
    assert (cfg.model.layers, cfg.model.hidden) == (5, 250)


@pytest.mark.parametrize("override,key", [("+model.hiden=200", "model.hiden"),
                                          ("+finetune.x=1", "finetune.x"),
                                          ("+experiment=synthetic", "experiment"),
                                          ("+trainer.epochs_=3", "trainer.epochs_")])
def test_added_keys_the_schema_does_not_know_are_refused(override: str, key: str) -> None:
    cfg = _compose([override])  # Hydra itself lets '+' add any key
    with pytest.raises(ConfigError, match=rf"^{key}: not a key of the configuration"):
        check_keys(cfg)
    check_keys(_compose(["corpus.root=/x", "model.hidden=3"]))  # known keys pass


def test_a_typo_run_exits_2_naming_the_key_and_the_near_one(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(sys, "argv", ["recog-train", "+model.hiden=200"])
    with pytest.raises(SystemExit) as stop:
        cli.train()
    assert stop.value.code == 2
    assert capsys.readouterr().err == ("error: model.hiden: not a key of the configuration; "
                                       "did you mean model.hidden?\n")


def test_names_that_pick_nothing_and_absent_gpus_are_config_errors() -> None:
    from omegaconf import OmegaConf

    def typed(*overrides: str):  # noqa: ANN202
        return OmegaConf.to_object(_compose(["corpus.root=/x", *overrides]))

    pipeline.check_choices(typed())
    from recog.models.ctc import CELLS

    with pytest.raises(ConfigError, match=rf"^model.cell: 'gru' is not one of: "
                       rf"{', '.join(sorted(CELLS))}$") as refused:
        pipeline.check_choices(typed("model.cell=gru"))
    assert {"lstm", "peephole", "graves", "cifg"} <= set(str(refused.value).split(": ")[-1]
                                                         .split(", "))
    with pytest.raises(ConfigError, match=r"^decode.method: 'viterbi' is not one of"):
        pipeline.check_choices(typed("decode.method=viterbi"))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"^trainer.device: 'cuda' asks for a GPU, but "
                           r"torch finds none .*: use trainer=cpu$"):
            pipeline.check_choices(typed("trainer=gpu"))


def test_score_names_hypotheses_without_reference_and_notes_missing_ones(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ref, hyp = tmp_path / "ref.txt", tmp_path / "hyp.txt"
    ref.write_text("s1_a x y z\ns1_b x y\n")
    hyp.write_text("s1_a x y z\ns1_c x\n")
    with pytest.raises(SystemExit) as stop:
        cli.score([str(ref), str(hyp)])
    assert stop.value.code == 2
    assert re.fullmatch(r"error: .*hyp.txt: 1 utterance\(s\) have no reference in .*ref.txt, "
                        r"e.g. 's1_c': score the matching files\n", capsys.readouterr().err)
    hyp.write_text("s1_a x y q\n")  # s1_b has no hypothesis: 2 deletions, said
    cli.score([str(ref), str(hyp), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert "note: 1 reference utterance(s) have no hypothesis" in captured.err
    assert "s1_b" in captured.err
    # by hand: s1_a one substitution (z -> q), s1_b two deletions, of 5 reference tokens
    assert captured.out.splitlines()[-1].split()[1:7] == ["5", "2", "1", "2", "0", "60.00"]
    report = (tmp_path / "out/report.md").read_text()
    assert "1 reference utterance(s) have no hypothesis and are scored as all deletions: s1_b" \
        in report
    assert read_text(hyp) == {"s1_a": ["x", "y", "q"]}


@pytest.mark.parametrize("ref_text, hyp_text, extra, message", [
    ("", "", [], r"ref.txt: no reference utterances: nothing to score"),  # was 0.00 %
    ("s1_a x y\n", "s1_a x\n", ["--utt2spk", "SPK"],
     r"spk.txt: no speaker for 1 reference utterance\(s\), e.g. 's1_a'"),  # a KeyError
    ("s1_a x y\n", "s1_a x\n", ["--fold39"],
     r"ref.txt: --fold39 folds TIMIT phones: not a TIMIT phone: 'x'"),  # a KeyError
])
def test_score_refuses_what_it_cannot_score_naming_the_file(
        tmp_path: Path, capsys: pytest.CaptureFixture, ref_text: str, hyp_text: str,
        extra: list[str], message: str) -> None:
    ref, hyp, spk = tmp_path / "ref.txt", tmp_path / "hyp.txt", tmp_path / "spk.txt"
    ref.write_text(ref_text)
    hyp.write_text(hyp_text)
    spk.write_text("s1_b s1\n")
    with pytest.raises(SystemExit) as stop:
        cli.score([str(ref), str(hyp), *[str(spk) if a == "SPK" else a for a in extra]])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and re.fullmatch(rf"error: .*{message}\n", err), err


def _recipe(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    return subprocess.run(["bash", str(ROOT / "recipes/timit/run.sh"), *args,
                           f"prepare.out={tmp_path / 'prep'}", f"exp_dir={tmp_path / 'exp'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)


def test_recipe_stages_out_of_order_say_which_stage_to_run(tmp_path: Path) -> None:
    run = _recipe(tmp_path, "--stage", "3", "--stop-stage", "3")
    assert run.returncode == 2
    assert run.stderr.strip().endswith(
        f"error: {tmp_path / 'prep/train.jsonl'}: split 'train' is not prepared: run "
        "recog-prepare (recipe stage 1) first, with this prepare.out")
    run = _recipe(tmp_path, "--stage", "5", "--stop-stage", "5")
    assert run.returncode == 2 and "ls:" not in run.stderr
    assert run.stderr.strip().endswith(f"error: {tmp_path / 'exp'}/results/: nothing decoded "
                                       "to score: run stage 4 (decode) first")


@pytest.mark.parametrize("argv, message", [
    (["--stage", "9"], "error: --stage 9: this recipe's stages are 1 to 6"),  # ran nothing
    (["--stage", "4", "--stop-stage", "2"], "error: --stage 4 comes after --stop-stage 2"),
    (["--stage", "x"], "error: --stage x: this recipe's stages are 1 to 6"),  # bash: unbound
    (["--bogus"], "error: unknown option --bogus (the recipes take --stage N"),  # passed on
])
def test_recipe_options_that_would_run_nothing_or_pass_on_are_refused(
        tmp_path: Path, argv: list[str], message: str) -> None:
    """Each ran nothing with exit 0 ("== done in 0s"), failed in bash, or reached
    recog-prepare as an argument it does not know, until session 14."""
    run = subprocess.run(["bash", str(ROOT / "recipes/timit/run.sh"), *argv,
                          f"prepare.out={tmp_path}"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert run.returncode == 2 and run.stderr.strip().startswith(message), run.stderr
    assert run.stdout == ""  # not even the "== done" line: nothing started
