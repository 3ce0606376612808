"""The server's tokenizer: the model directory's tokenizer.json through the `tokenizers` library.

The server never imports transformers (slow to import, heavy); `tokenizers` reads the same
tokenizer.json the training side saved.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer

from codehone.core.errors import ModelDirError

# Decoding a continuation on its own can drop a leading space (sentencepiece) or mangle bytes
# split across tokens; decoding it after a few prompt tokens and removing their text does not.
_CONTEXT_TOKENS = 4


class TextTokenizer:
    def __init__(self, path: Path) -> None:
        try:
            self._tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:
            raise ModelDirError(f"{path}: not a readable tokenizer.json ({exc})") from None

    def encode(self, text: str) -> list[int]:
        try:
            return self._tokenizer.encode(text, add_special_tokens=False).ids
        except Exception:  # lone surrogates (text that was never valid Unicode) cannot encode
            clean = text.encode("utf-8", errors="replace").decode("utf-8")
            return self._tokenizer.encode(clean, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=True)

    def special_token_ids(self) -> frozenset[int]:
        """Ids of the added special tokens (EOS, FIM, padding): none belongs in a completion."""
        return frozenset(
            token_id
            for token_id, token in self._tokenizer.get_added_tokens_decoder().items()
            if token.special
        )

    def decode_continuation(self, context_ids: Sequence[int], new_ids: Sequence[int]) -> str:
        """The text that ``new_ids`` add after ``context_ids``."""
        head = list(context_ids[-_CONTEXT_TOKENS:])
        before = self.decode(head)
        after = self.decode([*head, *new_ids])
        if after.startswith(before):
            return after[len(before) :]
        return self.decode(new_ids)

    @property
    def raw(self) -> Tokenizer:
        """The underlying `tokenizers` object (its vocabulary and pipeline)."""
        return self._tokenizer

    def token_to_id(self, token: str) -> int | None:
        return self._tokenizer.token_to_id(token)

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size()
