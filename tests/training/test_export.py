"""Export: each family exports, verifies against PyTorch, and refuses what it cannot trust."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from codehone.core.errors import ExportError
from codehone.core.model_dir import load_model_dir
from codehone_training.export.checkpoint import TOLERANCE, export_checkpoint


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
