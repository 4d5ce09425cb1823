"""Smoke test of the recog-serve latency benchmark (--quick): it runs and its figures add up."""

from pathlib import Path

import pytest

from tests.bench_run import quick_bench


def test_serve_bench_quick(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    figures, stdout = quick_bench("serve.py", tmp_path)
    for kind in ("ink", "speech"):
        row = figures["inputs"][kind]
        assert row["server"]["n"] == row["direct"]["n"] == 3
        assert 0 < row["server"]["median_ms"] <= row["server"]["p95_ms"]
        assert row["overhead_ratio"] == row["server"]["median_ms"] / row["direct"]["median_ms"]
    assert figures["ink_goal_met"] == (figures["inputs"]["ink"]["server"]["median_ms"] <= 100)
    assert 15 <= figures["ink_line_chars"] <= 25 and "server/direct" in stdout
