"""Training-loop behaviour: resume gives the same model, weight noise leaves no trace."""

import subprocess
import sys
from pathlib import Path

import torch

from recog.models import CTCModel, ModelOptions
from recog.train.loop import _epochs_since_best
from recog.train.step import _WeightNoise
from tests.timit_tree import make_tree

BIN = Path(sys.executable).parent


def _train(tmp_path: Path, exp: str, epochs: int) -> None:
    args = ["corpus.synthetic=false", f"corpus.root={tmp_path / 'corpus'}",
            f"prepare.out={tmp_path / 'prep'}", f"exp_dir={tmp_path / exp}",
            "model.hidden=12", "model.layers=2", "model.dropout=0.2", "model.stack=2",
            f"trainer.epochs={epochs}", "trainer.early_stop=10", "trainer.batch_frames=400",
            "trainer.progress=false", "optim.weight_noise=0.01"]
    run = subprocess.run([str(BIN / "recog-train"), *args], cwd=tmp_path,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_resumed_run_equals_uninterrupted_run(tmp_path: Path) -> None:
    make_tree(tmp_path / "corpus")
    prep = subprocess.run([str(BIN / "recog-prepare"), "corpus.synthetic=false",
                           f"corpus.root={tmp_path / 'corpus'}",
                           f"prepare.out={tmp_path / 'prep'}"], cwd=tmp_path)
    assert prep.returncode == 0
    _train(tmp_path, "straight", 3)
    _train(tmp_path, "resumed", 1)
    _train(tmp_path, "resumed", 3)  # picks up last.pt at epoch 1
    a = torch.load(tmp_path / "straight/last.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed/last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    assert [h["epoch"] for h in b["history"]] == [1, 2, 3]
    for name, tensor in a["model"].items():
        assert torch.allclose(tensor, b["model"][name], atol=1e-6), name
    assert "resumed from" in (tmp_path / "resumed/train.log").read_text()


def test_weight_noise_is_removed_after_the_pass() -> None:
    torch.manual_seed(0)
    model = CTCModel(3, 4, ModelOptions(hidden=5, layers=1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    noise = _WeightNoise(model, 0.5)
    with noise:
        changed = any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert changed
    for k, v in model.state_dict().items():
        assert torch.equal(before[k], v), k


def test_epochs_since_best() -> None:
    rates = [{"dev_error_rate": r} for r in (30.0, 20.0, 25.0, 21.0)]
    assert _epochs_since_best(rates) == 2
    assert _epochs_since_best([]) == 0


def test_planned_epochs_are_those_the_time_limit_will_let_run() -> None:
    from recog.train.loop import _out_of_time, planned_epochs
    from recog.train.options import TrainerOptions

    opts = TrainerOptions(epochs=15, max_minutes=6)
    assert planned_epochs([], opts) == 15  # nothing measured yet
    history = [{"seconds": 62.0}]
    assert planned_epochs(history, opts) == 5  # 360 s // 62 s
    for _ in range(4):  # the time limit, epoch by epoch, agrees
        assert not _out_of_time(history, opts.max_minutes)
        history.append({"seconds": 62.0})
    assert len(history) == 5 and _out_of_time(history, opts.max_minutes)
    assert planned_epochs(history, opts) == 6  # past the limit: at least the next one
    assert planned_epochs([{"seconds": 10.0}], opts) == 15  # trainer.epochs caps it
    assert planned_epochs([{"seconds": 62.0}], TrainerOptions(epochs=3)) == 3
