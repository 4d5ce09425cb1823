"""The stage functions in one namespace, as the CLI and Python users call them:
``pipeline.prepare(cfg)``, ``pipeline.train(cfg, config)``, ``pipeline.decode(cfg)``...
Each lives in its own module under ``recog.stages``; the tables they print are
``recog.report``'s."""

from recog.report import format_scores, format_summary, report
from recog.stages.corpora import CORPORA, check_choices, corpus_kind, get_task, read_corpus
from recog.stages.decode import decode, load_model
from recog.stages.features import dataset, features
from recog.stages.finetune import apply_checkpoint_setup, finetune
from recog.stages.lm import train_lm, tune
from recog.stages.prepare import load_split, prepare
from recog.stages.train import train

__all__ = ["CORPORA", "apply_checkpoint_setup", "check_choices", "corpus_kind", "dataset",
           "decode", "features", "finetune", "format_scores", "format_summary", "get_task",
           "load_model", "load_split", "prepare", "read_corpus", "report", "train",
           "train_lm", "tune"]
