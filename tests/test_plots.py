from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from recog import plots


def _check_png(path: Path, size: tuple[float, float]) -> None:
    assert path.is_file()
    image = matplotlib.image.imread(path)
    width, height = size
    assert image.shape[:2] == (round(height * plots.DPI), round(width * plots.DPI))
    # not a single colour: something was drawn
    assert np.unique(image.reshape(-1, image.shape[-1]), axis=0).shape[0] > 10


def _peaky(labels_per_frame: list[int], vocab: int) -> np.ndarray:
    """Log-probs that put almost all mass on the given label in each frame."""
    probs = np.full((len(labels_per_frame), vocab), 0.01)
    for t, label in enumerate(labels_per_frame):
        probs[t, label] = 1.0
    probs /= probs.sum(axis=1, keepdims=True)
    return np.log(probs).astype(np.float32)


def test_training_curves(tmp_path: Path) -> None:
    history = [{"epoch": e, "train_loss": 100 / e, "dev_loss": 90 / e + e,
                "dev_error_rate": 60 - 3 * e + 0.4 * e * e, "lr": 1e-3 * 0.5 ** (e // 4)}
               for e in range(1, 11)]
    path = tmp_path / "sub" / "dir" / "curves.png"
    out = plots.training_curves(history, path, metric="dev PER")
    assert out == path
    _check_png(path, plots.TRAINING_CURVES_SIZE)


def test_confusion_counts_by_hand() -> None:
    pairs = [("a", "a"), ("a", "b"), ("b", "b"), ("b", None), (None, "a"), ("c", "c"),
             (None, None)]
    counts = plots.confusion_counts(pairs, ["a", "b", "c"])
    expected = np.array([[1, 1, 0, 0],   # a: 1 correct, 1 -> b
                         [0, 1, 0, 1],   # b: 1 correct, 1 deleted
                         [0, 0, 1, 0],   # c: correct
                         [1, 0, 0, 0]])  # <ins>: one inserted a
    np.testing.assert_array_equal(counts, expected)
    with pytest.raises(ValueError, match="'z'"):
        plots.confusion_counts([("a", "z")], ["a", "b"])


def test_confusion_matrix(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = [f"p{i}" for i in range(39)]
    pairs: list[tuple[str | None, str | None]] = []
    for _ in range(2000):
        ref = labels[rng.integers(39)]
        r = rng.random()
        hyp = ref if r < 0.7 else None if r < 0.8 else labels[rng.integers(39)]
        pairs.append((ref, hyp))
    pairs += [(None, labels[rng.integers(39)]) for _ in range(50)]
    path = plots.confusion_matrix(pairs, labels, tmp_path / "confusion.png", title="test")
    _check_png(path, plots.CONFUSION_SIZE)


def _posterior_inputs(t_out: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(1)
    tokens = ["<blank>", "a", "b", "c", "d"]
    labels = [0, 1, 1, 0, 0, 2, 0, 3, 3, 0, 1, 0] * (t_out // 12 + 1)
    log_probs = _peaky(labels[:t_out], len(tokens))
    features = rng.normal(size=(t_out * 3, 80)).astype(np.float32)
    return features, log_probs, tokens


def test_posteriorgram(tmp_path: Path) -> None:
    features, log_probs, tokens = _posterior_inputs(24)
    path = plots.posteriorgram(features, log_probs, tokens, [1, 2, 3, 1, 1, 2, 3, 1],
                               tmp_path / "post.png", title="utt1", frame_shift=3)
    _check_png(path, plots.POSTERIORGRAM_SIZE)


def test_posteriorgram_unalignable_reference_still_draws(tmp_path: Path) -> None:
    features, log_probs, tokens = _posterior_inputs(4)
    # 6 labels with a repeat need at least 7 frames; there are 4
    path = plots.posteriorgram(features, log_probs, tokens, [1, 2, 3, 3, 4, 1],
                               tmp_path / "post.png", frame_shift=3)
    _check_png(path, plots.POSTERIORGRAM_SIZE)


def test_align_points_on_peaky_log_probs() -> None:
    # output frames: blank a a blank b blank -> a spans frames 1-2, b frame 4
    log_probs = _peaky([0, 1, 1, 0, 2, 0], vocab=3)
    got = plots.align_points(log_probs, [1, 2], n_points=12, frame_shift=2)
    assert got == [None, None, 1, 1, 1, 1, None, None, 2, 2, None, None]
    # points past the last output frame take the last frame's label
    assert plots.align_points(log_probs, [1, 2], n_points=14, frame_shift=2)[-2:] == [None, None]
    # a reference that cannot fit: no alignment, every point None
    assert plots.align_points(log_probs[:2], [1, 2, 2], 4, 2) == [None] * 4


def test_ink(tmp_path: Path) -> None:
    t = np.linspace(0, 2 * np.pi, 40)
    strokes = [np.stack([np.cos(t), np.sin(t), np.zeros_like(t)], axis=1),
               np.stack([2.5 + 0.2 * t, np.sin(3 * t)], axis=1),
               np.array([[4.0, 0.5]])]
    point_tokens: list[str | None] = (["o"] * 30 + [None] * 10 + ["w"] * 20 + [" "] * 10
                                      + ["x"] * 10 + [None])
    path = plots.ink(strokes, point_tokens, tmp_path / "ink.png", ref="ow x", hyp="o x")
    _check_png(path, plots.INK_SIZE)
    with pytest.raises(ValueError, match="81 points"):
        plots.ink(strokes, point_tokens[:-1], tmp_path / "bad.png", ref="", hyp="")


def _layout(fig: "matplotlib.figure.Figure") -> dict:
    """Every visible text of a drawn figure: its font size and whether it lies inside the
    figure (measured by matplotlib's Agg renderer, independently of recog.plots)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    box = fig.bbox
    undrawn = set()  # tick labels of locations outside the axis's view: not drawn
    for ax in fig.get_axes():
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not lo - 1e-9 * abs(hi - lo) <= tick.get_loc() <= hi + 1e-9 * abs(hi - lo):
                    undrawn.update((id(tick.label1), id(tick.label2)))
    texts = {}
    for t in fig.findobj(Text):
        if (not t.get_visible() or not t.get_text().strip() or not t.get_in_layout()
                or id(t) in undrawn):
            continue
        if t.get_clip_on() and t.axes is not None and t not in t.axes.get_xticklabels() + \
                t.axes.get_yticklabels() and t is not t.axes.title:
            continue  # a label inside the axes, clipped there by design
        e = t.get_window_extent(renderer)
        inside = (e.x0 >= box.x0 - 1 and e.x1 <= box.x1 + 1 and e.y0 >= box.y0 - 1
                  and e.y1 <= box.y1 + 1)
        texts[f"{t.get_text()[:30]!r}@{id(t)}"] = (t.get_fontsize(), inside)
    return texts


def test_titles_fit_and_no_text_is_below_8_pt(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: dict[str, dict] = {}
    save = plots._save

    def checked(fig: "matplotlib.figure.Figure", path: Path) -> Path:
        drawn[Path(path).stem] = _layout(fig)
        if Path(path).stem == "curves":
            axes = fig.get_axes()
            drawn["epoch ticks"] = {"ticks": [t for t in axes[0].get_xticks()
                                              if 1 <= t <= 3]}
            drawn["legend"] = {"labels": [t.get_text() for t in axes[1].get_legend().texts]}
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", checked)
    history = [{"epoch": e, "train_loss": 9.0 / e, "dev_loss": 8.0 / e, "dev_error_rate":
                50.0 - e, "lr": 1e-3} for e in (1, 2, 3)]
    plots.training_curves(history, tmp_path / "curves.png", "dev PER")
    labels = [f"ph{i}" for i in range(76)]  # as many classes as the 76
    rng = np.random.default_rng(0)
    pairs = [(labels[i % 76], labels[(i + int(rng.integers(3))) % 76]) for i in range(300)]
    long_title = ("timit_synthetic_experiment_with_a_long_name, test (192 utterances), beam, "
                  "beam 16, LM `exp/timit/synthetic/lm/tokens.arpa` (weight 0.8, bonus 2.0): "
                  "PER confusions")
    plots.confusion_matrix(pairs, labels, tmp_path / "confusion.png", long_title)
    features, log_probs, tokens = _posterior_inputs(24)
    ref = " ".join(["sil", "dh", "ax", "k", "ae", "t", "s", "ae", "t"] * 8)  # 72 phones
    plots.posteriorgram(features, log_probs, tokens, [1, 2, 3, 1], tmp_path / "post.png",
                        f"fdhc0_si1559 (test)\nref: {ref}\nhyp: {ref}", frame_shift=3)
    strokes = [np.stack([np.linspace(0, 30, 60), np.sin(np.linspace(0, 30, 60))], axis=1)]
    chars = list("abcdefghijklmnopqrstuvwxyz0123")
    plots.ink(strokes, [chars[i // 2] for i in range(60)], tmp_path / "ink.png",
              ref="the quick brown fox jumps over the lazy dog " * 3, hyp="the quick")
    for name in ("curves", "confusion", "post", "ink"):
        texts = drawn[name]
        assert texts, name
        small = {k: size for k, (size, _) in texts.items() if size < 8}
        outside = [k for k, (_, inside) in texts.items() if not inside]
        assert not small, (name, small)
        assert not outside, (name, outside)
    assert all(float(t).is_integer() for t in drawn["epoch ticks"]["ticks"])
    assert "learning rate" in drawn["legend"]["labels"]


def test_ink_characters_never_take_blank_grey() -> None:
    import matplotlib.colors

    grey = np.array(matplotlib.colors.to_rgb(plots._BLANK_GREY))
    for colour in plots._character_colours():
        rgb = np.array(colour[:3])
        assert rgb.max() - rgb.min() > 0.15 and np.abs(rgb - grey).max() > 0.15, colour
