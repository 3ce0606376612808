"""`codehone bench engine` on a tiny shape: every CPU contender runs on the same prompts, prints
its figures and ratios, and codehone's greedy tokens are checked against PyTorch's (and agree).
Timings are printed, never asserted."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from codehone.cli import main
from codehone.tools import bench_engine
from codehone.tools.bench_engine import BenchConfig, run_bench
from codehone_training.random_models import TINY

CPU_CONTENDERS = ["hf-eager", "optimum", "codehone-export", "codehone", "codehone+spec"]


@pytest.fixture
def tiny_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        bench_engine,
        "_shapes",
        lambda device: {"tiny-gpt2": TINY["gpt2"], "tiny-qwen2": TINY["qwen2"]},
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
        by_name = {r.contender: r for r in rows if r.shape == shape}
        assert set(by_name) == {*CPU_CONTENDERS, "codehone typing"}, printed
        for name in CPU_CONTENDERS:
            row = by_name[name]
            assert not row.error, (name, row.error)
            # measured (the values are timings: never asserted; one repeat on a busy machine
            # can even make the per-token difference negative)
            assert row.ttft_ms is not None and row.ms_per_token is not None
            assert len(row.tokens) == 8
            if name != "hf-eager":
                assert row.mismatches == 0, (shape, name, row.tokens, by_name["hf-eager"].tokens)
        assert by_name["codehone typing"].ttft_ms
    assert "t/X" in printed and "tiny-qwen2" in printed
    assert "goals are stated for the H100" in printed
    saved = json.loads((tmp_path / "rows.json").read_text())
    assert len(saved) == len(rows)


def test_unknown_shape_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "bench",
            "engine",
            "--device",
            "cpu",
            "--shapes",
            "no-such-shape",
            "--cache-dir",
            str(tmp_path),
        ]
    )
    assert code != 0
    assert "no-such-shape" in capsys.readouterr().err
