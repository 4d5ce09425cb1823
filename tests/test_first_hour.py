"""The README's "Your first hour" walkthrough, run line by line as written there (so the
README cannot drift from the commands), on its tiny synthetic corpus. Also the acceptance
test of a recipe whose stdout and stderr go to one file: every stage's header survives."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.executable).parent.parent


def walkthrough() -> list[str]:
    """The commands of the README's first-hour block (continuation lines joined)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```sh first-hour\n(.*?)```", text, re.S)
    assert block, "README.md has no ```sh first-hour block"
    joined = block.group(1).replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_first_hour_walkthrough_runs_as_written(tmp_path: Path) -> None:
    commands = walkthrough()
    assert commands[0] == "source .venv/bin/activate" and len(commands) >= 8
    (tmp_path / ".venv").symlink_to(VENV)  # the repository root's view, in a fresh folder
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    script = "\n".join(["set -euo pipefail",
                        "trap 'echo \"FAILED: $BASH_COMMAND\" >&2' ERR", *commands])
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    run = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    # 1: the log that stdout and stderr shared keeps every stage header, and no \r or NUL
    log = (tmp_path / "tiny.log").read_bytes()
    for n, stage in enumerate(("prepare", "features", "train", "decode", "score", "lm"), 1):
        assert f"== stage {n}: {stage}\n".encode() in log, stage
    assert b"\r" not in log and b"\0" not in log
    assert re.search(rb"^epoch 1 \d+/\d+ \[", log, re.M)  # progress, as lines
    assert b"== done in" in log
    # 2: help without Hydra's boilerplate, naming the recipes' experiments
    assert "powered by Hydra" not in run.stdout and "timit     cells, graves2013_ctc, " \
        "synthetic" in run.stdout
    # 4: one transcript per test recording, folded to 39 phones, with times and n-best
    wavs = sorted((tmp_path / "data/tiny/corpus/TIMIT/TEST").rglob("*.WAV"))
    transcripts = json.loads((tmp_path / "transcripts.json").read_text())
    assert [Path(r["file"]).name for r in transcripts] == [w.name for w in wavs] != []
    setup = json.loads((tmp_path / "exp/timit/tiny/decode_beam_lm.json").read_text())
    assert setup["method"] == "beam" and Path(setup["lm"]).is_file()
    for r in transcripts:
        assert "h#" not in r["tokens"] and "q" not in r["tokens"]
        assert 1 <= len(r["nbest"]) <= 3 and [t["token"] for t in r["times"]] == r["tokens"]
    # 6: the experiment found without hydra.searchpath, and the typo refused by name
    assert (tmp_path / "exp/timit/tiny/results_beam/report.md").is_file()
    assert "error: model.hiden: not a key of the configuration; did you mean model.hidden?" \
        in run.stderr
