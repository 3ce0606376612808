"""`codehone.check.pytest_plugin`: the pytest fixture and factory users put in their own test suites."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from lsprotocol import types

from codehone.check.cases import CheckInputError
from codehone.check.pytest_plugin import CodehoneTestServer, codehone_server, codehone_session
from codehone.core.completion.completer import Completer
from codehone.core.completion.cursor import CursorContext
from codehone.core.completion.options import CompletionOptions
from codehone.core.engine.session import Engine
from codehone.core.model_dir import load_model_dir
from codehone.core.providers import choose_provider
from codehone.core.tokenizer import TextTokenizer

__all__ = ["codehone_server"]  # the fixture, imported as a user's conftest would

SOURCE = "import os\n\n\ndef read(path):\n    with open(path, <CURSOR>) as handle:\n"


def expected_text(model: Path, text: str, offset: int) -> str | None:
    model_dir = load_model_dir(model)
    completer = Completer(
        Engine(model_dir, choose_provider("cpu")), TextTokenizer(model_dir.tokenizer_path)
    )
    return completer.complete(CursorContext(text, offset), CompletionOptions()).text


@pytest.fixture
def codehone_project(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """Overrides the library's default (pytest's rootdir): a project configured for the tiny
    model, as a user's conftest would point at their repository."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "reader.py").write_text(SOURCE, encoding="utf-8")
    (tmp_path / ".codehone.toml").write_text(
        f"[model]\npath = '{tiny_model_dir}'\n", encoding="utf-8"
    )
    return tmp_path


@pytest.fixture
def codehone_model() -> Path | None:
    return None  # the project's .codehone.toml decides


async def test_fixture_serves_the_projects_model(
    codehone_server: CodehoneTestServer, tiny_model_dir: Path
):
    server = codehone_server
    assert server.initialize_result.capabilities.inline_completion_provider is not None
    assert server.model == tiny_model_dir.resolve()
    text = SOURCE.replace("<CURSOR>", "")
    offset = SOURCE.index("<CURSOR>")
    want = expected_text(tiny_model_dir, text, offset)

    got = await server.complete("src/reader.py", marker="<CURSOR>")
    assert got.error is None and got.text == want and got.latency_ms > 0
    menu = await server.complete("src/reader.py", marker="<CURSOR>", kind="completion")
    assert menu.text == want
    # Without a marker argument the file is sent as it is (its marker included).
    at_line = await server.complete("src/reader.py", line=5, column=21)
    assert at_line.text == expected_text(tiny_model_dir, SOURCE, offset)
    inline = await server.complete("scratch.py", text=text[:offset])  # text: cursor at its end
    assert inline.text == expected_text(tiny_model_dir, text[:offset], offset)

    status = await server.status()
    assert status is not None and status["provider"]
    assert status["models"][0]["model_dir"] == str(tiny_model_dir.resolve())

    # The raw pytest-lsp client is there for anything else.
    result = await server.client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=(server.project / "x.py").as_uri()),
            position=types.Position(line=0, character=0),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Invoked
            ),
        )
    )
    assert isinstance(result, types.InlineCompletionList) and not result.items  # not open

    with pytest.raises(CheckInputError, match="marker '<NOPE>' not found"):
        await server.complete("src/reader.py", marker="<NOPE>")


async def test_factory_with_a_model_override(tmp_path: Path, tiny_model_dir: Path):
    """No project config: the factory needs an explicit model, and shuts the server down."""
    with pytest.raises(CheckInputError, match="no model selected"):
        async with codehone_session(tmp_path):
            pass
    async with codehone_session(tmp_path, tiny_model_dir, device="cpu") as server:
        got = await server.complete("a.py", text="import ")
        process = server.session.process
        assert got.error is None
    assert process is not None and process.returncode == 0  # clean shutdown


def test_documented_conftest_usage(tmp_path: Path, tiny_model_dir: Path):
    """What the README tells users to write, run by a separate pytest in a fresh project."""
    (tmp_path / ".codehone.toml").write_text(
        f"[model]\npath = '{tiny_model_dir}'\n", encoding="utf-8"
    )
    (tmp_path / "app.py").write_text("import os\nprint(os.<CURSOR>)\n", encoding="utf-8")
    (tmp_path / "tests").mkdir()
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["codehone.check.pytest_plugin"]\n')
    (tmp_path / "tests" / "test_model.py").write_text(
        textwrap.dedent(
            """\
            import pytest

            @pytest.mark.asyncio
            async def test_completes(codehone_server):
                got = await codehone_server.complete("app.py", marker="<CURSOR>")
                assert got.error is None
                assert got.latency_ms > 0
            """
        )
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout
