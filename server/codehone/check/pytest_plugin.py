"""pytest helpers: the real codehone server on your project, started and initialized.

Your own tests can assert what your project's model completes, through the same server and
protocol your editor uses (``codehone serve`` over stdio, driven by a pytest-lsp client with
VS Code's capabilities, inline completion included). It needs the test extras (``pytest``,
``pytest-lsp``, ``pytest-asyncio``).

Load the fixtures in your ``conftest.py`` (nothing loads them automatically)::

    pytest_plugins = ["codehone.check.pytest_plugin"]

    import pytest
    from pathlib import Path

    @pytest.fixture
    def codehone_project() -> Path:     # optional; default: pytest's rootdir
        return Path(__file__).parent

Then, in a test (``async``; with pytest-asyncio's strict mode mark it
``@pytest.mark.asyncio``)::

    async def test_open_gets_an_encoding(codehone_server):
        got = await codehone_server.complete("src/app/config.py", marker="<CURSOR>")
        assert got.text is not None and got.text.startswith("encoding=")

        menu = await codehone_server.complete(
            "scratch.py", text="import os\\nos.path.", kind="completion"
        )
        assert menu.latency_ms < 2000

The fixtures:

- ``codehone_project``: the project directory (default: pytest's rootdir). Override it.
- ``codehone_model``: ``None`` (default) serves the model the project's ``.codehone.toml``
  selects; override it to return a model directory instead.
- ``codehone_server``: a ``CodehoneTestServer`` for one test, shut down (or killed) after it.

``complete(file, ...)`` places the cursor like a case of ``.codehone/checks.toml``: ``marker``
(removed from the text sent), ``line`` (+ ``column``, 1-based), or ``after`` (right after the
first occurrence of a text); with ``text`` the document is that text and ``file`` only names it
(no cursor then means the end of the text). It returns a ``CompletionReply``: ``text`` (None
when nothing came back), ``latency_ms`` and ``error`` (a server error's message).
``server.session`` is the ``codehone.check.client.EditorSession`` driving the server, and
``server.client`` its pytest-lsp ``LanguageClient``, for anything else.

For one server per module or session, use the factory in your own fixture::

    import pytest_asyncio
    from codehone.check.pytest_plugin import codehone_session

    @pytest_asyncio.fixture(scope="module", loop_scope="module")
    async def server(codehone_project):
        async with codehone_session(codehone_project) as session:
            yield session

(tests using it then need ``@pytest.mark.asyncio(loop_scope="module")``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from codehone.check.cases import make_case
from codehone.check.client import CompletionReply, EditorSession, serve_command
from codehone.check.run import DEFAULT_REQUEST_TIMEOUT, DEFAULT_START_TIMEOUT, choose_model

__all__ = [
    "CodehoneTestServer",
    "CompletionReply",
    "codehone_model",
    "codehone_project",
    "codehone_server",
    "codehone_session",
]


class CodehoneTestServer:
    """A started, initialized codehone server and the pytest-lsp client talking to it."""

    def __init__(
        self, session: EditorSession, project: Path, model: Path, request_timeout: float
    ) -> None:
        self.session = session
        self.project = project
        self.model = model
        self.request_timeout = request_timeout

    @property
    def client(self) -> LanguageClient:
        return self.session.client  # type: ignore[return-value]

    @property
    def initialize_result(self) -> types.InitializeResult:
        assert self.session.initialize_result is not None
        return self.session.initialize_result

    async def complete(
        self,
        file: str,
        *,
        text: str | None = None,
        marker: str | None = None,
        line: int | None = None,
        column: int | None = None,
        after: str | None = None,
        kind: str = "inline",
        timeout: float | None = None,
    ) -> CompletionReply:
        """Open ``file`` (or ``text`` named ``file``), ask for a completion at the cursor,
        close it; ``kind`` is "inline" (ghost text) or "completion" (the menu)."""
        case = make_case(
            self.project,
            file,
            text=text,
            marker=marker,
            line=line,
            column=column,
            after=after,
            kind=kind,
        )
        uri = self.session.open(case.path, case.text, case.language_id)
        try:
            return await self.session.request(
                case.kind, uri, case.offset, timeout or self.request_timeout
            )
        finally:
            self.session.close_document(uri)

    async def status(self) -> dict[str, Any] | None:
        """``codehone/status``: the loaded model, the execution provider, latency percentiles."""
        return await self.session.status(self.request_timeout)


@contextlib.asynccontextmanager
async def codehone_session(
    project: Path | str,
    model: Path | str | None = None,
    *,
    device: str = "auto",
    capabilities: types.ClientCapabilities | None = None,
    initialization_options: Any = None,
    start_timeout: float = DEFAULT_START_TIMEOUT,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
) -> AsyncIterator[CodehoneTestServer]:
    """Start ``codehone serve`` on ``project``'s model (or ``model``) under pytest-lsp,
    initialize it as an editor would, and shut it down (or kill it) on the way out."""
    project = Path(project).resolve()
    chosen = choose_model(project, Path(model) if model is not None else None)
    config = ClientServerConfig(server_command=serve_command(chosen.root, device))
    client = await config.start()
    session = EditorSession(client, drain_stderr=False)  # type: ignore[arg-type]
    try:
        await session.initialize(
            [project] if chosen.projects_own else [],
            start_timeout,
            capabilities=capabilities,
            initialization_options=initialization_options,
        )
        yield CodehoneTestServer(session, project, chosen.root, request_timeout)
    finally:
        await session.close()


@pytest.fixture
def codehone_project(request: pytest.FixtureRequest) -> Path:
    """The project under test (default: pytest's rootdir); override it in your conftest."""
    return Path(request.config.rootpath)


@pytest.fixture
def codehone_model() -> Path | None:
    """The model to serve; None: the one the project's ``.codehone.toml`` selects."""
    return None


@pytest_asyncio.fixture
async def codehone_server(
    codehone_project: Path, codehone_model: Path | None
) -> AsyncIterator[CodehoneTestServer]:
    """A started, initialized codehone server on the project, for one test."""
    async with codehone_session(codehone_project, codehone_model) as server:
        yield server
