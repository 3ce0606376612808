"""The `codehone` command line: one tree whose shared options mean one thing, the one "given
model, else the default model"; `codehone complete` and `codehone export`: the same code path
as the server, clear errors for bad input."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from codehone.cli import build_parser
from codehone.core import default_model
from codehone.core.command_line import SHARED, add_shared
from codehone.core.completion.completer import Completer
from codehone.core.completion.cursor import CursorContext
from codehone.core.completion.options import CompletionOptions
from codehone.core.default_model import model_or_default
from codehone.core.engine.session import Engine
from codehone.core.errors import CodehoneError
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


def subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, Any]:
    """Every leaf subcommand of the tree, by its full name ("bench engine")."""
    found: dict[str, Any] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(subcommands(sub, f"{prefix}{name} ") or {f"{prefix}{name}": sub})
    return found


def test_one_tree_where_a_shared_option_has_one_meaning() -> None:
    tree = subcommands(build_parser())
    assert {"serve", "check", "tune", "finetune", "bench engine", "bench lsp"} <= set(tree)
    defaults: dict[str, set[object]] = {}
    for command, parser in tree.items():
        for action in parser._actions:
            for flag in action.option_strings:
                if flag in SHARED:  # defined by add_shared, never by hand
                    assert action.help.startswith(SHARED[flag].meaning), (command, flag)
                    defaults.setdefault(flag, set()).add(action.default)
        assert parser.get_default("func") is not None, command
    assert defaults["--method"] == {"auto"}  # finetune and tune agree
    assert defaults["--base"] == {None}  # the default model, everywhere


def test_a_different_default_needs_a_reason() -> None:
    parser = argparse.ArgumentParser()
    with pytest.raises(ValueError, match="--epochs"):
        add_shared(parser, "--epochs", default=9.0)
    add_shared(parser, "--epochs", default=9.0, why="measured")
    assert "(default: 9.0; measured)" in " ".join(parser.format_help().split())


def test_the_given_model_else_the_default_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert model_or_default("some/dir", "--base") == Path("some/dir")
    assert model_or_default(None, "--base") == default_model.find_default_model()
    monkeypatch.setattr(default_model, "shipped_model_dir", lambda: tmp_path / "absent")
    monkeypatch.setenv("CODEHONE_HOME", str(tmp_path / "home"))
    assert model_or_default(None, "--model", required=False) is None
    with pytest.raises(CodehoneError, match="no --base given"):
        model_or_default(None, "--base")
