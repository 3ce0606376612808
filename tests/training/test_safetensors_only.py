"""Weights are loaded from safetensors only: an index that maps them to a pickle, or a pickle
of weights in the folder, is refused with one line everywhere a checkpoint is loaded, before
transformers (which would hand the pickle to torch.load) sees it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from codehone.core.errors import CodehoneError, ExportError, TrainingError
from codehone_training.base_model import check_safetensors_only, resolve_model


@pytest.fixture
def pickled(tiny_checkpoint: Callable[[str], Path], tmp_path: Path) -> Path:
    """The tiny checkpoint whose index sends every weight to pytorch_model.bin (a pickle);
    a .safetensors file stays, so a "has safetensors" glob alone passes it."""
    import torch
    from safetensors.torch import load_file

    folder = Path(shutil.copytree(tiny_checkpoint("gpt2"), tmp_path / "pickled"))
    weights = load_file(folder / "model.safetensors")
    torch.save(weights, folder / "pytorch_model.bin")
    (folder / "model.safetensors").rename(folder / "unused.safetensors")
    index = {"metadata": {}, "weight_map": dict.fromkeys(weights, "pytorch_model.bin")}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder


def test_every_loader_refuses_an_index_to_a_pickle(pickled: Path, tmp_path: Path) -> None:
    from codehone_training.evaluation.torch_engine import TorchEngine
    from codehone_training.export.checkpoint import export_checkpoint, load_causal_lm
    from codehone_training.finetune import FinetuneConfig
    from codehone_training.finetune.model import load_trainable_model

    shown = "names the weight file 'pytorch_model.bin', which is not safetensors"
    with pytest.raises(ExportError, match=shown):
        export_checkpoint(pickled, tmp_path / "out")
    with pytest.raises(ExportError, match=shown):
        load_causal_lm(pickled, "fp32", "cpu")
    with pytest.raises(CodehoneError, match=shown):
        resolve_model(pickled, need_checkpoint=True)  # finetune, tune and eval start here
    with pytest.raises(CodehoneError, match=shown):
        TorchEngine(pickled)
    config = FinetuneConfig(base=pickled, data_dir=tmp_path / "d", out_dir=tmp_path / "run")
    with pytest.raises(TrainingError, match=shown):
        load_trainable_model(pickled, config)
    assert not (tmp_path / "out").exists()


def test_the_command_line_says_it_in_one_line(pickled: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "codehone", "export", str(pickled), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if "error" in x]
    assert "not safetensors" in line


def test_pickles_beside_the_weights_and_bad_shards(
    tiny_checkpoint: Callable[[str], Path], tmp_path: Path
) -> None:
    folder = Path(shutil.copytree(tiny_checkpoint("gpt2"), tmp_path / "ckpt"))
    check_safetensors_only(folder)
    for name in ("training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth"):
        (folder / name).write_bytes(b"trainer state")  # never read by from_pretrained
    check_safetensors_only(folder)
    for name in ("pytorch_model.bin", "model.ckpt", "weights.PTH", "extra.pkl"):
        (folder / name).write_bytes(b"pickle")
        with pytest.raises(CodehoneError, match=f"{name}: a pickle"):
            check_safetensors_only(folder)
        (folder / name).unlink()
    index = folder / "model.safetensors.index.json"
    for shard, shown in (
        ("../elsewhere.safetensors", "outside the checkpoint"),
        ("missing.safetensors", "which is missing"),
    ):
        index.write_text(json.dumps({"weight_map": {"w": shard}}))
        with pytest.raises(CodehoneError, match=shown):
            check_safetensors_only(folder)
    index.write_text("{")
    with pytest.raises(CodehoneError, match="not a readable weight index"):
        check_safetensors_only(folder)
