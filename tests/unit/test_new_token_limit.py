"""maxNewTokens at or past the model's context: the new tokens get at most half of it, the
prompt keeps the other half (it used to be cut to one token), and the server says so once."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from codehone.core.completion.completer import Completer
from codehone.core.completion.cursor import CursorContext
from codehone.core.completion.options import CompletionOptions
from codehone.core.completion.prompt import new_token_limit, prompt_budget
from codehone.core.engine.session import Engine
from codehone.core.model_dir import ModelDir
from codehone.core.providers import choose_provider
from codehone.core.tokenizer import TextTokenizer


def test_the_prompt_keeps_half_the_context(model: ModelDir) -> None:
    manifest = model.manifest
    assert manifest.context_length == 256
    for asked, limit, budget in ((48, 48, 207), (128, 128, 127), (256, 128, 127), (512, 128, 127)):
        options = CompletionOptions(max_new_tokens=asked, max_prompt_tokens=1024)
        assert new_token_limit(manifest, options) == limit
        assert prompt_budget(manifest, options) == budget
    small = replace(manifest, context_length=3)
    assert new_token_limit(small, CompletionOptions(max_new_tokens=512)) == 1


def test_a_cut_limit_is_logged_once_and_the_prompt_is_whole(
    model: ModelDir, caplog: pytest.LogCaptureFixture
) -> None:
    completer = Completer(
        Engine(model, choose_provider("cpu")), TextTokenizer(model.tokenizer_path)
    )
    text = "def add(a, b):\n    return a + b\n\n\n" * 30 + "def mul(a, b):\n    return "
    options = CompletionOptions(max_new_tokens=512, time_budget_ms=60_000)
    with caplog.at_level(logging.WARNING, logger="codehone.completion"):
        outcomes = [completer.complete(CursorContext(text, len(text)), options) for _ in range(3)]
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "maxNewTokens 512" in caplog.records[0].message
    for outcome in outcomes:
        assert outcome.prompt_tokens > 100  # not one token
        assert outcome.prompt_tokens + outcome.new_tokens <= 256
