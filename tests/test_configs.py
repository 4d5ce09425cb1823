"""Every config group option and every recipe experiment composes into a valid Config."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from recog.cli.schema import register
from recog.config import Config

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
EXPERIMENTS = sorted(ROOT.glob("recipes/*/conf/experiment/*.yaml"))
GROUP_OPTIONS = [(g.name, f.stem) for g in sorted(CONF.iterdir()) if g.is_dir()
                 for f in sorted(g.glob("*.yaml"))]

register()


def _compose(overrides: list[str], searchpath: Path | None = None) -> Config:
    extra = [f"hydra.searchpath=[file://{searchpath}]"] if searchpath else []
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[*extra, *overrides])
    return OmegaConf.to_object(cfg)


def test_there_is_something_to_compose() -> None:
    assert len(GROUP_OPTIONS) >= 9 and len(EXPERIMENTS) >= 2


@pytest.mark.parametrize("group,option", GROUP_OPTIONS)
def test_group_option_composes(group: str, option: str) -> None:
    cfg = _compose([f"{group}={option}", "corpus.root=/somewhere"])
    assert isinstance(cfg, Config)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: f"{p.parts[-4]}/{p.stem}")
def test_experiment_composes(path: Path) -> None:
    cfg = _compose([f"+experiment={path.stem}", "corpus.root=/somewhere"],
                   path.parent.parent)
    assert cfg.name == path.stem


def test_graves2013_is_the_paper_setup() -> None:
    cfg = _compose(["+experiment=graves2013_ctc", "corpus.root=/t"],
                   ROOT / "recipes/timit/conf")
    assert (cfg.model.layers, cfg.model.hidden, cfg.model.bidirectional) == (5, 250, True)
    assert cfg.features.audio.dim == 123 and cfg.corpus.phone_set == 61
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.momentum) == ("sgd", 1e-4, 0.9)


def test_misspelled_key_names_the_key() -> None:
    with pytest.raises(ConfigCompositionException, match="model.hiden"):
        _compose(["model.hiden=3"])


def test_wrong_type_names_the_key() -> None:
    with pytest.raises(ConfigCompositionException, match="model.layers"):
        _compose(["model.layers=many"])


@pytest.mark.parametrize("body,cause", [("model:\n  hiden: 3\n", "ConfigKeyError"),
                                        ("trainer:\n  epochs: lots\n", "ValidationError")])
def test_bad_yaml_overlay_names_the_key(tmp_path: Path, body: str, cause: str) -> None:
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "bad.yaml").write_text("# @package _global_\n" + body)
    key = ".".join(w.rstrip(":") for w in body.split()[:2])
    with pytest.raises(ConfigCompositionException, match=f"{cause}(.|\n)*full_key: {key}"):
        _compose(["+experiment=bad"], tmp_path)


@pytest.mark.parametrize("overrides,maps", [
    ([], 3),  # fbank + deltas + delta-deltas
    (["features.audio.delta_order=0"], 1),
    (["+experiment=synthetic"], 1),  # 14 pen features per point
    (["+experiment=synthetic_bezier"], 1),  # 13 values per curve (lifts folded)
])
def test_convlstm_reads_the_features_own_blocks(overrides: list[str], maps: int) -> None:
    """model.convlstm.maps=0 (the default) becomes the features' blocks, so the ConvLSTM
    front end builds on audio with any delta order and on pen features (14 or 10 values,
    which 3 maps do not divide)."""
    import torch

    from recog.models.ctc import CTCModel
    from recog.stages.corpora import get_task
    from recog.stages.train import model_options

    ink = any("synthetic" in o for o in overrides)
    cfg = _compose([*overrides, "corpus.root=/somewhere", "model.frontend=convlstm"],
                   ROOT / "recipes/iam_ondb/conf" if ink else None)
    options = model_options(cfg, get_task(cfg))
    assert options.convlstm.maps == maps and cfg.model.convlstm.maps == 0
    dim = (cfg.features.pen if ink else cfg.features.audio).dim
    model = CTCModel(dim, 5, options)
    y, _ = model(torch.randn(2, 7, dim), torch.tensor([7, 4]))
    assert y.shape[:2] == (2, 7 // options.stack + (7 % options.stack > 0))
