"""How a completion meets the closing brackets and quotes after the cursor (core.completion.closers):
bracket-aware, so an auto-closed ``)`` is neither doubled nor taken from a completion that
needs it."""

from __future__ import annotations

import pytest

from codehone.core.completion.closers import leading_closers, merge_closers, retyped_closers
from codehone.core.completion.cursor import CursorContext
from codehone.core.completion.postprocess import Completion, postprocess
from codehone.core.completion.prompt import Prompt

SINGLE = Prompt([0], "single_line", "")


def line_after(before: str, text: str, replaced: int) -> str:
    """The line once the completion is applied: ``before`` holds ``|`` for the cursor."""
    head, tail = before.split("|")
    return head + text + tail[replaced:]


@pytest.mark.parametrize(
    ("before", "text", "expected", "line"),
    [
        # re-types the auto-closed bracket and goes on: the range covers the `)`
        ("for name in os.listdir(|)", "path):", ("path):", 1), "for name in os.listdir(path):"),
        (
            "if os.path.exists(|)",
            "path) and ok",
            ("path) and ok", 1),
            "if os.path.exists(path) and ok",
        ),
        # closes a bracket the completion opened itself: nothing re-typed, nothing cut
        (
            "os.path.join(|)",
            "path.join(path)",
            ("path.join(path)", 0),
            "os.path.join(path.join(path))",
        ),
        ("f(|)", "g()", ("g()", 0), "f(g())"),
        ("x = [|]", "[1, 2]", ("[1, 2]", 0), "x = [[1, 2]]"),
        ("x = [|]", "0", ("0", 0), "x = [0]"),
        # re-types the closers at its end only: they are dropped, the line keeps its own
        ("print(|)", "x)", ("x", 0), "print(x)"),
        ("f(|)", "g())", ("g()", 0), "f(g())"),
        ("f([|])", "a, b])", ("a, b", 0), "f([a, b])"),
        ("foo(bar(|))", "a)", ("a", 0), "foo(bar(a))"),
        ("foo(bar(|))", "f(a), b)", ("f(a), b", 0), "foo(bar(f(a), b))"),
        ("print(|) ", "x) ", ("x", 0), "print(x) "),
        # closes earlier than the line ends, then goes on
        ("foo(bar(|))", "a), b", ("a), b", 1), "foo(bar(a), b)"),
        ("foo(bar(|))", "a), b)", ("a), b)", 2), "foo(bar(a), b)"),
        ("if f(|):", "a) and b", ("a) and b", 1), "if f(a) and b:"),
        # the whole rest of the line re-typed at the end
        ("foo(|) + 1", "a) + 1", ("a", 0), "foo(a) + 1"),
        ("if f(|):", "a):", ("a", 0), "if f(a):"),
        ("f(|, b)", "a, b)", ("a", 0), "f(a, b)"),
        # quotes: inside a string only its quote counts
        ('print("|")', 'hello")', ("hello", 0), 'print("hello")'),
        ('print("|")', 'a (b")', ("a (b", 0), 'print("a (b")'),
        ('x = "|"', 'hello" + name', ('hello" + name', 1), 'x = "hello" + name'),
        ('x = "|"', 'it\\"s"', ('it\\"s', 0), 'x = "it\\"s"'),
        ("x = '|'", "it's", ("it's", 1), "x = 'it's"),  # the apostrophe ends it, as Python reads it
        ('f"{|}"', "name}", ("name", 0), 'f"{name}"'),
        (
            'print(f"{|}")',
            'name} and {other}")',
            ('name} and {other}")', 3),
            'print(f"{name} and {other}")',
        ),
        ("x = `|`", "a`", ("a", 0), "x = `a`"),
        ('s = "|"', 'abc\ndef"', ('abc\ndef"', 0), 's = "abc\ndef""'),
        # a quote the completion opens itself is its own
        ("print(|)", "'a)'", ("'a)'", 0), "print('a)')"),
        ("print(|)", "'a', b)", ("'a', b", 0), "print('a', b)"),
        # what it closes does not match what follows: left as it is
        ("f(|)", "x]", ("x]", 0), "f(x])"),
        ("f(|)", "x] + y", ("x] + y", 0), "f(x] + y)"),
        # nothing after the cursor, or only blanks
        ("print(|", "x)", ("x)", 0), "print(x)"),
        ("x = |   ", "1", ("1", 0), "x = 1   "),
        # only re-typed what is there
        ("print(|)", ")", ("", 0), "print()"),
        ("d = {|}", "}", ("", 0), "d = {}"),
        # a suffix that is not closers and not re-typed
        ("f(|x)", "y)", ("y)", 0), "f(y)x)"),
    ],
)
def test_merge_closers(before: str, text: str, expected: tuple[str, int], line: str) -> None:
    suffix = before.split("|")[1]
    merged = merge_closers(text, suffix)
    assert merged == expected
    assert line_after(before, *merged) == line


def test_multi_line_completion_before_a_closer_keeps_its_lines() -> None:
    text, replaced = merge_closers("\n    a,\n    b\n)", ")")
    assert (text, replaced) == ("\n    a,\n    b", 0)


@pytest.mark.parametrize(
    ("suffix", "closers"),
    [(")", ")"), ('")', '")'), ("]) + 1", "])"), (" )", ""), ("x)", ""), ("", ""), ("}'`", "}'`")],
)
def test_leading_closers(suffix: str, closers: str) -> None:
    assert leading_closers(suffix) == closers


def test_retyped_closers_reports_where_and_whether_the_text_closed_its_own() -> None:
    assert retyped_closers("path):", ")") == ([4], True)
    assert retyped_closers("path.join(path", ")") == ([], False)
    assert retyped_closers("a), b)", "))") == ([1, 5], True)
    assert retyped_closers("x]", ")") == ([], False)
    assert retyped_closers("'open", "") == ([], False)


@pytest.mark.parametrize(
    ("raw", "before", "expected"),
    [
        ("path):  ", "for name in os.listdir(|)", Completion("path):", 1)),
        ("path.join(path)", "os.path.join(|)", Completion("path.join(path)")),
        ("x)", "print(|)", Completion("x")),
        ("x)\nprint(y)", "print(|)", Completion("x")),
    ],
)
def test_postprocess_merges_the_closers(raw: str, before: str, expected: Completion) -> None:
    head, tail = before.split("|")
    ctx = CursorContext(head + tail, len(head))
    assert postprocess(raw, ctx, SINGLE) == expected
