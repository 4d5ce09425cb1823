"""Pen front end: normalise, resample and describe online handwriting, one row per point.

Ink is a sequence of strokes in writing order, each an (N, 3) array of (x, y, t) in sensor
coordinates as IAM-OnDB stores them: x to the right, y DOWNWARDS, t in seconds. Everything
this module returns has y UPWARDS.

``normalize_ink`` estimates, from the ink alone (``estimate_geometry``), on a copy resampled
every 1/16 of the rough writing height (the path-weighted median height of the strokes):
  * the baseline: a robust straight line through the local y-minima (the lowest point within
    3 coarse steps either way along its stroke): Theil-Sen slope, densest intercept, then
    Tukey-biweight reweighting, so that descenders, dots and bars do not count; fitted twice,
    the second time on minima found again on the deskewed ink. Its tilt (skew) is rotated
    away and its left end becomes the origin;
  * the core (x-)height: the densest height of the local y-maxima above the baseline (kernel
    density peak, then Tukey-biweight refinement), i.e. the corpus line, which ascender tops,
    i-dots and stroke ends do not move;
  * the slant: the peak of the length-weighted, kernel-smoothed histogram of the angles from
    vertical of the pen-down chords (6 coarse steps long, so that pixel quantisation does not
    matter) within 60 degrees of vertical; it is sheared away (x -= tan(slant) y, which keeps
    the baseline in place).
  The output has its baseline on y = 0, its leftmost point on x = 0 and core height 1.

Feature kinds (``PenFeatureOptions.kind``), computed on equidistantly resampled points:

``compact`` (3): ``COMPACT_FEATURES`` = dx, dy (offset from the previous point, zero on the
first; the jump over a pen lift included, clipped to ``max_delta``) and pen_up (1 on the first
point of every stroke after the first): the raw-point encoding of V. Carbune et al., "Fast
multi-language LSTM-based online handwriting recognition", IJDAR 23, 2020.

``graves`` (14): ``GRAVES_FEATURES``, the on-line features of M. Liwicki & H. Bunke, "HMM-based
on-line recognition of handwritten whiteboard notes", IWFHR 2006, as fed to the BLSTM-CTC of
A. Graves et al., "A novel connectionist system for unconstrained handwriting recognition",
IEEE TPAMI 31(5), 2009:
   1 pen_up         pen lifted before this point (first point of strokes 2..K);
   2 hat            the point lies below (and within the x-range of) a later, delayed stroke:
                    a short stroke floating above the baseline that starts left of where the
                    writing had already reached (i-dots, t-bars, accents, apostrophes);
   3 speed          log(1 + path speed in core heights per second), central difference over
                    the resampled neighbours, 0 where time does not advance;
   4 x              x minus its moving average over +-``x_window`` core heights of path
                    (the high-pass filtered x of Liwicki & Bunke), clipped to +-4;
   5 y              height above the baseline in core heights;
   6-7 dir_cos/sin  writing direction: the unit vector from point i-1 to point i+1;
   8-9 curv_cos/sin curvature: cos and sin of the angle between the directions i-2 -> i and
                    i -> i+2;
  10 vic_aspect     (dy - dx) / (dy + dx) of the bounding box of the vicinity (the points
                    within +-``vicinity`` of i in the same stroke);
  11-12 vic_slope_cos/sin  direction of the straight line from the first to the last vicinity
                    point;
  13 vic_curliness  1 - max(dx, dy) / L, with L the trajectory length in the vicinity: a
                    bounded (0 for a straight line) transform of Liwicki & Bunke's L / max;
  14 vic_linearity  mean squared distance of the vicinity points to that straight line.
Not computed: the pseudo-offline features of those papers (ascender/descender counts and the
3x3 context map taken from a bitmap around each point), which need the ink rendered to an
image. Also different from Liwicki & Bunke: delayed strokes stay in the sequence where they
were written (the hat flag is added, not a replacement), and a pen lift is one flagged point,
not a straight line of interpolated pen-up points, to keep sequences short.

``bezier`` (10): ``BEZIER_FEATURES``, one row per cubic Bézier curve fitted to the
normalised (not resampled) points of each stroke within ``bezier_error`` core heights, and
one per pen lift: Carbune et al. (2020)'s curve encoding; see ``recog.features.bezier`` for
what it follows of the paper and what not. ``resample_step`` does not apply to it. With
``bezier_lifts=folded`` (13) a pen lift is no row of its own: its vector and duration are
three more values of the next curve (``LIFT_FEATURES``), a third fewer rows (not in the
paper).

Undefined directions (a dot, repeated identical points) give zero direction and slope vectors,
curvature (1, 0) ("straight on") and zero vicinity shape features, never NaN. Missing
(non-finite) times make the speed feature 0 for the line. With ``normalize=False`` the ink is
only flipped to y-up: ``resample_step`` and the fixed thresholds (hat, clips) are then in
input units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from recog.features.bezier import (
    BEZIER_FEATURES,
    LIFT_FEATURES,
    bezier_curves,
    curve_features,
    fold_lifts,
)

COMPACT_FEATURES: tuple[str, ...] = ("dx", "dy", "pen_up")
GRAVES_FEATURES: tuple[str, ...] = (
    "pen_up", "hat", "speed", "x", "y", "dir_cos", "dir_sin", "curv_cos", "curv_sin",
    "vic_aspect", "vic_slope_cos", "vic_slope_sin", "vic_curliness", "vic_linearity",
)
_KINDS = {"compact": COMPACT_FEATURES, "graves": GRAVES_FEATURES, "bezier": BEZIER_FEATURES}

# Fixed constants, in core heights (the unit of normalised ink).
_X_CLIP = 4.0  # graves x: the high-pass x is clipped here (delayed strokes far to the left)
_MAX_SPEED = 100.0  # core heights per second; speed is clipped before log1p
_MIN_DT = 1e-6  # seconds; a smaller time step is "time does not advance"
_HAT_MAX_WIDTH = 1.5  # a delayed stroke is at most this wide, ...
_HAT_MIN_Y = 0.5  # ... its lowest point at least this high above the baseline, ...
_HAT_MARGIN = 0.25  # ... starts left of the x reached so far plus this, and covers the
# points below it within this x-margin of its extent
# Estimation (relative to the rough writing height h0, the median stroke height).
_COARSE = 1 / 16  # coarse resampling step for the estimates, times h0
_BANDWIDTH = 1 / 20  # kernel width for the densest baseline offset and corpus height, times h0
_EXTREMUM_HALF_WINDOW = 3  # coarse points each side a local extremum must dominate
_TUKEY_C = 4.685
_IRLS_ITERS = 10
_IRLS_TOL = 1e-4  # times h0
_SLANT_CHORD = 6  # coarse points spanned by a slant chord
_SLANT_BANDWIDTH = np.deg2rad(4.0)  # kernel width of the slant-angle density
_SLANT_BIN = np.deg2rad(0.5)
_SLANT_RANGE = np.deg2rad(60.0)  # segments within this angle of vertical vote
_MAX_SKEW = np.deg2rad(30.0)
_MAX_SLANT = np.deg2rad(45.0)
# A bound on the resampled points of one line (a real text line has a few thousand): beyond
# it the coordinates are corrupt, and resampling would exhaust memory instead of failing.
_MAX_RESAMPLED_POINTS = 1_000_000


@dataclass
class PenFeatureOptions:
    """What the pen front end computes; every field enters the feature-cache key."""

    kind: str = "compact"  # compact | graves | bezier
    # Distance between resampled points, in core heights: 6-8 points for an 'n' or an 'o'.
    resample_step: float = 0.5
    normalize: bool = True  # baseline, slant and height normalisation (normalize_ink)
    slant: bool = True  # with normalize: also remove the slant
    vicinity: int = 2  # graves: half-window (points) of the vicinity features
    x_window: float = 4.0  # graves: half-window (core heights of path) of the x moving average
    max_delta: float = 5.0  # compact, bezier: |dx|, |dy| clipped to this (pen-up jumps); 0 = off
    bezier_error: float = 0.1  # bezier: largest distance of a point from its curve (core heights)
    bezier_lifts: str = "rows"  # bezier: rows (a pen lift is a row, as the paper) | folded

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the field when an option is out of range."""
        if self.kind not in _KINDS:
            raise ValueError(f"unknown features.pen.kind {self.kind!r} (compact, graves or "
                             "bezier)")
        if not self.resample_step > 0:
            raise ValueError(f"features.pen.resample_step must be > 0, got {self.resample_step}")
        if self.vicinity < 1:
            raise ValueError(f"features.pen.vicinity must be >= 1, got {self.vicinity}")
        if not self.x_window > 0:
            raise ValueError(f"features.pen.x_window must be > 0, got {self.x_window}")
        if self.max_delta < 0:
            raise ValueError(f"features.pen.max_delta must be >= 0, got {self.max_delta}")
        if not self.bezier_error > 0:
            raise ValueError(f"features.pen.bezier_error must be > 0, got {self.bezier_error}")
        if self.bezier_lifts not in ("rows", "folded"):
            raise ValueError(f"features.pen.bezier_lifts must be rows or folded, got "
                             f"{self.bezier_lifts!r}")

    @property
    def dim(self) -> int:
        return len(self.feature_names)

    @property
    def feature_names(self) -> tuple[str, ...]:
        folded = self.kind == "bezier" and self.bezier_lifts == "folded"
        return _KINDS[self.kind] + (LIFT_FEATURES if folded else ())

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class InkGeometry:
    """What ``estimate_geometry`` found; angles in radians, lengths in input units."""

    origin: tuple[float, float]  # left end of the baseline, in input (sensor) coordinates
    skew: float  # baseline angle, counter-clockwise with y up (rising to the right > 0)
    slant: float  # angle of the writing's verticals from vertical (leaning right > 0)
    core_height: float  # baseline to corpus line


# ----------------------------------------------------------------------------- flat ink
# Internally ink is "flat": one (N, 3) array of all points and the (K,) start index of each
# stroke, so that every step is a handful of numpy calls whatever the number of strokes.


def _flatten(strokes: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``strokes`` and concatenate them into (points, stroke starts)."""
    if len(strokes) == 0:
        raise ValueError("ink has no strokes")
    arrays = []
    for i, stroke in enumerate(strokes):
        a = np.asarray(stroke, dtype=np.float64)
        if a.size == 0:
            raise ValueError(f"stroke {i} of {len(strokes)} has no points")
        if a.ndim != 2 or a.shape[1] != 3:
            raise ValueError(f"stroke {i}: expected an (N, 3) array of (x, y, t), "
                             f"got shape {a.shape}")
        arrays.append(a)
    pts = np.concatenate(arrays)
    finite = np.isfinite(pts)
    if not finite[:, :2].all():
        bad = int(np.searchsorted(np.cumsum([len(a) for a in arrays]),
                                  np.argmin(finite[:, :2].all(1)), side="right"))
        raise ValueError(f"stroke {bad} has non-finite x or y")
    if not finite[:, 2].all():
        pts[:, 2] = 0.0  # time unknown: speed will be 0 for the whole line
    counts = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
    return pts, np.concatenate([[0], np.cumsum(counts)[:-1]])


def _layout(starts: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per stroke: point counts and last indices; per point: stroke id."""
    counts = np.diff(np.append(starts, n))
    return counts, starts + counts - 1, np.repeat(np.arange(len(starts)), counts)


def _arc(xy: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Cumulative pen-down path length at every point (pen-up jumps count zero)."""
    seg = np.hypot(*np.diff(xy, axis=0).T)
    seg[starts[1:] - 1] = 0.0
    return np.concatenate([[0.0], np.cumsum(seg)])


def _unit(v: np.ndarray) -> np.ndarray:
    """Rows of ``v`` scaled to length 1; zero rows stay zero."""
    norm = np.hypot(v[:, 0], v[:, 1])
    return v / np.where(norm > 0, norm, 1.0)[:, None]


def _resample_flat(pts: np.ndarray, starts: np.ndarray,
                   step: float) -> tuple[np.ndarray, np.ndarray]:
    """Flat version of ``resample``."""
    n = len(pts)
    _, ends, sid = _layout(starts, n)
    arc = _arc(pts[:, :2], starts)
    length = arc[ends] - arc[starts]
    # A global abscissa that increases through every stroke and jumps between strokes.
    glob = arc + sid * (arc[-1] + 1.0)
    steps = length / step
    if not np.isfinite(steps).all() or steps.sum() > _MAX_RESAMPLED_POINTS:
        raise ValueError(f"the ink's path is {float(length.sum()):.3g} long: more than "
                         f"{_MAX_RESAMPLED_POINTS} points at step {step} (corrupt coordinates?)")
    m = np.rint(steps).astype(np.int64) + 1
    out_sid = np.repeat(np.arange(len(starts)), m)
    out_starts = np.concatenate([[0], np.cumsum(m)[:-1]])
    q = np.arange(len(out_sid)) - out_starts[out_sid]
    mm = m[out_sid]
    frac = np.where(mm > 1, q / np.maximum(mm - 1, 1), 0.5)  # a dot: one point mid-path
    at = np.minimum(glob[starts][out_sid] + frac * length[out_sid], glob[ends][out_sid])
    out = np.column_stack([np.interp(at, glob, pts[:, c]) for c in range(3)])
    return out, out_starts


def resample(strokes: Sequence[np.ndarray], step: float) -> list[np.ndarray]:
    """Points every ``step`` along each stroke's path (ends kept, time interpolated).

    A stroke of path length L gets round(L / step) + 1 points at spacing L / round(L / step)
    (within step/2 of ``step`` for the shortest strokes, closer for longer ones); a stroke
    shorter than step/2 (a dot) gets one point, half-way along it. Coordinates as given.
    """
    if not step > 0:
        raise ValueError(f"resample step must be > 0, got {step}")
    pts, starts = _flatten(strokes)
    out, out_starts = _resample_flat(pts, starts, step)
    return np.split(out, out_starts[1:])


# ------------------------------------------------------------------------ normalisation


def _weighted_median(v: np.ndarray, w: np.ndarray) -> float:
    """The weighted median of ``v`` (weights ``w`` >= 0, not all zero)."""
    order = np.argsort(v)
    cw = np.cumsum(w[order])
    return float(v[order][np.searchsorted(cw, 0.5 * cw[-1])])


def _tukey(r: np.ndarray, h0: float) -> np.ndarray:
    """Tukey biweight weights of residuals ``r``, at their MAD scale kept within a band of
    ``h0`` (so a second cluster, e.g. ascender tops next to the corpus line, stays out)."""
    scale = np.clip(1.4826 * float(np.median(np.abs(r))), 0.02 * h0, 0.05 * h0)
    u = r / (_TUKEY_C * scale)
    return np.where(np.abs(u) < 1, (1 - u * u) ** 2, 0.0)


def _mode(v: np.ndarray, h0: float) -> float:
    """The value of ``v`` where its Gaussian kernel density (bandwidth h0/20) peaks."""
    sub = v[np.linspace(0, len(v) - 1, min(len(v), 400)).astype(np.int64)]
    z = (sub[:, None] - sub[None, :]) / (_BANDWIDTH * h0)
    return float(sub[np.argmax(np.exp(-0.5 * z * z).sum(1))])


def _robust_location(v: np.ndarray, h0: float) -> float:
    """An M-estimate (Tukey biweight) of the densest value of ``v``, started at its mode."""
    loc = _mode(v, h0)
    for _ in range(_IRLS_ITERS):
        w = _tukey(v - loc, h0)
        if w.sum() <= 0:
            break
        new = float(np.dot(w, v) / w.sum())
        done = abs(new - loc) < _IRLS_TOL * h0
        loc = new
        if done:
            break
    return loc


def _robust_line(x: np.ndarray, y: np.ndarray, h0: float) -> tuple[float, float]:
    """Intercept and slope of the line through most of (x, y), ignoring outliers either side."""
    fit_slope = len(x) >= 3 and np.ptp(x) > h0
    slope = 0.0
    if fit_slope:
        sub = np.linspace(0, len(x) - 1, min(len(x), 200)).astype(np.int64)
        i, j = np.triu_indices(len(sub), 1)
        dx = x[sub][j] - x[sub][i]
        ok = np.abs(dx) > 0.5 * h0
        if ok.any():  # Theil-Sen: the median of the pairwise slopes
            slope = float(np.median((y[sub][j] - y[sub][i])[ok] / dx[ok]))
    icpt = _mode(y - slope * x, h0)
    for _ in range(_IRLS_ITERS):
        w = _tukey(y - icpt - slope * x, h0)
        sw = w.sum()
        if sw <= 0:
            break
        mx, my = np.dot(w, x) / sw, np.dot(w, y) / sw
        sxx = np.dot(w, (x - mx) ** 2)
        new_slope = float(np.dot(w, (x - mx) * (y - my)) / sxx) if fit_slope and sxx > 0 \
            else slope
        new_icpt = float(my - new_slope * mx)
        done = abs(new_icpt - icpt) + abs(new_slope - slope) * np.ptp(x) < _IRLS_TOL * h0
        icpt, slope = new_icpt, new_slope
        if done:
            break
    return icpt, slope


def _extrema(y: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the local minima and maxima of ``y`` along strokes of more than one point."""
    n = len(y)
    counts, ends, sid = _layout(starts, n)
    idx = np.arange(n)
    lo, hi = starts[sid], ends[sid]
    inf = np.full(n, np.inf)
    left_min, right_min, left_max, right_max = inf.copy(), inf.copy(), -inf, -inf
    for o in range(1, _EXTREMUM_HALF_WINDOW + 1):
        j = idx - o
        yl = np.where(j >= lo, y[np.maximum(j, 0)], np.nan)
        j = idx + o
        yr = np.where(j <= hi, y[np.minimum(j, n - 1)], np.nan)
        left_min = np.fmin(left_min, yl)
        left_max = np.fmax(left_max, yl)
        right_min = np.fmin(right_min, yr)
        right_max = np.fmax(right_max, yr)
    long_stroke = counts[sid] > 1
    # On a plateau only its last point counts (<= on the left, < on the right).
    is_min = long_stroke & (y <= left_min) & (y < right_min)
    is_max = long_stroke & (y >= left_max) & (y > right_max)
    return is_min, is_max


def _rough_height(xy: np.ndarray, starts: np.ndarray) -> float:
    """A rough writing size: the path-length-weighted median of the strokes' y-extents."""
    _, ends, _ = _layout(starts, len(xy))
    arc = _arc(xy, starts)
    weight = arc[ends] - arc[starts]
    extent = np.maximum.reduceat(xy[:, 1], starts) - np.minimum.reduceat(xy[:, 1], starts)
    if weight.sum() > 0:
        h0 = _weighted_median(extent, weight)
        if h0 > 0:
            return h0
    span = max(float(np.ptp(xy[:, 0])), float(np.ptp(xy[:, 1])))
    return span if span > 0 else 1.0


def _rotate(xy: np.ndarray, angle: float) -> np.ndarray:
    """Points rotated counter-clockwise by ``angle`` about the origin."""
    c, s = np.cos(angle), np.sin(angle)
    return np.column_stack([c * xy[:, 0] - s * xy[:, 1], s * xy[:, 0] + c * xy[:, 1]])


def _estimate_slant(xy: np.ndarray, starts: np.ndarray) -> float:
    """Dominant angle from vertical of the near-vertical pen-down chords, length-weighted.

    Chords span ``_SLANT_CHORD`` steps of the coarse path (3/8 of the rough height, most of a
    core height), long enough that pixel quantisation and jitter do not turn their angles into
    a staircase.
    """
    _, ends, sid = _layout(starts, len(xy))
    i = np.arange(len(xy))
    j = np.minimum(i + _SLANT_CHORD, ends[sid])
    d = (xy[j] - xy)[j > i]
    d = d[np.abs(d[:, 1]) * np.tan(_SLANT_RANGE) > np.abs(d[:, 0])]
    if len(d) == 0:
        return 0.0
    sign = np.sign(d[:, 1])
    phi = np.arctan2(d[:, 0] * sign, d[:, 1] * sign)  # oriented upwards: leaning right > 0
    w = np.hypot(d[:, 0], d[:, 1])
    # The peak of the length-weighted angle histogram smoothed by a Gaussian kernel, refined
    # by a parabola through the peak bin and its neighbours.
    nbins = int(round(2 * _SLANT_RANGE / _SLANT_BIN)) + 1  # bin k is centred on k * bin - range
    bins = np.clip(np.rint((phi + _SLANT_RANGE) / _SLANT_BIN).astype(np.int64), 0, nbins - 1)
    hist = np.bincount(bins, weights=w, minlength=nbins)
    half = int(np.ceil(3 * _SLANT_BANDWIDTH / _SLANT_BIN))
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) * _SLANT_BIN / _SLANT_BANDWIDTH) ** 2)
    density = np.convolve(hist, kernel, mode="same")
    k = int(np.clip(np.argmax(density), 1, nbins - 2))
    lo, mid, hi = density[k - 1 : k + 2]
    curv = lo - 2 * mid + hi
    shift = 0.5 * (lo - hi) / curv if curv < 0 else 0.0
    est = (k + float(np.clip(shift, -1.0, 1.0))) * _SLANT_BIN - _SLANT_RANGE
    return float(np.clip(est, -_MAX_SLANT, _MAX_SLANT))


def _estimate_flat(pts: np.ndarray, starts: np.ndarray, slant: bool) -> InkGeometry:
    """Flat version of ``estimate_geometry``."""
    ref = pts[0, :2]
    xy = (pts[:, :2] - ref) * np.array([1.0, -1.0])  # y up, near the origin
    h0 = _rough_height(xy, starts)
    coarse, cstarts = _resample_flat(np.column_stack([xy, pts[:, 2]]), starts, _COARSE * h0)
    cxy = coarse[:, :2]
    # Two passes: the second finds the extrema again on the deskewed ink and refines.
    skew, base, level = 0.0, np.zeros(2), cxy
    for _ in range(2):
        is_min, is_max = _extrema(level[:, 1], cstarts)
        if is_min.any():
            icpt, slope = _robust_line(level[is_min, 0], level[is_min, 1], h0)
        else:  # no stroke longer than a dot: the lowest point
            icpt, slope = float(level[:, 1].min()), 0.0
        base = base + _rotate(np.array([[0.0, icpt]]), skew)[0]
        skew = float(np.clip(skew + np.arctan(slope), -_MAX_SKEW, _MAX_SKEW))
        level = _rotate(cxy - base, -skew)  # baseline on y = 0
    heights = level[is_max, 1]
    heights = heights[heights > 0]
    core = _robust_location(heights, h0) if len(heights) else 0.5 * h0
    core = float(np.clip(core, 0.2 * h0, 1.5 * h0))
    slant_angle = _estimate_slant(level, cstarts) if slant else 0.0
    full = _rotate(xy - base, -skew)
    left = float((full[:, 0] - np.tan(slant_angle) * full[:, 1]).min())
    origin = base + left * np.array([np.cos(skew), np.sin(skew)])  # (left, 0) rotated back
    return InkGeometry(origin=(float(ref[0] + origin[0]), float(ref[1] - origin[1])),
                       skew=skew, slant=slant_angle, core_height=core)


def _apply_flat(pts: np.ndarray, geom: InkGeometry) -> np.ndarray:
    """Points mapped by ``geom``: origin to 0, y up, deskewed, deslanted, core height 1."""
    rel = (pts[:, :2] - np.asarray(geom.origin)) * np.array([1.0, -1.0])
    xy = _rotate(rel, -geom.skew)
    xy[:, 0] -= np.tan(geom.slant) * xy[:, 1]
    return np.column_stack([xy / geom.core_height, pts[:, 2]])


def estimate_geometry(strokes: Sequence[np.ndarray], slant: bool = True) -> InkGeometry:
    """Baseline origin and tilt, slant and core height of a line of ink (see module doc)."""
    pts, starts = _flatten(strokes)
    return _estimate_flat(pts, starts, slant)


def normalize_ink(strokes: Sequence[np.ndarray], slant: bool = True) -> list[np.ndarray]:
    """The ink with y up, baseline on y = 0 from x = 0, slant removed and core height 1."""
    pts, starts = _flatten(strokes)
    out = _apply_flat(pts, _estimate_flat(pts, starts, slant))
    return np.split(out, starts[1:])


# ----------------------------------------------------------------------------- features


def _compact(p: np.ndarray, starts: np.ndarray, max_delta: float) -> np.ndarray:
    """(dx, dy, pen_up) per point."""
    d = np.zeros((len(p), 2))
    d[1:] = np.diff(p[:, :2], axis=0)
    if max_delta > 0:
        np.clip(d, -max_delta, max_delta, out=d)
    pen_up = np.zeros(len(p))
    pen_up[starts[1:]] = 1.0
    return np.column_stack([d, pen_up])


def _hat(p: np.ndarray, starts: np.ndarray, sid: np.ndarray) -> np.ndarray:
    """1 where a point lies below a later delayed stroke (i-dot, t-bar), else 0."""
    xmin = np.minimum.reduceat(p[:, 0], starts)
    xmax = np.maximum.reduceat(p[:, 0], starts)
    ymin = np.minimum.reduceat(p[:, 1], starts)
    reached = np.concatenate([[-np.inf], np.maximum.accumulate(xmax)[:-1]])
    delayed = np.flatnonzero((xmin < reached + _HAT_MARGIN) & (xmax - xmin < _HAT_MAX_WIDTH)
                             & (ymin > _HAT_MIN_Y))
    if len(delayed) == 0:
        return np.zeros(len(p))
    x, y = p[:, :1], p[:, 1:2]
    under = ((sid[:, None] < delayed) & (x >= xmin[delayed] - _HAT_MARGIN)
             & (x <= xmax[delayed] + _HAT_MARGIN) & (y < ymin[delayed]))
    return under.any(axis=1).astype(np.float64)


def _graves(p: np.ndarray, starts: np.ndarray, opts: PenFeatureOptions) -> np.ndarray:
    """The 14 per-point features of GRAVES_FEATURES."""
    n = len(p)
    _, ends, sid = _layout(starts, n)
    idx = np.arange(n)
    lo, hi = starts[sid], ends[sid]
    xy, t = p[:, :2], p[:, 2]
    arc = _arc(xy, starts)

    def at(offset: int) -> np.ndarray:
        return np.clip(idx + offset, lo, hi)

    pen_up = np.zeros(n)
    pen_up[starts[1:]] = 1.0
    prev, nxt = at(-1), at(1)
    dist, dt = arc[nxt] - arc[prev], t[nxt] - t[prev]
    speed = np.where(dt > _MIN_DT, dist / np.where(dt > _MIN_DT, dt, 1.0), 0.0)
    speed = np.log1p(np.clip(speed, 0.0, _MAX_SPEED))

    half = max(1, int(round(opts.x_window / opts.resample_step)))
    csum = np.concatenate([[0.0], np.cumsum(xy[:, 0])])
    a, b = np.maximum(idx - half, 0), np.minimum(idx + half, n - 1)
    x_hp = np.clip(xy[:, 0] - (csum[b + 1] - csum[a]) / (b - a + 1), -_X_CLIP, _X_CLIP)

    direction = _unit(xy[nxt] - xy[prev])
    u1, u2 = _unit(xy - xy[at(-2)]), _unit(xy[at(2)] - xy)
    # Where a direction is undefined (zero vector) the curvature reads "straight on".
    curv_cos = (u1 * u2).sum(1) + 1.0 - np.hypot(*u1.T) * np.hypot(*u2.T)
    curv_sin = u1[:, 0] * u2[:, 1] - u1[:, 1] * u2[:, 0]

    offsets = np.arange(-opts.vicinity, opts.vicinity + 1)
    raw = idx[:, None] + offsets
    valid = (raw >= lo[:, None]) & (raw <= hi[:, None])
    win = np.clip(raw, lo[:, None], hi[:, None])  # clamped: extent and path are unchanged
    wx, wy = xy[win, 0], xy[win, 1]
    ext_x, ext_y = np.ptp(wx, axis=1), np.ptp(wy, axis=1)
    ext_sum = ext_x + ext_y
    aspect = np.where(ext_sum > 0, (ext_y - ext_x) / np.where(ext_sum > 0, ext_sum, 1.0), 0.0)
    first, last = xy[win[:, 0]], xy[win[:, -1]]
    chord = _unit(last - first)
    path = arc[win[:, -1]] - arc[win[:, 0]]
    ext_max = np.maximum(ext_x, ext_y)
    curliness = np.where(path > 0, 1.0 - ext_max / np.where(path > 0, path, 1.0), 0.0)
    rx, ry = wx - first[:, :1], wy - first[:, 1:]
    along = rx * chord[:, :1] + ry * chord[:, 1:]
    sq = np.maximum(rx * rx + ry * ry - along * along, 0.0)
    linearity = (sq * valid).sum(1) / valid.sum(1)

    return np.column_stack([
        pen_up, _hat(p, starts, sid), speed, x_hp, xy[:, 1], direction, curv_cos, curv_sin,
        aspect, chord, np.clip(curliness, 0.0, 1.0), linearity,
    ])


def _prepared(strokes: Sequence[np.ndarray], opts: PenFeatureOptions
              ) -> tuple[np.ndarray, np.ndarray]:
    """Flat points (normalised, or only flipped to y up) and stroke starts."""
    pts, starts = _flatten(strokes)
    if opts.normalize:
        return _apply_flat(pts, _estimate_flat(pts, starts, opts.slant)), starts
    return pts * np.array([1.0, -1.0, 1.0]), starts


@dataclass(frozen=True)
class PenRows:
    """A line of ink as the feature rows see it, after the one preprocessing path:
    normalised, then resampled points (``points`` (N, 3), ``starts`` of the strokes) or, for
    ``bezier``, fitted curves (``points`` (N, 4, 3) control points, ``up`` pen lifts)."""

    kind: str
    points: np.ndarray
    starts: np.ndarray | None = None
    up: np.ndarray | None = None
    folded: bool = False  # bezier: the pen lifts are no rows of their own

    def by_stroke(self) -> list[np.ndarray]:
        """The point each row describes, grouped by stroke (a curve: its end point; a pen
        lift ends where its stroke starts, or, folded, has no row)."""
        if self.kind == "bezier":
            groups = np.split(self.points[:, 3], np.flatnonzero(self.up))
            return groups[:1] + [g[1:] for g in groups[1:]] if self.folded else groups
        return np.split(self.points, self.starts[1:])


def preprocess_ink(strokes: Sequence[np.ndarray], opts: PenFeatureOptions) -> PenRows:
    """Normalise a line of ink, then resample it (or fit its Bézier curves): what both
    the features and the pictures of a line start from."""
    opts.validate()
    pts, starts = _prepared(strokes, opts)
    if opts.kind == "bezier":
        ctrl, up = bezier_curves(pts, starts, opts.bezier_error)
        return PenRows(opts.kind, ctrl, up=up, folded=opts.bezier_lifts == "folded")
    p, rstarts = _resample_flat(pts, starts, opts.resample_step)
    return PenRows(opts.kind, p, starts=rstarts)


def feature_points(strokes: Sequence[np.ndarray], opts: PenFeatureOptions) -> list[np.ndarray]:
    """The points the feature rows describe, one row each, grouped by stroke."""
    return preprocess_ink(strokes, opts).by_stroke()


def pen_features(strokes: Sequence[np.ndarray], opts: PenFeatureOptions) -> torch.Tensor:
    """Features (T, opts.dim) of a line of ink: normalise, then resample and describe each
    point, or (``bezier``) fit and describe curves."""
    rows = preprocess_ink(strokes, opts)
    if rows.kind == "bezier":
        feats = curve_features(rows.points, rows.up)
        if opts.max_delta > 0:
            np.clip(feats[:, :2], -opts.max_delta, opts.max_delta, out=feats[:, :2])
        if rows.folded:
            feats = fold_lifts(feats)
    elif rows.kind == "compact":
        feats = _compact(rows.points, rows.starts, opts.max_delta)
    else:
        feats = _graves(rows.points, rows.starts, opts)
    return torch.from_numpy(feats.astype(np.float32))
