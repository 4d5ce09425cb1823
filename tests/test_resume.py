"""A killed run loses nothing: SIGKILL or SIGTERM mid-epoch, resume, and the parameters equal
an uninterrupted run's; an out-of-memory step names its utterances; bf16 autocast runs."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from recog import train
from recog.batching import collate
from recog.models.ctc import CTCModel, ModelOptions
from tests.test_ddp import ROOT, _env
from tests.train_worker import DIM, VOCAB, tiny_corpus

ARGS = ("trainer.epochs=3", "trainer.max_batch_utts=2", "trainer.checkpoint_every=3",
        "optim.weight_noise=0.01")


def _default_sigint() -> None:
    """In the child: SIGINT as a foreground command gets it, even when the tests themselves
    run with it ignored (a background job of a script: the child would inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _run(data: Path, exp: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.train_worker", str(data), str(exp),
                             *ARGS, *extra], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The tiny corpus and the parameters of an uninterrupted run (dropout on)."""
    tmp = tmp_path_factory.mktemp("resume")
    tiny_corpus(tmp / "data")
    proc = _run(tmp / "data", tmp / "straight")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    return tmp / "data", torch.load(tmp / "straight/last.pt", weights_only=True)


def _stop_mid_epoch(data: Path, exp: Path, sig: int, *extra: str
                    ) -> tuple[subprocess.Popen, str]:
    """Start a (slowed) run, send ``sig`` once its first mid-epoch last.pt exists."""
    proc = _run(data, exp, "slow=0.03", *extra)
    deadline = time.monotonic() + 120
    while not (exp / "last.pt").exists():
        assert time.monotonic() < deadline and proc.poll() is None, "no last.pt written"
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc, err


def _resume_and_compare(data: Path, exp: Path, reference: dict) -> None:
    proc = _run(data, exp)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    resumed = torch.load(exp / "last.pt", weights_only=True)
    assert resumed["epoch"] == reference["epoch"] == 3
    for key, value in reference["model"].items():
        assert torch.allclose(value, resumed["model"][key], rtol=0, atol=1e-6), key
    assert [h["train_loss"] for h in resumed["history"]] == pytest.approx(
        [h["train_loss"] for h in reference["history"]], rel=1e-6)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT],
                         ids=["SIGKILL", "SIGTERM", "SIGINT"])
def test_stopped_and_resumed_run_equals_uninterrupted_run(
        tmp_path: Path, straight: tuple[Path, dict], sig: int) -> None:
    data, reference = straight
    exp = tmp_path / "exp"
    proc, err = _stop_mid_epoch(data, exp, sig)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:  # the step is finished, last.pt written, and the exit says so
        assert proc.returncode == 128 + sig, err
        assert f"stopped by {signal.Signals(sig).name} at epoch 1" in err
        assert "run the same command again to resume" in err
    state = torch.load(exp / "last.pt", weights_only=True)
    assert state["position"] is not None and state["position"]["epoch"] == 1
    assert 0 < state["position"]["step"] < 12  # mid-epoch (12 steps of 2 utterances)
    _resume_and_compare(data, exp, reference)


def test_resume_with_spec_augment_draws_the_same_masks(tmp_path: Path) -> None:
    """SpecAugment draws from the generator state last.pt saves: killed and resumed, the run
    ends where an uninterrupted one does (and the masks did change the training)."""
    tiny_corpus(tmp_path / "data")
    proc = _run(tmp_path / "data", tmp_path / "straight", "specaug=1")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    reference = torch.load(tmp_path / "straight/last.pt", weights_only=True)
    plain = _run(tmp_path / "data", tmp_path / "plain")
    assert plain.wait(timeout=120) == 0
    unmasked = torch.load(tmp_path / "plain/last.pt", weights_only=True)
    assert reference["history"][0]["train_loss"] != unmasked["history"][0]["train_loss"]
    exp = tmp_path / "exp"
    _stop_mid_epoch(tmp_path / "data", exp, signal.SIGKILL, "specaug=1")
    resumed = _run(tmp_path / "data", exp, "specaug=1")
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, out + err
    final = torch.load(exp / "last.pt", weights_only=True)
    for key, value in reference["model"].items():
        assert torch.allclose(value, final["model"][key], rtol=0, atol=1e-6), key


def test_out_of_memory_names_the_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                       ) -> None:
    train_set, dev_set = tiny_corpus(tmp_path / "data")
    model = CTCModel(DIM, len(VOCAB), ModelOptions(hidden=4, layers=1))

    def no_memory(*args: object, **kwargs: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(train, "ctc_loss", no_memory)
    opts = train.TrainerOptions(epochs=1, batch_frames=400, max_batch_utts=4, progress=False)
    with pytest.raises(train.BatchTooLarge) as info:
        train.fit(model, VOCAB, train_set, dev_set, train.OptimOptions(), opts,
                  tmp_path / "exp", {})
    message = str(info.value)
    batch = bucket_batches_of(train_set, opts)[0]
    for i in batch:
        assert f"{train_set.ids[i]} ({int(train_set.lengths[i])} frames)" in message
    assert "trainer.batch_frames (now 400)" in message


def bucket_batches_of(train_set: object, opts: train.TrainerOptions) -> list[list[int]]:
    from recog.batching import bucket_batches

    return bucket_batches(train_set.lengths, opts.batch_frames, opts.max_batch_utts,
                          shuffle=True, seed=opts.seed * 100003 + 1)


def test_bf16_autocast_keeps_the_loss_in_float32(tmp_path: Path) -> None:
    train_set, _ = tiny_corpus(tmp_path / "data")
    torch.manual_seed(0)
    model = CTCModel(DIM, len(VOCAB), ModelOptions(hidden=4, layers=1))
    batch = collate(train_set, [0, 1, 2])
    loss32, log_probs32, _ = train.ctc_loss(model, batch, torch.device("cpu"))
    loss16, log_probs16, _ = train.ctc_loss(model, batch, torch.device("cpu"), "bf16")
    assert loss16.dtype == log_probs16.dtype == torch.float32
    assert not torch.equal(log_probs16, log_probs32)  # the model did run in bfloat16
    assert loss16.item() == pytest.approx(loss32.item(), rel=0.05)
    with pytest.raises(ValueError, match="trainer.precision"):
        train.ctc_loss(model, batch, torch.device("cpu"), "fp8")


def test_a_signal_ignored_at_start_stays_ignored_while_training(caplog: pytest.LogCaptureFixture
                                                                 ) -> None:
    """POSIX shells start a script's background jobs (and nohup its command) with SIGINT
    ignored; Python keeps it so during set-up, and training must not start counting it (a
    Ctrl-C would then stop some runs and not others, depending on when it came)."""
    from recog.train.signals import StopSignals

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with caplog.at_level("WARNING"), StopSignals():
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_IGN, signal.SIG_DFL)
        assert "SIGINT was ignored when this process started" in caplog.text
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with StopSignals():  # not ignored: the flag handler, then the previous one back
            assert signal.getsignal(signal.SIGINT) not in (signal.SIG_IGN,
                                                           signal.default_int_handler)
        assert signal.getsignal(signal.SIGINT) == signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)


def test_sigint_to_a_run_started_with_sigint_ignored_does_not_stop_it(
        tmp_path: Path, straight: tuple[Path, dict]) -> None:
    data, reference = straight
    exp = tmp_path / "exp"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.train_worker", str(data), str(exp), *ARGS, "slow=0.03"],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.monotonic() + 120
    while not (exp / "last.pt").exists():
        assert time.monotonic() < deadline and proc.poll() is None, "no last.pt written"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert torch.load(exp / "last.pt", weights_only=True)["epoch"] == reference["epoch"] == 3


def test_signals_arriving_inside_the_steps_native_code_change_nothing(
        tmp_path: Path, straight: tuple[Path, dict]) -> None:
    """Thousands of signals delivered while the steps run (a Python handler that does nothing,
    as CPython installs for SIGINT: each one interrupts whatever native call is in progress)
    leave every parameter bit-identical to the run that got none. Guards the hypothesis, for
    the native crashes once seen after a SIGINT, that delivering a signal into torch's
    kernels damages memory (issue 17)."""
    data, reference = straight
    exp = tmp_path / "exp"
    code = ("import signal, sys; signal.signal(signal.SIGUSR1, lambda *a: None); "
            "from tests.train_worker import main; main(sys.argv[1:])")
    proc = subprocess.Popen([sys.executable, "-c", code, str(data), str(exp), *ARGS],
                            cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    while not exp.exists() and proc.poll() is None:  # the handler is installed by then
        time.sleep(0.005)
    sent = 0
    while proc.poll() is None:
        try:
            proc.send_signal(signal.SIGUSR1)
        except ProcessLookupError:
            break
        sent += 1
        time.sleep(0.0005)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, -signal.SIGUSR1), out + err  # -SIGUSR1: one at exit
    assert sent > 100
    stormed = torch.load(exp / "last.pt", weights_only=True)
    assert stormed["epoch"] == reference["epoch"] == 3
    for key, value in reference["model"].items():
        assert torch.equal(value, stormed["model"][key]), key


@pytest.mark.parametrize("averaged_error", [30.0, 99.0])
def test_best_pt_is_the_mean_of_the_best_epochs_when_no_worse_on_dev(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, averaged_error: float) -> None:
    """trainer.average=3: the three epochs of the lowest dev error are kept in epochs/;
    best.pt is their mean weights (computed here from those files) when that mean's dev
    error rate is no worse than the best epoch's, else the best epoch itself."""
    train_set, dev_set = tiny_corpus(tmp_path / "data")
    torch.manual_seed(0)
    model = CTCModel(DIM, len(VOCAB), ModelOptions(hidden=4, layers=1))
    errors = iter([50.0, 40.0, 45.0, 42.0, 60.0, averaged_error])  # epochs 1-5, the mean

    def scripted(*args: object) -> tuple[float, float, dict]:
        return 1.0, next(errors), {}

    opts = train.TrainerOptions(epochs=5, early_stop=10, batch_frames=400, max_batch_utts=4,
                                progress=False, average=3)
    monkeypatch.setattr(train, "evaluate", scripted)
    result = train.fit(model, VOCAB, train_set, dev_set, train.OptimOptions(), opts,
                       tmp_path / "exp", {})
    kept = sorted(p.name for p in (tmp_path / "exp/epochs").glob("*.pt"))
    assert kept == ["002.pt", "003.pt", "004.pt"]
    states = [torch.load(tmp_path / "exp/epochs" / k, weights_only=True)["model"] for k in kept]
    best = torch.load(tmp_path / "exp/best.pt", weights_only=True)
    for key, value in best["model"].items():
        want = (sum(s[key] for s in states) / 3 if averaged_error == 30.0
                else states[0][key])  # epoch 2, the best alone
        assert torch.allclose(value, want, atol=1e-6), key
    assert best["dev_error_rate"] == min(averaged_error, 40.0) == result["best_dev_error_rate"]
    assert best.get("averaged") == ([2, 4, 3] if averaged_error == 30.0 else None)


def test_time_limit_stops_before_an_epoch_that_would_end_past_it(tmp_path: Path) -> None:
    """trainer.max_minutes: the run ends once one more epoch, as slow as the slowest so far,
    would end past the limit (here: any limit below one epoch stops after the first), and a
    limit of 0 stops nothing; best.pt and last.pt are written as after any run."""
    from recog.train.loop import _out_of_time

    history = [{"seconds": 50.0}, {"seconds": 70.0}]  # 2 minutes spent, slowest 70 s
    assert not _out_of_time(history, 3.2) and _out_of_time(history, 3.1)
    assert not _out_of_time(history, 0.0) and not _out_of_time([], 1e-9)
    train_set, dev_set = tiny_corpus(tmp_path / "data")
    for limit, epochs in ((1e-6, 1), (0.0, 3)):
        torch.manual_seed(0)
        model = CTCModel(DIM, len(VOCAB), ModelOptions(hidden=4, layers=1))
        opts = train.TrainerOptions(epochs=3, early_stop=10, batch_frames=400,
                                    max_batch_utts=4, progress=False, max_minutes=limit)
        exp = tmp_path / f"exp{epochs}"
        result = train.fit(model, VOCAB, train_set, dev_set, train.OptimOptions(), opts, exp, {})
        assert len(result["history"]) == epochs
        assert torch.load(exp / "last.pt", weights_only=True)["epoch"] == epochs
        assert (exp / "best.pt").is_file()


def test_early_stop_zero_never_stops_and_bad_counts_are_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """trainer.early_stop=0 is "no early stopping" (as max_minutes=0 is no limit): every
    epoch runs even when dev never improves; it stopped before the first epoch (and wrote a
    best.pt of an untrained model) until session 14. Fewer than one epoch, or a negative
    patience, is an error naming the key."""
    train_set, dev_set = tiny_corpus(tmp_path / "data")
    errors = iter([40.0, 50.0, 60.0, 70.0])  # the first epoch is the best

    def scripted(*args: object) -> tuple[float, float, dict]:
        return 1.0, next(errors), {}

    monkeypatch.setattr(train, "evaluate", scripted)
    torch.manual_seed(0)
    model = CTCModel(DIM, len(VOCAB), ModelOptions(hidden=4, layers=1))
    opts = train.TrainerOptions(epochs=4, early_stop=0, batch_frames=400, max_batch_utts=4,
                                progress=False)
    result = train.fit(model, VOCAB, train_set, dev_set, train.OptimOptions(), opts,
                       tmp_path / "exp", {})
    assert [h["epoch"] for h in result["history"]] == [1, 2, 3, 4]
    assert result["best_dev_error_rate"] == 40.0


@pytest.mark.parametrize("bad, key", [
    (dict(epochs=0), "trainer.epochs must be >= 1, not 0"),
    (dict(early_stop=-1), "trainer.early_stop must be >= 0, not -1"),
    (dict(max_batch_utts=0), "trainer.max_batch_utts must be >= 1"),  # was one utt a step
    (dict(max_bad_steps=0), "trainer.max_bad_steps must be >= 1"),  # "diverged" at step 1
    (dict(checkpoint_every=-1), "trainer.checkpoint_every must be >= 0"),
    (dict(max_minutes=-1.0), "trainer.max_minutes must be >= 0"),
    (dict(seed=-5), "trainer.seed must be >= 0"),  # numpy's message named no key
    (dict(loader_workers=-1), "trainer.loader_workers must be >= 0"),
    (dict(average=-2), "trainer.average must be >= 0"),
    (dict(dist_timeout_s=0.0), "trainer.dist_timeout_s must be > 0 seconds"),
    (dict(backend="mpi"), "trainer.backend is auto, gloo or nccl, not 'mpi'"),
    (dict(lr_decay=0.0), r"optim.lr_decay .* in \(0, 1\), not 0.0"),  # the rate went to 0
    (dict(lr_decay=2.0), r"optim.lr_decay .* in \(0, 1\), not 2.0"),  # torch: "Factor ..."
])
def test_option_values_that_train_nonsense_are_refused_naming_the_key(
        tmp_path: Path, bad: dict, key: str) -> None:
    """Each was accepted (and trained something else than asked) or failed inside torch or
    numpy with a message that named no option, until session 14."""
    train_set, dev_set = tiny_corpus(tmp_path / "data")
    model = CTCModel(DIM, len(VOCAB), ModelOptions(hidden=4, layers=1))
    optim = {k: bad.pop(k) for k in ("lr_decay",) if k in bad}
    opts = train.TrainerOptions(**{"batch_frames": 400, "progress": False, **bad})
    with pytest.raises(ValueError, match=key):
        train.fit(model, VOCAB, train_set, dev_set, train.OptimOptions(**optim), opts,
                  tmp_path / "exp", {})
    assert not (tmp_path / "exp" / "best.pt").exists()


def test_grad_clip_zero_trains_unclipped_and_bad_optimiser_values_name_the_key(
        tmp_path: Path) -> None:
    """optim.grad_clip=0 clipped every gradient to norm 0, so nothing trained (Adam's step
    of a zero gradient is zero); 0 now means no clipping. A negative clip norm (every step
    uphill), momentum or weight decay named no key, or none at all."""
    train_set, dev_set = tiny_corpus(tmp_path / "data")
    torch.manual_seed(0)
    model = CTCModel(DIM, len(VOCAB), ModelOptions(hidden=4, layers=1))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    opts = train.TrainerOptions(epochs=1, batch_frames=400, max_batch_utts=4, progress=False)
    train.fit(model, VOCAB, train_set, dev_set, train.OptimOptions(grad_clip=0.0), opts,
              tmp_path / "exp", {})
    assert not torch.equal(model.output.weight, start["output.weight"])
    for bad in (dict(grad_clip=-1.0), dict(momentum=-0.5), dict(weight_decay=-1.0),
                dict(weight_noise=-0.1)):
        key = next(iter(bad))
        with pytest.raises(ValueError, match=f"optim.{key}="):
            train.make_optimizer(model, train.OptimOptions(**bad))


@pytest.mark.parametrize("bad, key", [
    (dict(hidden=0), "model.hidden must be >= 1, not 0"),
    (dict(layers=0), "model.layers must be >= 1, not 0"),
    (dict(stack=0), "model.stack must be >= 1, not 0"),
    (dict(dropout=1.5), r"model.dropout is a probability in \[0, 1\), not 1.5"),
])
def test_model_shapes_torch_would_refuse_are_errors_naming_the_key(bad: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        CTCModel(DIM, len(VOCAB), ModelOptions(**bad))


def test_augmentation_options_are_checked_before_any_feature_is_computed(
        tmp_path: Path) -> None:
    """SpecAugment alone (no perturbed copies) skipped the augment checks, and torch then
    failed with "The value of p must be between 0.0 and 1.0" after the features were built;
    the check now comes first (before the corpus, absent here, is read)."""
    from recog.config import Config, CorpusConfig
    from recog.stages.train import train as train_stage

    cfg = Config(corpus=CorpusConfig(name="manifest", root=str(tmp_path / "absent")),
                 exp_dir=str(tmp_path / "exp"))
    cfg.augment.spec_augment, cfg.augment.time_fraction = True, 2.0
    with pytest.raises(ValueError, match="augment.time_fraction lie in"):
        train_stage(cfg, {})  # before the absent corpus is even looked for


def test_linear_schedule_falls_to_zero_and_resumes_exactly(tmp_path: Path,
                                                          straight: tuple[Path, dict]) -> None:
    """optim.schedule=linear: each epoch's last learning rate is the first × (1 - e/E)
    less one step's share (hand computation), and a run killed mid-epoch resumes exactly."""
    data, plateau = straight
    proc = _run(data, tmp_path / "straight", "optim.schedule=linear")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    reference = torch.load(tmp_path / "straight/last.pt", weights_only=True)
    steps = 12  # 24 utterances, 2 per step
    assert [h["lr"] for h in reference["history"]] == pytest.approx(
        [0.01 * (1 - (e - 1 + (steps - 1) / steps) / 3) for e in (1, 2, 3)], rel=1e-6)
    assert reference["history"][2]["train_loss"] != plateau["history"][2]["train_loss"]
    exp = tmp_path / "exp"
    _stop_mid_epoch(data, exp, signal.SIGKILL, "optim.schedule=linear")
    proc = _run(data, exp, "optim.schedule=linear")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    resumed = torch.load(exp / "last.pt", weights_only=True)
    for key, value in reference["model"].items():
        assert torch.allclose(value, resumed["model"][key], rtol=0, atol=1e-6), key
