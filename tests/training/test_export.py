"""Export: each family exports, verifies against PyTorch, and refuses what it cannot trust."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from codehone.core.errors import ExportError
from codehone.core.model_dir import load_model_dir
from codehone_training.export.checkpoint import export_checkpoint
from codehone_training.export.verify import TOLERANCE


@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2", "gpt_bigcode", "codegen"])
def test_export_verifies_and_describes_itself(family: str, tiny_model: Callable[[str], Path]):
    model = load_model_dir(tiny_model(family))
    manifest = model.manifest
    assert manifest.architecture == family
    verification = manifest.provenance.verification
    allowed = TOLERANCE["fp32"] * verification["logit_scale"]
    assert verification["max_abs_diff_prompt"] <= allowed
    assert verification["max_abs_diff_steps"] <= allowed
    assert manifest.kv.dtype == "float32"
    assert manifest.special_tokens.fim is not None  # codehone's tokenizer carries FIM tokens
    assert manifest.special_tokens.fim.convention == "starcoder"
    if family in ("llama", "qwen2"):
        assert manifest.io.position_ids == "position_ids"
        assert manifest.kv.num_kv_heads == 2  # grouped-query attention
    assert (model.root / "tokenizer.json").is_file()


def test_refuses_pickle_only_checkpoints(tiny_checkpoint: Callable[[str], Path], tmp_path: Path):
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint("gpt2"), checkpoint)
    for weights in checkpoint.glob("*.safetensors"):
        weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(ExportError, match="safetensors only"):
        export_checkpoint(checkpoint, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_refuses_unsupported_architecture(tiny_checkpoint: Callable[[str], Path], tmp_path: Path):
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint("gpt2"), checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    config["model_type"] = "bert"
    (checkpoint / "config.json").write_text(json.dumps(config))
    with pytest.raises(ExportError, match="not supported"):
        export_checkpoint(checkpoint, tmp_path / "out")


def test_refuses_bad_arguments_and_non_model_dirs(
    tiny_checkpoint: Callable[[str], Path], tmp_path: Path
):
    with pytest.raises(ExportError, match="needs --device cuda"):
        export_checkpoint(tiny_checkpoint("gpt2"), tmp_path / "out", dtype="fp16")
    with pytest.raises(ExportError, match="not a checkpoint directory"):
        export_checkpoint(tmp_path / "missing", tmp_path / "out")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="refusing to overwrite"):
        export_checkpoint(tiny_checkpoint("gpt2"), occupied)
    assert (occupied / "notes.txt").read_text() == "keep me"


def test_re_export_replaces_a_model_dir_atomically(
    tiny_checkpoint: Callable[[str], Path], tmp_path: Path
):
    out = tmp_path / "model"
    first = export_checkpoint(tiny_checkpoint("llama"), out, verify=False)
    second = export_checkpoint(tiny_checkpoint("llama"), out)
    assert first.root == second.root
    assert second.manifest.provenance.verification  # the second, verified export is in place
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging directories left


def test_the_verification_passes_equal_logits_and_fails_others(tiny_model: Callable[[str], Path]):
    """The one check every graph passes (export, fused graph): a model agrees with itself,
    and logits moved by more than the tolerance fail it, naming the reference."""
    import numpy as np

    from codehone_training.export.verify import EngineReference, verify_logits

    model = load_model_dir(tiny_model("llama"))
    prompt = [5, 17, 42, 7, 99, 3]
    same = verify_logits(model, EngineReference(model), prompt, "fp32", steps=3, greedy=True)
    assert same["max_abs_diff_prompt"] == 0.0 and same["greedy_agreement"] == 1.0

    class Shifted(EngineReference):
        """The same model, one logit of each position moved by ``shift``."""

        def __init__(self, shift: float) -> None:
            super().__init__(model)
            self.shift = shift

        def prompt(self, ids):  # type: ignore[no-untyped-def]
            logits = super().prompt(ids).copy()
            logits[..., 0] += self.shift
            return logits

        def step(self, token: int) -> np.ndarray:
            logits = super().step(token).copy()
            logits[0] += self.shift
            return logits

    scale = same["logit_scale"]
    within = verify_logits(model, Shifted(0.5e-3 * scale), prompt, "fp32", steps=3)
    assert 0 < within["max_abs_diff_steps"] <= TOLERANCE["fp32"] * scale
    with pytest.raises(ExportError, match=r"differ from the exported graph \(llama\) by"):
        verify_logits(model, Shifted(2e-3 * scale), prompt, "fp32", steps=3)
    assert verify_logits(model, Shifted(2e-3 * scale), prompt, "fp16", steps=3)  # looser


def test_finish_keeps_the_exported_graph_only_when_asked(
    tiny_checkpoint: Callable[[str], Path], tmp_path: Path
):
    """`codehone tune` keeps a model the fused graph cannot express as exported; `codehone
    pretrain --fuse` fails instead, and leaves nothing behind either way."""
    from codehone_training.export.finish import FinishSteps, finish_model
    from codehone_training.export.optimize import OptimizeError

    checkpoint = tiny_checkpoint("codegen")
    with pytest.raises(OptimizeError, match="supports"):
        finish_model(checkpoint, tmp_path / "strict", FinishSteps(fuse=True, verify=False))
    assert list(tmp_path.iterdir()) == []
    steps = FinishSteps(fuse=True, keep_unfused=True, fim_in_prompts=False, verify=False)
    kept = finish_model(checkpoint, tmp_path / "kept", steps, trained_steps=3)
    assert not kept.manifest.kv.shared_buffer and kept.manifest.provenance.optimizations == []
    assert kept.manifest.special_tokens.fim is not None
    assert kept.manifest.special_tokens.fim.in_prompts is False
    assert kept.manifest.provenance.steps == 3
    assert [p.name for p in tmp_path.iterdir()] == ["kept"]
    with pytest.raises(ExportError, match="quantize_bits"):
        FinishSteps(quantize_bits=3)


def test_codehone_optimize_runs_each_step(
    fused_model: Callable[[str], Path],
    tiny_model: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
):
    from codehone.cli import main

    out = tmp_path / "int8"
    assert (
        main(["optimize", "quantize", str(fused_model("gpt2")), "--out", str(out), "--bits", "8"])
        == 0
    )
    assert (
        f"wrote {out.resolve()} (fused-fp32, int8-block32, embedding-int8)"
        in capsys.readouterr().out
    )
    argv = ["optimize", "quantize", str(fused_model("gpt2")), "--out", str(tmp_path / "int8c")]
    assert main([*argv, "--bits", "8", "--scheme", "channel"]) == 0
    assert "(fused-fp32, int8-channel, embedding-int8)" in capsys.readouterr().out
    assert main([*argv, "--bits", "4", "--scheme", "channel"]) != 0
    assert "int8 only" in capsys.readouterr().err
    out = tmp_path / "last"
    assert (
        main(["optimize", "last-logits", str(tiny_model("codegen")), "--out", str(out), "-v"]) == 0
    )
    assert "(last-logits)" in capsys.readouterr().out
    assert main(["optimize", "-v", "fuse", str(tiny_model("codegen")), "--out", str(out)]) == 2
    assert "supports gpt2, llama, qwen2" in capsys.readouterr().err
    assert load_model_dir(out).manifest.io.next_tokens == "next_tokens"  # left as it was
    figures = tmp_path / "figures.json"
    argv = ["optimize", "measure", str(fused_model("gpt2")), str(tmp_path / "int8")]
    argv += ["--windows", "2", "--window-length", "32", "--new-tokens", "4", "--json", str(figures)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "ms/token" in table and "int8" in table
    rows = json.loads(figures.read_text())
    assert [r["name"] for r in rows] == ["gpt2", "int8"] and rows[0]["greedy_agreement"] == 1.0
