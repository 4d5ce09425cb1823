"""recog's counts against NIST sclite itself, on random ref/hyp sets (needs Debian's sctk,
which .ci/run installs: under CI=true a missing sclite fails these tests, elsewhere it
skips them)."""

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from recog.metrics import read_text, score, write_trn

SCLITE = shutil.which("sclite") or "/usr/lib/sctk/bin/sclite"


@pytest.fixture(autouse=True)
def _needs_sclite() -> None:
    if Path(SCLITE).is_file():
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"sclite not found at {SCLITE}: .ci/run installs it (apt-get install sctk)")
    pytest.skip("sclite not installed (apt-get install sctk)")


def _sclite_rows(ref: Path, hyp: Path) -> dict[str, list[int]]:
    out = subprocess.run([SCLITE, "-r", str(ref), "trn", "-h", str(hyp), "trn", "-i", "spu_id",
                          "-o", "rsum", "stdout"], capture_output=True, text=True, check=True)
    rows = {}
    for line in out.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[1].replace(" ", "").isdigit():
            snt_wrd, rest = cells[1].split(), cells[2].split()
            rows[cells[0]] = [int(snt_wrd[1]), *map(int, rest[1:5])]  # N, S, D, I, Err
    return rows


@pytest.mark.parametrize("seed", range(6))
def test_counts_equal_sclite(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    alphabet = "a b c d e".split()
    refs, hyps = {}, {}
    for spk in range(5):
        for k in range(6):
            utt = f"s{spk}-{k}"
            ref = [rng.choice(alphabet) for _ in range(rng.randint(1, 12))]
            hyp = list(ref)
            for _ in range(rng.randint(0, 6)):  # random edits, sometimes everything
                op = rng.random()
                if op < 0.3 and hyp:
                    hyp.pop(rng.randrange(len(hyp)))
                elif op < 0.6:
                    hyp.insert(rng.randint(0, len(hyp)), rng.choice(alphabet))
                elif hyp:
                    hyp[rng.randrange(len(hyp))] = rng.choice(alphabet)
            if rng.random() < 0.1:
                hyp = []  # empty hypotheses too
            refs[utt], hyps[utt] = ref, hyp
    write_trn(tmp_path / "ref.trn", refs)
    write_trn(tmp_path / "hyp.trn", hyps)
    assert read_text(tmp_path / "hyp.trn") == hyps
    rows = _sclite_rows(tmp_path / "ref.trn", tmp_path / "hyp.trn")
    s = score(refs, hyps)
    t = s.total
    assert rows["Sum"] == [t.n, t.sub, t.dele, t.ins, t.errors]
    for spk, c in s.per_speaker.items():
        assert rows[spk] == [c.n, c.sub, c.dele, c.ins, c.errors], spk
