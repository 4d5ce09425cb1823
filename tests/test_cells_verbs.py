"""Every cell, with and without the ConvLSTM front end, through every verb as a user runs
them: recog-train, recog-finetune with a frozen layer, recog-decode, recog-transcribe and
recog-export --format all (torch.export, TorchScript, ONNX), on two tiny corpora: speech (a
manifest of WAV segments) and ink (a manifest of InkML files, pen features). The entry
points are the console scripts' own functions, called in one process per combination (one
torch import, not five).

The suite runs three combinations (the newest cell behind the front end and a fused cell
without it on speech, a fused cell behind the front end on ink: ~1.5 min on 2 cores);
``RECOG_ALL_CELLS=1`` runs all twenty. The library-level tests cover
every combination for fine-tuning (tests/test_finetune.py) and export (tests/test_export.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recog.models import CELLS, load_checkpoint
from tests.byo_corpus import make_byo
from tests.test_inkml import write_inkml_manifest

ROOT = Path(__file__).resolve().parent.parent
DRIVER = """
import contextlib, sys
from recog import cli

def verb(name, *args):
    sys.argv = ["recog-" + name, *args]
    try:
        fn = getattr(cli, name)
        fn(list(args)) if name in ("transcribe", "export") else fn()
    except SystemExit as e:
        if e.code not in (0, None):
            raise SystemExit(f"recog-{name} exited with {e.code}")

exp, cell, frontend, source, corpus_args = sys.argv[1:6]
common = [*corpus_args.split(), "trainer.epochs=1", "trainer.progress=false",
          "trainer.batch_frames=2000"]
verb("train", *common, f"exp_dir={exp}/base", f"model.cell={cell}",
     f"model.frontend={frontend}", "model.convlstm.channels=2", "model.hidden=6",
     "model.layers=2", "model.stack=2")
verb("finetune", *common, f"exp_dir={exp}/tuned", f"finetune.checkpoint={exp}/base/best.pt",
     "finetune.freeze_layers=1", "finetune.encoder_lr=0.01", "finetune.output_lr=0.05")
verb("decode", *common, f"exp_dir={exp}/tuned")
with open(f"{exp}/transcript.json", "w") as out, contextlib.redirect_stdout(out):
    verb("transcribe", f"{exp}/tuned/best.pt", source, "--json")
verb("export", f"{exp}/tuned/best.pt", f"{exp}/export", "--format", "all")
"""


def _in_layer(name: str, k: int) -> bool:
    """Whether state-dict key ``name`` is a tensor of recurrent layer ``k`` (nn.LSTM names
    ``rnn.weight_ih_l0[_reverse]``, the fused cells ``rnn.layers.0.*``)."""
    return name.startswith(f"rnn.layers.{k}.") or (
        name.startswith("rnn.") and name.removesuffix("_reverse").endswith(f"_l{k}"))


def _prepare(corpus_args: str) -> None:
    run = subprocess.run([sys.executable, "-c", "from recog.cli import prepare; prepare()",
                          *corpus_args.split()], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The corpus's arguments for every verb, and a recording to transcribe."""
    root = tmp_path_factory.mktemp("verbs")
    manifest, _ = make_byo(root)
    tokens = {t for split in ("train", "dev", "test")
              for line in (manifest / f"{split}.jsonl").read_text().splitlines()
              for t in json.loads(line)["text"].split()}  # every split's: decode needs them
    (root / "tokens.txt").write_text("\n".join(sorted(tokens)) + "\n")
    args = (f"corpus=manifest corpus.root={manifest} corpus.tokens=list "
            f"corpus.token_list={root / 'tokens.txt'} prepare.out={root / 'prep'}")
    _prepare(args)
    return args, sorted((root / "audio").glob("test*.wav"))[0]


@pytest.fixture(scope="module")
def ink(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """An InkML manifest's arguments (pen features, characters), and a file to transcribe."""
    root = tmp_path_factory.mktemp("ink_verbs")
    corpus = root / "corpus"
    write_inkml_manifest(corpus, {"train": ["ab", "ba b", "abba", "b a", "bab", "aab"],
                                  "dev": ["ab b"], "test": ["ba"]}, writers=2)
    args = (f"corpus=manifest corpus.root={corpus} corpus.modality=ink corpus.tokens=chars "
            f"features=pen features.pen.resample_step=0.25 prepare.out={root / 'prep'}")
    _prepare(args)
    return args, corpus / "test0.inkml"


COMBINATIONS = [(m, c, f) for m in ("speech", "ink") for c in sorted(CELLS)
                for f in ("none", "convlstm")]
ALWAYS = {("speech", "indy", "convlstm"), ("speech", "graves", "none"),
          ("ink", "cifg", "convlstm")}


@pytest.mark.parametrize("modality,cell,frontend", [
    pytest.param(*m, marks=[] if m in ALWAYS or os.environ.get("RECOG_ALL_CELLS") == "1"
                 else [pytest.mark.skip(reason="RECOG_ALL_CELLS=1 runs every combination")])
    for m in COMBINATIONS])
def test_every_verb(request: pytest.FixtureRequest, tmp_path: Path, modality: str, cell: str,
                    frontend: str) -> None:
    corpus_args, source = request.getfixturevalue(modality)
    run = subprocess.run([sys.executable, "-c", DRIVER, str(tmp_path), cell, frontend,
                          str(source), corpus_args], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    base, _, _ = load_checkpoint(tmp_path / "base/best.pt")
    tuned, vocab, _ = load_checkpoint(tmp_path / "tuned/best.pt")
    assert (tuned.options.cell, tuned.options.frontend) == (cell, frontend)
    # fine-tuning: layer 0 frozen, layer 1, the front end and the output layer trained
    before, after = base.state_dict(), tuned.state_dict()
    for name, tensor in after.items():
        if name.startswith("rnn.") or name.startswith("frontend."):
            assert torch.equal(before[name], tensor) == _in_layer(name, 0), name
    assert not torch.equal(before["output.weight"], after["output.weight"])
    assert (tmp_path / "tuned/results/test/hyp.txt").is_file()
    transcript = json.loads((tmp_path / "transcript.json").read_text())
    assert [r["file"] for r in transcript] == [str(source)]
    assert all(t in vocab.tokens for t in transcript[0]["tokens"])
    # the exports give the fine-tuned model's log-probs on a batch of other lengths
    gen = torch.Generator().manual_seed(1)
    feats, lengths = torch.randn(2, 37, tuned.input_dim, generator=gen), torch.tensor([37, 20])
    with torch.no_grad():
        want, _ = tuned.eval()(feats, lengths)
        got_ts, _ = torch.jit.load(str(tmp_path / "export/model.ts"))(feats, lengths)
        got_pt2, _ = torch.export.load(str(tmp_path / "export/model.pt2")).module()(
            feats, lengths)
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(tmp_path / "export/model.onnx"))
    got_onnx = session.run(None, {"feats": feats.numpy(), "lengths": lengths.numpy()})[0]
    for i, n in enumerate([19, 10]):  # stack=2 halves the frames
        torch.testing.assert_close(got_ts[i, :n], want[i, :n], atol=1e-4, rtol=0)
        torch.testing.assert_close(got_pt2[i, :n], want[i, :n], atol=1e-4, rtol=0)
        torch.testing.assert_close(torch.from_numpy(got_onnx[i, :n]), want[i, :n],
                                   atol=1e-4, rtol=0)
    assert json.loads((tmp_path / "export/tokens.json").read_text()) == list(vocab.tokens)
