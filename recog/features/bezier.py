"""Ink as a sequence of cubic Bézier curves, after V. Carbune et al., "Fast multi-language
LSTM-based online handwriting recognition", IJDAR 23:89-102, 2020 (arXiv:1902.10525), §2.1.

Each pen-down stroke (normalised ink: y up, core height 1, t in seconds) is cut into pieces
that one cubic Bézier curve each fits within ``max_error``; every curve, and every pen lift
between two strokes, becomes one row of ``BEZIER_FEATURES``:

  1-2  dx, dy          the vector from the curve's start point P0 to its end point P3;
  3-4  d1, d2          the distances |P1 - P0| and |P2 - P3| of the control points from
                       their end points, relative to the chord |P3 - P0|;
  5-6  alpha1, alpha2  the signed angles (radians) of P1 - P0 against the chord P3 - P0 and
                       of P2 - P3 against the reversed chord P0 - P3;
  7-9  gamma1..gamma3  the time curve: the cubic Bézier T(s) fitted to the points' times,
                       as its control values relative to its start, T1 - T0, T2 - T0, T3 - T0
                       (seconds; T3 - T0 is the curve's duration);
  10   pen_up          1 for the straight curve of a pen lift (from the end of one stroke to
                       the start of the next, control points at its thirds, time linear over
                       the gap), 0 for ink.

Followed from the paper (as summarised in the project's literature notes, §3.4; the paper's
own text was not at hand): strokes fitted with cubic Bézier curves by least squares, position
and time alike polynomials in one parameter s in [0, 1], and the ten values above, pen-up
curves included.

Chosen here (the paper's exact segmentation, error measure, bound and value order were not
available): the end points of a curve are the first and last points of its piece, so
consecutive curves join and the displacements add up to the path's end-to-end vector; s
starts as the normalised arc length and two Newton steps move each point's s to its nearest
point on the curve (P. J. Schneider's re-parameterisation, Graphics Gems 1990); the inner
control points (and T1, T2) solve the least-squares problem, as deviations from the straight
line where it is under-determined (fewer than two inner points). A piece whose largest
distance from its curve exceeds ``max_error`` (core heights) is split at its worst point and
both halves fitted again (Schneider's recursive scheme), as is a piece whose chord is shorter
than a third of its path (a loop), which would make d1 and d2 ill-conditioned. A stroke of
one point (a dot) is one zero-length pen-down curve; d1 and d2 are clipped at
``_MAX_RATIO``; the values are not rescaled beyond the model's own normalisation.

Not in the paper: ``fold_lifts`` (``features.pen.bezier_lifts=folded``), the pen-lift rows
folded into the curves after them, a third fewer rows for handwriting.
"""

from __future__ import annotations

import numpy as np

BEZIER_FEATURES: tuple[str, ...] = (
    "dx", "dy", "d1", "d2", "alpha1", "alpha2", "gamma1", "gamma2", "gamma3", "pen_up",
)
# with the pen lifts folded into the curve after them (``fold_lifts``): the lift's vector and
# duration, 0 for a curve that continues its stroke; pen_up then flags a stroke's first curve
LIFT_FEATURES: tuple[str, ...] = ("lift_dx", "lift_dy", "lift_dt")
_MAX_RATIO = 5.0  # d1, d2 are clipped here
_MIN_CHORD_RATIO = 1 / 3  # a piece whose chord is shorter than this part of its path is split
_EPS = 1e-9
_NEWTON_STEPS = 2  # re-parameterisations of each fit


def _bernstein(s: np.ndarray) -> np.ndarray:
    """(n, 4) cubic Bernstein basis at parameters ``s``."""
    u = 1.0 - s
    return np.column_stack([u ** 3, 3 * s * u * u, 3 * s * s * u, s ** 3])


def _thirds(p0: np.ndarray, p3: np.ndarray) -> np.ndarray:
    """(m, 4, d) control points of the straight lines from ``p0`` to ``p3`` (m, d)."""
    return np.stack([p0, p0 + (p3 - p0) / 3, p0 + 2 * (p3 - p0) / 3, p3], axis=1)


def _fit_pieces(pts: np.ndarray, arc: np.ndarray, a: np.ndarray, b: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit one cubic to each piece pts[a_i..b_i] (all at once): the (m, 4, d) control points,
    and per point of the pieces (concatenated) its piece and its distance from the curve.

    End points are the pieces' first and last points; the inner control points solve the
    least-squares normal equations, or (one inner point) take the smallest change from the
    straight line that passes through it; s starts as the normalised arc length.
    """
    n = b - a + 1
    first = np.concatenate([[0], np.cumsum(n)[:-1]])
    piece = np.repeat(np.arange(len(a)), n)
    idx = np.arange(int(n.sum())) - first[piece] + a[piece]
    length = arc[b] - arc[a]
    place = (idx - a[piece]) / np.maximum(n - 1, 1)[piece]
    s = np.where(length[piece] > 0, (arc[idx] - arc[a][piece])
                 / np.where(length > 0, length, 1.0)[piece], place)
    ctrl = _solve(_bernstein(s), pts, idx, piece, first, a, b)
    for _ in range(_NEWTON_STEPS):  # move each point's s to its nearest point on the curve
        s = _newton(ctrl[piece], s, pts[idx])
        s[first] = 0.0
        s[first + n - 1] = 1.0
        ctrl = _solve(_bernstein(s), pts, idx, piece, first, a, b)
    basis = _bernstein(s)
    fitted = np.einsum("nk,nkd->nd", basis, ctrl[piece])
    err = np.hypot(*(fitted[:, :2] - pts[idx, :2]).T)
    return ctrl, piece, err


def _solve(basis: np.ndarray, pts: np.ndarray, idx: np.ndarray, piece: np.ndarray,
           first: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Least-squares inner control points of every piece at the given parameters."""
    ctrl = _thirds(pts[a], pts[b])
    r = pts[idx] - np.einsum("nk,nkd->nd", basis, ctrl[piece])
    b1, b2 = basis[:, 1], basis[:, 2]
    a11, a12, a22 = (np.add.reduceat(v, first) for v in (b1 * b1, b1 * b2, b2 * b2))
    r1, r2 = (np.add.reduceat(v[:, None] * r, first) for v in (b1, b2))
    det = a11 * a22 - a12 * a12
    full = det > 1e-9 * (a11 + a22) ** 2
    safe = np.where(full, det, 1.0)[:, None]
    trace = np.where(a11 + a22 > 0, a11 + a22, 1.0)[:, None]
    ctrl[:, 1] += np.where(full[:, None], (a22[:, None] * r1 - a12[:, None] * r2) / safe,
                           r1 / trace)
    ctrl[:, 2] += np.where(full[:, None], (a11[:, None] * r2 - a12[:, None] * r1) / safe,
                           r2 / trace)
    return ctrl


def _newton(ctrl: np.ndarray, s: np.ndarray, q: np.ndarray) -> np.ndarray:
    """One Newton step of each parameter towards the curve point nearest its data point
    (in x, y), kept in [0, 1]."""
    c = ctrl[:, :, :2]
    u = 1.0 - s
    pos = np.einsum("nk,nkd->nd", _bernstein(s), c)
    d1 = 3 * ((u * u)[:, None] * (c[:, 1] - c[:, 0]) + (2 * s * u)[:, None] * (c[:, 2] - c[:, 1])
              + (s * s)[:, None] * (c[:, 3] - c[:, 2]))
    d2 = 6 * (u[:, None] * (c[:, 2] - 2 * c[:, 1] + c[:, 0])
              + s[:, None] * (c[:, 3] - 2 * c[:, 2] + c[:, 1]))
    diff = pos - q[:, :2]
    num = (diff * d1).sum(1)
    den = (d1 * d1).sum(1) + (diff * d2).sum(1)
    step = np.where(np.abs(den) > _EPS, num / np.where(np.abs(den) > _EPS, den, 1.0), 0.0)
    return np.clip(s - step, 0.0, 1.0)


def fit_strokes(points: np.ndarray, starts: np.ndarray, max_error: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """The (m, 4, 3) control points (x, y, t) of the curves that fit each stroke of the flat
    (n, 3) ``points`` (strokes begin at ``starts``) within ``max_error``, in writing order,
    with the (m,) index of each curve's stroke."""
    n = len(points)
    ends = np.append(starts[1:], n) - 1
    moved = np.concatenate([[True], np.any(np.diff(points[:, :2], axis=0) != 0, axis=1)])
    moved[starts] = True
    moved[ends] = True  # a stroke keeps its first and last point (its times)
    keep = np.flatnonzero(moved)
    pts = points[keep]
    a = np.searchsorted(keep, starts)
    b = np.searchsorted(keep, ends)
    step = np.hypot(*np.diff(pts[:, :2], axis=0).T)
    arc = np.concatenate([[0.0], np.cumsum(step)])
    stroke_a = a
    done_a, done_ctrl = [], []
    while len(a):
        ctrl, piece, err = _fit_pieces(pts, arc, a, b)
        n_pts = b - a + 1
        first = np.concatenate([[0], np.cumsum(n_pts)[:-1]])
        inner = err.copy()
        inner[first] = inner[first + n_pts - 1] = -1.0  # end points are not split points
        worst = np.maximum.reduceat(err, first)
        chord = np.hypot(*(pts[b, :2] - pts[a, :2]).T)
        loop = chord < _MIN_CHORD_RATIO * (arc[b] - arc[a])
        split = (n_pts >= 3) & ((worst > max_error) | loop)
        done_a.append(a[~split])
        done_ctrl.append(ctrl[~split])
        if not split.any():
            break
        # the worst inner point (or the middle one, for a loop that fits) becomes an end point
        at = np.maximum.reduceat(inner, first)
        hit = np.flatnonzero(inner == at[piece])
        first_hit = hit[np.unique(piece[hit], return_index=True)[1]]
        k = np.where(worst > max_error, first_hit - first + a, (a + b) // 2)[split]
        a, b = np.concatenate([a[split], k]), np.concatenate([k, b[split]])
    curve_a = np.concatenate(done_a)
    order = np.argsort(curve_a, kind="stable")
    stroke = np.searchsorted(stroke_a, curve_a[order], side="right") - 1
    return np.concatenate(done_ctrl)[order], stroke


def _angle(v: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Signed angle from ``ref`` to ``v`` (rows), 0 where either is zero."""
    cross = ref[:, 0] * v[:, 1] - ref[:, 1] * v[:, 0]
    dot = (ref * v).sum(1)
    return np.where((np.hypot(*v.T) > _EPS) & (np.hypot(*ref.T) > _EPS),
                    np.arctan2(cross, dot), 0.0)


def curve_features(ctrl: np.ndarray, pen_up: np.ndarray) -> np.ndarray:
    """BEZIER_FEATURES of curves given as (m, 4, 3) control points (x, y, t) and (m,) pen-up
    flags."""
    p0, p1, p2, p3 = (ctrl[:, k, :2] for k in range(4))
    times = ctrl[:, :, 2]
    chord = p3 - p0
    length = np.hypot(*chord.T)
    safe = np.where(length > _EPS, length, 1.0)
    d1 = np.where(length > _EPS, np.hypot(*(p1 - p0).T) / safe, 0.0)
    d2 = np.where(length > _EPS, np.hypot(*(p2 - p3).T) / safe, 0.0)
    return np.column_stack([
        chord, np.minimum(d1, _MAX_RATIO), np.minimum(d2, _MAX_RATIO),
        _angle(p1 - p0, chord), _angle(p2 - p3, -chord), times[:, 1:] - times[:, :1], pen_up,
    ])


def bezier_curves(points: np.ndarray, starts: np.ndarray, max_error: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Every curve of a line in writing order, pen lifts included: (m, 4, 3) control points
    (x, y, t) and (m,) pen-up flags. ``points`` is the flat (n, 3) ink, ``starts`` the first
    index of each stroke."""
    ctrl, stroke = fit_strokes(points, starts, max_error)
    lift = np.flatnonzero(np.diff(stroke) > 0) + 1  # curves that start a new stroke
    jumps = _thirds(ctrl[lift - 1, 3], ctrl[lift, 0])
    out = np.insert(ctrl, lift, jumps, axis=0)
    up = np.zeros(len(out))
    up[lift + np.arange(len(lift))] = 1.0
    return out, up


def fold_lifts(rows: np.ndarray) -> np.ndarray:
    """``BEZIER_FEATURES`` rows (m, 10) without their pen-lift rows: each lift's dx, dy and
    duration (gamma3) become ``LIFT_FEATURES`` of the curve after it, whose pen_up is set to
    1 (a lift is always followed by the first curve of a stroke) -> (m - lifts, 13). A
    third of the rows of handwriting are lifts, so the sequence is that much shorter."""
    n = len(BEZIER_FEATURES)
    pen_up, gamma3 = BEZIER_FEATURES.index("pen_up"), BEZIER_FEATURES.index("gamma3")
    up = rows[:, pen_up] > 0.5
    lift = np.flatnonzero(up)
    out = np.zeros((len(rows), n + len(LIFT_FEATURES)), dtype=rows.dtype)
    out[:, :n] = rows
    out[lift + 1, n:n + 2] = rows[lift, :2]
    out[lift + 1, n + 2] = rows[lift, gamma3]
    out[lift + 1, pen_up] = 1.0
    return out[~up]
