"""`codehone bench lsp` on a tiny model and a few keystrokes: it runs the real server, prints
its figures, and every request is accounted for exactly once (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SOURCE = "import os\n\n\ndef main():\n" + "".join(
    f"    value_{i} = os.path.join('a', 'b{i}')\n" for i in range(40)
)


def test_bench_lsp_smoke(tiny_model_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "typed.py"
    source.write_text(SOURCE)
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable, "-m", "codehone", "bench", "lsp", "--model", str(tiny_model_dir),
            "--file", str(source), "--keystrokes", "6", "--context-tokens", "64",
            "--device", "cpu", "--json", str(out),
        ],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "p50" in result.stdout and "p99" in result.stdout and "prefix cache" in result.stdout
    data = json.loads(out.read_text())
    summary = data["summary"]
    assert summary["keystrokes"] == 6
    assert summary["requests"] == 6
    assert summary["answered"] + summary["cancelled"] + summary["errors"] == 6
    assert summary["errors"] == 0
    assert summary["empty"] <= summary["answered"]
    if summary["answered"]:
        assert summary["latency_ms"]["p50"] is not None
    assert summary["provider"] == "CPUExecutionProvider"
    prefix = data["status"]["prefix_cache"]
    assert 0 <= prefix["hits"] <= prefix["requests"] <= 6
    assert 0.0 <= summary["prefix_cache_hit_rate"] <= 1.0
