"""`codehone complete` and `codehone export` from the command line: the same code path as the
server, clear errors for bad input."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from codehone.core.completion.completer import Completer
from codehone.core.completion.cursor import CursorContext
from codehone.core.completion.options import CompletionOptions
from codehone.core.engine.session import Engine
from codehone.core.model_dir import load_model_dir
from codehone.core.providers import choose_provider
from codehone.core.text_positions import offset_at
from codehone.core.tokenizer import TextTokenizer

SOURCE = "def add(a, b):\n    return a + \n\nprint(add(1, 2))\n"


def codehone(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "codehone", *args], capture_output=True, text=True, timeout=120
    )


def in_process(model: Path, text: str, line0: int, col0: int) -> str | None:
    model_dir = load_model_dir(model)
    completer = Completer(
        Engine(model_dir, choose_provider("cpu")), TextTokenizer(model_dir.tokenizer_path)
    )
    return completer.complete(
        CursorContext(text, offset_at(text, line0, col0, "utf-32")), CompletionOptions()
    ).text


def test_complete_prints_the_pipeline_answer(tiny_model: Callable[[str], Path], tmp_path: Path):
    source = tmp_path / "add.py"
    source.write_text(SOURCE)
    for family in ("gpt2", "llama"):
        model = tiny_model(family)
        expected = in_process(model, SOURCE, 1, 15)
        result = codehone("complete", str(model), str(source), "2", "16", "--device", "cpu")
        if expected is None:
            assert result.returncode == 1 and result.stdout == ""
        else:
            assert result.returncode == 0, result.stderr
            assert result.stdout == expected + "\n"


def test_complete_handles_files_that_are_not_utf8(tiny_model_dir: Path, tmp_path: Path):
    source = tmp_path / "latin1.py"
    source.write_bytes("s = 'caf\xe9'\nx = ".encode("latin-1"))
    result = codehone("complete", str(tiny_model_dir), str(source), "2", "5")
    assert result.returncode in (0, 1)  # a completion or none, never a crash
    assert "not valid UTF-8" in result.stderr
    assert "Traceback" not in result.stderr


def test_complete_clamps_positions_and_reports_bad_input(tiny_model_dir: Path, tmp_path: Path):
    source = tmp_path / "a.py"
    source.write_text(SOURCE)
    past = codehone("complete", str(tiny_model_dir), str(source), "99", "99")
    assert past.returncode in (0, 1) and "Traceback" not in past.stderr
    assert past.stdout.rstrip("\n") == (in_process(tiny_model_dir, SOURCE, 99, 99) or "")
    zero = codehone("complete", str(tiny_model_dir), str(source), "0", "1")
    assert zero.returncode == 2 and "1-based" in zero.stderr
    missing = codehone("complete", str(tiny_model_dir), str(tmp_path / "nope.py"), "1", "1")
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    bad_model = codehone("complete", str(tmp_path), str(source), "1", "1")
    assert bad_model.returncode == 2 and "codehone.json" in bad_model.stderr


def test_export_command(tiny_checkpoint: Callable[[str], Path], tmp_path: Path):
    result = codehone("export", str(tiny_checkpoint("qwen2")), "--out", str(tmp_path / "m"))
    assert result.returncode == 0, result.stderr
    assert "max |ORT - PyTorch| logit difference" in result.stdout
    assert load_model_dir(tmp_path / "m").manifest.architecture == "qwen2"
    refused = codehone("export", str(tmp_path / "m"), "--out", str(tmp_path / "m2"))
    assert refused.returncode == 2 and "safetensors" in refused.stderr
