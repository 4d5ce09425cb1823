"""Atomic corpus builds: write into a temporary folder beside the target, rename at the end."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """Yield an empty folder that becomes ``target`` when the block ends without error, so an
    interrupted build never leaves a partial corpus; on error the folder is removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the corpus is not
    try:
        yield staging
        try:
            os.rename(staging, target)
        except OSError:
            if not target.exists():
                raise
            shutil.rmtree(staging, ignore_errors=True)  # another build finished first
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
