"""The training loop's typed options (the ``optim`` and ``trainer`` config groups) and the
exceptions by which it stops early."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path


@dataclass
class OptimOptions:
    """The ``optim`` config group: optimiser, schedule, clipping, weight noise."""

    name: str = "adam"  # adam | sgd
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    grad_clip: float = 5.0  # max global gradient norm per step (0: no clipping)
    weight_noise: float = 0.0  # std of Gaussian weight noise per step (Graves 2013: 0.075)
    schedule: str = "plateau"  # plateau | linear (to 0 over the epochs that will run)
    lr_decay: float = 0.5  # plateau: multiply the learning rate by this ...
    lr_patience: int = 1  # ... after this many epochs without a better dev error rate


@dataclass
class TrainerOptions:
    """The ``trainer`` config group: epochs, batching, device, precision, processes, seed,
    checkpoints, stopping. A step's batch (``batch_frames``, ``max_batch_utts``) is global:
    the union of every process's micro-batches, so the updates do not depend on how many
    processes or accumulation steps share it."""

    epochs: int = 20
    early_stop: int = 4  # stop after this many epochs without a better dev error rate (0: never)
    max_minutes: float = 0.0  # no epoch starts that would end past this many minutes of
    #                           training, judged by the slowest epoch so far (0: no limit)
    batch_frames: int = 12000  # padded input frames per optimiser step (all processes)
    max_batch_utts: int = 64  # utterances per optimiser step (all processes)
    accumulate: int = 1  # micro-batches per step and process: less memory, same update
    seed: int = 0
    device: str = "cpu"  # cpu | cuda (under torchrun: each process's own GPU)
    precision: str = "fp32"  # fp32 | bf16: autocast of the model; the CTC loss stays float32
    loader_workers: int = 0  # DataLoader processes collating batches (0: in this process)
    num_threads: int = 0  # torch intra-op threads; 0 = auto (recog.threads: half the cores)
    max_bad_steps: int = 20  # consecutive non-finite losses before giving up
    resume: bool = True  # continue from last.pt when the experiment folder has one
    overwrite: bool = False  # resume=false may replace a finished run's best.pt
    checkpoint_every: int = 200  # also write last.pt every this many steps (0: epoch ends)
    average: int = 1  # best.pt = the mean of the weights of this many best epochs (on dev),
    #                   when it is no worse on dev than the best epoch alone (1: no averaging)
    backend: str = "auto"  # torch.distributed under torchrun: auto = nccl on GPU, gloo on CPU
    dist_timeout_s: float = 600.0  # rendezvous and collective timeout under torchrun
    progress: bool = True


class Interrupted(RuntimeError):
    """SIGINT or SIGTERM arrived: the step was finished and last.pt written."""

    def __init__(self, signum: int, path: Path, epoch: int, step: int):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name} at epoch {epoch}, step "
                         f"{step}; {path} holds that position: run the same command again "
                         "to resume")


class BatchTooLarge(MemoryError):
    """A training step ran out of memory; says which utterances were in the batch."""


class Diverged(FloatingPointError):
    """Training blew up (non-finite weights, or losses far above chance for many steps):
    stopped before a checkpoint holds the damage."""

    def __init__(self, exp_dir: Path, epoch: int, step: int, what: str):
        super().__init__(f"{exp_dir}: training diverged at epoch {epoch}, step {step}: {what}; "
                         "stopped (a best.pt holds the best model so far): lower optim.lr or "
                         "tighten optim.grad_clip, then run again with trainer.resume=false "
                         "trainer.overwrite=true (or another name=...)")
