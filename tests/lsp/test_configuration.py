"""End to end: options from initializationOptions, workspace/configuration (pulled after
`initialized` and on didChangeConfiguration) and pushed didChangeConfiguration settings, with
one warning and a fallback per bad value; `enable`, server-side debounce and `--stdio`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from lsp_session import capabilities, complete, inline, start, wait_idle
from lsprotocol import types

from codehone.check.client import EditorSession
from codehone.core.completion.completer import Completer
from codehone.core.completion.cursor import CursorContext
from codehone.core.completion.options import CompletionOptions
from codehone.core.engine.session import Engine
from codehone.core.model_dir import load_model_dir
from codehone.core.providers import choose_provider
from codehone.core.tokenizer import TextTokenizer

URI = "file:///project/config.py"
TEXT = "import os\n\n\ndef main():\n    path = os.path.join(\n"


def expected(model: Path, text: str, offset: int, **options: object) -> str | None:
    model_dir = load_model_dir(model)
    completer = Completer(
        Engine(model_dir, choose_provider("cpu")), TextTokenizer(model_dir.tokenizer_path)
    )
    return completer.complete(CursorContext(text, offset), CompletionOptions(**options)).text  # type: ignore[arg-type]


def warnings_about(session: EditorSession, word: str) -> list[str]:
    return [
        m.message
        for m in session.client.log_messages  # type: ignore[attr-defined]  # pytest-lsp's
        if m.type == types.MessageType.Warning and word in m.message
    ]


async def test_pulled_configuration_over_initialization_options(tiny_model_dir: Path):
    session = await start(tiny_model_dir)
    client = session.client  # pytest-lsp's: it answers workspace/configuration
    client.set_configuration(
        {"maxNewTokens": 5, "candidates": "many", "debounceMs": 20}, section="codehone"
    )
    try:
        await session.initialize(
            capabilities=capabilities(configuration=True),
            initialization_options={"maxNewTokens": 3, "timeBudgetMs": 900},
        )
        status = await wait_idle(session)
        options = status["options"]
        assert options["completion"]["max_new_tokens"] == 5  # pulled wins
        assert options["completion"]["time_budget_ms"] == 900  # initialization option kept
        assert options["debounce_ms"] == 20
        assert options["sampling"]["candidates"] == 1  # bad value: the default...
        assert len(warnings_about(session, "candidates")) == 1  # ... and one warning
        # it asked to hear about changes (clients that pull only notify servers that ask)
        assert [r.method for r in session.registrations] == [
            types.WORKSPACE_DID_CHANGE_CONFIGURATION
        ]

        # A change notification makes it pull again: `enable: false` turns completions off,
        # and what the new settings leave out falls back to the initialization options.
        session.open(URI, TEXT)
        client.set_configuration({"enable": False}, section="codehone")
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
        status = await wait_idle(session)
        assert status["options"]["enable"] is False
        assert status["options"]["completion"]["max_new_tokens"] == 3
        assert len((await complete(session, URI, 4, 24)).items) == 0
        assert len((await inline(session, URI, 4, 24)).items) == 0

        client.set_configuration({"enable": True}, section="codehone")
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
        await wait_idle(session)
        got = await complete(session, URI, 4, 24)
        want = expected(tiny_model_dir, TEXT, len(TEXT) - 1, max_new_tokens=3, time_budget_ms=900)
        assert [i.text_edit.new_text for i in got.items] == ([want] if want else [])  # type: ignore[union-attr]
        assert all(i.detail and i.detail.startswith("codehone") for i in got.items)
    finally:
        await session.close()


async def test_pushed_settings_wrapped_or_bare(tiny_model_dir: Path):
    session = await start(tiny_model_dir, "--stdio")  # editors pass --stdio: accepted, ignored
    try:
        await session.initialize(capabilities=capabilities())
        await wait_idle(session)

        async def push(settings: object) -> dict:
            session.client.workspace_did_change_configuration(
                types.DidChangeConfigurationParams(settings=settings)
            )
            return (await wait_idle(session))["options"]

        options = await push({"codehone": {"maxNewTokens": 7, "otherDocuments": True}})
        assert options["completion"]["max_new_tokens"] == 7
        assert options["other_documents"] is True
        options = await push({"maxNewTokens": 9, "temperature": 0.5, "seed": 3})
        assert options["completion"]["max_new_tokens"] == 9
        assert options["sampling"] == {"candidates": 1, "temperature": 0.5, "seed": 3}
        assert options["other_documents"] is False  # a new settings object replaces the last
        options = await push({"codehone": {"maxNewTokens": "lots", "debounceMs": -1}})
        assert options["completion"]["max_new_tokens"] == 48  # the default
        assert options["debounce_ms"] == 0
        assert len(warnings_about(session, "maxNewTokens")) == 1
        assert len(warnings_about(session, "debounceMs")) == 1
        options = await push(None)  # nothing pushed, nothing to pull: unchanged
        assert options["completion"]["max_new_tokens"] == 48
    finally:
        await session.close()


async def test_automatic_requests_are_debounced_per_kind_and_invoked_ones_are_not(
    tiny_model_dir: Path,
):
    session = await start(tiny_model_dir)
    try:
        await session.initialize(
            capabilities=capabilities(), initialization_options={"debounceMs": 1500}
        )
        await wait_idle(session)
        session.open(URI, TEXT)
        want = expected(tiny_model_dir, TEXT, len(TEXT) - 1)
        assert want is not None  # the position must produce something for this test to mean it
        want_items = [want]

        # Two keystrokes' worth of automatic requests: the first is superseded while it waits.
        first, second = await asyncio.gather(
            inline(session, URI, 4, 24, automatic=True), inline(session, URI, 4, 24, automatic=True)
        )
        assert len(first.items) == 0
        assert [i.insert_text for i in second.items] == want_items

        # The same for the menu: re-asking an incomplete list while typing is automatic. (The
        # wait is for a quiet document: it counts from the last edit, so the user types again.)
        session.change(URI, TEXT)
        first_menu, second_menu = await asyncio.gather(
            complete(session, URI, 4, 24, automatic=True),
            complete(session, URI, 4, 24, automatic=True),
        )
        assert len(first_menu.items) == 0
        assert [i.text_edit.new_text for i in second_menu.items] == want_items  # type: ignore[union-attr]

        # An editor with ghost text and a menu asks for both on one keystroke: newest-wins
        # holds per kind, so each gets its answer (waiting in the debounce or not).
        for automatic in (True, False):
            session.change(URI, TEXT)
            ghost, menu = await asyncio.gather(
                inline(session, URI, 4, 24, automatic=automatic),
                complete(session, URI, 4, 24, automatic=automatic),
            )
            assert [i.insert_text for i in ghost.items] == want_items, automatic
            assert [i.text_edit.new_text for i in menu.items] == want_items, automatic  # type: ignore[union-attr]

        # Once the document has been quiet for debounceMs, an automatic request waits no more.
        await asyncio.sleep(1.6)
        quiet, also_quiet = await asyncio.gather(
            inline(session, URI, 4, 24, automatic=True), inline(session, URI, 4, 24, automatic=True)
        )
        assert [i.insert_text for i in also_quiet.items] == want_items
        assert [i.insert_text for i in quiet.items] in (want_items, [])  # newest-wins may stop it

        # Asked for explicitly: answered, never dropped.
        invoked = await inline(session, URI, 4, 24)
        assert [i.insert_text for i in invoked.items] == want_items
        menu = await complete(session, URI, 4, 24)
        assert [i.text_edit.new_text for i in menu.items] == want_items  # type: ignore[union-attr]
    finally:
        await session.close()


async def test_inline_requests_of_a_client_that_debounces_them_do_not_wait_again(
    tiny_model_dir: Path,
):
    """The VS Code extension waits before it asks for ghost text and says so
    (``clientDebouncesInline``); the server then does not wait out ``debounceMs`` again. Told
    apart by order, not time: the model has one worker, so an inline request sent before an
    invoked menu request is answered first unless it sits in the debounce."""
    for client_debounces, answered_first in [(True, True), (False, False)]:
        session = await start(tiny_model_dir)
        try:
            options = {"debounceMs": 5000, "clientDebouncesInline": client_debounces}
            await session.initialize(capabilities=capabilities(), initialization_options=options)
            await wait_idle(session)
            session.open(URI, TEXT)  # just edited: a debounce would wait the whole 5 s
            ghost = session.send("inline", URI, types.Position(4, 24), automatic=True)
            menu = await complete(session, URI, 4, 24)
            assert menu.items
            assert ghost.future.done() == answered_first, options
            result = await session.wait("the inline request", ghost.future, 30)
            assert [i.insert_text for i in result.items] == [
                i.text_edit.new_text for i in menu.items
            ]  # type: ignore[union-attr]
        finally:
            await session.close()
