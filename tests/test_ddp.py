"""Distributed training (gloo on the CPU): the same parameters as one process with the same
global batch, every utterance once per epoch across ranks, clear errors when a peer is
unreachable or dies."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from recog.batching import bucket_batches, rank_batches
from tests.train_worker import tiny_corpus

ROOT = Path(__file__).resolve().parent.parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


def _env(**extra: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(data: Path, exp: Path, *args: str, **env: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.train_worker", str(data), str(exp),
                             *args], cwd=ROOT, env=_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _params(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


@pytest.mark.parametrize("world,accumulate", [(1, 1), (2, 1), (3, 1), (2, 2), (4, 3)])
def test_rank_batches_split_each_step_exactly(world: int, accumulate: int) -> None:
    lengths = np.random.default_rng(0).integers(5, 200, 101)
    batches = bucket_batches(lengths, 1200, 16, shuffle=True, seed=3)
    mine = [rank_batches(batches, r, world, accumulate) for r in range(world)]
    for s, batch in enumerate(batches):
        parts = [part for r in range(world) for part in mine[r][s]]
        assert len(parts) == world * accumulate
        assert sorted(i for part in parts for i in part) == sorted(batch)
        sizes = [len(p) for p in parts]
        assert max(sizes) - min(sizes) <= 1  # balanced shares
    seen = [i for r in range(world) for step in mine[r] for part in step for i in part]
    assert sorted(seen) == list(range(101))


def test_two_process_ddp_equals_one_process(tmp_path: Path) -> None:
    data = tmp_path / "data"
    train_set, _ = tiny_corpus(data)  # built once here, read by every process
    common = ["model.dropout=0", "trainer.epochs=2"]
    runs = {
        "single": _worker(data, tmp_path / "single", *common),
        "accumulated": _worker(data, tmp_path / "accumulated", *common,
                               "trainer.accumulate=2"),
        "ddp": subprocess.Popen(
            [*TORCHRUN, "--standalone", "--nproc-per-node=2", "-m", "tests.train_worker",
             str(data), str(tmp_path / "ddp"), *common], cwd=ROOT, env=_env(),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
    }
    for name, proc in runs.items():
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, f"{name}: {out}{err}"
    single = _params(tmp_path / "single/last.pt")
    for name in ("ddp", "accumulated"):
        other = _params(tmp_path / name / "last.pt")
        for key, value in single.items():
            assert torch.allclose(value, other[key], rtol=0, atol=1e-5), (name, key)
    # what each rank trained on: its share of every step, every utterance once per epoch
    seen = [json.loads((tmp_path / f"ddp/seen-{r}.json").read_text()) for r in (0, 1)]
    at = [0, 0]
    orders = []
    for epoch in (1, 2):
        batches = bucket_batches(train_set.lengths, 400, 4, shuffle=True, seed=epoch)
        epoch_seen = []
        for r in (0, 1):
            expected = [part for step in rank_batches(batches, r, 2) for part in step]
            got = seen[r][at[r]: at[r] + len(expected)]
            at[r] += len(expected)
            assert got == expected, (epoch, r)
            epoch_seen += [i for part in got for i in part]
        assert sorted(epoch_seen) == list(range(len(train_set)))
        orders.append(epoch_seen)
    assert at == [len(seen[0]), len(seen[1])]
    assert orders[0] != orders[1]  # reshuffled per epoch
    assert json.loads((tmp_path / "ddp/history.json").read_text())[-1]["processes"] == 2


def test_unreachable_rendezvous_is_a_clear_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    tiny_corpus(data)
    proc = _worker(data, tmp_path / "exp", "trainer.dist_timeout_s=2", WORLD_SIZE=2, RANK=1,
                   LOCAL_RANK=1, MASTER_ADDR="127.0.0.1", MASTER_PORT=_free_port())
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "could not join the gloo process group at 127.0.0.1:" in err


def test_a_dead_rank_stops_the_others_and_last_pt_stays_loadable(tmp_path: Path) -> None:
    data = tmp_path / "data"
    tiny_corpus(data)
    exp = tmp_path / "exp"
    port = _free_port()
    args = ("trainer.epochs=50", "trainer.checkpoint_every=2", "trainer.dist_timeout_s=30",
            "slow=0.02")
    procs = [_worker(data, exp, *args, WORLD_SIZE=2, RANK=r, LOCAL_RANK=r,
                     MASTER_ADDR="127.0.0.1", MASTER_PORT=port) for r in (0, 1)]
    deadline = time.monotonic() + 120
    while not (exp / "last.pt").exists():
        assert time.monotonic() < deadline and procs[0].poll() is None, "no last.pt written"
        time.sleep(0.02)
    procs[1].send_signal(signal.SIGKILL)
    _, err = procs[0].communicate(timeout=120)  # bounded: the survivor must not hang
    procs[1].communicate()
    assert procs[0].returncode == 1, err
    assert "rank 0 of 2" in err and "another training process has probably died" in err
    state = torch.load(exp / "last.pt", weights_only=True)
    assert state["position"] is not None and state["world_size"] == 2
