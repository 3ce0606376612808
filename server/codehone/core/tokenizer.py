"""The server's tokenizer: the model directory's tokenizer.json through the `tokenizers` library.

The server never imports transformers (slow to import, heavy); `tokenizers` reads the same
tokenizer.json the training side saved.

A tokenizer.json over ``MAX_TOKENIZER_BYTES`` is refused before it is read: the `tokenizers`
library holds Python's global interpreter lock while it parses one, for a time that grows with
its vocabulary (measured here: 26 MB, a million entries, 2.1 s in which no other thread of the
process ran; 6 MB, 150,000 entries and merges, 1.8 s on a busy machine; about 19 bytes of
memory per byte of file), so no background thread keeps the language server responsive
meanwhile. The largest tokenizer of a supported family (Llama 3's) is 9 MB: 16 MB leaves room
for it and bounds the pause. ``check_fits`` refuses a tokenizer that makes ids the model lacks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer

from codehone.core.errors import ModelDirError

# Decoding a continuation on its own can drop a leading space (sentencepiece) or mangle bytes
# split across tokens; decoding it after a few prompt tokens and removing their text does not.
_CONTEXT_TOKENS = 4
MAX_TOKENIZER_BYTES = 16 << 20


class TextTokenizer:
    def __init__(self, path: Path) -> None:
        try:
            size = Path(path).stat().st_size
        except OSError as exc:
            raise ModelDirError(
                f"{path}: not a readable tokenizer.json ({exc.strerror or exc})"
            ) from None
        if size > MAX_TOKENIZER_BYTES:
            raise ModelDirError(
                f"{path}: {size / 1e6:.0f} MB; codehone loads a tokenizer.json of at most "
                f"{MAX_TOKENIZER_BYTES / 1e6:.0f} MB (parsing one freezes the server meanwhile)"
            )
        try:
            self._tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:
            raise ModelDirError(f"{path}: not a readable tokenizer.json ({exc})") from None
        self.path = Path(path)

    def check_fits(self, vocab_size: int) -> None:
        """Refuse (ModelDirError) a tokenizer whose ids reach past the model's ``vocab_size``
        rows: every prompt holding such a token would fail in the graph."""
        added = self._tokenizer.get_added_tokens_decoder()
        top = max(
            self._tokenizer.get_vocab_size(with_added_tokens=False), max(added, default=0) + 1
        )
        if top > vocab_size:
            raise ModelDirError(
                f"{self.path}: the tokenizer has ids up to {top - 1:,}, past the model's "
                f"vocab_size {vocab_size:,}"
            )

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
