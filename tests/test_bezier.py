"""The Bézier-curve ink encoding: fits checked against known curves and geometry computed
by hand, the error bound checked by dense sampling, and the row bookkeeping (pen lifts,
displacements and durations that add up)."""

from __future__ import annotations

import numpy as np
import pytest

from recog.features.bezier import BEZIER_FEATURES, bezier_curves, curve_features, fit_strokes
from recog.features.pen import PenFeatureOptions, pen_features

COL = {name: k for k, name in enumerate(BEZIER_FEATURES)}


def _cubic(ctrl: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Points of a cubic Bézier by de Casteljau's construction (not the Bernstein form the
    code uses)."""
    p = np.repeat(ctrl[None], len(s), axis=0)
    for _ in range(3):
        p = p[:, :-1] + s[:, None, None] * (p[:, 1:] - p[:, :-1])
    return p[:, 0]


def _flat(strokes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate(strokes), np.cumsum([0] + [len(s) for s in strokes[:-1]])


def test_points_of_one_cubic_give_that_cubic_back() -> None:
    ctrl = np.array([[0.0, 0.0], [0.3, 0.9], [1.2, 1.1], [1.6, 0.2]])
    xy = _cubic(ctrl, np.linspace(0, 1, 60) ** 1.3)  # not spaced by arc length
    t = np.linspace(0.0, 0.6, 60)
    curves, stroke = fit_strokes(np.column_stack([xy, t]), np.array([0]), 0.02)
    assert len(curves) == 1 and stroke.tolist() == [0]
    assert curves[0, [0, 3], 2].tolist() == [0.0, 0.6]
    # the fitted curve runs within the bound of the true one, end to end
    dense = _cubic(curves[0, :, :2], np.linspace(0, 1, 500))
    truth = _cubic(ctrl, np.linspace(0, 1, 500))
    gap = np.hypot(*(dense[:, None] - truth[None]).transpose(2, 0, 1))
    assert max(gap.min(0).max(), gap.min(1).max()) < 0.02
    assert np.abs(curves[0, :, :2] - ctrl).max() < 0.15


def test_a_straight_stroke_is_one_straight_curve() -> None:
    xy = np.linspace([0.0, 0.0], [3.0, 4.0], 25)
    ctrl, up = bezier_curves(*_flat([np.column_stack([xy, np.linspace(0, 0.5, 25)])]), 0.05)
    f = curve_features(ctrl, up)
    assert f.shape == (1, 10)
    # by hand: chord (3, 4); control points at the thirds: d = 1/3, angles 0; 0.5 s long
    assert np.allclose(f[0, :6], [3, 4, 1 / 3, 1 / 3, 0, 0], atol=1e-6)
    assert np.allclose(f[0, 6:], [0.5 / 3, 1.0 / 3, 0.5, 0], atol=1e-6)


def test_quarter_circle_angles_and_distances() -> None:
    # counter-clockwise from (1, 0) to (0, 1): the chord points at 135 degrees, the start
    # tangent at 90 (alpha1 = -45 degrees), the end tangent at 180, so P2 - P3 points at 0
    # against the reversed chord at -45 (alpha2 = +45 degrees); the best cubic has its
    # control points about 0.552 from the ends, a ratio of 0.552 / sqrt(2) = 0.39.
    u = np.linspace(0, np.pi / 2, 80)
    stroke = np.column_stack([np.cos(u), np.sin(u), u])
    f = curve_features(*bezier_curves(*_flat([stroke]), 0.01))
    assert len(f) == 1
    assert f[0, COL["alpha1"]] == pytest.approx(-np.pi / 4, abs=0.03)
    assert f[0, COL["alpha2"]] == pytest.approx(np.pi / 4, abs=0.03)
    assert f[0, COL["d1"]] == pytest.approx(0.39, abs=0.02)
    assert f[0, COL["d2"]] == pytest.approx(0.39, abs=0.02)
    mirrored = stroke * [1, -1, 1]  # clockwise: the angles change sign
    g = curve_features(*bezier_curves(*_flat([mirrored]), 0.01))
    assert np.allclose(g[0, [COL["alpha1"], COL["alpha2"]]], -f[0, [COL["alpha1"], COL["alpha2"]]])


@pytest.mark.parametrize("max_error", [0.2, 0.05, 0.01])
def test_every_point_lies_within_the_bound(max_error: float) -> None:
    u = np.linspace(0, 4 * np.pi, 400)  # a spiral of two turns, then a zig-zag
    spiral = np.column_stack([(1 + 0.2 * u) * np.cos(u), (1 + 0.2 * u) * np.sin(u), u / 10])
    zig = np.column_stack([np.linspace(4, 8, 41), np.tile([0.0, 1.0], 21)[:41],
                           np.linspace(2, 3, 41)])
    ctrl, up = bezier_curves(*_flat([spiral, zig]), max_error)
    curves = ctrl[up == 0][:, :, :2]
    dense = np.concatenate([_cubic(c, np.linspace(0, 1, 2000)) for c in curves])
    for p in np.concatenate([spiral, zig])[:, :2]:
        assert np.hypot(*(dense - p).T).min() <= max_error * 1.001
    assert len(curves) >= 8  # a cubic turns at most about once: two turns need several


def test_tighter_bounds_give_more_curves() -> None:
    u = np.linspace(0, 2 * np.pi, 300)
    wave = np.column_stack([u, np.sin(3 * u), u / 10])
    counts = [len(bezier_curves(*_flat([wave]), e)[0]) for e in (0.3, 0.1, 0.03, 0.01)]
    assert counts == sorted(counts) and counts[-1] > counts[0]


def test_pen_lifts_dots_and_sums() -> None:
    a = np.column_stack([np.linspace(0, 1, 20), np.zeros(20), np.linspace(0, 0.2, 20)])
    dot = np.array([[1.5, 1.0, 0.5], [1.5, 1.0, 0.55]])  # a stationary pen: a dot
    b = np.column_stack([np.linspace(2, 2, 15), np.linspace(0, 1, 15), np.linspace(1, 1.3, 15)])
    ctrl, up = bezier_curves(*_flat([a, dot, b]), 0.05)
    f = curve_features(ctrl, up)
    assert up.tolist() == [0, 1, 0, 1, 0]
    # the lifts, by hand: (1, 0) -> (1.5, 1) over 0.5 - 0.2 s; (1.5, 1) -> (2, 0) over 0.45 s
    assert np.allclose(f[1, [0, 1, 2, 3, 4, 5, 8]], [0.5, 1.0, 1 / 3, 1 / 3, 0, 0, 0.3])
    assert np.allclose(f[3, [0, 1, 8]], [0.5, -1.0, 0.45])
    assert np.allclose(f[2, :9], [0, 0, 0, 0, 0, 0, 0.05 / 3, 0.1 / 3, 0.05])  # the dot
    # displacements add up to last minus first point, durations to the time spanned
    assert np.allclose(f[:, :2].sum(0), b[-1, :2] - a[0, :2])
    assert f[:, COL["gamma3"]].sum() == pytest.approx(b[-1, 2] - a[0, 2])


def test_sequences_are_shorter_than_resampled_points() -> None:
    from tests.test_pen_features import _ideal, _sensor

    ink = _sensor(_ideal("lion tint pond doll nil", jitter=0.004))
    points = len(pen_features(ink, PenFeatureOptions(kind="graves")))
    curves = pen_features(ink, PenFeatureOptions(kind="bezier"))
    assert len(curves) < points / 2
    assert int(curves[:, COL["pen_up"]].sum()) == len(ink) - 1


def test_bezier_error_option() -> None:
    assert PenFeatureOptions(kind="bezier").dim == 10
    with pytest.raises(ValueError, match="bezier_error"):
        PenFeatureOptions(kind="bezier", bezier_error=0.0)


def test_folded_lifts_become_values_of_the_next_curve() -> None:
    """bezier_lifts=folded: the lifts of the hand-checked line above are no rows; their
    vector and duration (by hand: (0.5, 1) over 0.3 s, (0.5, -1) over 0.45 s) are the last
    three values of the curve after each, whose pen_up is 1; everything else is the same."""
    from recog.features.bezier import fold_lifts

    a = np.column_stack([np.linspace(0, 1, 20), np.zeros(20), np.linspace(0, 0.2, 20)])
    dot = np.array([[1.5, 1.0, 0.5], [1.5, 1.0, 0.55]])
    b = np.column_stack([np.linspace(2, 2, 15), np.linspace(0, 1, 15), np.linspace(1, 1.3, 15)])
    rows = curve_features(*bezier_curves(*_flat([a, dot, b]), 0.05))
    folded = fold_lifts(rows)
    assert folded.shape == (3, 13)
    assert np.allclose(folded[:, 10:], [[0, 0, 0], [0.5, 1.0, 0.3], [0.5, -1.0, 0.45]])
    assert folded[:, COL["pen_up"]].tolist() == [0, 1, 1]
    assert np.array_equal(folded[:, :9], rows[[0, 2, 4], :9])
    # the displacements still add up, now with the lifts' own columns
    assert np.allclose(folded[:, :2].sum(0) + folded[:, 10:12].sum(0), b[-1, :2] - a[0, :2])


def test_folded_option_through_the_front_end() -> None:
    from recog.features.pen import feature_points
    from tests.test_pen_features import _ideal, _sensor

    ink = _sensor(_ideal("lion tint", jitter=0.004))
    rows = pen_features(ink, PenFeatureOptions(kind="bezier"))
    opts = PenFeatureOptions(kind="bezier", bezier_lifts="folded")
    folded = pen_features(ink, opts)
    lifts = int(rows[:, COL["pen_up"]].sum())
    assert opts.dim == 13 and folded.shape == (len(rows) - lifts, 13)
    assert int(folded[:, COL["pen_up"]].sum()) == lifts == len(ink) - 1
    # one point per row, grouped by stroke: what pictures and per-stroke spans count
    groups = feature_points(ink, opts)
    assert [len(g) for g in groups] == np.diff(
        np.flatnonzero(np.r_[1, folded[1:, COL["pen_up"]].numpy(), 1])).tolist()
    with pytest.raises(ValueError, match="bezier_lifts"):
        PenFeatureOptions(kind="bezier", bezier_lifts="drop")
