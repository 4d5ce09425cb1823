"""Stage 1: read the corpus and write ``<split>.jsonl`` and ``summary.json``; and reading a
prepared split back."""

from __future__ import annotations

import json
from pathlib import Path

from recog.atomic import atomic_write_text
from recog.config import Config
from recog.data.utterance import DataError, Utterance, read_jsonl, write_jsonl
from recog.stages.corpora import corpus_kind, get_task, read_corpus


def prepare(cfg: Config) -> dict:
    """Read the corpus (building the synthetic one first if asked), write <split>.jsonl and
    summary.json under ``prepare.out``, and return the summary."""
    corpus = read_corpus(cfg)
    out = Path(cfg.prepare.out)
    task = get_task(cfg)
    published = corpus_kind(cfg).published
    summary: dict = {"root": str(corpus.root), "splits": {}, "rejected": []}
    for split, utts in corpus.splits.items():
        write_jsonl(out / f"{split}.jsonl", utts)
        summary["splits"][split] = {
            "speakers": len({u.speaker for u in utts}),
            "utterances": len(utts),
            "tokens": sum(len(u.tokens) for u in utts),
            "scored_tokens": {name: sum(len(f(u.tokens)) for u in utts)
                              for name, f in task.metrics.items()},
            "published": published(split),
        }
    summary["rejected"] = [e.as_dict() for e in corpus.rejected]
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    return summary


def load_split(cfg: Config, split: str) -> list[Utterance]:
    path = Path(cfg.prepare.out) / f"{split}.jsonl"
    if not path.is_file():
        raise DataError(path, f"split {split!r} is not prepared: run recog-prepare (recipe "
                        "stage 1) first, with this prepare.out")
    utts = read_jsonl(path)
    if not utts:
        raise DataError(path, f"split {split!r} is empty")
    return utts
