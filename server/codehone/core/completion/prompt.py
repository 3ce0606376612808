"""The prompt: the tokens before the cursor within a token budget, and with them, when the model
and the options allow, the text after the cursor (fill-in-the-middle), the beginning of other
open files, an anchored start the engine's prefix reuse can keep, and token healing.

Only a window of text around the cursor is ever tokenized (and the cursor's line is read
within ``cursor.LINE_WINDOW``), so a huge file costs no more than a small one: the window starts at about four characters per token wanted and doubles while the
tokens fall short.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from codehone.core.completion.cursor import CursorContext, Mode, choose_mode
from codehone.core.completion.options import CompletionOptions
from codehone.core.fim import fim_prompt_ids
from codehone.core.healing import Healing, TokenHealer
from codehone.core.model_dir import Manifest
from codehone.core.tokenizer import TextTokenizer

_MAX_CHARS_PER_TOKEN = 4  # first guess for the character window; it grows if tokens fall short
_ANCHOR_SHARE = 8  # an anchored prompt drops tokens in steps of an eighth of its budget
_SUFFIX_SHARE = 4  # with FIM, the suffix gets at most a quarter of the prompt budget
_NEIGHBOR_SHARE = 3  # other files get at least a third of the prefix budget when they are used
_NEIGHBOR_MIN_TOKENS = 16  # a file that would get fewer tokens than this is left out
_NON_SPACE = re.compile(r"\S")


@dataclass
class Prompt:
    """The tokens the model is given, and what post-processing needs to know about them."""

    token_ids: list[int]
    mode: Mode
    base_indent: str
    fim: bool = False
    healing: Healing | None = None  # the text before the cursor that generation restores
    # How many leading tokens hold the text before the cursor (with the BOS and the FIM
    # marker before it): the part that does not depend on the text after the cursor. None:
    # all of them.
    prefix_end: int | None = None

    @property
    def before_cursor_ids(self) -> list[int]:
        """The leading tokens that hold the text before the cursor (``prefix_end``)."""
        end = len(self.token_ids) if self.prefix_end is None else self.prefix_end
        return self.token_ids[:end]


def new_token_limit(manifest: Manifest, options: CompletionOptions) -> int:
    """The most tokens one completion generates: ``options.max_new_tokens``, but at most half
    the model's context, so the prompt always keeps the other half (a limit at or past the
    context would cut every prompt to one token)."""
    return max(1, min(options.max_new_tokens, manifest.context_length // 2))


def prompt_budget(manifest: Manifest, options: CompletionOptions) -> int:
    """The prompt's tokens: the options' limit, within the context that the new tokens share."""
    room = manifest.context_length - new_token_limit(manifest, options) - 1
    return max(1, min(options.max_prompt_tokens, room))


def prefix_token_ids(
    text: str,
    offset: int,
    tokenizer: TextTokenizer,
    budget: int,
    anchor: int = 0,
    cut_at: int | None = None,
) -> list[int]:
    """The last ``budget`` tokens before ``offset``, tokenizing only a window of the text.

    ``anchor`` > 0 keeps the prompt's start put while the user types: where it starts is
    decided by the start of the cursor's line, not by the cursor. The window starts at a
    character offset rounded down to a block of a quarter of the window, and tokens are dropped
    from its start in multiples of ``anchor``, as many as leave the text before the line at
    most ``budget - anchor`` tokens (room for the line being typed; more only when the line
    itself outgrows it). So typing on a line never moves the prompt's start, and successive
    requests share their prompt's whole start, which the engine's prefix reuse keeps in its KV
    cache, instead of a window sliding by a token or so at every keystroke (which misses the
    cache entirely); the start moves, and the cache is prefilled anew, only on another line,
    at most once per ``anchor`` tokens typed. The prompt then holds between
    ``budget - 2 * anchor`` and ``budget`` tokens. A line longer before the cursor
    than the first window's quarter anchors at the cursor instead.

    ``cut_at`` (at most ``offset``): the same prompt's start (the window and the tokens
    dropped as for ``offset``) but with the text ending at ``cut_at``: what the prompt at
    ``offset`` begins with, up to about there (the last token may differ).
    """
    if budget <= 0:
        return []
    quantum = min(anchor, budget)
    window = max(64, budget * _MAX_CHARS_PER_TOKEN)
    anchor_at = offset
    if quantum > 0:
        line_start = max(text.rfind("\n", 0, offset), text.rfind("\r", 0, offset)) + 1
        if offset - line_start <= window // 4:
            anchor_at = line_start
    while True:
        start = max(0, anchor_at - window)
        if quantum > 0:
            block = max(64, window // 4)
            start = start // block * block
        ids = tokenizer.encode(text[start:offset])
        drop = len(ids) - budget
        if quantum > 0 and len(ids) + quantum > budget:  # else the line's start has room
            head = len(tokenizer.encode(text[start:anchor_at])) if anchor_at < offset else len(ids)
            drop = max(drop, head + quantum - budget)
        if drop > 0:  # the window's first token may be cut in half: it is dropped here
            if quantum > 0:
                drop = -(-drop // quantum) * quantum
            return _cut(ids, text, start, cut_at, tokenizer)[drop:]
        if start == 0:
            return _cut(ids, text, start, cut_at, tokenizer)
        window *= 2


def _cut(
    ids: list[int], text: str, start: int, cut_at: int | None, tokenizer: TextTokenizer
) -> list[int]:
    """``ids`` (the window's tokens from ``start``), or with ``cut_at`` the window's text up to
    there tokenized instead."""
    return ids if cut_at is None else tokenizer.encode(text[start:cut_at])


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


def neighbor_token_ids(
    ctx: CursorContext,
    tokenizer: TextTokenizer,
    budget: int,
    anchor: int = 0,
    cut_at: int | None = None,
) -> tuple[list[int], list[int]]:
    """The prefix within ``budget``: (other files' blocks + the current file's header, the
    current file's text before the cursor).

    Without neighbors it is just the text before the cursor. With them the current file keeps
    all it needs if that leaves a third of the budget, else it gives up its oldest tokens down
    to two thirds; the other files fill the rest, most relevant first, each as its header and
    the beginning of its text, the most relevant placed nearest the cursor. ``cut_at``: see
    ``prefix_token_ids``."""
    if not ctx.neighbors or budget < 2 * _NEIGHBOR_MIN_TOKENS:
        return [], prefix_token_ids(ctx.text, ctx.offset, tokenizer, budget, anchor, cut_at)
    header = tokenizer.encode(ctx.header) if ctx.header else []
    own_budget = budget - len(header)
    own = prefix_token_ids(ctx.text, ctx.offset, tokenizer, own_budget, anchor, cut_at)
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
        return [], prefix_token_ids(ctx.text, ctx.offset, tokenizer, budget, anchor, cut_at)
    context = [token for block in reversed(blocks) for token in block]
    return context + header, own


def build_prompt(
    ctx: CursorContext,
    tokenizer: TextTokenizer,
    manifest: Manifest,
    options: CompletionOptions,
    healer: TokenHealer | None = None,
    cut_at: int | None = None,
) -> Prompt:
    """The prompt for ``ctx``: fill-in-the-middle when the model has FIM tokens, the options
    want it and there is text after the cursor; else the text before it (and the other files).
    An empty document starts from the end-of-text token. ``cut_at``: the text before the
    cursor ends there instead (see ``prefix_token_ids``; with other files, their share is
    then sized for the shorter text, so it may differ from the request's)."""
    special = manifest.special_tokens
    use_bos = special.add_bos and special.bos_token_id is not None
    budget = prompt_budget(manifest, options) - (1 if use_bos else 0)
    base_indent = ctx.indent
    mode = choose_mode(ctx, options)
    fim = special.fim if options.fim and special.fim and special.fim.in_prompts else None
    anchor = max(1, budget // _ANCHOR_SHARE) if options.anchor_prompt else 0
    if fim is not None and budget > 8 and _NON_SPACE.search(ctx.text, ctx.offset):
        suffix_ids = suffix_token_ids(ctx.text, ctx.offset, tokenizer, budget // _SUFFIX_SHARE)
        context_ids, prefix_ids = neighbor_token_ids(
            ctx, tokenizer, budget - len(suffix_ids) - 3, anchor, cut_at
        )
        prefix_ids, healing = _heal(prefix_ids, healer, options)
        ids = fim_prompt_ids(context_ids + prefix_ids, suffix_ids, fim)
        if use_bos:
            ids = [special.bos_token_id, *ids]  # type: ignore[list-item]
        # PSM: [BOS] <prefix> context+prefix <suffix> ...
        prefix_end = (1 if use_bos else 0) + 1 + len(context_ids) + len(prefix_ids)
        return Prompt(ids, mode, base_indent, fim=True, healing=healing, prefix_end=prefix_end)
    context_ids, prefix_ids = neighbor_token_ids(ctx, tokenizer, budget, anchor, cut_at)
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
