"""TextTokenizer: the model directory's tokenizer.json through the `tokenizers` library."""

from __future__ import annotations

from pathlib import Path

import pytest

from codehone.core.errors import ModelDirError
from codehone.core.model_dir import Manifest, load_model_dir
from codehone.core.tokenizer import TextTokenizer


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> TextTokenizer:
    return TextTokenizer(tiny_model_dir / "tokenizer.json")


@pytest.fixture(scope="module")
def manifest(tiny_model_dir: Path) -> Manifest:
    return load_model_dir(tiny_model_dir).manifest


PAIRS = [
    ("def add(a, b):\n    return", " a + b\n"),
    ("x = ", "'héllo wörld'"),
    ("# ", "中文注释 and 😀 emoji"),
    ("", "print('first')"),
    ("a", "b"),
    ("if x:\n", "        pass"),
    ("s = '😀", "😀'"),
]


@pytest.mark.parametrize(("context", "added"), PAIRS)
def test_decode_continuation_is_the_text_added(
    tokenizer: TextTokenizer, context: str, added: str
) -> None:
    context_ids = tokenizer.encode(context)
    new_ids = tokenizer.encode(added)
    assert tokenizer.decode_continuation(context_ids, new_ids) == added


def test_decode_continuation_of_nothing_is_empty(tokenizer: TextTokenizer) -> None:
    assert tokenizer.decode_continuation(tokenizer.encode("x = 1"), []) == ""
    assert tokenizer.decode_continuation([], []) == ""


def test_decode_continuation_token_by_token_builds_the_text(tokenizer: TextTokenizer) -> None:
    context_ids = tokenizer.encode("def f():\n")
    text = "    return '中😀'\n"
    new_ids = tokenizer.encode(text)
    assert len(new_ids) > 3
    # the Completer decodes the growing list after every step: each prefix is a text prefix
    # up to at most one character still being completed (shown as U+FFFD)
    for n in range(len(new_ids) + 1):
        partial = tokenizer.decode_continuation(context_ids, new_ids[:n])
        assert text.startswith(partial.rstrip("\ufffd"))
    assert tokenizer.decode_continuation(context_ids, new_ids) == text


def test_decode_round_trips_code(tokenizer: TextTokenizer) -> None:
    text = "class A:\n\tdef f(self, x=1):  # ünïcode 中 😀\r\n        return {x: [x]}\n"
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_encode_adds_no_special_tokens(tokenizer: TextTokenizer) -> None:
    ids = tokenizer.encode("x")
    assert ids
    assert not set(ids) & tokenizer.special_token_ids()
    assert tokenizer.encode("") == []


def test_special_tokens_are_skipped_in_decode(tokenizer: TextTokenizer, manifest: Manifest) -> None:
    eos = manifest.special_tokens.eos_token_ids[0]
    fim = manifest.special_tokens.fim
    assert fim is not None
    ids = tokenizer.encode("value = 42")
    assert tokenizer.decode([fim.prefix_id, *ids, eos, fim.middle_id]) == "value = 42"
    assert tokenizer.decode([eos]) == ""
    assert tokenizer.decode_continuation(ids, [eos]) == ""


def test_special_tokens_in_the_text_are_matched(
    tokenizer: TextTokenizer, manifest: Manifest
) -> None:
    # tokenizer.json's added tokens are matched in text (codehone's FIM prompt relies on it)
    fim = manifest.special_tokens.fim
    assert fim is not None
    assert tokenizer.encode(fim.prefix) == [fim.prefix_id]


def test_special_token_ids_include_eos_and_fim(
    tokenizer: TextTokenizer, manifest: Manifest
) -> None:
    special = tokenizer.special_token_ids()
    assert isinstance(special, frozenset)
    assert set(manifest.special_tokens.eos_token_ids) <= special
    fim = manifest.special_tokens.fim
    assert fim is not None
    assert {fim.prefix_id, fim.suffix_id, fim.middle_id} <= special
    ordinary = set(tokenizer.encode("def return import x = 1"))
    assert not ordinary & special


def test_token_to_id_and_vocab_size(tokenizer: TextTokenizer, manifest: Manifest) -> None:
    fim = manifest.special_tokens.fim
    assert fim is not None
    assert tokenizer.token_to_id(fim.prefix) == fim.prefix_id
    assert tokenizer.token_to_id(fim.middle) == fim.middle_id
    assert tokenizer.token_to_id("<definitely-not-a-token>") is None
    assert 0 < tokenizer.vocab_size <= manifest.vocab_size


@pytest.mark.parametrize("text", ["x = '\ud800'", "\udfff", "a\ud83db", "ok \ud83d\ude00 \udc00"])
def test_lone_surrogates_encode_without_raising(tokenizer: TextTokenizer, text: str) -> None:
    ids = tokenizer.encode(text)
    assert ids
    decoded = tokenizer.decode(ids)
    clean = text.encode("utf-8", errors="replace").decode("utf-8")
    assert decoded == clean


def test_missing_tokenizer_file(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    with pytest.raises(ModelDirError) as info:
        TextTokenizer(path)
    assert "not a readable tokenizer.json" in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage \x00\xff", b"{}", b'{"model": {"type": "Nope"}}', b"[1, 2, 3]", b"{"],
)
def test_garbage_tokenizer_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_bytes(content)
    with pytest.raises(ModelDirError, match=r"not a readable tokenizer\.json"):
        TextTokenizer(path)


def test_tokenizer_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelDirError, match=r"not a readable tokenizer\.json"):
        TextTokenizer(tmp_path)


def test_error_message_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_text('{"version": "1.0", "model": 3}', encoding="utf-8")
    with pytest.raises(ModelDirError) as info:
        TextTokenizer(path)
    assert "\n" not in str(info.value)


def test_decode_continuation_keeps_a_sentencepiece_leading_space(tmp_path: Path) -> None:
    """Decoded alone, a Metaspace continuation loses its leading space; after context, not."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {"<unk>": 0, "▁x": 1, "▁=": 2, "▁a": 3, "▁+": 4, "▁b": 5}
    sentencepiece_like = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    sentencepiece_like.pre_tokenizer = pre_tokenizers.Metaspace()
    sentencepiece_like.decoder = decoders.Metaspace()
    sentencepiece_like.save(str(tmp_path / "tokenizer.json"))
    tokenizer = TextTokenizer(tmp_path / "tokenizer.json")
    ids = tokenizer.encode("x = a + b")
    assert ids == [1, 2, 3, 4, 5]
    assert tokenizer.decode(ids[2:]) == "a + b"  # the space is lost without context
    assert tokenizer.decode_continuation(ids[:2], ids[2:]) == " a + b"
    long_context = tokenizer.encode("x = a + b + x =")
    assert len(long_context) > 4
    assert tokenizer.decode_continuation(long_context, [3]) == " a"


def test_a_tokenizer_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    """`tokenizers` holds the interpreter lock while it parses: a huge file would freeze the
    server, so one over MAX_TOKENIZER_BYTES is refused from its size alone."""
    from codehone.core.tokenizer import MAX_TOKENIZER_BYTES

    huge = tmp_path / "tokenizer.json"
    with huge.open("wb") as f:
        f.truncate(MAX_TOKENIZER_BYTES + 1)  # sparse: nothing is written, nothing is read
    with pytest.raises(ModelDirError, match=r"17 MB; codehone loads a tokenizer.json of at most"):
        TextTokenizer(huge)


def test_a_tokenizer_with_ids_past_the_model_is_refused(
    tokenizer: TextTokenizer, tiny_model_dir: Path, tmp_path: Path
) -> None:
    import json
    import shutil

    from codehone.core.model_dir import MANIFEST_NAME
    from codehone.lsp.models.service import ModelService

    tokenizer.check_fits(tokenizer.vocab_size)
    with pytest.raises(ModelDirError, match="ids up to 511, past the model's vocab_size 500"):
        tokenizer.check_fits(500)
    # a manifest that understates its vocabulary: the model does not load
    copy = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    raw = json.loads((copy / MANIFEST_NAME).read_text())
    raw["vocab_size"] = 500
    (copy / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(ModelDirError, match="past the model's vocab_size 500"):
        ModelService.load(load_model_dir(copy, check_graph=False), "cpu")
