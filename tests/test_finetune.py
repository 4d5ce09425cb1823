"""Fine-tuning: token-set transfer, frozen layers, learning rates, warm-up, front end."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from recog.config import Config, CorpusConfig
from recog.data.utterance import DataError
from recog.finetune import (
    FinetuneOptions,
    add_warmup,
    build_optimizer,
    freeze_layers,
    transfer_output,
)
from recog.models import CELLS, CTCModel, ModelOptions, save_checkpoint
from recog.models.checkpoint import load_checkpoint
from recog.models.convlstm import ConvLSTMOptions
from recog.stages.finetune import apply_checkpoint_setup
from recog.tokens import Vocabulary, timit_vocabulary
from recog.train import OptimOptions
from tests.byo_corpus import make_byo

OLD = Vocabulary.from_symbols(["aa", "iy", "s", "z"])
NEW = Vocabulary.from_symbols(["s", "x", "aa"])


def _model(vocab: Vocabulary, layers: int = 2, cell: str = "lstm", frontend: str = "none"
           ) -> CTCModel:
    torch.manual_seed(1)
    return CTCModel(5 if frontend == "none" else 6, len(vocab),
                    ModelOptions(cell=cell, hidden=6, layers=layers, stack=1, frontend=frontend,
                                 convlstm=ConvLSTMOptions(channels=2, kernel=3, maps=2)))


def _in_layer(name: str, k: int) -> bool:
    """Whether state-dict key ``name`` belongs to recurrent layer ``k``, read from the names
    each stack gives its parameters (nn.LSTM: ``rnn.weight_ih_l0``, ``rnn.bias_hh_l0_reverse``;
    the fused cells: ``rnn.layers.0.weight_ih``)."""
    return name.startswith(f"rnn.layers.{k}.") or (
        name.startswith("rnn.") and name.removesuffix("_reverse").endswith(f"_l{k}"))


def test_transfer_keeps_shared_rows_adds_new_drops_absent() -> None:
    old = _model(OLD)
    new, moved = transfer_output(old, OLD, NEW)
    assert moved == {"kept": ["<blk>", "s", "aa"], "new": ["x"], "dropped": ["iy", "z"]}
    for t_new, t_old in (("<blk>", "<blk>"), ("s", "s"), ("aa", "aa")):
        i, j = NEW.index[t_new], OLD.index[t_old]
        assert torch.equal(new.output.weight[i], old.output.weight[j])
        assert torch.equal(new.output.bias[i], old.output.bias[j])
    x = new.output.weight[NEW.index["x"]]
    assert not any(torch.equal(x, row) for row in old.output.weight)
    for name, tensor in old.rnn.state_dict().items():
        assert torch.equal(new.rnn.state_dict()[name], tensor), name
    # shared tokens keep their logits: the new model's scores on them equal the old one's
    feats, lengths = torch.randn(1, 7, 5), torch.tensor([7])
    with torch.no_grad():
        hidden_old = old.output.weight @ torch.ones(12)
        hidden_new = new.output.weight @ torch.ones(12)
        new(feats, lengths)
    assert hidden_new[NEW.index["s"]] == hidden_old[OLD.index["s"]]


@pytest.mark.parametrize("frontend", ["none", "convlstm"])
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_frozen_layers_do_not_move_and_groups_have_their_rates(cell: str, frontend: str
                                                               ) -> None:
    model = _model(OLD, layers=3, cell=cell, frontend=frontend)
    frozen = freeze_layers(model, 2)
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in frozen) == sorted(
        n for n, _ in model.named_parameters() if _in_layer(n, 0) or _in_layer(n, 1))
    opts = FinetuneOptions(encoder_lr=1e-3, output_lr=5e-3)
    optimizer = build_optimizer(model, OptimOptions(name="sgd", momentum=0.0), opts)
    assert [(g["name"], g["lr"]) for g in optimizer.param_groups] == [("encoder", 1e-3),
                                                                       ("output", 5e-3)]
    in_optimizer = {names[id(p)] for g in optimizer.param_groups for p in g["params"]}
    assert in_optimizer == {n for n, _ in model.named_parameters()
                            if not (_in_layer(n, 0) or _in_layer(n, 1))}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    log_probs, _ = model(torch.randn(2, 6, model.input_dim), torch.tensor([6, 4]))
    log_probs.sum().backward()
    optimizer.step()
    for name, tensor in model.state_dict().items():
        moved = not torch.equal(before[name], tensor)
        should = name.startswith(("output.", "frontend.")) or _in_layer(name, 2)
        assert moved == should, name
    with pytest.raises(ValueError, match="freeze_layers must be 0..3"):
        freeze_layers(model, 4)


def test_per_part_rates_move_each_part_by_its_own_rate() -> None:
    """With SGD a step moves each tensor by lr x its gradient: the front end and the
    recurrent layers by encoder_lr, the output layer by output_lr."""
    model = _model(OLD, layers=1, cell="cifg",
                   frontend="convlstm")
    optimizer = build_optimizer(model, OptimOptions(name="sgd", momentum=0.0),
                                FinetuneOptions(encoder_lr=0.01, output_lr=0.3))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model(torch.randn(2, 5, 6), torch.tensor([5, 3]))[0].sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    optimizer.step()
    for name, p in model.named_parameters():
        lr = 0.3 if name.startswith("output.") else 0.01
        torch.testing.assert_close(before[name] - p.detach(), lr * grads[name])


@pytest.mark.parametrize("bad, message", [
    (dict(output_lr=-1.0), "finetune.output_lr must be a number >= 0, not -1.0"),  # ascent
    (dict(encoder_lr=float("inf")), "finetune.encoder_lr must be a number >= 0, not inf"),
    (dict(warmup_steps=-3), "finetune.warmup_steps must be >= 0, not -3"),
])
def test_rates_and_warmup_that_would_climb_the_loss_are_refused(bad: dict, message: str
                                                                ) -> None:
    """Each was accepted until session 14 (output_lr=-1 trained by gradient ascent)."""
    with pytest.raises(ValueError, match=message):
        build_optimizer(_model(OLD, layers=1), OptimOptions(), FinetuneOptions(**bad))
    build_optimizer(_model(OLD, layers=1), OptimOptions(), FinetuneOptions(encoder_lr=0.0))


def test_warmup_scales_the_step_and_restores_the_rate() -> None:
    w = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([w], lr=0.4)
    add_warmup(optimizer, 4)
    deltas = []
    for _ in range(6):
        before = float(w.detach())
        w.grad = torch.ones(1)
        optimizer.step()
        deltas.append(round(before - float(w.detach()), 6))
        assert optimizer.param_groups[0]["lr"] == 0.4  # what schedulers and logs see
    assert deltas == [0.1, 0.2, 0.3, 0.4, 0.4, 0.4]
    assert optimizer.state_dict()["param_groups"][0]["warmup_step"] == 6


def _checkpoint(path: Path, vocab: Vocabulary, num_mel_bins: int = 40,
                normalize: str = "global") -> Path:
    cfg = Config(corpus=CorpusConfig(root="/x"))
    cfg.features.audio.num_mel_bins = num_mel_bins
    config = OmegaConf.to_container(OmegaConf.structured(cfg))
    model = CTCModel(cfg.features.audio.dim, len(vocab),
                     ModelOptions(hidden=8, layers=2, stack=1, normalize=normalize))
    save_checkpoint(path, model, vocab, config, epoch=1)
    return path


def test_front_end_comes_from_the_checkpoint_and_a_mismatch_names_the_key(
        tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "base.pt", OLD, num_mel_bins=23)
    _, _, payload = load_checkpoint(ckpt)
    cfg = Config(corpus=CorpusConfig(name="manifest", root="/y"))
    adopted = apply_checkpoint_setup(cfg, payload, ckpt)
    assert adopted.features.audio.num_mel_bins == 23 and adopted.model.hidden == 8
    cfg.features.audio.num_mel_bins = 40
    with pytest.raises(DataError, match=r"base.pt: features.audio.num_mel_bins: the checkpoint "
                       r"was trained with 23, the configuration asks for 40"):
        apply_checkpoint_setup(cfg, payload, ckpt, ["features.audio.num_mel_bins"])


def _finetune(tmp_path: Path, ckpt: Path, manifest: Path, *extra: str
              ) -> subprocess.CompletedProcess:
    args = ["corpus=manifest", f"corpus.root={manifest}", f"prepare.out={tmp_path / 'prep'}",
            "corpus.tokens=list", f"corpus.token_list={tmp_path / 'tokens.txt'}",
            f"exp_dir={tmp_path / 'exp'}", f"finetune.checkpoint={ckpt}",
            "finetune.freeze_layers=1", "finetune.output_lr=0.01", "finetune.warmup_steps=2",
            "trainer.epochs=2", "trainer.progress=false", "trainer.batch_frames=400", *extra]
    code = "from recog.cli import finetune; finetune()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path,
                          capture_output=True, text=True)


def _prepare(tmp_path: Path, manifest: Path) -> None:
    prep = subprocess.run([sys.executable, "-c", "from recog.cli import prepare; prepare()",
                           "corpus=manifest", f"corpus.root={manifest}", "corpus.tokens=list",
                           f"corpus.token_list={tmp_path / 'tokens.txt'}",
                           f"prepare.out={tmp_path / 'prep'}"], capture_output=True, text=True)
    assert prep.returncode == 0, prep.stderr


def test_recog_finetune_end_to_end(tmp_path: Path) -> None:
    manifest, _ = make_byo(tmp_path)
    for split in ("train", "dev", "test"):  # a token the 61-phone model does not have
        path = manifest / f"{split}.jsonl"
        path.write_text(path.read_text().replace('sh', 'x'))
    (tmp_path / "tokens.txt").write_text("aa\niy\nm\ns\nx\n")  # the vocabulary, whatever
    base_vocab = timit_vocabulary(61)                          # the small train split holds
    ckpt = _checkpoint(tmp_path / "base.pt", base_vocab)
    _prepare(tmp_path, manifest)
    bad = _finetune(tmp_path, ckpt, manifest, "features.audio.use_energy=false")
    assert bad.returncode == 2
    assert "features.audio.use_energy: the checkpoint was trained with True" in bad.stderr
    assert not (tmp_path / "exp" / "best.pt").exists()
    run = _finetune(tmp_path, ckpt, manifest)
    assert run.returncode == 0, run.stdout + run.stderr
    base, _, _ = load_checkpoint(ckpt)
    tuned, vocab, payload = load_checkpoint(tmp_path / "exp" / "best.pt")
    assert vocab.tokens == ("<blk>", "aa", "iy", "m", "s", "x")  # the list's order
    assert payload["config"]["finetune"]["freeze_layers"] == 1
    log = (tmp_path / "exp" / "train.log").read_text()
    assert "1 new ['x']" in log and "16 tensors frozen" not in log and "8 tensors frozen" in log
    for name, tensor in base.rnn.state_dict().items():
        assert torch.equal(tuned.rnn.state_dict()[name], tensor) == ("_l0" in name), name
    assert torch.equal(tuned.feat_mean, base.feat_mean)  # freeze_front_end: kept
    assert (tmp_path / "exp" / "config.yaml").read_text().count("num_mel_bins: 40") == 1


def test_finetune_moves_a_per_speaker_model_to_global_statistics(tmp_path: Path) -> None:
    """A per-speaker-CMVN checkpoint fine-tuned with model.normalize=global (the default
    configuration's): the model takes the new corpus's global mean and deviation (worked
    out here with NumPy from the cached training features) and the log says it changed the
    checkpoint's normalisation. This was refused with a garbled message ("from global to
    per-global") until session 14; with a frozen front end it is still refused, naming both."""
    import numpy as np

    from recog.features.cache import FeatureCache

    manifest, _ = make_byo(tmp_path)
    (tmp_path / "tokens.txt").write_text("aa\niy\nm\ns\nsh\n")
    ckpt = _checkpoint(tmp_path / "base.pt", timit_vocabulary(61), normalize="speaker")
    _prepare(tmp_path, manifest)
    frozen = _finetune(tmp_path, ckpt, manifest, "finetune.freeze_front_end=true")
    assert frozen.returncode == 2
    assert ("model.normalize=global: the checkpoint normalises 'speaker'; changing it needs "
            "finetune.freeze_front_end=false") in frozen.stderr
    run = _finetune(tmp_path, ckpt, manifest, "finetune.freeze_front_end=false")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "the checkpoint normalised 'speaker'" in (tmp_path / "exp" / "train.log").read_text()
    tuned, _, _ = load_checkpoint(tmp_path / "exp" / "best.pt")
    assert tuned.options.normalize == "global"
    index = next((tmp_path / "prep" / "features").glob("train-*.json"))
    cache = FeatureCache(index)
    frames = np.concatenate([np.asarray(cache[i], dtype=np.float64) for i in range(len(cache))])
    assert np.allclose(tuned.feat_mean.numpy(), frames.mean(0), atol=1e-4)
    assert np.allclose(tuned.feat_std.numpy(), frames.std(0), rtol=1e-3, atol=1e-4)
