"""Pictures of an experiment: training curves, confusions, posteriorgrams and aligned ink.

Every function is pure: it draws one matplotlib ``Figure`` (no pyplot state, so nothing leaks
between calls), writes it as a PNG at ``path`` (parent folders are created) with ``dpi=100`` and
returns ``path``. The pixel size of each PNG is its figure size (the ``*_SIZE`` constants, in
inches; the confusion matrix grows beyond about 40 classes) times ``DPI``. No text is smaller
than ``MIN_FONT`` points, and titles are wrapped to the figure's width.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchaudio.functional as taf  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

DPI = 100
TRAINING_CURVES_SIZE = (10.0, 4.0)
CONFUSION_SIZE = (10.0, 9.0)
POSTERIORGRAM_SIZE = (12.0, 7.0)
INK_SIZE = (12.0, 4.0)
DELETION = "<del>"
INSERTION = "<ins>"
_BLANK_GREY = (0.6, 0.6, 0.6, 1.0)


MIN_FONT = 8  # points: no text smaller, however many classes


def _fit(text: str, width_in: float, fontsize: float) -> str:
    """``text`` with each line wrapped to what ``width_in`` inches hold at ``fontsize``
    (an average glyph is about 0.6 em wide), so a title never runs off the figure."""
    per_line = max(int(width_in * 72 / (0.6 * fontsize)), 10)
    return "\n".join(textwrap.fill(line, per_line, break_on_hyphens=False) or line
                     for line in text.splitlines())


def _save(fig: Figure, path: Path) -> Path:
    """Write `fig` as a PNG at `path` (creating folders) and release it, so callers need not."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    fig.clf()
    return path


def training_curves(history: list[dict], path: Path, metric: str = "error rate") -> Path:
    """Plot train/dev loss and dev error rate (%) per epoch, to see convergence and overfitting."""
    epochs = [h["epoch"] for h in history]

    def column(key: str) -> list[float]:
        return [float("nan") if h.get(key) is None else float(h[key]) for h in history]

    fig = Figure(figsize=TRAINING_CURVES_SIZE)
    ax_loss, ax_err = fig.subplots(1, 2)
    ax_loss.plot(epochs, column("train_loss"), "o-", label="train")
    ax_loss.plot(epochs, column("dev_loss"), "s-", label="dev")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("CTC loss per utterance")
    ax_loss.set_title("loss")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)

    errors = column("dev_error_rate")
    ax_err.plot(epochs, errors, "o-", color="tab:red", label=metric)
    finite = [(e, r) for e, r in zip(epochs, errors, strict=True) if np.isfinite(r)]
    if finite:
        best_epoch, best = min(finite, key=lambda er: er[1])
        ax_err.plot([best_epoch], [best], "*", color="black", markersize=12,
                    label=f"best {best:.2f} % (epoch {best_epoch})")
    ax_err.set_xlabel("epoch")
    ax_err.set_ylabel(f"{metric} (%)")
    ax_err.set_title(metric)
    ax_err.grid(alpha=0.3)
    handles = ax_err.get_legend_handles_labels()[0]
    lrs = column("lr")
    if any(np.isfinite(lr) and lr > 0 for lr in lrs):
        ax_lr = ax_err.twinx()
        handles += ax_lr.plot(epochs, lrs, "--", color="tab:gray", label="learning rate")
        ax_lr.set_yscale("log")
        ax_lr.set_ylabel("learning rate", color="tab:gray")
    ax_err.legend(handles=handles, loc="upper right")
    for ax in (ax_loss, ax_err):  # whole epochs only, however few
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return _save(fig, path)


def confusion_counts(pairs: Sequence[tuple[str | None, str | None]],
                     labels: Sequence[str]) -> np.ndarray:
    """Count aligned (ref, hyp) pairs into a (L+1, L+1) matrix: last column deletions, last
    row insertions; a label outside `labels` is a ValueError naming it."""
    index = {label: i for i, label in enumerate(labels)}
    n = len(labels)
    counts = np.zeros((n + 1, n + 1), dtype=np.int64)
    for ref, hyp in pairs:
        if ref is None and hyp is None:
            continue
        for token in (ref, hyp):
            if token is not None and token not in index:
                raise ValueError(f"confusion matrix: token {token!r} is not among the "
                                 f"{n} labels")
        row = n if ref is None else index[ref]
        col = n if hyp is None else index[hyp]
        counts[row, col] += 1
    return counts


def confusion_matrix(pairs: Sequence[tuple[str | None, str | None]], labels: Sequence[str],
                     path: Path, title: str = "") -> Path:
    """Draw the row-normalised reference-by-hypothesis confusions, to see which tokens get mixed."""
    counts = confusion_counts(pairs, labels).astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    rows = [*labels, INSERTION]
    cols = [*labels, DELETION]
    fontsize = MIN_FONT
    # 8 pt labels need ~0.16 in per class: the figure grows past the default beyond ~40
    side = max(CONFUSION_SIZE[1], 0.16 * len(rows) + 2.5)
    size = (side + CONFUSION_SIZE[0] - CONFUSION_SIZE[1], side)

    fig = Figure(figsize=size)
    ax = fig.subplots()
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto",
                      interpolation="nearest")
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(cols, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize=fontsize)
    ax.set_xlabel("hypothesis")
    ax.set_ylabel("reference")
    n_ref = int(counts[:-1].sum())
    ax.set_title(_fit(title or f"confusions ({n_ref} reference tokens)", size[0] * 0.8, 12),
                 fontsize=12)
    fig.colorbar(image, ax=ax, label="fraction of the row")
    fig.tight_layout()
    return _save(fig, path)


def _forced_alignment(log_probs: np.ndarray, ref_ids: Sequence[int]) -> np.ndarray | None:
    """CTC-align `ref_ids` to `log_probs` (T, V), giving a label id per frame, or None if it
    cannot fit."""
    if len(ref_ids) == 0:
        return np.zeros(len(log_probs), dtype=np.int64)
    emissions = torch.as_tensor(np.asarray(log_probs, dtype=np.float32))[None]
    targets = torch.tensor([list(ref_ids)], dtype=torch.int32)
    repeats = sum(1 for k in range(1, len(ref_ids)) if ref_ids[k] == ref_ids[k - 1])
    if emissions.shape[1] < len(ref_ids) + repeats:
        return None
    try:
        alignment, _ = taf.forced_align(emissions, targets, blank=0)
    except (RuntimeError, ValueError):
        return None
    return alignment[0].numpy().astype(np.int64)


def _segments(alignment: np.ndarray) -> list[tuple[int, int, int]]:
    """Split a frame alignment into (label, start, end) runs of non-blank frames, end exclusive."""
    segments: list[tuple[int, int, int]] = []
    start = 0
    for t in range(1, len(alignment) + 1):
        if t == len(alignment) or alignment[t] != alignment[start]:
            if alignment[start] != 0:
                segments.append((int(alignment[start]), start, t))
            start = t
    return segments


def posteriorgram(features: np.ndarray, log_probs: np.ndarray, tokens: Sequence[str],
                  ref_ids: Sequence[int], path: Path, title: str = "",
                  frame_shift: int = 1) -> Path:
    """Draw the input spectrogram over the posteriorgram with the CTC forced alignment of the
    reference, to see where and how peaky the network fires."""
    features = np.asarray(features, dtype=np.float64)
    probs = np.exp(np.asarray(log_probs, dtype=np.float64))
    t_in = features.shape[0]
    t_out = probs.shape[0]
    shift = max(int(frame_shift), 1)
    rows: list[int] = [0]
    for i in ref_ids:
        if int(i) not in rows:
            rows.append(int(i))
    row_of = {token_id: r for r, token_id in enumerate(rows)}
    alignment = _forced_alignment(log_probs, ref_ids)

    fig = Figure(figsize=POSTERIORGRAM_SIZE)
    ax_spec, ax_post = fig.subplots(2, 1, sharex=True,
                                    gridspec_kw={"height_ratios": [1, 1.3]})
    bands = features[:, : min(40, features.shape[1])]
    image = ax_spec.imshow(bands.T, origin="lower", aspect="auto", cmap="magma",
                           interpolation="nearest", extent=(0, t_in, 0, bands.shape[1]))
    fig.colorbar(image, ax=ax_spec, label="feature value")
    ax_spec.set_ylabel(f"feature dim (first {bands.shape[1]})")

    image = ax_post.imshow(probs[:, rows].T, origin="lower", aspect="auto", cmap="Greys",
                           vmin=0.0, vmax=1.0, interpolation="nearest",
                           extent=(0, t_out * shift, -0.5, len(rows) - 0.5))
    fig.colorbar(image, ax=ax_post, label="posterior")
    ax_post.set_yticks(range(len(rows)))
    ax_post.set_yticklabels(["<b>" if r == 0 else tokens[r] for r in rows], fontsize=MIN_FONT)
    ax_post.set_xlabel(f"input frame ({shift} per output frame)")
    ax_post.set_ylabel("token")

    status = ""
    if alignment is None:
        status = (f"reference of {len(ref_ids)} labels cannot be aligned to "
                  f"{t_out} frames: no alignment drawn")
    else:
        frames = np.nonzero(alignment)[0]
        ax_post.plot((frames + 0.5) * shift, [row_of[int(alignment[t])] for t in frames],
                     "o", color="tab:red", markersize=3, label="forced alignment")
        for label, start, _end in _segments(alignment):
            ax_post.text(start * shift, row_of[label] + 0.3, tokens[label], color="tab:red",
                         fontsize=MIN_FONT, clip_on=True)
        if len(frames):
            ax_post.legend(loc="upper right", fontsize=MIN_FONT)
    heading = "\n".join(s for s in (title, status) if s) or "posteriorgram"
    ax_spec.set_title(_fit(heading, POSTERIORGRAM_SIZE[0] * 0.75, 10), fontsize=10, loc="left")
    ax_post.set_xlim(0, max(t_in, t_out * shift))
    fig.tight_layout()
    return _save(fig, path)


def align_points(log_probs: np.ndarray, ref_ids: Sequence[int], n_points: int,
                 frame_shift: int) -> list[int | None]:
    """Give each input point the reference label id its output frame is forced-aligned to (None
    for blank), so ink can be coloured by character; all None if the reference cannot fit."""
    alignment = _forced_alignment(log_probs, ref_ids)
    if alignment is None or len(alignment) == 0:
        return [None] * n_points
    shift = max(int(frame_shift), 1)
    last = len(alignment) - 1
    out: list[int | None] = []
    for i in range(n_points):
        label = int(alignment[min(i // shift, last)])
        out.append(None if label == 0 else label)
    return out


def _character_colours() -> list[tuple[float, float, float, float]]:
    """tab20 without its two greys (and any colour as grey as blank's): a character must
    never look like a blank point."""
    cmap = matplotlib.colormaps["tab20"]
    colours = [cmap(k) for k in range(cmap.N)]
    return [c for c in colours if max(c[:3]) - min(c[:3]) > 0.15]


def ink(strokes: Sequence[np.ndarray], point_tokens: Sequence[str | None], path: Path,
        ref: str, hyp: str) -> Path:
    """Draw pen strokes coloured by the character each point is aligned to, to see how the
    network segments the ink."""
    n_points = sum(len(s) for s in strokes)
    if len(point_tokens) != n_points:
        raise ValueError(f"ink: {len(point_tokens)} point tokens for {n_points} points")
    distinct: list[str] = []
    for token in point_tokens:
        if token is not None and token not in distinct:
            distinct.append(token)
    palette = _character_colours()
    colour_of = {token: palette[k % len(palette)] for k, token in enumerate(distinct)}

    fig = Figure(figsize=INK_SIZE)
    ax = fig.subplots()
    offset = 0
    for stroke in strokes:
        xy = np.asarray(stroke, dtype=np.float64)[:, :2]
        tokens = point_tokens[offset: offset + len(xy)]
        offset += len(xy)
        if len(xy) == 1:
            colour = _BLANK_GREY if tokens[0] is None else colour_of[tokens[0]]
            ax.plot(xy[:, 0], xy[:, 1], ".", color=colour)
            continue
        segments = np.stack([xy[:-1], xy[1:]], axis=1)
        colours = [_BLANK_GREY if t is None else colour_of[t] for t in tokens[:-1]]
        ax.add_collection(LineCollection(segments, colors=colours, linewidths=2.0))
    if n_points:
        points = np.concatenate([np.asarray(s, dtype=np.float64)[:, :2] for s in strokes
                                 if len(s)])
        lo, hi = points.min(axis=0), points.max(axis=0)
        pad = 0.05 * max(float((hi - lo).max()), 1e-6)
        ax.set_xlim(lo[0] - pad, hi[0] + pad)
        ax.set_ylim(lo[1] - pad, hi[1] + pad)
    ax.set_aspect("equal")
    ax.set_title(_fit(f"ref: {ref}\nhyp: {hyp}", INK_SIZE[0] * 0.7, 10), fontsize=10,
                 loc="left")
    handles = [Line2D([], [], color=colour_of[t], lw=2, label=repr(t) if t.isspace() else t)
               for t in distinct[:40]]
    handles.append(Line2D([], [], color=_BLANK_GREY, lw=2, label="blank"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=MIN_FONT,
              ncol=1 + len(handles) // 20, frameon=False)
    fig.text(0.01, 0.01, "Colour: the character each point's output frame is aligned to (CTC "
             "forced alignment of the reference). Grey: blank - CTC emits a character on a "
             "frame or two, so most ink lies between emissions.", fontsize=MIN_FONT,
             color="dimgray")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return _save(fig, path)
