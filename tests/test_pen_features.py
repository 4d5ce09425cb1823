"""The pen front end: normalisation estimates, resampling, features and their invariances."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recog.features.bezier import BEZIER_FEATURES
from recog.features.pen import (
    COMPACT_FEATURES,
    GRAVES_FEATURES,
    PenFeatureOptions,
    estimate_geometry,
    feature_points,
    normalize_ink,
    pen_features,
    resample,
)

# Synthetic upright print writing in "ideal" units: y up, baseline y = 0, core height 1.
# Each letter is a list of polylines (strokes); the 'i' dot and the 't' bar are written after
# the word, as delayed strokes.


def _line(a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    n = max(2, int(np.hypot(b[0] - a[0], b[1] - a[1]) / 0.02) + 1)
    return np.linspace(a, b, n)


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float) -> np.ndarray:
    u = np.linspace(a0, a1, max(8, int(abs(a1 - a0) * max(rx, ry) / 0.02)))
    return np.column_stack([cx + rx * np.cos(u), cy + ry * np.sin(u)])


def _letter(ch: str) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """(strokes, delayed strokes, advance) of a letter whose left edge is at x = 0."""
    if ch == "l":
        return [_line((0.0, 2.5), (0.0, 0.0))], [], 0.5
    if ch == "i":
        return [_line((0.0, 1.0), (0.0, 0.0))], [np.array([[0.0, 1.6], [0.01, 1.61]])], 0.5
    if ch == "t":
        return [_line((0.2, 2.0), (0.2, 0.0))], [_line((0.0, 1.0), (0.45, 1.0))], 0.7
    if ch == "n":
        stroke = np.concatenate([
            _line((0.0, 1.0), (0.0, 0.0)), _line((0.0, 0.0), (0.0, 0.7))[1:],
            _arc(0.3, 0.7, 0.3, 0.3, np.pi, 0.0)[1:], _line((0.6, 0.7), (0.6, 0.0))[1:]])
        return [stroke], [], 0.9
    if ch == "o":
        return [_arc(0.35, 0.5, 0.35, 0.5, np.pi / 2, np.pi / 2 + 2 * np.pi)], [], 0.95
    if ch == "d":
        loop = _arc(0.35, 0.5, 0.35, 0.5, np.pi / 2, np.pi / 2 + 2 * np.pi)
        return [loop, _line((0.7, 2.4), (0.7, 0.0))], [], 1.0
    if ch == "p":
        loop = _arc(0.35, 0.5, 0.35, 0.5, np.pi / 2, np.pi / 2 + 2 * np.pi) + [0.1, 0.0]
        return [_line((0.0, 1.0), (0.0, -0.9)), loop], [], 1.0
    raise KeyError(ch)


def _ideal(text: str = "lion tint pond doll nil", jitter: float = 0.0) -> list[np.ndarray]:
    """Strokes (x, y) of ``text`` in ideal units, in writing order."""
    rng = np.random.default_rng(0)
    strokes: list[np.ndarray] = []
    x = 0.0
    for word in text.split():
        delayed = []
        for ch in word:
            body, late, advance = _letter(ch)
            strokes += [s + [x, 0.0] for s in body]
            delayed += [s + [x, 0.0] for s in late]
            x += advance
        strokes += delayed
        x += 1.2
    return [s + jitter * rng.standard_normal(s.shape) for s in strokes]


def _sensor(strokes: list[np.ndarray], px: float = 60.0, speed: float = 8.0,
            shear: float = 0.0, rotate_deg: float = 0.0) -> list[np.ndarray]:
    """Ideal strokes as IAM-OnDB ink: optionally sheared/rotated, px per unit, y down, timed."""
    c, s = np.cos(np.deg2rad(rotate_deg)), np.sin(np.deg2rad(rotate_deg))
    out, t0 = [], 100.0
    for st in strokes:
        x = st[:, 0] + shear * st[:, 1]
        y = st[:, 1]
        x, y = c * x - s * y, s * x + c * y
        d = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
        t = t0 + d / speed
        out.append(np.column_stack([300.0 + px * x, 900.0 - px * y, t]))
        t0 = t[-1] + 0.15
    return out


def _transform(ink: list[np.ndarray], scale: float, about: tuple[float, float],
               shift: tuple[float, float]) -> list[np.ndarray]:
    c = np.array([about[0], about[1], 0.0])
    return [(s - c) * [scale, scale, 1.0] + c + [shift[0], shift[1], 0.0] for s in ink]


@pytest.fixture(scope="module")
def ink() -> list[np.ndarray]:
    return _sensor(_ideal(jitter=0.004))


@pytest.mark.parametrize("kind", ["compact", "graves", "bezier"])
@pytest.mark.parametrize(("scale", "about", "shift"), [
    (1.0, (0.0, 0.0), (137.25, -48.5)),  # translation
    (2.5, (0.0, 0.0), (0.0, 0.0)),  # scaling about the sensor origin
    (0.37, (512.0, 700.0), (-20.0, 33.0)),  # scaling about another point, then a shift
])
def test_features_invariant_to_translation_and_scale(ink, kind, scale, about, shift) -> None:
    opts = PenFeatureOptions(kind=kind)
    ref = pen_features(ink, opts)
    moved = pen_features(_transform(ink, scale, about, shift), opts)
    assert moved.shape == ref.shape
    assert torch.allclose(moved, ref, atol=1e-4)


def test_clean_ink_geometry_is_recovered(ink) -> None:
    geom = estimate_geometry(ink)
    assert abs(np.rad2deg(geom.skew)) < 1.0
    assert abs(np.rad2deg(geom.slant)) < 2.0
    assert geom.core_height == pytest.approx(60.0, rel=0.08)
    # The ideal ink starts at x = 0 on the baseline: sensor (300, 900).
    assert geom.origin == pytest.approx((300.0, 900.0), abs=0.05 * 60)


def _vertical_runs(strokes: list[np.ndarray], ideal: list[np.ndarray]) -> list[np.ndarray]:
    """The normalised points of the strokes that are vertical lines in the ideal ink."""
    return [s for s, i in zip(strokes, ideal, strict=True)
            if np.ptp(i[:, 0]) < 0.05 and np.ptp(i[:, 1]) > 0.9]


@pytest.mark.parametrize("slant_deg", [-15.0, 20.0, 35.0])
def test_known_slant_is_removed(slant_deg) -> None:
    ideal = _ideal(jitter=0.004)
    sheared = _sensor(ideal, shear=np.tan(np.deg2rad(slant_deg)))
    geom = estimate_geometry(sheared)
    assert np.rad2deg(geom.slant) == pytest.approx(slant_deg, abs=3.0)
    assert abs(np.rad2deg(geom.skew)) < 1.5
    runs = _vertical_runs(normalize_ink(sheared), ideal)
    assert len(runs) >= 8
    for run in runs:  # the 'l', 'i', 't', 'd', 'p' stems stand upright again
        lean = np.rad2deg(np.arctan2(np.ptp(run[:, 0]), np.ptp(run[:, 1])))
        assert lean < 3.0
    kept = estimate_geometry(sheared, slant=False)
    assert kept.slant == 0.0


@pytest.mark.parametrize("tilt_deg", [-5.0, 3.0, 7.0])
def test_known_baseline_tilt_is_removed(tilt_deg) -> None:
    ideal = _ideal(jitter=0.004)
    tilted = _sensor(ideal, rotate_deg=tilt_deg)
    geom = estimate_geometry(tilted)
    assert np.rad2deg(geom.skew) == pytest.approx(tilt_deg, abs=1.0)
    assert abs(np.rad2deg(geom.slant)) < 2.0
    assert geom.core_height == pytest.approx(60.0, rel=0.08)
    norm = normalize_ink(tilted)
    flat, ideal_flat = np.concatenate(norm), np.concatenate(ideal)
    # Points on the ideal baseline and corpus line land on y = 0 and y = 1 along the line.
    on_base = np.abs(ideal_flat[:, 1]) < 0.01
    on_corpus = np.abs(ideal_flat[:, 1] - 1.0) < 0.01
    assert np.abs(flat[on_base, 1]).max() < 0.05
    assert np.abs(flat[on_corpus, 1] - 1.0).max() < 0.1
    assert flat[:, 0].min() == pytest.approx(0.0, abs=1e-9)


def test_normalized_ink_keeps_time_and_stroke_structure(ink) -> None:
    norm = normalize_ink(ink)
    assert [len(s) for s in norm] == [len(s) for s in ink]
    for a, b in zip(norm, ink, strict=True):
        assert np.array_equal(a[:, 2], b[:, 2])
    # y now grows upwards: the ascender of the first 'l' starts above its foot.
    assert norm[0][0, 1] > norm[0][-1, 1] + 2.0


def test_resampling_is_equidistant() -> None:
    u = np.linspace(0, 2 * np.pi, 2000)
    circle = np.column_stack([np.cos(u), np.sin(u), u])  # time proportional to arc length
    line = np.column_stack([np.linspace(3, 7, 50), np.full(50, 0.5), np.linspace(9, 10, 50)])
    out = resample([circle, line], 0.1)
    assert len(out) == 2
    for s, length in zip(out, [2 * np.pi, 4.0], strict=True):
        gaps = np.hypot(*np.diff(s[:, :2], axis=0).T)
        assert len(s) == round(length / 0.1) + 1
        assert np.allclose(gaps, gaps.mean(), rtol=2e-3)
        assert gaps.mean() == pytest.approx(0.1, rel=0.02)
        assert np.allclose(np.diff(s[:, 2]), np.diff(s[:, 2]).mean(), rtol=2e-3)
    assert np.allclose(out[0][[0, -1], :2], [[1, 0], [1, 0]], atol=1e-9)  # ends kept
    assert np.allclose(out[1][[0, -1]], line[[0, -1]])


def test_dot_strokes_keep_one_point() -> None:
    dot = np.array([[5.0, 5.0, 1.0], [5.01, 5.0, 1.01], [5.02, 5.0, 1.02]])
    single = np.array([[8.0, 1.0, 2.0]])
    out = resample([dot, single], 0.5)
    assert [len(s) for s in out] == [1, 1]
    assert np.allclose(out[0], [[5.01, 5.0, 1.01]])
    assert np.allclose(out[1], single)


@pytest.mark.parametrize("kind", ["compact", "graves", "bezier"])
def test_dims_names_and_pen_up_count(ink, kind) -> None:
    opts = PenFeatureOptions(kind=kind)
    feats = pen_features(ink, opts)
    names = {"compact": COMPACT_FEATURES, "graves": GRAVES_FEATURES,
             "bezier": BEZIER_FEATURES}[kind]
    assert opts.dim == len(names) == feats.shape[1]
    assert opts.feature_names == names
    assert feats.dtype == torch.float32
    pen_up = feats[:, names.index("pen_up")]
    assert int(pen_up.sum()) == len(ink) - 1
    assert set(pen_up.tolist()) == {0.0, 1.0}
    assert feats.abs().max() < 10.0  # roughly unit scale


def test_lowercase_letters_get_a_handful_of_points() -> None:
    for text in ["noon", "onion noon"]:
        rows = len(pen_features(_sensor(_ideal(text)), PenFeatureOptions()))
        letters = len(text.replace(" ", ""))
        assert 5 * letters <= rows <= 8 * letters


def test_compact_deltas_follow_the_resampled_path(ink) -> None:
    opts = PenFeatureOptions(max_delta=0.0)
    feats = pen_features(ink, opts).double().numpy()
    pts = np.concatenate(resample(normalize_ink(ink), opts.resample_step))
    assert np.allclose(np.cumsum(feats[:, :2], axis=0) + pts[0, :2], pts[:, :2], atol=1e-4)
    down = feats[:, 2] == 0
    step = np.hypot(feats[down, 0], feats[down, 1])[1:]
    assert np.all(step < 1.5 * opts.resample_step)


def test_graves_features_on_known_geometry(ink) -> None:
    feats = pen_features(ink, PenFeatureOptions(kind="graves")).numpy()
    col = {n: feats[:, i] for i, n in enumerate(GRAVES_FEATURES)}
    # Unit writing directions, except on the one-point strokes (the i-dots): zero there.
    dots = sum(len(s) == 1 for s in resample(normalize_ink(ink), 0.5))
    norm = col["dir_cos"] ** 2 + col["dir_sin"] ** 2
    assert np.isclose(norm, 1.0, atol=1e-5).sum() == len(norm) - dots
    assert dots == 3 and (norm == 0).sum() == dots
    # The first stroke is the 'l', written straight down: direction (0, -1), no curvature,
    # a tall thin vicinity, perfectly linear, written at 8 core heights per second.
    n_l = int(round(2.5 / 0.5)) + 1
    assert np.allclose(col["dir_sin"][1:n_l - 1], -1.0, atol=0.02)
    assert np.allclose(col["curv_cos"][: n_l], 1.0, atol=0.01)
    assert np.allclose(col["vic_aspect"][:n_l], 1.0, atol=0.05)
    assert np.allclose(col["vic_linearity"][:n_l], 0.0, atol=1e-3)
    assert np.allclose(col["vic_curliness"][:n_l], 0.0, atol=0.02)
    assert np.allclose(col["speed"][1:n_l - 1], np.log1p(8.0), atol=0.05)
    assert np.allclose(col["y"][[0, n_l - 1]], [2.5, 0.0], atol=0.1)
    # Around the 'o' (a closed loop) the trajectory curls; the hat marks the points below the
    # i-dots and t-bars, and only those.
    assert col["vic_curliness"].max() > 0.3
    hat = col["hat"] > 0
    assert hat.any() and not hat.all()
    assert np.all(col["y"][hat] < 1.6)


@pytest.mark.parametrize("dot_last", [True, False])
def test_hat_marks_points_under_an_i_dot(dot_last) -> None:
    stems = [_line((x, 1.0), (x, 0.0)) for x in (0.0, 0.5, 1.0)]
    dot = np.array([[0.5, 1.6], [0.51, 1.6]])
    # The dot written after the whole word, or right after its stem.
    ideal = stems + [dot] if dot_last else stems[:2] + [dot, stems[2]]
    feats = pen_features(_sensor(ideal), PenFeatureOptions(kind="graves")).numpy()
    hat = feats[:, GRAVES_FEATURES.index("hat")]
    x = feats[:, GRAVES_FEATURES.index("x")]
    n = int(round(1 / 0.5)) + 1
    stem_hat = [0.0] * n + [1.0] * n
    assert hat.tolist() == (stem_hat + [0.0] * n + [0.0] if dot_last
                            else stem_hat + [0.0] + [0.0] * n)
    if dot_last:
        assert x[-1] < 0  # the dot sits left of the text written around it


@pytest.mark.parametrize("kind", ["compact", "graves", "bezier"])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("strokes", [
    [np.array([[10.0, 20.0, 0.5]])],  # a single point
    [np.array([[10.0, 20.0, 0.5]] * 5)],  # repeated identical points
    [np.array([[1.0, 1.0, 0.0], [4.0, 1.0, 0.0], [9.0, 1.0, 0.0]])],  # flat, no time
    [np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]), np.array([[3.0, 0.0, 1.0]]),
     np.array([[3.0, 0.0, 1.0], [3.0, 5.0, 1.0], [3.0, 5.0, 1.0]])],  # dots, zero dt
    [np.array([[0.0, 0.0, np.nan], [1.0, 2.0, np.nan], [2.0, 0.0, np.nan]])],  # no time
])
def test_degenerate_ink_gives_finite_features(strokes, kind, normalize) -> None:
    opts = PenFeatureOptions(kind=kind, normalize=normalize)
    with np.errstate(all="raise"):
        feats = pen_features(strokes, opts)
    assert feats.shape[1] == opts.dim and len(feats) >= len(strokes)
    assert torch.isfinite(feats).all()


@pytest.mark.parametrize(("strokes", "message"), [
    ([], "no strokes"),
    ([np.array([[0.0, 0.0, 0.0]]), np.zeros((0, 3))], "stroke 1 of 2 has no points"),
    ([np.zeros((4, 2))], r"\(N, 3\)"),
    ([np.array([[0.0, np.inf, 0.0]])], "non-finite"),
])
def test_bad_ink_raises(strokes, message) -> None:
    with pytest.raises(ValueError, match=message):
        pen_features(strokes, PenFeatureOptions())
    with pytest.raises(ValueError, match=message):
        normalize_ink(strokes)


def test_options() -> None:
    opts = PenFeatureOptions()
    assert opts.as_dict()["kind"] == "compact" and opts.dim == 3
    opts.kind = "graves"  # not frozen: Hydra overrides fields
    assert opts.dim == 14
    with pytest.raises(ValueError, match="kind"):
        PenFeatureOptions(kind="bitmap")
    with pytest.raises(ValueError, match="features.pen.resample_step must be > 0"):
        PenFeatureOptions(resample_step=0.0)


@pytest.mark.parametrize("kind", ["compact", "graves", "bezier"])
def test_feature_points_match_the_rows(ink, kind) -> None:
    opts = PenFeatureOptions(kind=kind)
    groups = feature_points(ink, opts)
    assert sum(len(g) for g in groups) == len(pen_features(ink, opts))
    assert len(groups) == len(ink)
    if kind != "graves":  # each row's (dx, dy) leads from the previous row's point to its own
        flat = np.concatenate(groups)
        deltas = pen_features(ink, PenFeatureOptions(kind=kind, max_delta=0.0))[:, :2].numpy()
        assert np.allclose(np.diff(flat[:, :2], axis=0), deltas[1:], atol=1e-4)
