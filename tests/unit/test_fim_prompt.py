"""Fill-in-the-middle: the server's prompt is exactly the layout training uses (codehone.core.fim)."""

from __future__ import annotations

from dataclasses import replace

from codehone.core.completion.cursor import CursorContext
from codehone.core.completion.options import CompletionOptions
from codehone.core.completion.prompt import build_prompt, prompt_budget, suffix_token_ids
from codehone.core.fim import fim_prompt_ids, fim_text
from codehone.core.tokenizer import TextTokenizer

PREFIX = "def area(width, height):\n    return "
SUFFIX = "\n\n\nprint(area(2, 3))\n"


def test_fim_prompt_is_the_training_layout(model, tokenizer: TextTokenizer):
    fim = model.manifest.special_tokens.fim
    assert fim is not None
    ctx = CursorContext(PREFIX + SUFFIX, len(PREFIX))
    prompt = build_prompt(ctx, tokenizer, model.manifest, CompletionOptions())
    assert prompt.fim
    # The training sample's text, tokenized, starts with exactly the server's prompt.
    sample_ids = tokenizer.encode(fim_text(PREFIX, SUFFIX, "width * height", fim, "psm"))
    assert sample_ids[: len(prompt.token_ids)] == prompt.token_ids
    assert tokenizer.decode(sample_ids[len(prompt.token_ids) :]) == "width * height"
    assert prompt.token_ids == fim_prompt_ids(
        tokenizer.encode(PREFIX), tokenizer.encode(SUFFIX), fim
    )


def test_spm_layout_round_trips(model, tokenizer: TextTokenizer):
    fim = model.manifest.special_tokens.fim
    # In SPM the prefix runs straight into the middle, so BPE may merge across that join:
    # the prompt equals the sample up to the middle, which the model then continues.
    sample = tokenizer.encode(fim_text(PREFIX, SUFFIX, "", fim, "spm"))
    prompt = fim_prompt_ids(tokenizer.encode(PREFIX), tokenizer.encode(SUFFIX), fim, "spm")
    assert sample == prompt


def test_fim_budget_and_fallbacks(model, tokenizer: TextTokenizer):
    text = PREFIX * 50 + SUFFIX * 50
    ctx = CursorContext(text, len(PREFIX) * 50)
    options = CompletionOptions(max_prompt_tokens=64)
    prompt = build_prompt(ctx, tokenizer, model.manifest, options)
    assert prompt.fim and len(prompt.token_ids) <= prompt_budget(model.manifest, options)
    suffix_part = prompt.token_ids[
        prompt.token_ids.index(model.manifest.special_tokens.fim.suffix_id) + 1 : -1
    ]
    assert 0 < len(suffix_part) <= 64 // 4
    assert tokenizer.decode(suffix_part) == text[ctx.offset :][: len(tokenizer.decode(suffix_part))]

    at_end = build_prompt(CursorContext(PREFIX, len(PREFIX)), tokenizer, model.manifest, options)
    assert not at_end.fim  # nothing after the cursor: a plain prefix prompt
    off = build_prompt(ctx, tokenizer, model.manifest, replace(options, fim=False))
    assert not off.fim
    no_fim = replace(
        model.manifest, special_tokens=replace(model.manifest.special_tokens, fim=None)
    )
    assert not build_prompt(ctx, tokenizer, no_fim, options).fim
    # a manifest that says its FIM is not for prompts: prefix-only, exactly the plain prompt
    fim = model.manifest.special_tokens.fim
    not_in_prompts = replace(
        model.manifest,
        special_tokens=replace(model.manifest.special_tokens, fim=replace(fim, in_prompts=False)),
    )
    plain = build_prompt(ctx, tokenizer, not_in_prompts, options)
    assert not plain.fim
    assert plain.token_ids == off.token_ids


def test_suffix_window_never_tokenizes_a_huge_document(tokenizer: TextTokenizer):
    seen: list[int] = []
    encode = tokenizer.encode

    class Spy(TextTokenizer):
        def __init__(self) -> None:
            pass

        def encode(self, text: str) -> list[int]:
            seen.append(len(text))
            return encode(text)

    document = "x = 1\n" * 3_000_000
    ids = suffix_token_ids(document, 10, Spy(), 100)
    assert len(ids) == 100 and max(seen) < 10_000
