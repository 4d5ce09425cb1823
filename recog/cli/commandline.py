"""What a Hydra verb's command line means before Hydra reads it: ``--help`` (what the verb
does, its main options, the config groups and every recipe's experiments) and
``+experiment=NAME`` (found in the recipes by itself, so that no ``hydra.searchpath`` is
needed). Plain file-system work, for ``recog.cli``."""

from __future__ import annotations

import re
from pathlib import Path

from recog.data.utterance import ConfigError

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"
CONF = ROOT / "conf"
_EXPERIMENT = re.compile(r"^\+?experiment=(.*)$")

# The options a new user reaches for first, per verb (every key is listed by --cfg job).
MAIN_OPTIONS = {
    "prepare": ["corpus=NAME corpus.root=DIR  the corpus and where it is (built there first "
                "for the *_synthetic ones)",
                "prepare.out=DIR  where <split>.jsonl and summary.json go",
                "data.skip_bad=true  list bad items instead of stopping at the first"],
    "features": ["prepare.out=DIR  the prepared splits (recog-prepare's output)",
                 "data.cache_dir=DIR  where the caches go (default <prepare.out>/features)"],
    "train": ["name=NAME or exp_dir=DIR  the experiment folder (default exp/<recipe>/<name>)",
              "model.layers=N model.hidden=N model.cell=lstm|peephole|graves|cifg",
              "trainer.epochs=N trainer.batch_frames=N trainer=cpu|gpu|ddp",
              "trainer.resume=false  start again instead of resuming last.pt",
              "trainer.progress=false  no progress display"],
    "decode": ["decode=greedy|beam|beam_lm|beam_lexicon|isolated_word|flashlight",
               "decode.splits=[dev,test] decode.checkpoint=best.pt",
               "name=NAME or exp_dir=DIR  the experiment to decode"],
    "lm": ["decode=beam_lm|beam_lexicon|isolated_word  what to train and tune",
           "decode.lm_weights=[..] decode.insertion_bonuses=[..]  the grids tuned on dev"],
    "finetune": ["finetune.checkpoint=BEST.pt  the model to start from (required)",
                 "corpus=manifest|kaldi_dir corpus.root=DIR  your corpus",
                 "finetune.freeze_layers=N finetune.lr_scale=..  (see --cfg job)"],
}


def experiments() -> dict[str, list[str]]:
    """Every recipe's experiments: recipe name -> experiment names (sorted)."""
    return {d.parent.parent.name: sorted(p.stem for p in d.glob("*.yaml"))
            for d in sorted(RECIPES.glob("*/conf/experiment")) if any(d.glob("*.yaml"))}


def find_experiment(name: str, recipe: str | None = None) -> Path:
    """The ``conf/`` folder of the recipe holding experiment ``name`` (``RECIPE/NAME``, or
    ``NAME`` alone when one recipe has it or ``recipe`` says which)."""
    known = experiments()
    listing = ", ".join(f"{r}/{e}" for r, names in known.items() for e in names)
    if "/" in name:
        recipe, name = name.split("/", 1)
    holders = [r for r, names in known.items() if name in names and recipe in (None, r)]
    if not holders:
        raise ConfigError("experiment", f"no experiment {name!r}"
                          f"{f' in recipe {recipe!r}' if recipe else ''}: looked in "
                          f"{RECIPES}/*/conf/experiment/ (there: {listing})")
    if len(holders) > 1:
        raise ConfigError("experiment", f"{name!r} is an experiment of the recipes "
                          f"{', '.join(holders)}: say which, e.g. +experiment={holders[0]}/"
                          f"{name}")
    return RECIPES / holders[0] / "conf"


def with_experiment(argv: list[str]) -> list[str]:
    """``argv`` with ``[+]experiment=[RECIPE/]NAME`` made to work from anywhere: the
    recipe's ``conf/`` added to Hydra's search path (unless the command line sets one)."""
    if any(a.startswith("hydra.searchpath=") for a in argv):
        return argv
    picks = [i for i, a in enumerate(argv) if _EXPERIMENT.match(a)]
    if not picks:
        return argv
    recipe = next((a.split("=", 1)[1] for a in argv if a.startswith("recipe=")), None)
    out = list(argv)
    for i in picks:
        name = _EXPERIMENT.match(argv[i]).group(1)  # type: ignore[union-attr]
        conf = find_experiment(name, recipe)
        out[i] = f"+experiment={name.rsplit('/', 1)[-1]}"
    return [f"hydra.searchpath=[file://{conf}]", *out]


def usage(verb: str, description: str) -> str:
    """The text of ``recog-<verb> --help``."""
    groups = {g.name: sorted(f.stem for f in g.glob("*.yaml"))
              for g in sorted(CONF.iterdir()) if g.is_dir()}
    lines = [f"usage: recog-{verb} [KEY=VALUE ...] [GROUP=OPTION ...] [+experiment=[RECIPE/]NAME]",
             "", " ".join(description.split()), "", "main options:"]
    lines += [f"  {o}" for o in MAIN_OPTIONS.get(verb, [])]
    lines += ["", "config groups (GROUP=OPTION):"]
    lines += [f"  {g:<8} {' | '.join(names)}" for g, names in groups.items()]
    lines += ["", "experiments (+experiment=RECIPE/NAME; NAME alone if only one recipe has it):"]
    lines += [f"  {r:<9} {', '.join(names)}" for r, names in experiments().items()]
    lines += ["", "Paths are relative to the working directory (data/, exp/ by default).",
              "A key the configuration does not have is an error, with or without '+'.",
              f"Every key and its value: recog-{verb} [overrides] --cfg job",
              f"Hydra's own options: recog-{verb} --hydra-help"]
    return "\n".join(lines)


def checkpoints_epilog() -> str:
    """The epilog of the checkpoint verbs' --help: where the recipes' models are."""
    listing = "; ".join(f"{r}: {', '.join(names)}" for r, names in experiments().items())
    return ("A recipe's experiment NAME trains exp/<recipe>/NAME/best.pt (experiments: "
            f"{listing}). Paths are relative to the working directory.")
