"""Ink augmentation for training: perturbed copies of the training lines, seeded, never
applied when decoding (``recog-decode`` and ``recog-transcribe`` read the ink as it is).

``augment.ink.copies=N`` adds N perturbed copies of every training line to the originals
(ids suffixed ``-ink1`` ... ``-inkN``); each copy's draw depends only on ``augment.seed``
and the line's id, and is made when its features are computed (they are cached like any
split's). A copy is the line's ink (sensor coordinates, y down) with, in this order:

- elastic distortion: every point moved by a smooth random displacement along the pen's
  path (knots every core height of path, Gaussian of ``elastic`` core heights, linearly
  interpolated), so letter shapes change but stay connected;
- a random affine map about the ink's centre: slant (shear dx/dy drawn from ``slant``),
  rotation (degrees from ``rotate``), size (``scale``) and width (``aspect``, x only);
- elastic time warping: the time steps multiplied by a smooth random positive factor
  (log-normal with ``time_warp`` standard deviation at knots every 0.25 s), so the pen's
  speed profile changes while times keep increasing;
- point dropout: each inner point of a stroke left out with probability ``dropout``
  (first and last points stay).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from recog.data.utterance import Utterance
from recog.features.pen import estimate_geometry

_KNOT_S = 0.25  # seconds between time-warp knots


@dataclass
class InkAugmentOptions:
    """The ``augment.ink`` block: how many copies and how strong each perturbation is."""

    copies: int = 0  # perturbed copies per training line, added to the originals (0: off)
    slant: list[float] = field(default_factory=lambda: [-0.3, 0.3])  # shear dx/dy
    rotate: list[float] = field(default_factory=lambda: [-4.0, 4.0])  # degrees
    scale: list[float] = field(default_factory=lambda: [0.8, 1.25])
    aspect: list[float] = field(default_factory=lambda: [0.85, 1.15])  # x stretch
    elastic: float = 0.06  # core heights: standard deviation of the smooth displacement
    time_warp: float = 0.3  # standard deviation of the log speed factor
    dropout: float = 0.1  # chance that an inner point is left out

    def check(self) -> None:
        """Raise ValueError naming the field when an option is out of range."""
        if self.copies < 0:
            raise ValueError(f"augment.ink.copies must be >= 0, not {self.copies}")
        for name in ("slant", "rotate", "scale", "aspect"):
            lo, hi = getattr(self, name)
            if lo > hi or (name in ("scale", "aspect") and lo <= 0):
                raise ValueError(f"augment.ink.{name} is [low, high], not "
                                 f"{list(getattr(self, name))}")
        if self.elastic < 0 or self.time_warp < 0 or not 0 <= self.dropout < 1:
            raise ValueError("augment.ink.elastic and time_warp must be >= 0, dropout in [0, 1)")

    def as_dict(self) -> dict:
        return asdict(self)


def perturb_ink(strokes: Sequence[np.ndarray], rng: np.random.Generator,
                opts: InkAugmentOptions) -> list[np.ndarray]:
    """A perturbed copy of a line's strokes ((N, 3) x, y, t; see the module doc)."""
    opts.check()
    counts = np.array([len(s) for s in strokes])
    pts = np.concatenate([np.asarray(s, dtype=np.float64) for s in strokes])
    sid = np.repeat(np.arange(len(strokes)), counts)
    height = estimate_geometry(strokes).core_height
    xy = pts[:, :2].copy()
    # elastic distortion along the pen-down path
    step = np.hypot(*np.diff(xy, axis=0).T)
    step[np.diff(sid) != 0] = 0.0
    arc = np.concatenate([[0.0], np.cumsum(step)]) / height
    knots = np.arange(0.0, arc[-1] + 2.0)
    for d in range(2):
        xy[:, d] += np.interp(arc, knots, rng.normal(0.0, opts.elastic, len(knots))) * height
    # affine about the centre (y points down: a positive slant leans the tops right)
    centre = xy.mean(0)
    rel = xy - centre
    rel[:, 0] -= float(rng.uniform(*opts.slant)) * rel[:, 1]
    angle = np.deg2rad(float(rng.uniform(*opts.rotate)))
    c, s = np.cos(angle), np.sin(angle)
    rel = rel @ np.array([[c, s], [-s, c]])
    rel *= float(rng.uniform(*opts.scale))
    rel[:, 0] *= float(rng.uniform(*opts.aspect))
    t = pts[:, 2].copy()
    if np.isfinite(t).all() and len(t) > 1 and opts.time_warp > 0:  # elastic time warping
        dt = np.diff(t)
        span = t[-1] - t[0]
        knots_t = np.arange(0.0, span + 2 * _KNOT_S, _KNOT_S)
        factor = np.exp(np.interp(t[1:] - t[0], knots_t,
                                  rng.normal(0.0, opts.time_warp, len(knots_t))))
        t = t[0] + np.concatenate([[0.0], np.cumsum(dt * factor)])
    out_pts = np.column_stack([rel + centre, t])
    keep = rng.random(len(out_pts)) >= opts.dropout
    ends = np.cumsum(counts) - 1
    keep[ends - counts + 1] = True
    keep[ends] = True
    return [p[k] for p, k in zip(np.split(out_pts, ends[:-1] + 1),
                                 np.split(keep, ends[:-1] + 1), strict=True)]


def ink_copies(utts: Sequence[Utterance], opts: InkAugmentOptions, seed: int
               ) -> list[Utterance]:
    """The training lines followed by ``opts.copies`` perturbed copies of each (ids
    suffixed ``-ink<k>``; ``extra`` holds the draw's seed and the options for the front end)."""
    opts.check()
    out = list(utts)
    for k in range(1, opts.copies + 1):
        for u in utts:
            draw = zlib.crc32(f"{u.id}/ink{k}".encode())
            extra = {**u.extra, "ink_seed": [seed, draw], "ink_augment": opts.as_dict()}
            out.append(replace(u, id=f"{u.id}-ink{k}", extra=extra))
    return out


def perturbed_strokes(strokes: list[np.ndarray], utt: Utterance) -> list[np.ndarray]:
    """The strokes as the front end sees them: perturbed for a training copy, else as read."""
    if "ink_seed" not in utt.extra:
        return strokes
    opts = InkAugmentOptions(**utt.extra["ink_augment"])
    return perturb_ink(strokes, np.random.default_rng(utt.extra["ink_seed"]), opts)
