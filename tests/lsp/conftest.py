"""The end-to-end tests' session fixture: the real server on the tiny gpt2 model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from lsp_session import start

from codehone.check.client import EditorSession


@pytest_asyncio.fixture
async def gpt2_session(tiny_model_dir: Path) -> AsyncIterator[EditorSession]:
    """`codehone serve` on the tiny gpt2 model (not yet initialized: each test initializes
    with the capabilities it needs); shut down, or killed, after the test."""
    session = await start(tiny_model_dir)
    yield session
    await session.close()
