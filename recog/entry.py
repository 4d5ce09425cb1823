"""The console scripts (pyproject's ``[project.scripts]``): each imports its verb inside
recog.errors' boundary, so a Ctrl-C (or any failure) while torch and the CLI are still
loading is one ``error:`` line as well, not an import traceback."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from recog.errors import guarded


def _verb(module: str, name: str) -> Callable[[], object]:
    @guarded
    def main() -> object:
        return getattr(importlib.import_module(module), name)()

    main.__name__ = main.__qualname__ = name
    return main


prepare, features, train, decode, score, finetune, transcribe, export, lm = (
    _verb("recog.cli", name) for name in
    ("prepare", "features", "train", "decode", "score", "finetune", "transcribe", "export",
     "lm"))
serve = _verb("recog.serve.command", "serve")
