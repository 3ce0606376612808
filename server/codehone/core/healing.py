"""Token healing: let the model choose how the text at the cursor is split into tokens.

A cursor in the middle of a word, or just after a space, leaves the prompt ending in a token
the model seldom saw in that place. ``    def sugg`` tokenizes as ``def``, `` su``, ``gg``
although in training `` suggest`` was one token, and ``for item in `` ends in a lone space
token that real code almost never has before a word (so the model answers with a comment).
The model then continues from a split it never learned, and completes badly.

Healing takes the prompt's last token off and requires the first generated token to start
with that token's text (``gg`` -> ``ggest``, `` `` -> `` items``); the removed text is then
cut from the front of the completion, so the user sees only what follows the cursor. The
model, not the tokenizer, decides the split, and the prompt ends at a token boundary the
model knows.

Matching is on bytes, so it works for byte-level BPE vocabularies (GPT-2, StarCoder, Qwen,
Llama 3) and for sentencepiece ones whose pieces use ``▁`` for a space; for other
tokenizers healing is off.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from codehone.core.engine.protocol import Sampler
from codehone.core.tokenizer import TextTokenizer

_SENTENCEPIECE_SPACE = "\u2581"
# How many tokens healing may take back. Line completion on held-out code, exact match with
# 1 / 2 / 3: default model on its held-out packages 8.4 / 11.6 / 11.4%; on optuna's test files
# 8.6 / 12.8 / 13.4% and, fine-tuned on optuna, 17.0 / 22.0 / 22.8% (4 changes nothing more).
MAX_HEALED_TOKENS = 3


@dataclass(frozen=True)
class Healing:
    """What healing took off the prompt, and how generation must start again."""

    text: str  # the removed token's text: the completion's raw text starts with it
    token_ids: np.ndarray  # the ids the first generated token may be (the removed one too)


@cache
def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's map from the printable characters of byte-level BPE back to bytes."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(char): byte for byte, char in zip(printable, chars, strict=True)}


def _decoder_kind(tokenizer: TextTokenizer) -> str | None:
    """ "byte_level", "sentencepiece" or None (a decoder healing does not understand)."""
    raw_decoder = tokenizer.raw.decoder
    decoder = json.loads(raw_decoder.__getstate__()) if raw_decoder is not None else {}
    kinds = [d.get("type") for d in decoder.get("decoders", [])] or [decoder.get("type")]
    if "ByteLevel" in kinds:
        return "byte_level"
    if "Metaspace" in kinds or "ByteFallback" in kinds:
        return "sentencepiece"
    return None


def _piece_bytes(piece: str, kind: str) -> bytes | None:
    if kind == "byte_level":
        alphabet = _byte_level_alphabet()
        if not all(char in alphabet for char in piece):
            return None
        return bytes(alphabet[char] for char in piece)
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        try:
            return bytes([int(piece[3:5], 16)])  # a byte-fallback piece
        except ValueError:
            return None
    return piece.replace(_SENTENCEPIECE_SPACE, " ").encode("utf-8")


class TokenHealer:
    """Knows every token's bytes, sorted, to find the tokens that extend a given text."""

    def __init__(self, token_bytes: dict[int, bytes]) -> None:
        self._bytes = token_bytes
        ordered = sorted((value, token_id) for token_id, value in token_bytes.items() if value)
        self._keys = [value for value, _ in ordered]
        self._ids = np.array([token_id for _, token_id in ordered], dtype=np.int64)

    @classmethod
    def for_tokenizer(cls, tokenizer: TextTokenizer) -> TokenHealer | None:
        """The healer for ``tokenizer``'s vocabulary (special tokens left out), or None if
        its token pieces cannot be mapped to bytes."""
        kind = _decoder_kind(tokenizer)
        if kind is None:
            return None
        special = tokenizer.special_token_ids()
        token_bytes: dict[int, bytes] = {}
        for piece, token_id in tokenizer.raw.get_vocab().items():
            if token_id in special:
                continue
            value = _piece_bytes(piece, kind)
            if value is not None:
                token_bytes[token_id] = value
        return cls(token_bytes)

    def extensions(self, prefix: bytes) -> np.ndarray:
        """Ids of the tokens whose bytes start with ``prefix`` (two binary searches: the keys
        that start with it lie between it and the first key past all its extensions)."""
        start = bisect.bisect_left(self._keys, prefix)
        stem = prefix.rstrip(b"\xff")
        if not stem:
            return self._ids[start:]
        past = stem[:-1] + bytes([stem[-1] + 1])
        return self._ids[start : bisect.bisect_left(self._keys, past, lo=start)]

    def heal(
        self, token_ids: Sequence[int], max_tokens: int = MAX_HEALED_TOKENS
    ) -> tuple[list[int], Healing] | None:
        """``token_ids`` without their last tokens, and the healing that restores them; None
        when there is nothing to heal: a one-token prompt, a special token, a token with a
        line break (the cursor is at a line's start), or a last token that no other token
        extends.

        Up to ``max_tokens`` tokens are taken off: the most for which some single token
        spells their whole text (``Tri`` ``a`` -> `` Trial``), so a word the tokenizer cut in
        two can come back as the one token the model learned it as."""
        best: tuple[int, str, np.ndarray] | None = None
        removed = b""
        for count in range(1, min(max_tokens, len(token_ids) - 1) + 1):
            value = self._bytes.get(token_ids[-count])
            if value is None or b"\n" in value or b"\r" in value:
                break
            removed = value + removed
            allowed = self.extensions(removed)
            if len(allowed) < (2 if count == 1 else 1):
                continue  # the last token alone: only itself; more tokens: no one token
            try:
                best = (count, removed.decode("utf-8"), allowed)
            except UnicodeDecodeError:
                continue  # a character cut in two: back up further
        if best is None:
            return None
        count, text, allowed = best
        return list(token_ids[:-count]), Healing(text, allowed)


def constrained_choice(
    logits: np.ndarray, allowed: np.ndarray, sample: Sampler | None = None
) -> int:
    """The greedy (or, with ``sample``, a sampled) token among ``allowed`` only."""
    if sample is None:
        return int(allowed[int(np.argmax(logits[allowed]))])
    masked = np.full_like(logits, -np.inf)
    masked[allowed] = logits[allowed]
    return int(sample(masked))
