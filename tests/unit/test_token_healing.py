"""Token healing: the prompt loses its last token, the first generated token must extend that
token's text, and the completion is only what comes after the cursor. On every engine kind the
constrained first token is followed by exactly the greedy continuation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from engines import PROMPT, ScriptedEngine, engine

from codehone.core.completion.completer import Completer
from codehone.core.completion.cursor import CursorContext
from codehone.core.completion.options import CompletionOptions
from codehone.core.completion.prompt import build_prompt
from codehone.core.engine.protocol import StopConditions
from codehone.core.healing import TokenHealer, constrained_choice
from codehone.core.model_dir import ModelDir, load_model_dir
from codehone.core.providers import choose_provider
from codehone.core.tokenizer import TextTokenizer

CPU = choose_provider("cpu")


@pytest.fixture(scope="module")
def healer(tokenizer: TextTokenizer) -> TokenHealer:
    healer = TokenHealer.for_tokenizer(tokenizer)
    assert healer is not None  # a byte-level BPE vocabulary
    return healer


def extending(tokenizer: TextTokenizer, text: str) -> set[int]:
    """By brute force: the non-special tokens whose text starts with ``text``."""
    special = tokenizer.special_token_ids()
    return {
        token_id
        for token_id in range(tokenizer.vocab_size)
        if token_id not in special and tokenizer.decode([token_id]).startswith(text)
    }


@pytest.mark.parametrize("text", ["for item in ", "print(sel", "value = json.dec"])
def test_heal_drops_the_last_token_and_allows_every_token_that_extends_it(
    text: str, tokenizer: TextTokenizer, healer: TokenHealer
) -> None:
    ids = tokenizer.encode(text)
    healed = healer.heal(ids, max_tokens=1)
    assert healed is not None
    trimmed, healing = healed
    assert trimmed == ids[:-1]
    assert tokenizer.decode(trimmed) + healing.text == text
    allowed = set(healing.token_ids.tolist())
    assert ids[-1] in allowed
    assert allowed == extending(tokenizer, healing.text)


def test_nothing_to_heal(tokenizer: TextTokenizer, healer: TokenHealer) -> None:
    assert healer.heal(tokenizer.encode("x = 1\n")) is None  # the cursor at a line's start
    assert healer.heal(tokenizer.encode("    ")[:1]) is None  # a one-token prompt
    eos = tokenizer.token_to_id("<|endoftext|>")
    assert eos is not None
    assert healer.heal([*tokenizer.encode("x = "), eos]) is None  # a special token
    assert healer.heal([]) is None


def test_constrained_choice_is_the_best_allowed_token() -> None:
    logits = np.array([5.0, 1.0, 3.0, 2.0, 9.0], dtype=np.float32)
    assert constrained_choice(logits, np.array([1, 2, 3])) == 2
    # a sampler sees the others as impossible
    assert constrained_choice(logits, np.array([1, 3]), sample=lambda x: int(np.argmax(x))) == 3


@pytest.mark.parametrize("kind", ["exported", "fused", "fused+speculation", "sampled"])
def test_first_token_constraint_then_greedy(
    kind: str,
    tiny_model: Callable[[str], Path],
    fused_model: Callable[[str], Path],
) -> None:
    path = tiny_model("gpt2") if kind in ("exported", "sampled") else fused_model("gpt2")
    e = engine(path, draft_tokens=4 if "speculation" in kind else 0)
    stop = StopConditions(max_new_tokens=10)
    greedy = e.generate(PROMPT, stop).token_ids
    forced = np.array([(greedy[0] + 1) % 500, (greedy[0] + 7) % 500])
    sample = (lambda logits: int(np.argmax(logits))) if kind == "sampled" else None
    result = e.generate(PROMPT, stop, sample=sample, first_token_ids=forced)
    assert result.token_ids[0] in forced.tolist()
    rest = e.generate([*PROMPT, result.token_ids[0]], StopConditions(max_new_tokens=9))
    assert result.token_ids[1:] == rest.token_ids
    assert e.generate(PROMPT, stop).token_ids == greedy  # the cache it left is sound


def test_torch_engine_honours_the_constraint(tiny_checkpoint: Callable[[str], Path]) -> None:
    from codehone_training.evaluation.torch_engine import TorchEngine

    e = TorchEngine(tiny_checkpoint("gpt2"), "cpu")
    stop = StopConditions(max_new_tokens=6)
    greedy = e.generate(PROMPT, stop).token_ids
    forced = np.array([(greedy[0] + 3) % 500])
    result = e.generate(PROMPT, stop, first_token_ids=forced).token_ids
    assert result[0] == forced[0]
    assert (
        result[1:] == e.generate([*PROMPT, result[0]], StopConditions(max_new_tokens=5)).token_ids
    )


def test_completer_heals_the_prompt_and_returns_only_what_follows_the_cursor(
    model: ModelDir, tokenizer: TextTokenizer, healer: TokenHealer
) -> None:
    text = "for item in "  # ends in a lone space token
    healed = healer.heal(tokenizer.encode(text))
    assert healed is not None
    trimmed, healing = healed
    assert healing.text == " "
    script = tokenizer.encode(" items:\n")
    engine_ = ScriptedEngine(model, CPU, script)
    outcome = Completer(engine_, tokenizer).complete(
        CursorContext(text, len(text)), CompletionOptions(fim=False, multiline="never")
    )
    assert engine_.prompts == [trimmed]
    assert outcome.text == "items:"
    # without healing the prompt is the tokenizer's split and the script follows it as it is
    engine_ = ScriptedEngine(model, CPU, tokenizer.encode("items:\n"))
    outcome = Completer(engine_, tokenizer).complete(
        CursorContext(text, len(text)),
        CompletionOptions(fim=False, multiline="never", token_healing=False),
    )
    assert engine_.prompts == [tokenizer.encode(text)]
    assert outcome.text == "items:"


def test_a_first_token_outside_the_constraint_is_never_taken(
    model: ModelDir, tokenizer: TextTokenizer
) -> None:
    text = "for item in "
    engine_ = ScriptedEngine(model, CPU, tokenizer.encode("items:\n"))  # no leading space
    outcome = Completer(engine_, tokenizer).complete(
        CursorContext(text, len(text)), CompletionOptions(fim=False, multiline="never")
    )
    # the model's favourite cannot follow "for item in" without the space that was typed
    assert not (outcome.text or "").startswith("items")


def test_fim_prompt_heals_the_prefix(tiny_model: Callable[[str], Path]) -> None:
    model = load_model_dir(tiny_model("gpt2"))
    fim = model.manifest.special_tokens.fim
    if fim is None:
        pytest.skip("the tiny model has no FIM tokens")
    tokenizer = TextTokenizer(model.tokenizer_path)
    healer = TokenHealer.for_tokenizer(tokenizer)
    text = "for item in \n    pass\n"
    ctx = CursorContext(text, len("for item in "))
    healed = build_prompt(ctx, tokenizer, model.manifest, CompletionOptions(), healer)
    plain = build_prompt(ctx, tokenizer, model.manifest, CompletionOptions(token_healing=False))
    assert healed.fim and plain.fim
    assert healed.healing is not None and healed.healing.text == " "
    assert len(healed.token_ids) == len(plain.token_ids) - 1
    assert plain.healing is None


def test_extensions_are_found_by_binary_search_at_the_byte_edges() -> None:
    healer = TokenHealer(
        {
            1: b"a",
            2: b"ab",
            3: b"abc",
            4: b"b",
            5: b"a\xff",
            6: b"a\xff\x01",
            7: b"\xff",
            8: b"\xff\xff",
        }
    )

    def found(prefix: bytes) -> set[int]:
        return set(healer.extensions(prefix).tolist())

    assert found(b"a") == {1, 2, 3, 5, 6}
    assert found(b"ab") == {2, 3}
    assert found(b"a\xff") == {5, 6}
    assert found(b"\xff") == {7, 8}
    assert found(b"c") == set()


def test_a_word_cut_in_two_comes_back_as_one_token() -> None:
    healer = TokenHealer({1: b" Tri", 2: b"a", 3: b" Trial", 4: b"x", 5: b"ab", 6: b" Trials"})
    healed = healer.heal([4, 1, 2])
    assert healed is not None
    trimmed, healing = healed
    assert trimmed == [4]
    assert healing.text == " Tria"
    assert set(healing.token_ids.tolist()) == {3, 6}
    # one token back only: the last token and its extensions
    trimmed, healing = healer.heal([4, 1, 2], max_tokens=1)  # type: ignore[misc]
    assert trimmed == [4, 1] and set(healing.token_ids.tolist()) == {2, 5}
    # no single token spells "x Tria": two tokens back, not three
    assert healer.heal([4, 4, 1, 2], max_tokens=3)[0] == [4, 4]  # type: ignore[index]
    # a line break is never taken back
    newline = TokenHealer({1: b"\n", 2: b"a", 3: b"ab", 4: b"\na"})
    assert newline.heal([2, 1, 2], max_tokens=3)[0] == [2, 1]  # type: ignore[index]
