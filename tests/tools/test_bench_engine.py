"""`codehone bench engine`: the benchmark's own logic (interleaved turns, medians, greedy
checks, ratios at the matched width, goals, the GGUF file type) on stand-in workers and made-up
rows; end to end on tiny shapes (every CPU contender, in worker processes, agreeing with
PyTorch); and the llama.cpp contender on a tiny GGUF of a tiny model's weights, only where
llama-cpp-python is installed. Timings are printed, never asserted."""

from __future__ import annotations

import base64
import io
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from gguf_files import write_llama_gguf

from codehone.cli import main
from codehone.tools.bench_engine import BenchConfig, bench, llama_cpp, report, run_bench, runner
from codehone.tools.bench_engine.config import (
    ContenderSpec,
    Row,
    codehone_width,
    width_class,
)
from codehone.tools.bench_engine.models import cut_prompts
from codehone_training.random_models import TINY

CPU_CONTENDERS = ["hf-eager", "optimum", "codehone-export", "codehone", "codehone+spec"]

# ---------------------------------------------------------------------------------------------
# The run's logic, on stand-in workers
# ---------------------------------------------------------------------------------------------


def test_turn_order_rotates_so_each_contender_takes_every_place() -> None:
    items = ["a", "b", "c"]
    orders = [runner.interleaved(items, r) for r in range(3)]
    assert orders == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    for place in range(3):
        assert {order[place] for order in orders} == set(items)
    assert runner.interleaved([], 4) == []


def test_typed_tokens_cycle_through_one_to_eight() -> None:
    assert sorted(runner.typed_tokens(r) for r in range(8)) == list(range(1, 9))


def test_greedy_tokens_are_compared_over_the_first_32() -> None:
    reference = list(range(40))
    assert runner.compare_tokens(list(range(48)), reference) == (0, None)
    changed = [*range(5), 99, *range(6, 40), 77]
    assert runner.compare_tokens(changed, reference) == (1, 5)
    assert runner.compare_tokens([0, 1, 9], reference) == (1, 2)  # only the tokens both have


class FakeWorker:
    """Stands in for a worker process: canned figures, a log of the requests it was sent."""

    log: ClassVar[list[tuple[str, str, int]]] = []
    figures: ClassVar[dict[str, list[float]]] = {}

    def __init__(self, spec: ContenderSpec) -> None:
        self.spec = spec
        self.error = ""
        self.describe = ""
        self.cold_calls = 0

    def load(self) -> None:
        pass

    def receive(self, timeout: float = 0) -> dict[str, Any]:
        return {"describe": f"fake {self.spec.name}"}

    def request(self, request: dict[str, Any], timeout: float = 0) -> dict[str, Any]:
        op = request["op"]
        FakeWorker.log.append((self.spec.name, op, request.get("new_tokens", 0)))
        if op == "load":
            return {"describe": "fake"}
        if op == "cold":
            if self.spec.name == "broken" and self.cold_calls >= 2:
                raise runner.WorkerError("the worker exited with code -11")
            self.cold_calls += 1
            n = request["new_tokens"]
            tokens = (
                list(range(n)) if self.spec.kind != "llama.cpp" else [0, 1, 2, 99, *range(4, n)]
            )
            # the warm-up's figures (the first call) are large: they must not count
            value = (
                1000.0
                if self.cold_calls == 1
                else self.figures[self.spec.name][self.cold_calls - 2]
            )
            return {"ttft_ms": value, "ms_per_token": value / 10, "tokens": tokens}
        if op == "typing":
            extra = len(request["prompt"]) - 40
            return {"typing": {"ms": 5.0 + extra, "prefilled": extra}}
        if op == "logits":
            logits = np.zeros(16, dtype=np.float32)
            logits[3] = 1.0
            return {"logits": base64.b64encode(logits.tobytes()).decode()}
        raise AssertionError(op)

    def memory_mib(self) -> tuple[float, float]:
        return 100.0, 120.0

    def close(self) -> None:
        pass


def test_contenders_take_turns_and_rows_hold_medians(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "Worker", FakeWorker)
    monkeypatch.setattr(runner, "SETTLE_S", 0)
    FakeWorker.log = []
    FakeWorker.figures = {
        "codehone": [30, 10, 20],
        "llama.cpp Q4_0": [3, 1, 2],
        "broken": [5, 5, 5],
    }
    specs = [
        ContenderSpec("codehone", "codehone", "d", "int4"),
        ContenderSpec("llama.cpp Q4_0", "llama.cpp", "g", "Q4_0"),
        ContenderSpec("broken", "codehone", "d", "int4"),
    ]
    reference = ContenderSpec("pytorch", "hf-eager", "c", "fp32")
    prompts = cut_prompts(list(range(100)), [40], "made up")
    config = BenchConfig(new_tokens=12, repeats=3)
    out = io.StringIO()
    rows = runner.run_contenders("m", specs, reference, prompts, config, out, [])
    by_name = {r.contender: r for r in rows}

    cold = [(name, n) for name, op, n in FakeWorker.log if op == "cold"]
    assert cold[0] == ("pytorch", 32)  # the reference, first and alone
    warm_up, timed = cold[1:4], cold[4:]
    assert all(n == 8 for _, n in warm_up)  # a short warm-up per contender
    assert [name for name, _ in timed[:3]] == ["codehone", "llama.cpp Q4_0", "broken"]
    assert [name for name, _ in timed[3:5]] == ["llama.cpp Q4_0", "broken"]  # rotated
    assert all(n == 12 for _, n in timed)

    codehone = by_name["codehone"]
    assert codehone.runs == 3 and codehone.ttft_ms == 20 and codehone.ms_per_token == 2.0
    assert codehone.samples["ttft_ms"] == [30, 10, 20]  # the warm-up is not among them
    assert codehone.mismatches == 0 and codehone.rss_mib == 100.0
    assert by_name["llama.cpp Q4_0"].ttft_ms == 2 and by_name["llama.cpp Q4_0"].mismatches == 1
    assert by_name["llama.cpp Q4_0"].first_mismatch == 3
    assert "typing prefilled" in codehone.note and "top-1 same" in codehone.note
    assert codehone.typing_ms is not None
    # a worker that dies keeps the runs it had and says why it stopped
    broken = by_name["broken"]
    assert broken.runs == 1 and "code -11" in out.getvalue()


# ---------------------------------------------------------------------------------------------
# Widths, ratios at the matched width, goals
# ---------------------------------------------------------------------------------------------


def test_widths_pair_int8_with_q8_and_int4_with_q4_and_floats_together() -> None:
    assert width_class("int8") == width_class("Q8_0") == "8-bit"
    assert width_class("int4") == width_class("Q4_0") == width_class("Q4_1") == "4-bit"
    assert width_class("fp32") == width_class("F16") == width_class("F32") == "float"
    assert width_class("Q5_K_M") == "5-bit"
    assert codehone_width(["fused-fp32", "int4-block32"], "fp32") == "int4"
    assert codehone_width(["fused-fp32"], "fp32") == "fp32"
    assert codehone_width(["fused-fp32", "int8-block64-asym"], "fp32") == "int8"


def _row(name: str, kind: str, width: str, ttft: float, decode: float, **kw: Any) -> Row:
    return Row(
        "m",
        kw.pop("prompt", 512),
        name,
        kind=kind,
        width=width,
        condition=kw.pop("condition", "spin"),
        ttft_ms=ttft,
        ms_per_token=decode,
        **kw,
    )


def test_ratios_are_to_llamas_best_format_at_the_matched_width() -> None:
    rows = [
        _row(
            "codehone int4",
            "codehone",
            "int4",
            300,
            4.0,
            typing_ms=12,
            mismatches=2,
            first_mismatch=20,
        ),
        _row("codehone int8", "codehone", "int8", 350, 8.0, typing_ms=12),
        _row("codehone fp32", "codehone", "fp32", 600, 20.0, typing_ms=40, mismatches=0),
        _row("llama.cpp Q4_1", "llama.cpp", "Q4_1", 2000, 10.0, typing_ms=30),
        _row("llama.cpp Q4_0", "llama.cpp", "Q4_0", 1000, 8.0, typing_ms=50),
        _row("llama.cpp Q8_0", "llama.cpp", "Q8_0", 1400, 9.0),
        _row("llama.cpp F16", "llama.cpp", "F16", 1200, 16.0),
        # another condition and another length never pair with these
        _row("llama.cpp Q4_0", "llama.cpp", "Q4_0", 10, 0.1, condition="passive"),
        _row("llama.cpp Q4_0", "llama.cpp", "Q4_0", 10, 0.1, prompt=1500),
    ]
    int4, int8, fp32 = rows[0], rows[1], rows[2]
    decode, best = report.matched_ratio(int4, rows, "decode")
    assert best is not None and best.width == "Q4_0" and decode == pytest.approx(0.5)
    ttft, best = report.matched_ratio(int4, rows, "ttft")
    assert best is not None and best.width == "Q4_0" and ttft == pytest.approx(0.3)
    typing, best = report.matched_ratio(int4, rows, "typing")
    assert best is not None and best.width == "Q4_1" and typing == pytest.approx(0.4)
    assert report.matched_ratio(int8, rows, "decode")[1].width == "Q8_0"  # type: ignore[union-attr]
    assert report.matched_ratio(fp32, rows, "decode")[1].width == "F16"  # type: ignore[union-attr]

    table = "\n".join(report.format_table(rows))
    assert "TTFT/ll" in table and "t/HF" not in table
    goals = "\n".join(report.cpu_goal_lines(rows))
    assert "decode vs Q4_0 met (0.50x" in goals
    assert "int4 decode met (4.00 ms" in goals
    assert "TTFT vs Q4_0 met (0.30x" in goals
    assert "codehone fp32 [spin] 512" in goals and "typing NOT met (40.00 ms" in goals
    assert "2/32 greedy tokens differ from PyTorch's (first at 20)" in goals
    assert "0/32 greedy tokens differ from PyTorch's: met" in goals
    assert "decode vs Q8_0 met (0.89x" not in goals and "decode vs Q8_0 NOT met (0.89x" in goals


def test_random_shapes_are_compared_with_hf_and_optimum() -> None:
    rows = [
        _row("hf-eager", "hf-eager", "fp32", 100, 10.0),
        _row("optimum", "optimum", "fp32", 50, 5.0),
        _row("codehone", "codehone", "fp32", 25, 2.5),
    ]
    table = report.format_table(rows)
    assert "t/HF" in table[0] and "TTFT/ll" not in table[0]
    assert " 0.25  0.50    0.25     0.50" in table[-1]


def test_llama_context_fits_the_longest_prompt_and_the_new_tokens() -> None:
    config = BenchConfig(prompt_lengths=[512, 1500], new_tokens=48)
    assert bench.llama_context(config) == 1792


# ---------------------------------------------------------------------------------------------
# The GGUF file type, and what the command refuses
# ---------------------------------------------------------------------------------------------


def _gguf_header(path: Path, file_type: int) -> Path:
    """A GGUF header with a few kinds of metadata before ``general.file_type``."""

    def string(text: str) -> bytes:
        return struct.pack("<Q", len(text)) + text.encode()

    kv = [
        string("general.architecture") + struct.pack("<I", 8) + string("llama"),
        string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 2) + string("a") + string("bc"),
        string("llama.rope.freq_base") + struct.pack("<If", 6, 10000.0),
        string("tokenizer.ggml.scores") + struct.pack("<IIQ", 9, 6, 2) + struct.pack("<ff", 0, 1),
        string("general.file_type") + struct.pack("<II", 4, file_type),
    ]
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv)) + b"".join(kv))
    return path


def test_gguf_file_type_is_read_from_the_header(tmp_path: Path) -> None:
    assert llama_cpp.gguf_file_type(_gguf_header(tmp_path / "a.gguf", 2)) == "Q4_0"
    assert llama_cpp.gguf_file_type(_gguf_header(tmp_path / "b.gguf", 7)) == "Q8_0"
    assert llama_cpp.gguf_file_type(_gguf_header(tmp_path / "c.gguf", 1)) == "F16"
    (tmp_path / "not.gguf").write_bytes(b"PK\x03\x04 a zip")
    with pytest.raises(llama_cpp.GGUFError, match="not a GGUF file"):
        llama_cpp.gguf_file_type(tmp_path / "not.gguf")
    (tmp_path / "short.gguf").write_bytes(b"GGUF\x03\x00")
    with pytest.raises(llama_cpp.GGUFError, match="truncated"):
        llama_cpp.gguf_file_type(tmp_path / "short.gguf")


def test_llama_cpp_missing_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    fused_model: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(llama_cpp, "available", lambda: False)
    gguf = _gguf_header(tmp_path / "m.gguf", 2)
    code = main(
        [
            "bench",
            "engine",
            "--device",
            "cpu",
            "--model",
            str(fused_model("llama")),
            "--llama-cpp",
            str(gguf),
        ]
    )
    err = capsys.readouterr().err
    assert code != 0 and "pip install -e '.[bench]'" in err and "CMAKE_ARGS" in err


def test_bad_requests_are_one_line_errors(
    tmp_path: Path, fused_model: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "x.gguf").write_text("not a gguf")
    for args, expected in (
        (["--llama-cpp", str(tmp_path / "x.gguf")], "needs --model"),
        (["--shapes", "no-such-shape", "--cache-dir", str(tmp_path)], "no-such-shape"),
        (
            ["--model", str(fused_model("llama")), "--llama-cpp", str(tmp_path / "x.gguf")],
            "not a GGUF",
        ),
        (["--repeats", "0"], "at least 1"),
    ):
        if expected == "not a GGUF" and not llama_cpp.available():
            continue  # the missing library is said first
        code = main(["bench", "engine", "--device", "cpu", *args])
        err = capsys.readouterr().err
        assert code != 0 and expected in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err


# ---------------------------------------------------------------------------------------------
# End to end
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def tiny_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        bench, "shapes", lambda device: {"tiny-gpt2": TINY["gpt2"], "tiny-qwen2": TINY["qwen2"]}
    )


def test_every_cpu_contender_runs_and_agrees_with_pytorch(
    tiny_shapes: None, tmp_path: Path
) -> None:
    out = io.StringIO()
    config = BenchConfig(
        device="cpu",
        shapes=["tiny-gpt2", "tiny-qwen2"],
        prompt_lengths=[40],
        new_tokens=8,
        repeats=1,
        cache_dir=tmp_path / "cache",
        json_path=tmp_path / "rows.json",
        threads=1,
    )
    rows = run_bench(config, out)
    printed = out.getvalue()
    for shape in ("tiny-gpt2", "tiny-qwen2"):
        by_name = {r.contender: r for r in rows if r.model == shape}
        assert set(by_name) == set(CPU_CONTENDERS), printed
        for name in CPU_CONTENDERS:
            row = by_name[name]
            assert not row.error, (name, row.error)
            # measured (timings: never asserted)
            assert row.ttft_ms is not None and row.ms_per_token is not None
            assert len(row.tokens) == 8 and row.rss_mib
            assert row.mismatches == 0, (shape, name, row.tokens)
        assert by_name["codehone"].typing_ms is not None  # codehone keeps its cache
        assert by_name["hf-eager"].typing_ms is None  # transformers does not
        assert "drafts accepted" in by_name["codehone+spec"].note
    assert "t/HF" in printed and "tiny-qwen2" in printed
    assert "neither applies to this run" in printed
    saved = json.loads((tmp_path / "rows.json").read_text())
    assert len(saved["rows"]) == len(rows) and saved["conditions"] == ["spin"]


needs_llama_cpp = pytest.mark.skipif(
    not llama_cpp.available(),
    reason="llama-cpp-python is not installed (the benchmark extra: pip install -e '.[bench]')",
)


@needs_llama_cpp
def test_llama_cpp_contender_on_a_gguf_of_the_same_weights(
    tiny_checkpoint: Callable[[str], Path], fused_model: Callable[[str], Path], tmp_path: Path
) -> None:
    gguf = write_llama_gguf(tiny_checkpoint("llama"), tmp_path / "tiny-llama.F32.gguf")
    out = io.StringIO()
    config = BenchConfig(
        device="cpu",
        models=[fused_model("llama")],
        llama_cpp=[gguf],
        prompt_lengths=[40],
        new_tokens=8,
        repeats=2,
        conditions=["spin", "passive"],
        threads=1,
    )
    rows = run_bench(config, out)
    printed = out.getvalue()
    by_key = {(r.contender, r.condition): r for r in rows}
    assert set(by_key) == {
        (name, condition)
        for name in ("codehone llama", "llama.cpp F32")
        for condition in ("spin", "passive")
    }, printed
    for row in rows:
        assert not row.error, (row.contender, row.error)
        assert row.runs == 2 and row.ttft_ms and row.ms_per_token and row.typing_ms
        assert row.mismatches == 0, (row.contender, row.tokens)  # the same weights in fp32
        assert "top-1 same" in row.note and row.rss_mib
    assert "llama-cpp-python 0.3" in printed
    assert "decode vs F32" in printed  # fp32 pairs with F32
