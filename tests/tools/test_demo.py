"""`codehone demo` (what `make run` runs) end to end: the real CLI, a real server, every cursor."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from codehone.tools.demo import CURSORS, cursor_offsets, sample_text


def test_every_sample_cursor_is_found() -> None:
    assert len(cursor_offsets(sample_text())) == len(CURSORS)


def test_demo_prints_a_completion_for_every_cursor(tiny_model_dir: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "codehone",
            "demo",
            "--model",
            str(tiny_model_dir),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("server codehone "), run.stdout
    cursors = re.findall(r"^line \d+, col \d+:  (.*)  \(was: ", run.stdout, re.M)
    assert [ast.literal_eval(c) for c in cursors] == [c.rsplit("\n", 1)[-1] for c in CURSORS]
    assert len(re.findall(r"^  completion \(\d+ ms\): ", run.stdout, re.M)) == len(CURSORS)
    assert len(re.findall(r"^  inline     \(\d+ ms\): ", run.stdout, re.M)) == len(CURSORS)
    assert "provider: CPUExecutionProvider" in run.stdout
