"""Completion as small pure steps in a row, shared by the LSP server and `codehone complete`.

should we complete? -> build the prompt within a token budget (fill-in-the-middle with the
text after the cursor when the model has FIM tokens) -> generate -> post-process.
Only a window of text around the cursor is ever tokenized, so a huge file costs no more than
a small one.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

from codehone.engine import Engine, Generation, StopConditions
from codehone.fim import fim_prompt_ids
from codehone.model_dir import Manifest
from codehone.tokenizer import TextTokenizer

log = logging.getLogger("codehone.completion")

Mode = Literal["single_line", "multi_line"]
_IDENTIFIER_CHAR = re.compile(r"\w")
_BLOCK_OPENERS = (":", "{", "(", "[", "=>", "->", " do", " then")
_MAX_CHARS_PER_TOKEN = 4  # first guess for the character window; it grows if tokens fall short


@dataclass(frozen=True)
class CompletionOptions:
    """Per-request knobs; the server's configuration fills them (typed, with defaults)."""

    max_new_tokens: int = 48
    max_prompt_tokens: int = 1024
    time_budget_ms: int = 1500
    multiline: Literal["auto", "always", "never"] = "auto"
    fim: bool = True  # use the text after the cursor when the model has FIM tokens


@dataclass(frozen=True)
class CursorContext:
    """The text around the cursor that completion looks at."""

    text: str
    offset: int

    @property
    def line_prefix(self) -> str:
        start = max(self.text.rfind("\n", 0, self.offset), self.text.rfind("\r", 0, self.offset))
        return self.text[start + 1 : self.offset]

    @property
    def line_suffix(self) -> str:
        match = re.compile(r"\r|\n").search(self.text, self.offset)
        return self.text[self.offset : match.start() if match else len(self.text)]


@dataclass
class Prompt:
    token_ids: list[int]
    mode: Mode
    base_indent: str
    fim: bool = False


@dataclass
class CompletionOutcome:
    text: str | None
    reason: str  # why it ended (stop reason) or why nothing was produced
    timings_ms: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0
    new_tokens: int = 0


def skip_reason(ctx: CursorContext) -> str | None:
    """Should we complete here? None if yes, else why not."""
    suffix = ctx.line_suffix
    if suffix and _IDENTIFIER_CHAR.match(suffix[0]):
        return "cursor is in the middle of a word"
    return None


def choose_mode(ctx: CursorContext, options: CompletionOptions) -> Mode:
    if options.multiline != "auto":
        return "multi_line" if options.multiline == "always" else "single_line"
    before = ctx.line_prefix.rstrip()
    if before.endswith(_BLOCK_OPENERS) and not ctx.line_suffix.strip():
        return "multi_line"
    return "single_line"


def prompt_budget(manifest: Manifest, options: CompletionOptions) -> int:
    return max(
        1, min(options.max_prompt_tokens, manifest.context_length - options.max_new_tokens - 1)
    )


def prefix_token_ids(text: str, offset: int, tokenizer: TextTokenizer, budget: int) -> list[int]:
    """The last ``budget`` tokens before ``offset``, tokenizing only a window of the text."""
    if budget <= 0:
        return []
    window = max(64, budget * _MAX_CHARS_PER_TOKEN)
    while True:
        start = max(0, offset - window)
        ids = tokenizer.encode(text[start:offset])
        if start == 0:
            return ids[-budget:]
        if len(ids) > budget:  # the window's first token may be cut in half: it is dropped here
            return ids[-budget:]
        window *= 2


def suffix_token_ids(text: str, offset: int, tokenizer: TextTokenizer, budget: int) -> list[int]:
    """The first ``budget`` tokens after ``offset``, tokenizing only a window of the text."""
    if budget <= 0:
        return []
    window = max(64, budget * _MAX_CHARS_PER_TOKEN)
    while True:
        end = min(len(text), offset + window)
        ids = tokenizer.encode(text[offset:end])
        if end == len(text):
            return ids[:budget]
        if len(ids) > budget:  # the window's last token may be cut in half: it is dropped here
            return ids[:budget]
        window *= 2


_SUFFIX_SHARE = 4  # with FIM, the suffix gets at most a quarter of the prompt budget


def build_prompt(
    ctx: CursorContext, tokenizer: TextTokenizer, manifest: Manifest, options: CompletionOptions
) -> Prompt:
    special = manifest.special_tokens
    use_bos = special.add_bos and special.bos_token_id is not None
    budget = prompt_budget(manifest, options) - (1 if use_bos else 0)
    line = ctx.line_prefix
    base_indent = line[: len(line) - len(line.lstrip())]
    mode = choose_mode(ctx, options)
    fim = special.fim if options.fim else None
    if fim is not None and budget > 8 and ctx.text[ctx.offset :].strip():
        suffix_ids = suffix_token_ids(ctx.text, ctx.offset, tokenizer, budget // _SUFFIX_SHARE)
        prefix_ids = prefix_token_ids(
            ctx.text, ctx.offset, tokenizer, budget - len(suffix_ids) - 3
        )
        ids = fim_prompt_ids(prefix_ids, suffix_ids, fim)
        if use_bos:
            ids = [special.bos_token_id, *ids]  # type: ignore[list-item]
        return Prompt(ids, mode, base_indent, fim=True)
    ids = prefix_token_ids(ctx.text, ctx.offset, tokenizer, budget)
    if use_bos:
        ids = [special.bos_token_id, *ids]  # type: ignore[list-item]
    if not ids:  # an empty document: start from the end-of-text token
        ids = [special.eos_token_ids[0]]
    return Prompt(ids, mode, base_indent)


def cut_completion(text: str, mode: Mode, base_indent: str) -> tuple[str, bool]:
    """Cut generated text where the completion should end; True if it is complete there."""
    if mode == "single_line":
        for index, char in enumerate(text):
            if char in "\r\n":
                return text[:index], True
        return text, False
    lines = text.split("\n")
    kept: list[str] = [lines[0]]
    for line in lines[1:-1]:  # the last piece may be an unfinished line
        if not line.strip():
            return "\n".join(kept), True  # a blank line ends the block
        indent = line[: len(line) - len(line.lstrip())]
        if len(indent) <= len(base_indent):
            return "\n".join(kept), True  # indentation dropped back: the block ended
        kept.append(line)
    if len(lines) > 1:
        last = lines[-1]
        indent = last[: len(last) - len(last.lstrip())]
        if last.strip() and len(indent) <= len(base_indent):
            return "\n".join(kept), True  # an unfinished line that already dedented
        kept.append(last)
    return "\n".join(kept), False


def postprocess(text: str, ctx: CursorContext, prompt: Prompt) -> str | None:
    """Trim the generated text into a completion, or None if nothing useful is left."""
    text = text.replace("\ufffd", "")  # a character cut in half by the token limit
    text, _ = cut_completion(text, prompt.mode, prompt.base_indent)
    text = "\n".join(line.rstrip() for line in text.split("\n")).rstrip()
    suffix = ctx.line_suffix.strip()
    if suffix and text.endswith(suffix):  # the model re-typed what is already after the cursor
        text = text[: -len(suffix)].rstrip()
    if not text.strip():
        return None
    return text


class Completer:
    """Runs the steps for one model; ``complete`` is blocking (call it off the event loop)."""

    def __init__(self, engine: Engine, tokenizer: TextTokenizer) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.manifest = engine.manifest
        eos = frozenset(self.manifest.special_tokens.eos_token_ids)
        self.stop_token_ids = eos | tokenizer.special_token_ids()

    def complete(
        self,
        ctx: CursorContext,
        options: CompletionOptions,
        cancel: threading.Event | None = None,
    ) -> CompletionOutcome:
        started = time.perf_counter()
        reason = skip_reason(ctx)
        if reason is not None:
            return CompletionOutcome(None, reason)
        prompt = build_prompt(ctx, self.tokenizer, self.manifest, options)
        prompt_ms = (time.perf_counter() - started) * 1000
        # Decoding context: with FIM the text before the middle is the prefix, not the suffix.
        context_ids = [] if prompt.fim else prompt.token_ids

        def stop_rule(generated: list[int]) -> bool:
            text = self.tokenizer.decode_continuation(context_ids, generated)
            return cut_completion(text, prompt.mode, prompt.base_indent)[1]

        stop = StopConditions(
            max_new_tokens=options.max_new_tokens,
            stop_token_ids=self.stop_token_ids,
            deadline=time.monotonic() + options.time_budget_ms / 1000,
            cancel=cancel,
            stop_rule=stop_rule,
        )
        generation: Generation = self.engine.generate(prompt.token_ids, stop)
        raw = self.tokenizer.decode_continuation(context_ids, generation.token_ids)
        text = None if generation.stop_reason == "cancelled" else postprocess(raw, ctx, prompt)
        total_ms = (time.perf_counter() - started) * 1000
        return CompletionOutcome(
            text=text,
            reason=generation.stop_reason
            if text is not None
            else f"empty ({generation.stop_reason})",
            timings_ms={
                "prompt": round(prompt_ms, 2),
                "prefill": round(generation.prefill_ms, 2),
                "decode": round(generation.decode_ms, 2),
                "total": round(total_ms, 2),
            },
            prompt_tokens=len(prompt.token_ids),
            new_tokens=len(generation.token_ids),
        )
