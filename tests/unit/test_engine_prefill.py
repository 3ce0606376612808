"""The engine's prefill ahead of a request (``Engine.prefill``, which the server's background
prefill runs) and the part of a prompt it prefills (``Completer.line_stable_prompt_ids``): what
it feeds is what the next request reuses, stopping keeps what was fed, and the greedy tokens
are those of a cold engine."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from engines import engine

from codehone.core.completion.completer import Completer
from codehone.core.completion.cursor import CursorContext
from codehone.core.completion.options import CompletionOptions
from codehone.core.completion.prompt import build_prompt
from codehone.core.engine.kv_cache import common_prefix
from codehone.core.engine.protocol import StopConditions
from codehone.core.model_dir import load_model_dir
from codehone.core.tokenizer import TextTokenizer
from codehone.lsp.config import server_options_from

PROMPT = list(range(20, 140))  # 120 tokens
REQUEST = [*PROMPT, 7, 8, 9]  # a request that types on after it


def greedy(model: Path, prompt: list[int], prefill: list[int] | None = None) -> tuple[list, int]:
    """The greedy tokens after ``prompt`` and how many prompt tokens came from the cache."""
    e = engine(model)
    if prefill is not None:
        done = e.prefill(prefill, lambda: False)
        assert done.tokens == done.fed == done.cached == len(prefill) and not done.stopped
    generation = e.generate(prompt, StopConditions(max_new_tokens=12))
    return generation.token_ids, generation.reused_tokens


@pytest.mark.parametrize("graph", ["exported", "fused"])
def test_a_prefilled_prompt_is_reused_with_the_same_greedy_tokens(
    graph: str, tiny_model: Callable[[str], Path], fused_model: Callable[[str], Path]
):
    model = tiny_model("llama") if graph == "exported" else fused_model("llama")
    cold, cold_reused = greedy(model, REQUEST)
    warm, warm_reused = greedy(model, REQUEST, prefill=PROMPT)
    assert cold_reused == 0
    assert warm_reused == len(PROMPT)
    assert warm == cold


@pytest.mark.parametrize("graph", ["exported", "fused"])
def test_stopping_keeps_what_was_fed(
    graph: str, tiny_model: Callable[[str], Path], fused_model: Callable[[str], Path]
):
    model = tiny_model("gpt2") if graph == "exported" else fused_model("gpt2")
    e = engine(model)
    calls = []

    def stop_after_two_chunks() -> bool:
        calls.append(1)
        return len(calls) > 3  # one look before the first chunk, then one before each

    done = e.prefill(PROMPT, stop_after_two_chunks, chunk_tokens=16)
    assert done.stopped and done.reused == 0 and done.fed == 32
    assert e.cached_prefix(PROMPT) == 32
    # the next prefill starts where this one stopped
    again = e.prefill(PROMPT, lambda: False, chunk_tokens=16)
    assert (again.reused, again.fed, again.stopped) == (32, len(PROMPT) - 32, False)
    # nothing left to do: no model call
    assert e.prefill(PROMPT, lambda: True).fed == 0
    generation = e.generate(REQUEST, StopConditions(max_new_tokens=12))
    assert generation.reused_tokens == len(PROMPT)
    assert generation.token_ids == greedy(model, REQUEST)[0]


def test_a_prefill_told_to_stop_at_once_changes_nothing(tiny_model_dir: Path):
    e = engine(tiny_model_dir)
    e.prefill(PROMPT[:40], lambda: False)
    done = e.prefill(PROMPT, lambda: True)
    assert done.stopped and done.fed == 0 and done.reused == 40
    assert e.cached_prefix(PROMPT) == 40  # the cache it found is still there


TEXT = (
    "import os\n\n\ndef read(path):\n    with open(path) as f:\n        return f.read()\n\n\n"
    "def main():\n    data = read(os.path.join('a', 'b'))\n    print(data)\n"
)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("budget", [1024, 40])  # 40: the file is longer than the prompt
def test_the_stable_part_starts_every_prompt_typed_on_that_line(
    family: str, budget: int, tiny_model: Callable[[str], Path]
):
    model = load_model_dir(tiny_model(family))
    completer = Completer(engine(tiny_model(family)), TextTokenizer(model.tokenizer_path))
    options = CompletionOptions(max_prompt_tokens=budget)
    line_start = TEXT.index("    data = ")
    typed = TEXT[:line_start] + "    data = re" + TEXT[line_start + len("    data = ") :]
    stable = completer.line_stable_prompt_ids(CursorContext(typed, line_start + 6), options)
    assert len(stable) > 20
    for cursor in range(line_start + 6, line_start + len("    data = re")):
        prompt = build_prompt(
            CursorContext(typed, cursor),
            completer.tokenizer,
            model.manifest,
            options,
            completer.healer,
        )
        assert common_prefix(stable, prompt.token_ids) == len(stable), cursor


def test_with_fim_the_stable_part_leaves_the_suffix_out(model, tokenizer: TextTokenizer):
    fim = model.manifest.special_tokens.fim
    assert fim is not None  # the tiny gpt2 model has FIM tokens
    completer = Completer(engine(model.root), tokenizer)
    cursor = TEXT.index("    print")
    stable = completer.line_stable_prompt_ids(CursorContext(TEXT, cursor), CompletionOptions())
    assert stable[0] == fim.prefix_id and fim.suffix_id not in stable
    prompt = build_prompt(
        CursorContext(TEXT, cursor + 4),
        tokenizer,
        model.manifest,
        CompletionOptions(),
        completer.healer,
    )
    assert prompt.fim and common_prefix(stable, prompt.token_ids) == len(stable)


def test_the_option_and_its_default(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.WARNING, logger="codehone.config")
    assert server_options_from(None)[0].background_prefill is True
    assert server_options_from({"backgroundPrefill": False})[0].background_prefill is False
    options, warnings = server_options_from({"codehone": {"backgroundPrefill": "off"}})
    assert options.background_prefill is True and len(warnings) == 1


@pytest.mark.parametrize("graph", ["exported", "fused"])
def test_a_long_prompt_is_fed_in_chunks_with_the_same_greedy_tokens(
    graph: str, tiny_model: Callable[[str], Path], fused_model: Callable[[str], Path]
):
    model = tiny_model("llama") if graph == "exported" else fused_model("llama")
    whole = engine(model)
    whole.prompt_chunk = None
    expected = whole.generate(REQUEST, StopConditions(max_new_tokens=12))
    chunked = engine(model)
    chunked.prompt_chunk = 16
    fed: list[int] = []
    feed = chunked._prefill_chunk
    chunked._prefill_chunk = lambda chunk, cache: (fed.append(len(chunk)), feed(chunk, cache))[1]
    generation = chunked.generate(REQUEST, StopConditions(max_new_tokens=12))
    assert generation.token_ids == expected.token_ids
    assert fed == [16] * 7  # 112 of the 123 tokens; the loop's first step feeds the last 11
    # the chunks are this request's prefill, not a reuse of the cache
    assert generation.reused_tokens == 0
    assert chunked.prefix_stats.prefilled_tokens == len(REQUEST)
    assert chunked.prefix_stats.reused_tokens == 0


def test_a_request_cancelled_during_its_chunks_keeps_what_it_fed(
    fused_model: Callable[[str], Path],
):
    import threading

    e = engine(fused_model("llama"))
    e.prompt_chunk = 16
    cancel = threading.Event()
    feed = e._prefill_chunk
    calls: list[int] = []

    def feed_then_cancel(chunk: list[int], cache):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 3:
            cancel.set()  # the next keystroke's request came in
        return feed(chunk, cache)

    e._prefill_chunk = feed_then_cancel  # type: ignore[method-assign]
    stopped = e.generate(REQUEST, StopConditions(max_new_tokens=12, cancel=cancel))
    assert stopped.stop_reason == "cancelled" and stopped.token_ids == []
    assert len(calls) == 3 and e.cached_prefix(REQUEST) == 48
    e._prefill_chunk = feed  # type: ignore[method-assign]
    cold = engine(fused_model("llama"))
    cold.prompt_chunk = None
    again = e.generate(REQUEST, StopConditions(max_new_tokens=12))
    assert again.reused_tokens == 48
    assert again.token_ids == cold.generate(REQUEST, StopConditions(max_new_tokens=12)).token_ids


def test_the_kv_buffers_grow_for_a_longer_request_with_the_same_greedy_tokens(
    fused_model: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
):
    from codehone.core.engine import session

    model = fused_model("llama")
    stop = StopConditions(max_new_tokens=12)
    full = engine(model)  # buffers of the whole context (the tiny model's is under 2,048)
    assert full.generate(REQUEST, stop).token_ids  # warm
    monkeypatch.setattr(session, "MIN_KV_CAPACITY", 16)
    small = engine(model)
    short = small.generate(PROMPT[:10], stop)
    assert small._capacity == 32  # 10 + 12 new + the draft + 1 -> a power of two
    assert short.token_ids == engine(model).generate(PROMPT[:10], stop).token_ids
    first = small.generate(REQUEST, stop)  # too long for 32: new buffers, nothing reused
    assert small._capacity >= len(REQUEST) + 12 and first.reused_tokens == 0
    assert first.token_ids == full.generate(REQUEST, stop).token_ids
    again = small.generate([*REQUEST, 5], stop)  # the grown buffers keep the cache
    assert again.reused_tokens == len(REQUEST)
    assert again.token_ids == engine(model).generate([*REQUEST, 5], stop).token_ids
