"""The typed-ahead answer (codehone.core.completion.typed_ahead): typing the start of the
completion just offered gives the rest of it; anything else that changed gives nothing."""

from __future__ import annotations

from codehone.core.completion.completer import CompletionOutcome
from codehone.core.completion.cursor import CursorContext, Neighbor
from codehone.core.completion.options import CompletionOptions
from codehone.core.completion.postprocess import Completion
from codehone.core.completion.typed_ahead import REASON, TypedAhead

KEY = "inlineCompletion file:///a.py"
BEFORE = "import os\n\nif os.path."
AFTER = ")\nprint(1)\n"
OPTIONS = CompletionOptions()


def offered(text: str = "exists(path", replaced: int = 1) -> TypedAhead:
    memory = TypedAhead()
    outcome = CompletionOutcome([Completion(text, replaced)], "stop_rule")
    memory.remember(KEY, CursorContext(BEFORE + AFTER, len(BEFORE)), OPTIONS, outcome)
    return memory


def typing(typed: str, after: str = AFTER, **ctx: object) -> CursorContext:
    return CursorContext(BEFORE + typed + after, len(BEFORE + typed), **ctx)  # type: ignore[arg-type]


def test_typing_the_start_answers_with_the_rest() -> None:
    memory = offered()
    answer = memory.answer(KEY, typing("ex"), OPTIONS)
    assert answer is not None and answer.reason == REASON
    assert answer.completions == [Completion("ists(path", 1)]  # the closer it replaces kept
    assert answer.prompt_tokens == 0 and memory.hits == 1


def test_typing_on_keeps_answering_from_what_is_left() -> None:
    memory = offered()
    for typed, rest in (("e", "xists(path"), ("ex", "ists(path"), ("exists(", "path")):
        answer = memory.answer(KEY, typing(typed), OPTIONS)
        assert answer is not None and answer.text == rest
    assert memory.hits == 3


def test_what_the_offer_cannot_answer() -> None:
    memory = offered()
    assert memory.answer("completion file:///a.py", typing("e"), OPTIONS) is None  # other key
    assert memory.answer(KEY, typing("x"), OPTIONS) is None  # not the completion's start
    assert memory.answer(KEY, typing("exists(path"), OPTIONS) is None  # nothing left
    assert memory.answer(KEY, typing(""), OPTIONS) is None  # nothing typed
    assert memory.answer(KEY, typing("e", after=")\nprint(2)\n"), OPTIONS) is None
    other = CompletionOptions(max_new_tokens=8)
    assert memory.answer(KEY, typing("e"), other) is None
    near = (Neighbor("# path: b.py\n", "x = 1\n"),)
    assert memory.answer(KEY, typing("e", neighbors=near), OPTIONS) is None
    moved = CursorContext("#" + BEFORE + "e" + AFTER, len(BEFORE) + 2)  # an edit before it
    assert memory.answer(KEY, moved, OPTIONS) is None
    assert memory.hits == 0


def test_a_line_break_typed_is_never_answered() -> None:
    memory = offered("x = 1\ny = 2", replaced=0)
    assert memory.answer(KEY, typing("x = 1\n"), OPTIONS) is None


def test_an_empty_outcome_forgets_the_offer() -> None:
    memory = offered()
    ctx = typing("z")
    memory.remember(KEY, ctx, OPTIONS, CompletionOutcome([], "empty (stop_rule)"))
    assert memory.answer(KEY, typing("e"), OPTIONS) is None
    memory = offered()
    memory.forget(KEY)
    assert memory.answer(KEY, typing("e"), OPTIONS) is None
