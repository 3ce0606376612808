"""End to end: several candidates (greedy first, sampled ones deduplicated, reproducible with a
seed), context from other open documents, and clean items (no control characters, nothing
empty, no repeated lines) from the real server over stdio."""

from __future__ import annotations

import re
from pathlib import Path

from lsp_session import capabilities, complete, inline, start, texts, wait_idle

from codehone.core.completion.completer import Completer
from codehone.core.completion.cursor import CursorContext, Neighbor
from codehone.core.completion.options import CompletionOptions, SamplingOptions
from codehone.core.engine.session import Engine
from codehone.core.model_dir import load_model_dir
from codehone.core.providers import choose_provider
from codehone.core.tokenizer import TextTokenizer

URI = "file:///project/main.py"
TEXT = "import os\n\n\ndef main():\n    path = os.path.join(\n    x = \n    print(\n"
CURSORS = [(4, 24), (5, 8), (6, 10), (3, 11), (0, 9)]
UTIL = "def helper_function(value):\n    return value * 2\n"
OTHER = "class Store:\n    def get(self, key):\n        return self.data[key]\n"
NOTES = "# Notes\n\nnot python at all\n"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def completer(model: Path) -> Completer:
    model_dir = load_model_dir(model)
    return Completer(
        Engine(model_dir, choose_provider("cpu")), TextTokenizer(model_dir.tokenizer_path)
    )


def offset_of(text: str, line: int, character: int) -> int:
    lines = text.split("\n")
    return sum(len(x) + 1 for x in lines[:line]) + character


async def test_candidates_greedy_first_distinct_and_seeded(tiny_model_dir: Path):
    # no deadline (timeBudgetMs): how much of each sample fits must not depend on the machine
    sampling = {"candidates": 3, "temperature": 1.0, "seed": 7, "timeBudgetMs": 60_000}
    unhurried = CompletionOptions(time_budget_ms=60_000)
    session = await start(tiny_model_dir)
    try:
        await session.initialize(capabilities=capabilities(), initialization_options=sampling)
        await wait_idle(session)
        session.open(URI, TEXT)
        local = completer(tiny_model_dir)
        several = 0
        for line, character in CURSORS:
            offset = offset_of(TEXT, line, character)
            greedy = local.complete(CursorContext(TEXT, offset), unhurried).text
            result = await complete(session, URI, line, character)
            got = texts(result)
            assert len(got) <= 3 and len(set(got)) == len(got)  # deduplicated
            if greedy is not None:
                assert got[0] == greedy  # the greedy candidate first
            assert [i.preselect for i in result.items] == [i == 0 for i in range(len(got))]
            assert [i.sort_text for i in result.items] == [str(i) for i in range(len(got))]
            # the same seed, the same candidates; inline completion offers the same ones
            assert texts(await complete(session, URI, line, character)) == got
            assert [
                i.insert_text for i in (await inline(session, URI, line, character)).items
            ] == got
            several += len(got) > 1
        assert several, "sampling never produced a second candidate"
        # and in-process, the same pipeline gives the same candidates
        offset = offset_of(TEXT, *CURSORS[0])
        outcome = completer(tiny_model_dir).complete(
            CursorContext(TEXT, offset), unhurried, None, SamplingOptions(3, 1.0, 7)
        )
        assert outcome.texts == texts(await complete(session, URI, *CURSORS[0]))
    finally:
        await session.close()


async def test_other_documents_of_the_same_language_as_context(tiny_model_dir: Path):
    session = await start(tiny_model_dir)
    try:
        await session.initialize(
            capabilities=capabilities(), initialization_options={"otherDocuments": True}
        )
        await wait_idle(session)
        session.open("file:///project/util.py", UTIL)
        session.open("file:///project/pkg/store.py", OTHER)
        session.open("file:///project/notes.md", NOTES, "markdown")
        session.open(URI, TEXT)
        session.change("file:///project/util.py", UTIL)  # edited last: first (nearest the cursor)
        neighbors = (
            Neighbor("# path: util.py\n", UTIL),
            Neighbor("# path: store.py\n", OTHER),  # no workspace folder: the file's name
        )
        local = completer(tiny_model_dir)
        differs = 0
        for line, character in CURSORS:
            offset = offset_of(TEXT, line, character)
            with_context = CursorContext(TEXT, offset, neighbors, "# path: main.py\n")
            want = local.complete(with_context, CompletionOptions()).text
            assert texts(await complete(session, URI, line, character)) == ([want] if want else [])
            differs += want != local.complete(CursorContext(TEXT, offset), CompletionOptions()).text
        assert differs, "the context from other files never changed a completion"
    finally:
        await session.close()


async def test_items_are_clean(tiny_model_dir: Path):
    """Whatever a random model generates: no control characters, no empty or whitespace-only
    item, no line repeated three times in a row, a detail naming codehone."""
    session = await start(tiny_model_dir)
    try:
        await session.initialize(
            capabilities=capabilities(),
            initialization_options={
                "multiline": "always",
                "maxNewTokens": 96,
                "candidates": 4,
                "temperature": 1.5,
                "seed": 1,
            },
        )
        await wait_idle(session)
        session.open(URI, TEXT)
        seen = 0
        for line, character in CURSORS:
            result = await complete(session, URI, line, character)
            for item in result.items:
                assert item.detail is not None and item.detail.startswith("codehone")
                text = item.text_edit.new_text  # type: ignore[union-attr]
                assert text.strip() and not _CONTROL.search(text)
                lines = text.split("\n")
                assert not any(
                    lines[i].strip() and lines[i] == lines[i - 1] == lines[i - 2]
                    for i in range(2, len(lines))
                )
                seen += 1
        assert seen
    finally:
        await session.close()
