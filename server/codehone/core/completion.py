"""Completion as small pure steps in a row, shared by the LSP server and `codehone complete`.

should we complete? -> build the prompt within a token budget (fill-in-the-middle with the
text after the cursor when the model has FIM tokens, and optionally the beginning of other open
files) -> generate (greedy, then sampled alternatives when more candidates are asked for) ->
post-process (cut where the completion ends, stop repetition loops, strip control characters).
Only a window of text around the cursor is ever tokenized, so a huge file costs no more than
a small one.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from codehone.core.engine.protocol import Generation, StopConditions
from codehone.core.engine.session import Engine
from codehone.core.fim import fim_prompt_ids
from codehone.core.healing import Healing, TokenHealer
from codehone.core.model_dir import Manifest
from codehone.core.tokenizer import TextTokenizer

log = logging.getLogger("codehone.completion")

Mode = Literal["single_line", "multi_line"]
_IDENTIFIER_CHAR = re.compile(r"\w")
_BLOCK_OPENERS = (":", "{", "(", "[", "=>", "->", " do", " then")
_MAX_CHARS_PER_TOKEN = 4  # first guess for the character window; it grows if tokens fall short
# C0 control characters but tab and newline, and DEL: never part of a completion.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# Repetition guard: a token n-gram of up to this many tokens repeated to fill _LOOP_MIN_TOKENS
# (and at least 3 times) is a loop; three equal non-blank lines in a row are one too.
_LOOP_MAX_PERIOD = 8
_LOOP_MIN_TOKENS = 16
_SAMPLING_TOP_K = 40
# Tests of cancellation need a request that is surely still running on the model's worker when
# the cancel arrives: this pauses each one before decoding (a pause that a cancel ends). Never
# set it outside tests.
_TEST_DELAY_S = float(os.environ.get("CODEHONE_TEST_DELAY_MS", "0") or 0) / 1000


@dataclass(frozen=True)
class CompletionOptions:
    """Per-request knobs; the server's configuration fills them (typed, with defaults)."""

    max_new_tokens: int = 48
    max_prompt_tokens: int = 1024
    time_budget_ms: int = 1500
    multiline: Literal["auto", "always", "never"] = "auto"
    fim: bool = True  # use the text after the cursor when the model has FIM tokens
    # keep the prompt's start put while the user types (see prefix_token_ids), so the engine
    # reuses its KV cache for all of it; costs up to an eighth of the prompt budget
    anchor_prompt: bool = True
    # end the prompt at a token boundary the model knows and let it choose how the text at the
    # cursor is split (see codehone.core.healing)
    token_healing: bool = True


@dataclass(frozen=True)
class SamplingOptions:
    """How many candidates to offer; the first is always the greedy one, the others sampled."""

    candidates: int = 1
    temperature: float = 0.8
    seed: int | None = None  # None: a different draw each request


@dataclass(frozen=True)
class Neighbor:
    """Another open file given to the model as context before the current one."""

    header: str  # one line naming it, e.g. "# path: util.py\n"
    text: str


@dataclass(frozen=True)
class CursorContext:
    """The text around the cursor that completion looks at.

    ``neighbors`` (most relevant first) and ``header`` (the current file's own path line, put
    between them and its text) are optional context from other open files."""

    text: str
    offset: int
    neighbors: tuple[Neighbor, ...] = ()
    header: str = ""

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
    healing: Healing | None = None  # the text before the cursor that generation restores


@dataclass
class CompletionOutcome:
    text: str | None
    reason: str  # why it ended (stop reason) or why nothing was produced
    timings_ms: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0
    new_tokens: int = 0
    reused_tokens: int = 0  # prompt tokens whose KV cache came from the previous request
    alternatives: list[str] = field(default_factory=list)  # further candidates, deduplicated

    @property
    def texts(self) -> list[str]:
        """Every candidate, the greedy one first."""
        return ([self.text] if self.text is not None else []) + self.alternatives


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


def prefix_token_ids(
    text: str, offset: int, tokenizer: TextTokenizer, budget: int, anchor: int = 0
) -> list[int]:
    """The last ``budget`` tokens before ``offset``, tokenizing only a window of the text.

    ``anchor`` > 0 keeps the prompt's start put while the cursor moves forward (a user
    typing): the window starts at a character offset rounded down to a block of a quarter of
    the window, and tokens beyond the budget are dropped from its start in multiples of
    ``anchor``. Successive requests then share their prompt's whole start, which the engine's
    prefix reuse keeps in its KV cache, instead of a window sliding by a token or so at every
    keystroke (which misses the cache entirely). The prompt then holds between
    ``budget - anchor`` and ``budget`` tokens.
    """
    if budget <= 0:
        return []
    quantum = min(anchor, budget)
    window = max(64, budget * _MAX_CHARS_PER_TOKEN)
    while True:
        start = max(0, offset - window)
        if quantum > 0:
            block = max(64, window // 4)
            start = start // block * block
        ids = tokenizer.encode(text[start:offset])
        if len(ids) > budget:  # the window's first token may be cut in half: it is dropped here
            drop = len(ids) - budget
            if quantum > 0:
                drop = -(-drop // quantum) * quantum
            return ids[drop:]
        if start == 0:
            return ids
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


_ANCHOR_SHARE = 8  # an anchored prompt drops tokens in steps of an eighth of its budget
_SUFFIX_SHARE = 4  # with FIM, the suffix gets at most a quarter of the prompt budget
_NEIGHBOR_SHARE = 3  # other files get at least a third of the prefix budget when they are used
_NEIGHBOR_MIN_TOKENS = 16  # a file that would get fewer tokens than this is left out


def neighbor_token_ids(
    ctx: CursorContext, tokenizer: TextTokenizer, budget: int, anchor: int = 0
) -> tuple[list[int], list[int]]:
    """The prefix within ``budget``: (other files' blocks + the current file's header, the
    current file's text before the cursor).

    Without neighbors it is just the text before the cursor. With them the current file keeps
    all it needs if that leaves a third of the budget, else it gives up its oldest tokens down
    to two thirds; the other files fill the rest, most relevant first, each as its header and
    the beginning of its text, the most relevant placed nearest the cursor."""
    if not ctx.neighbors or budget < 2 * _NEIGHBOR_MIN_TOKENS:
        return [], prefix_token_ids(ctx.text, ctx.offset, tokenizer, budget, anchor)
    header = tokenizer.encode(ctx.header) if ctx.header else []
    own_budget = budget - len(header)
    own = prefix_token_ids(ctx.text, ctx.offset, tokenizer, own_budget, anchor)
    reserve = budget // _NEIGHBOR_SHARE
    if own_budget - len(own) < reserve:
        own = own[len(own) - max(0, own_budget - reserve) :]
    room = own_budget - len(own)
    newline = tokenizer.encode("\n")
    blocks: list[list[int]] = []
    for neighbor in ctx.neighbors:
        head = tokenizer.encode(neighbor.header)
        body_budget = room - len(head) - len(newline)
        if body_budget < _NEIGHBOR_MIN_TOKENS:
            break
        body = suffix_token_ids(neighbor.text, 0, tokenizer, body_budget)
        if not body:
            continue
        block = head + body
        if not neighbor.text.endswith("\n") or len(body) == body_budget:
            block += newline  # the block ends with a line break even when it was cut
        blocks.append(block)
        room -= len(block)
    if not blocks:
        return [], prefix_token_ids(ctx.text, ctx.offset, tokenizer, budget, anchor)
    context = [token for block in reversed(blocks) for token in block]
    return context + header, own


def build_prompt(
    ctx: CursorContext,
    tokenizer: TextTokenizer,
    manifest: Manifest,
    options: CompletionOptions,
    healer: TokenHealer | None = None,
) -> Prompt:
    special = manifest.special_tokens
    use_bos = special.add_bos and special.bos_token_id is not None
    budget = prompt_budget(manifest, options) - (1 if use_bos else 0)
    line = ctx.line_prefix
    base_indent = line[: len(line) - len(line.lstrip())]
    mode = choose_mode(ctx, options)
    fim = special.fim if options.fim and special.fim and special.fim.in_prompts else None
    anchor = max(1, budget // _ANCHOR_SHARE) if options.anchor_prompt else 0
    if fim is not None and budget > 8 and ctx.text[ctx.offset :].strip():
        suffix_ids = suffix_token_ids(ctx.text, ctx.offset, tokenizer, budget // _SUFFIX_SHARE)
        context_ids, prefix_ids = neighbor_token_ids(
            ctx, tokenizer, budget - len(suffix_ids) - 3, anchor
        )
        prefix_ids, healing = _heal(prefix_ids, healer, options)
        ids = fim_prompt_ids(context_ids + prefix_ids, suffix_ids, fim)
        if use_bos:
            ids = [special.bos_token_id, *ids]  # type: ignore[list-item]
        return Prompt(ids, mode, base_indent, fim=True, healing=healing)
    context_ids, prefix_ids = neighbor_token_ids(ctx, tokenizer, budget, anchor)
    prefix_ids, healing = _heal(prefix_ids, healer, options)
    ids = context_ids + prefix_ids
    if use_bos:
        ids = [special.bos_token_id, *ids]  # type: ignore[list-item]
    if not ids:  # an empty document: start from the end-of-text token
        ids = [special.eos_token_ids[0]]
    return Prompt(ids, mode, base_indent, healing=healing)


def _heal(
    prefix_ids: list[int], healer: TokenHealer | None, options: CompletionOptions
) -> tuple[list[int], Healing | None]:
    """The text before the cursor without its last token, when healing applies."""
    if healer is None or not options.token_healing:
        return prefix_ids, None
    healed = healer.heal(prefix_ids)
    return healed if healed is not None else (prefix_ids, None)


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


def cut_repeated_lines(text: str) -> tuple[str, bool]:
    """Cut at a line the model repeats: three equal non-blank finished lines in a row keep the
    first one only. True if it cut."""
    lines = text.split("\n")
    finished = lines[:-1]  # the last piece may be an unfinished line
    for index in range(2, len(finished)):
        line = finished[index]
        if line.strip() and line == finished[index - 1] == finished[index - 2]:
            return "\n".join(lines[: index - 1]), True
    return text, False


def token_loop_length(ids: Sequence[int]) -> int | None:
    """If ``ids`` end in a loop (one n-gram of at most _LOOP_MAX_PERIOD tokens repeated at
    least three times and over at least _LOOP_MIN_TOKENS tokens), how many ids to keep: up to
    the end of the loop's first round. None when there is no loop."""
    n = len(ids)
    for period in range(1, _LOOP_MAX_PERIOD + 1):
        span = period * max(3, -(-_LOOP_MIN_TOKENS // period))
        if span > n:
            continue
        start = n - span
        if all(ids[i] == ids[i - period] for i in range(start + period, n)):
            return start + period
    return None


def strip_control_chars(text: str) -> str:
    """Remove NUL and the other C0 control characters except tab and newline, and DEL."""
    return _CONTROL_CHARS.sub("", text)


def postprocess(text: str, ctx: CursorContext, prompt: Prompt) -> str | None:
    """Trim the generated text into a completion, or None if nothing useful is left."""
    text = text.replace("\ufffd", "")  # a character cut in half by the token limit
    text, _ = cut_completion(text, prompt.mode, prompt.base_indent)
    text, _ = cut_repeated_lines(text)
    text = strip_control_chars(text)
    text = "\n".join(line.rstrip() for line in text.split("\n")).rstrip()
    suffix = ctx.line_suffix.strip()
    if suffix and text.endswith(suffix):  # the model re-typed what is already after the cursor
        text = text[: -len(suffix)].rstrip()
    if not text.strip():
        return None
    return text


Sampler = Callable[[np.ndarray], int]


def make_sampler(temperature: float, rng: np.random.Generator) -> Sampler:
    """Sample the next token from the ``_SAMPLING_TOP_K`` likeliest at ``temperature``
    (greedy at 0)."""

    def sample(logits: np.ndarray) -> int:
        if temperature <= 0:
            return int(np.argmax(logits))
        scaled = logits.astype(np.float64) / temperature
        k = min(_SAMPLING_TOP_K, scaled.shape[-1])
        top = np.argpartition(scaled, -k)[-k:]
        weights = np.exp(scaled[top] - scaled[top].max())
        return int(top[rng.choice(k, p=weights / weights.sum())])

    return sample


def _test_pause(seconds: float, cancel: threading.Event | None) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not (cancel is not None and cancel.is_set()):
        time.sleep(0.01)


@dataclass
class _Candidate:
    text: str | None
    generation: Generation


class Completer:
    """Runs the steps for one model; ``complete`` is blocking (call it off the event loop)."""

    def __init__(self, engine: Engine, tokenizer: TextTokenizer) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.manifest = engine.manifest
        eos = frozenset(self.manifest.special_tokens.eos_token_ids)
        self.stop_token_ids = eos | tokenizer.special_token_ids()
        self.healer = TokenHealer.for_tokenizer(tokenizer)

    def complete(
        self,
        ctx: CursorContext,
        options: CompletionOptions,
        cancel: threading.Event | None = None,
        sampling: SamplingOptions | None = None,
    ) -> CompletionOutcome:
        """The greedy completion, and with ``sampling.candidates`` > 1 sampled alternatives
        (different from it and from each other) within the same time budget."""
        started = time.perf_counter()
        reason = skip_reason(ctx)
        if reason is not None:
            return CompletionOutcome(None, reason)
        prompt = build_prompt(ctx, self.tokenizer, self.manifest, options, self.healer)
        prompt_ms = (time.perf_counter() - started) * 1000
        if _TEST_DELAY_S:
            _test_pause(_TEST_DELAY_S, cancel)
        deadline = time.monotonic() + options.time_budget_ms / 1000
        greedy = self._candidate(ctx, prompt, options, deadline, cancel, None)
        generation = greedy.generation
        alternatives: list[str] = []
        wanted = (sampling.candidates if sampling else 1) - 1
        if wanted > 0 and generation.stop_reason not in ("cancelled", "deadline"):
            assert sampling is not None
            rng = np.random.default_rng(sampling.seed)
            sampler = make_sampler(sampling.temperature, rng)
            seen = {greedy.text}
            for _ in range(2 * wanted):  # duplicates are dropped; a few extra tries fill in
                if len(alternatives) >= wanted:
                    break
                if (cancel is not None and cancel.is_set()) or time.monotonic() >= deadline:
                    break
                sampled = self._candidate(ctx, prompt, options, deadline, cancel, sampler)
                if sampled.generation.stop_reason == "cancelled":
                    break
                if sampled.text is not None and sampled.text not in seen:
                    seen.add(sampled.text)
                    alternatives.append(sampled.text)
        text = greedy.text
        if text is None and alternatives:  # the greedy one was empty: the first sample leads
            text = alternatives.pop(0)
        if cancel is not None and cancel.is_set():
            text, alternatives = None, []
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
            reused_tokens=generation.reused_tokens,
            alternatives=alternatives,
        )

    def _candidate(
        self,
        ctx: CursorContext,
        prompt: Prompt,
        options: CompletionOptions,
        deadline: float,
        cancel: threading.Event | None,
        sampler: Sampler | None,
    ) -> _Candidate:
        # Decoding context: with FIM the text before the middle is the prefix, not the suffix.
        context_ids = [] if prompt.fim else prompt.token_ids
        loop_keep: list[int] = []
        healing = prompt.healing

        def continuation(generated: list[int]) -> str:
            """The text the tokens add after the cursor (without what healing restored)."""
            text = self.tokenizer.decode_continuation(context_ids, generated)
            if healing is not None:
                text = text[len(healing.text) :] if text.startswith(healing.text) else ""
            return text

        def stop_rule(generated: list[int]) -> bool:
            keep = token_loop_length(generated)
            if keep is not None:
                loop_keep.append(keep)
                return True
            text = continuation(generated)
            if cut_repeated_lines(text)[1]:
                return True
            return cut_completion(text, prompt.mode, prompt.base_indent)[1]

        stop = StopConditions(
            max_new_tokens=options.max_new_tokens,
            stop_token_ids=self.stop_token_ids,
            deadline=deadline,
            cancel=cancel,
            stop_rule=stop_rule,
        )
        first = healing.token_ids if healing is not None else None
        if sampler is None:  # engines standing in for the ONNX one (PyTorch, in eval) are greedy
            generation = self.engine.generate(prompt.token_ids, stop, first_token_ids=first)
        else:
            generation = self.engine.generate(
                prompt.token_ids, stop, sample=sampler, first_token_ids=first
            )
        ids = generation.token_ids[: loop_keep[0]] if loop_keep else generation.token_ids
        raw = continuation(ids)
        text = None if generation.stop_reason == "cancelled" else postprocess(raw, ctx, prompt)
        return _Candidate(text, generation)
