"""Post-processing (control characters, repetition guard), sampled candidates, other files as
prompt context, the server options, and model retirement, in process."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from engines import ScriptedEngine

from codehone.core.completion.completer import Completer
from codehone.core.completion.cursor import CursorContext, Neighbor
from codehone.core.completion.options import CompletionOptions, SamplingOptions
from codehone.core.completion.postprocess import (
    Completion,
    cut_repeated_lines,
    postprocess,
    strip_control_chars,
    token_loop_length,
)
from codehone.core.completion.prompt import Prompt, build_prompt
from codehone.core.completion.sampling import make_sampler
from codehone.core.model_dir import ModelDir, load_model_dir
from codehone.core.providers import choose_provider
from codehone.core.tokenizer import TextTokenizer
from codehone.lsp.config import ServerOptions, server_options_from
from codehone.lsp.models.registry import GLOBAL, LoadRequest, ModelRegistry, fingerprint
from codehone.lsp.models.service import ModelService
from codehone.lsp.neighbors import Recency, comment_prefix, display_path, pick_neighbors

SINGLE = Prompt([0], "single_line", "")
MULTI = Prompt([0], "multi_line", "")
# Scripted models say what follows the prompt as the tokenizer split it: no token healing.
NO_FIM = CompletionOptions(fim=False, token_healing=False)


def at_end(text: str) -> CursorContext:
    return CursorContext(text, len(text))


# -- post-processing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a\x00b", "ab"),
        ("x\x07 = \x1b[31m1", "x = [31m1"),
        ("tab\tkept", "tab\tkept"),
        ("del\x7fete", "delete"),
        ("\x00\x01\x02", None),
        ("  \x00 ", None),
    ],
)
def test_control_characters_are_stripped(raw: str, expected: str | None) -> None:
    assert postprocess(raw, at_end("x = "), SINGLE) == (expected and Completion(expected))


def test_strip_control_chars_keeps_newlines_and_tabs() -> None:
    assert strip_control_chars("a\n\tb\r\x0bc\x0c") == "a\n\tbc"


def test_carriage_returns_inside_a_block_are_dropped() -> None:
    assert postprocess("\r\n    a = 1\r\n    b = 2", at_end("def f():"), MULTI) == Completion(
        "\n    a = 1\n    b = 2"
    )


def test_repeated_lines_keep_one() -> None:
    text = "\n    x += 1\n    x += 1\n    x += 1\n    x += 1\n"
    assert cut_repeated_lines(text) == ("\n    x += 1", True)
    assert postprocess(text, at_end("def f(x):"), MULTI) == Completion("\n    x += 1")


def test_two_equal_lines_are_fine_and_blank_lines_do_not_count() -> None:
    assert cut_repeated_lines("a\na\nb\n") == ("a\na\nb\n", False)
    assert cut_repeated_lines("a\n\n\n\nb") == ("a\n\n\n\nb", False)
    assert cut_repeated_lines("a\na\na") == ("a\na\na", False)  # the last line is unfinished


@pytest.mark.parametrize(
    ("ids", "keep"),
    [
        ([5] * 16, 1),
        ([1, 2, 3] + [7, 8] * 8, 5),
        ([9] + [1, 2, 3, 4, 5, 6] * 3, 7),
        ([1, 2, 3, 4, 5, 6, 7, 8] * 3, 8),
        ([5] * 15, None),  # not long enough
        ([1, 2] * 7, None),
        (list(range(40)), None),
        ([1, 2, 3, 4, 5, 6, 7, 8, 9] * 4, None),  # a period longer than the guard looks for
    ],
)
def test_token_loops(ids: list[int], keep: int | None) -> None:
    assert token_loop_length(ids) == keep


def test_a_looping_model_is_stopped_early(model: ModelDir, tokenizer: TextTokenizer) -> None:
    loop = tokenizer.encode(" + x") * 30
    engine = ScriptedEngine(model, choose_provider("cpu"), loop)
    options = CompletionOptions(fim=False, max_new_tokens=200, token_healing=False)
    outcome = Completer(engine, tokenizer).complete(at_end("y = x"), options)
    assert outcome.reason == "stop_rule"
    assert outcome.new_tokens < 40  # it stopped soon after the loop began
    assert outcome.text is not None and outcome.text.count("+ x") == 1


def test_a_model_repeating_a_line_is_stopped_early(
    model: ModelDir, tokenizer: TextTokenizer
) -> None:
    script = tokenizer.encode("\n    total += 1" * 20)
    engine = ScriptedEngine(model, choose_provider("cpu"), script)
    options = CompletionOptions(fim=False, max_new_tokens=200)
    outcome = Completer(engine, tokenizer).complete(at_end("def f(total):"), options)
    assert outcome.reason == "stop_rule"
    assert outcome.text == "\n    total += 1"
    assert outcome.new_tokens < len(script)


# -- sampling --------------------------------------------------------------------------------


def test_sampler_is_seeded_and_greedy_at_zero_temperature() -> None:
    logits = np.random.default_rng(0).normal(size=512).astype(np.float32)
    first = [make_sampler(1.0, np.random.default_rng(3))(logits) for _ in range(5)]
    again = [make_sampler(1.0, np.random.default_rng(3))(logits) for _ in range(5)]
    assert first == again
    assert make_sampler(0.0, np.random.default_rng(3))(logits) == int(np.argmax(logits))
    top = set(np.argsort(logits)[-40:].tolist())
    sampler = make_sampler(2.0, np.random.default_rng(1))
    assert {sampler(logits) for _ in range(200)} <= top  # only the top-k are ever drawn


def test_candidates_in_process(model: ModelDir, tokenizer: TextTokenizer) -> None:
    from codehone.core.engine.session import Engine

    # no deadline: how many samples fit in the time budget must not depend on the machine
    options = dataclasses.replace(NO_FIM, time_budget_ms=60_000)

    def run(sampling: SamplingOptions | None) -> list[str]:
        completer = Completer(Engine(model, choose_provider("cpu")), tokenizer)
        return completer.complete(at_end("def main():\n    x = "), options, None, sampling).texts

    greedy = run(None)
    several = run(SamplingOptions(candidates=4, temperature=1.5, seed=11))
    assert several == run(SamplingOptions(candidates=4, temperature=1.5, seed=11))
    assert len(several) == len(set(several)) <= 4
    assert greedy == several[:1] or not greedy
    assert run(SamplingOptions(candidates=4, temperature=0.0, seed=1)) == greedy  # all greedy


# -- other documents in the prompt ------------------------------------------------------------


def test_neighbors_come_before_the_current_file(model: ModelDir, tokenizer: TextTokenizer) -> None:
    text = "import os\nvalue = "
    neighbors = (Neighbor("# path: a.py\n", "A = 1\n"), Neighbor("# path: b.py\n", "B = 2"))
    ctx = CursorContext(text, len(text), neighbors, "# path: main.py\n")
    prompt = build_prompt(ctx, tokenizer, model.manifest, NO_FIM)
    decoded = tokenizer.decode(prompt.token_ids)
    # the most relevant (first) sits nearest the cursor; each block ends with a line break
    assert decoded == "# path: b.py\nB = 2\n# path: a.py\nA = 1\n# path: main.py\n" + text
    plain = build_prompt(CursorContext(text, len(text)), tokenizer, model.manifest, NO_FIM)
    assert tokenizer.decode(plain.token_ids) == text


def test_neighbors_go_inside_the_fim_prefix(model: ModelDir, tokenizer: TextTokenizer) -> None:
    fim = model.manifest.special_tokens.fim
    assert fim is not None
    text = "x = \nprint(x)\n"
    ctx = CursorContext(text, 4, (Neighbor("# path: a.py\n", "A = 1\n"),), "# path: m.py\n")
    ids = build_prompt(ctx, tokenizer, model.manifest, CompletionOptions()).token_ids
    assert ids[0] == fim.prefix_id and ids[-1] == fim.middle_id
    suffix_at = ids.index(fim.suffix_id)
    assert tokenizer.decode(ids[1:suffix_at]) == "# path: a.py\nA = 1\n# path: m.py\nx = "
    assert tokenizer.decode(ids[suffix_at + 1 : -1]) == "\nprint(x)\n"


def test_neighbors_stay_within_the_budget(model: ModelDir, tokenizer: TextTokenizer) -> None:
    big = "def f(x):\n    return x\n" * 400
    ctx = CursorContext(big, len(big), (Neighbor("# path: a.py\n", big),), "# path: m.py\n")
    options = CompletionOptions(fim=False, max_prompt_tokens=120, token_healing=False)
    prompt = build_prompt(ctx, tokenizer, model.manifest, options)
    assert len(prompt.token_ids) <= 120
    decoded = tokenizer.decode(prompt.token_ids)
    assert decoded.startswith("# path: a.py\ndef f(x):")  # the other file got its third
    assert decoded.endswith("    return x\n") and "# path: m.py\n" in decoded


def test_pick_neighbors_same_language_most_recent_first() -> None:
    recency = Recency()
    docs = {
        "file:///p/a.py": ("python", "a.py", "A = 1\n"),
        "file:///p/b.py": ("python", "b.py", "B = 2\n"),
        "file:///p/empty.py": ("python", "empty.py", "  \n"),
        "file:///p/c.ts": ("typescript", "c.ts", "let c = 3;\n"),
        "file:///p/main.py": ("python", "main.py", "x = "),
    }
    for uri in ["file:///p/b.py", "file:///p/a.py", "file:///p/main.py", "file:///p/c.ts"]:
        recency.touch(uri)
    got = pick_neighbors("file:///p/main.py", docs, recency)
    assert got == (Neighbor("# path: a.py\n", "A = 1\n"), Neighbor("# path: b.py\n", "B = 2\n"))
    recency.touch("file:///p/b.py")
    assert [n.header for n in pick_neighbors("file:///p/main.py", docs, recency)] == [
        "# path: b.py\n",
        "# path: a.py\n",
    ]
    assert pick_neighbors("file:///p/unknown.py", docs, recency) == ()


def test_paths_and_comment_syntax() -> None:
    folders = [Path("/w"), Path("/w/sub")]
    assert display_path(Path("/w/sub/pkg/m.py"), "", folders) == "pkg/m.py"
    assert display_path(Path("/x/m.py"), "", folders) == "m.py"
    assert display_path(None, "untitled:Untitled-1", folders) == "untitled:Untitled-1"
    assert comment_prefix("go") == "//" and comment_prefix("lua") == "--"
    assert comment_prefix("python") == comment_prefix(None) == "#"


# -- options ---------------------------------------------------------------------------------


def test_server_option_defaults() -> None:
    options, warnings = server_options_from(None)
    assert options == ServerOptions() and warnings == []
    assert (options.enable, options.model, options.debounce_ms, options.other_documents) == (
        True,
        None,
        0,
        False,
    )
    assert options.sampling == SamplingOptions(candidates=1, temperature=0.8, seed=None)


def test_server_options_wrapped_bare_and_nested() -> None:
    raw: dict[str, Any] = {
        "enable": False,
        "model": "~/m",
        "debounceMs": 80,
        "otherDocuments": True,
        "candidates": 3,
        "temperature": 0,
        "seed": 9,
        "maxNewTokens": 12,
    }
    bare, warnings = server_options_from(raw)
    assert warnings == []
    assert server_options_from({"codehone": raw})[0] == bare
    assert (bare.enable, bare.model, bare.debounce_ms, bare.other_documents) == (
        False,
        "~/m",
        80,
        True,
    )
    assert bare.sampling == SamplingOptions(3, 0.0, 9)
    assert bare.completion.max_new_tokens == 12
    nested, _ = server_options_from({"completion": {"maxNewTokens": 5, "candidates": 2}})
    assert nested.completion.max_new_tokens == 5 and nested.sampling.candidates == 2


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("enable", "yes"),
        ("model", 3),
        ("debounceMs", -1),
        ("debounceMs", 5001),
        ("otherDocuments", 1),
        ("candidates", 0),
        ("candidates", 9),
        ("candidates", True),
        ("temperature", -0.1),
        ("temperature", "hot"),
        ("seed", -1),
        ("seed", 1.5),
    ],
)
def test_bad_server_options_warn_once_and_fall_back(
    key: str, value: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="codehone.config")
    base = ServerOptions(debounce_ms=40, sampling=SamplingOptions(candidates=2))
    options, warnings = server_options_from({key: value, "maxNewTokens": 7}, base)
    assert options.completion.max_new_tokens == 7  # the good field still applies
    assert options == ServerOptions(
        debounce_ms=40,
        sampling=SamplingOptions(candidates=2),
        completion=CompletionOptions(max_new_tokens=7),
    )
    assert len(warnings) == 1 and key in warnings[0]
    assert [r.getMessage() for r in caplog.records] == warnings


def test_empty_model_option_means_unset() -> None:
    assert server_options_from({"model": ""})[0].model is None
    assert server_options_from({"model": "  "})[0].model is None


@pytest.mark.parametrize("raw", [[1], "x", 3])
def test_settings_that_are_not_objects(raw: Any) -> None:
    options, warnings = server_options_from(raw)
    assert options == ServerOptions() and len(warnings) == 1


# -- the registry: swaps and releases --------------------------------------------------------


class QuietReporter:
    def __init__(self) -> None:
        self.events: list[str] = []

    async def begin(self, title: str, message: str) -> None:
        self.events.append("begin")

    def report(self, message: str, percentage: int) -> None:
        self.events.append("report")

    def end(self, message: str) -> None:
        self.events.append(f"end {message.split()[0]}")

    def warn(self, message: str) -> None:
        self.events.append("warn")


def request_for(path: Path) -> LoadRequest:
    return LoadRequest(path, "test", lambda: load_model_dir(path), fingerprint(path))


async def test_a_swap_releases_the_old_model(tiny_model: Any) -> None:
    gpt2, llama = tiny_model("gpt2"), tiny_model("llama")
    old = ModelService.load(load_model_dir(gpt2), "cpu")
    registry = ModelRegistry(old, "cpu")
    engine_ref = weakref.ref(old.engine)
    reporter = QuietReporter()
    loading = asyncio.ensure_future(registry.load(GLOBAL, request_for(llama), reporter))
    await asyncio.sleep(0)  # now loading on the loader thread: the old model keeps serving
    assert registry.global_slot.pending == 1 and registry.global_slot.service is old
    assert (await old.complete("k", at_end("x = "), NO_FIM)).prompt_tokens > 0
    assert await loading
    assert reporter.events[0] == "begin" and reporter.events[-1] == "end loaded"
    new = registry.global_slot.service
    assert new is not None and new.model_dir.root == llama.resolve()
    assert old.closed and registry.retired == 1
    old._executor.shutdown(wait=True)  # its last job (the release) has run
    assert old.released
    gc.collect()
    assert engine_ref() is None  # the session and its buffers are gone
    outcome = await old.complete("k", at_end("x = "), NO_FIM)
    assert outcome.text is None and "replaced" in outcome.reason
    registry.close()


async def test_a_failed_load_keeps_the_model_and_a_stale_one_is_dropped(tiny_model: Any) -> None:
    gpt2, llama, qwen2 = tiny_model("gpt2"), tiny_model("llama"), tiny_model("qwen2")
    registry = ModelRegistry(ModelService.load(load_model_dir(gpt2), "cpu"), "cpu")
    reporter = QuietReporter()
    assert not await registry.load(GLOBAL, request_for(gpt2.parent / "missing"), reporter)
    assert reporter.events[-2:] == ["end failed:", "warn"]
    assert registry.global_slot.service is not None
    assert registry.global_slot.service.model_dir.root == gpt2.resolve()
    assert registry.global_slot.error is not None and registry.global_slot.state == "loaded"
    # two loads in a row: the first finishes after the second was asked for, and is dropped
    first = asyncio.ensure_future(registry.load(GLOBAL, request_for(llama), QuietReporter()))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(registry.load(GLOBAL, request_for(qwen2), QuietReporter()))
    assert await asyncio.gather(first, second) == [False, True]
    assert registry.global_slot.service.model_dir.root == qwen2.resolve()
    assert len(registry.services()) == 1
    registry.close()
