"""End to end: the background prefill (codehone.lsp.prefill). After ``didOpen`` the first
completion finds most of its prompt in the prefix cache; a jump to another line prefills there;
a request that arrives during a prefill stops it and gets the answer it gets without one; a
cancel then is answered; a newer prefill stops an older one; ``backgroundPrefill: false``
turns it off. What the server did is read from codehone/status (no timing is asserted)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from lsp_session import capabilities, complete, start, status, texts, wait_idle
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled

from codehone.check.client import EditorSession

URI = "file:///project/prefill.py"
OTHER_URI = "file:///project/other.py"
BODY = (
    "import os\nimport sys\n\n\ndef read(path):\n    with open(path) as f:\n"
    "        return f.read()\n\n\ndef write(path, text):\n    with open(path, 'w') as f:\n"
    "        f.write(text)\n\n\ndef main():\n    data = read(os.path.join('a', 'b'))\n"
    "    write(sys.argv[1], data)\n"
)
TEXT = BODY + "    print("  # the cursor's line: the last one
LAST_LINE = TEXT.count("\n")
END = len("    print(")
SLOW_PREFILL = Path(__file__).with_name("slow_prefill_serve.py")


async def prefill_done(session: EditorSession, runs: int, timeout: float = 60) -> dict[str, Any]:
    """The background-prefill status once at least ``runs`` prefills fed tokens and none is
    left running."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        prefill = (await status(session))["background_prefill"]
        if prefill["running"] == 0 and prefill["runs"] >= runs:
            return prefill
        assert asyncio.get_running_loop().time() < deadline, f"still prefilling: {prefill}"
        await asyncio.sleep(0.05)


async def last_request(session: EditorSession) -> tuple[int, int]:
    """The last request's prompt tokens and how many of them came from the prefix cache."""
    cache = (await status(session))["prefix_cache"]
    return cache["last_prompt_tokens"], cache["last_reused_tokens"]


async def started(model: Path, options: dict[str, Any], slow: bool = False, **env: str):
    prefix = [sys.executable, str(SLOW_PREFILL), "serve"] if slow else None
    session = await start(model, env=env or None, prefix=prefix)
    await session.initialize(capabilities=capabilities(), initialization_options=options)
    await wait_idle(session)
    return session


async def prefilling(model: Path, folder: Path) -> EditorSession:
    """The slow-prefill server with TEXT opened at URI and its prefill surely under way."""
    marker = folder / "prefill-started"
    session = await started(model, {}, slow=True, CODEHONE_TEST_PREFILL_STARTED=str(marker))
    session.open(URI, TEXT)
    await session.wait("the prefill's first chunk", wait_for_file(marker), 30)
    return session


@pytest.mark.parametrize("enabled", [True, False])
async def test_the_first_completion_after_didopen_reuses_the_prefill(
    enabled: bool, tiny_model_dir: Path
):
    session = await started(tiny_model_dir, {"backgroundPrefill": enabled})
    try:
        session.open(URI, TEXT)
        if enabled:
            prefill = await prefill_done(session, 1)
            assert prefill["runs"] == 1 and prefill["tokens"] > 40 and prefill["stopped"] == 0
        await complete(session, URI, LAST_LINE, END)
        prompt, reused = await last_request(session)
        if enabled:
            assert reused >= 0.9 * prompt  # only the cursor's line was left to prefill
        else:
            assert reused == 0
            prefill = (await status(session))["background_prefill"]
            assert prefill["runs"] == prefill["skipped"] == prefill["running"] == 0
    finally:
        await session.close()


async def test_a_jump_to_another_line_prefills_there(tiny_model_dir: Path):
    session = await started(tiny_model_dir, {})
    try:
        session.open(URI, TEXT)
        await prefill_done(session, 1)
        # typing at the top of the file: the cache keeps only what comes before that line
        top = TEXT.index("import sys")
        session.change(URI, "#", (top, top))
        await complete(session, URI, 1, 1)
        # a jump to the last line: prefilled there before the request comes
        end = len(session.text(URI))
        session.change(URI, "x", (end, end))
        prefill = await prefill_done(session, 2)
        assert prefill["runs"] == 2
        await complete(session, URI, LAST_LINE, END + 1)
        prompt, reused = await last_request(session)
        assert reused >= 0.9 * prompt
        # typing on on that line schedules nothing more
        session.change(URI, "y", (end + 1, end + 1))
        await complete(session, URI, LAST_LINE, END + 2)
        assert (await status(session))["background_prefill"]["runs"] == 2
    finally:
        await session.close()


async def test_a_request_on_another_line_prefills_while_it_waits_in_the_debounce(
    tiny_model_dir: Path,
):
    session = await started(tiny_model_dir, {"debounceMs": 2000})
    try:
        session.open(URI, TEXT)
        await prefill_done(session, 1)
        top = TEXT.index("import sys")
        session.change(URI, "#", (top, top))
        await complete(session, URI, 1, 1)  # invoked: it does not wait, and prefills itself
        assert (await status(session))["background_prefill"]["runs"] == 1
        # the cursor moves to the last line and the editor asks there, as the user types
        await complete(session, URI, LAST_LINE, END, automatic=True)
        prefill = await prefill_done(session, 2)
        assert prefill["runs"] == 2 and prefill["stopped"] == 0
        prompt, reused = await last_request(session)
        assert reused >= 0.9 * prompt
    finally:
        await session.close()


async def test_a_request_during_a_prefill_stops_it_and_gets_the_same_answer(
    tiny_model_dir: Path, tmp_path: Path
):
    reference = await started(tiny_model_dir, {"backgroundPrefill": False})
    try:
        reference.open(URI, TEXT)
        expected = texts(await complete(reference, URI, LAST_LINE, END))
    finally:
        await reference.close()
    session = await prefilling(tiny_model_dir, tmp_path)
    try:
        assert texts(await complete(session, URI, LAST_LINE, END)) == expected
        prefill = await prefill_done(session, 1)
        assert prefill["stopped"] == 1  # the request came first
        prompt, reused = await last_request(session)
        assert 0 < reused < prompt  # what the prefill fed before it stopped was reused
    finally:
        await session.close()


async def test_cancelling_a_request_that_waits_behind_a_prefill(
    tiny_model_dir: Path, tmp_path: Path
):
    session = await prefilling(tiny_model_dir, tmp_path)
    try:
        request = session.send("completion", URI, types.Position(LAST_LINE, END))
        session.cancel(request)
        with pytest.raises(JsonRpcRequestCancelled):
            await session.wait("the cancelled request", request.future, 30)
        assert isinstance(await complete(session, URI, LAST_LINE, END), types.CompletionList)
        assert (await prefill_done(session, 1))["stopped"] == 1
    finally:
        await session.close()


async def test_a_newer_prefill_stops_an_older_one(tiny_model_dir: Path, tmp_path: Path):
    session = await prefilling(tiny_model_dir, tmp_path)
    try:
        session.open(OTHER_URI, TEXT.replace("read", "load"))
        prefill = await prefill_done(session, 2)
        assert prefill["runs"] == 2 and prefill["stopped"] == 1  # the first one
        await complete(session, OTHER_URI, LAST_LINE, END)
        prompt, reused = await last_request(session)
        assert reused >= 0.9 * prompt  # the newest prefill ran to its end
    finally:
        await session.close()


async def wait_for_file(path: Path) -> None:
    while not path.exists():
        await asyncio.sleep(0.02)
