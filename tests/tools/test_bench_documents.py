"""`codehone bench documents` on the small document shape and the tiny model: it runs the
real server and prints one row of figures per document (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from codehone.tools.bench_documents import SHAPES, document_text


def test_bench_documents_smoke(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable, "-m", "codehone", "bench", "documents", "--model",
            str(tiny_model_dir), "--shapes", "small", "--edits", "2", "--device", "cpu",
            "--json", str(out),
        ],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "small" in result.stdout and "completion ms" in result.stdout
    (row,) = json.loads(out.read_text())["results"]
    assert row["shape"] == "small" and row["errors"] == 0
    assert row["edit_ms"]["p50"] is not None and row["completion_ms"]["p50"] is not None

    bad = subprocess.run(
        [sys.executable, "-m", "codehone", "bench", "documents", "--shapes", "huge"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode != 0 and "unknown document shape" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_the_document_shapes_are_what_they_say() -> None:
    long_line = document_text("long-line-5mb")
    assert len(long_line) >= 5_000_000 and "\n" not in long_line
    many = document_text("lines-30mb")
    assert len(many) >= 30_000_000 and many.count("\n") > 100_000
    assert set(SHAPES) == {"small", "long-line-5mb", "lines-30mb"}
