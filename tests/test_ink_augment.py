"""Ink augmentation: each perturbation checked against its hand-computed effect, the draws
seeded and per line, copies added to training only."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from recog.data.utterance import Utterance
from recog.features.ink_augment import (
    InkAugmentOptions,
    ink_copies,
    perturb_ink,
    perturbed_strokes,
)

NONE = InkAugmentOptions(copies=1, slant=[0, 0], rotate=[0, 0], scale=[1, 1], aspect=[1, 1],
                         elastic=0.0, time_warp=0.0, dropout=0.0)


@pytest.fixture(scope="module")
def ink() -> list[np.ndarray]:
    from tests.test_pen_features import _ideal, _sensor

    return _sensor(_ideal("lion tint pond doll nil", jitter=0.004))


def _flat(strokes: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(strokes)


def test_no_strength_is_the_identity(ink) -> None:
    out = perturb_ink(ink, np.random.default_rng(0), NONE)
    assert all(np.allclose(a, b, rtol=0, atol=1e-9) for a, b in zip(ink, out, strict=True))


def test_slant_scale_and_aspect_by_hand(ink) -> None:
    opts = replace(NONE, slant=[0.25, 0.25], scale=[1.5, 1.5], aspect=[0.8, 0.8])
    out = _flat(perturb_ink(ink, np.random.default_rng(0), opts))
    pts = _flat(ink)
    c = pts[:, :2].mean(0)
    x, y = pts[:, 0] - c[0], pts[:, 1] - c[1]
    # y points down: the tops (smaller y) move right by 0.25 per unit of height
    assert np.allclose(out[:, 0], c[0] + 1.5 * 0.8 * (x - 0.25 * y))
    assert np.allclose(out[:, 1], c[1] + 1.5 * y)
    assert np.array_equal(out[:, 2], pts[:, 2])


def test_rotation_keeps_distances(ink) -> None:
    out = _flat(perturb_ink(ink, np.random.default_rng(0), replace(NONE, rotate=[10, 10])))
    pts = _flat(ink)
    d0 = np.hypot(*np.diff(pts[:, :2], axis=0).T)
    assert np.allclose(np.hypot(*np.diff(out[:, :2], axis=0).T), d0)
    a, b = pts[-1, :2] - pts[0, :2], out[-1, :2] - out[0, :2]
    turned = np.degrees(np.arctan2(a[0] * b[1] - a[1] * b[0], a @ b))
    assert abs(turned) == pytest.approx(10.0)


def test_time_warp_keeps_order_and_positions(ink) -> None:
    out = _flat(perturb_ink(ink, np.random.default_rng(3), replace(NONE, time_warp=0.5)))
    pts = _flat(ink)
    assert np.allclose(out[:, :2], pts[:, :2], rtol=0, atol=1e-9)
    assert out[0, 2] == pts[0, 2] and np.all(np.diff(out[:, 2]) > 0)
    ratio = np.diff(out[:, 2]) / np.diff(pts[:, 2])
    assert ratio.min() < 0.8 and ratio.max() > 1.25  # the speed profile did change
    within = np.ones(len(ratio), bool)  # steps inside a stroke (not over a pen lift)
    within[np.cumsum([len(s) for s in ink])[:-1] - 1] = False
    log_ratio = np.log(ratio)
    for run in np.split(log_ratio, np.flatnonzero(~within)):
        assert np.abs(np.diff(run[1:])).max(initial=0) < 0.1  # ... smoothly


def test_dropout_keeps_stroke_ends(ink) -> None:
    out = perturb_ink(ink, np.random.default_rng(1), replace(NONE, dropout=0.3))
    assert len(out) == len(ink)
    for a, b in zip(ink, out, strict=True):
        assert np.allclose(a[[0, -1]], b[[0, -1]], rtol=0, atol=1e-9)
    kept = sum(map(len, out)) / sum(map(len, ink))
    assert 0.6 < kept < 0.8


def test_elastic_displacement_is_smooth_and_sized(ink) -> None:
    from recog.features.pen import estimate_geometry

    height = estimate_geometry(ink).core_height
    out = _flat(perturb_ink(ink, np.random.default_rng(2), replace(NONE, elastic=0.1)))
    move = out[:, :2] - _flat(ink)[:, :2]
    size = np.abs(move).mean() / height  # E|N(0, 0.1)| = 0.08, less between the knots
    assert 0.02 < size < 0.2
    assert np.abs(np.diff(move, axis=0)).max() < 0.1 * height  # neighbours move alike


def test_copies_are_seeded_per_line() -> None:
    utts = [Utterance("a", "w", "a.xml", ("x",)), Utterance("b", "w", "b.xml", ("y",))]
    out = ink_copies(utts, replace(NONE, copies=2), seed=7)
    assert [u.id for u in out] == ["a", "b", "a-ink1", "b-ink1", "a-ink2", "b-ink2"]
    seeds = [tuple(u.extra["ink_seed"]) for u in out[2:]]
    assert len(set(seeds)) == 4 and all(s[0] == 7 for s in seeds)
    assert ink_copies(utts, replace(NONE, copies=2), seed=7) == out
    strokes = [np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 0.1], [2.0, 0.0, 0.2]])]
    assert perturbed_strokes(strokes, out[0]) is strokes  # an original line: untouched
    with pytest.raises(ValueError, match="augment.ink.scale"):
        InkAugmentOptions(scale=[0.0, 1.0]).check()


def test_copies_train_and_decode_reads_the_ink_as_is(tmp_path: Path) -> None:
    from tests.iamondb_tree import make_tree

    root = Path(__file__).resolve().parent.parent
    bin_dir = Path(sys.executable).parent
    make_tree(tmp_path / "corpus")
    args = [f"hydra.searchpath=[file://{root / 'recipes/iam_ondb/conf'}]",
            "+experiment=synthetic", "corpus.synthetic=false", f"corpus.root={tmp_path / 'corpus'}",
            f"prepare.out={tmp_path / 'prep'}", f"exp_dir={tmp_path / 'exp'}",
            "model.hidden=16", "model.layers=1", "model.stack=1", "trainer.epochs=1",
            "trainer.progress=false", "features.pen.resample_step=0.25",
            "augment.ink.copies=2"]
    for verb in ("recog-prepare", "recog-train", "recog-decode"):
        run = subprocess.run([str(bin_dir / verb), *args], cwd=tmp_path, capture_output=True,
                             text=True)
        assert run.returncode == 0, run.stdout + run.stderr
        if verb == "recog-train":
            assert "train 15 utts" in run.stdout + run.stderr  # 5 lines and 2 copies of each
    scores = json.loads((tmp_path / "exp/results/scores.json").read_text())
    assert scores["splits"]["test"]["CER"]["utterances"] == 2  # the test lines, no copies
