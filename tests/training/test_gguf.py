"""GGUF import: a tiny llama written as GGUF here (the `gguf` package's writer, llama.cpp's
tensor names and layout) comes back as a verified model directory that decodes like the
original checkpoint; every kind of bad file gets one line."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from gguf_files import write_llama_gguf

from codehone.core.engine.protocol import StopConditions
from codehone.core.engine.session import Engine
from codehone.core.errors import ExportError
from codehone.core.model_dir import load_model_dir
from codehone.core.providers import choose_provider
from codehone_training.export.gguf import (
    completion_tokens,
    find_gguf,
    is_gguf,
    read_gguf_info,
)

PROMPT = [12, 40, 7, 99, 150, 3, 200, 41, 42, 43, 44, 300, 17]


@pytest.fixture(scope="module")
def tiny_gguf(
    tiny_checkpoint: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    folder = tmp_path_factory.mktemp("gguf")
    return write_llama_gguf(tiny_checkpoint("llama"), folder / "tiny-llama.F32.gguf")


@pytest.fixture(scope="module")
def imported(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`codehone export FOLDER --out DIR`, FOLDER holding the one GGUF."""
    from codehone.cli import main

    out = tmp_path_factory.mktemp("imported") / "model"
    assert main(["export", str(tiny_gguf.parent), "--out", str(out)]) == 0
    return out


def torch_greedy(checkpoint: Path, n: int) -> list[int]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint, use_safetensors=True)
    ids = torch.tensor([PROMPT])
    with torch.no_grad():
        for _ in range(n):
            next_id = model(input_ids=ids).logits[0, -1].argmax()
            ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
    return ids[0, len(PROMPT) :].tolist()


def test_the_imported_model_decodes_like_the_original_checkpoint(
    imported: Path, tiny_checkpoint: Callable[[str], Path]
) -> None:
    model_dir = load_model_dir(imported)
    manifest = model_dir.manifest
    assert manifest.architecture == "llama"
    assert manifest.provenance.verification["max_abs_diff_prompt"] < 1e-3
    assert "GGUF tiny-llama.F32.gguf (sha256 " in manifest.provenance.training_data
    kept = imported / "checkpoint"
    assert manifest.provenance.base_checkpoint == "checkpoint"  # relative: the dir can move
    assert (kept / "model.safetensors").is_file() and (kept / "tokenizer.json").is_file()
    source = json.loads((kept / "codehone_source.json").read_text())
    assert len(source["sha256"]) == 64
    engine = Engine(model_dir, choose_provider("cpu"))
    onnx_tokens = engine.generate(PROMPT, StopConditions(max_new_tokens=12)).token_ids
    # the dequantized weights are the original ones: llama.cpp's q/k order was undone
    assert onnx_tokens == torch_greedy(tiny_checkpoint("llama"), 12)
    assert onnx_tokens == torch_greedy(kept, 12)


def test_completion_tokens_no_bos_and_end_of_text_stops(imported: Path) -> None:
    special = load_model_dir(imported).manifest.special_tokens
    assert not special.add_bos  # the GGUF says add_bos_token false
    vocab = json.loads((imported / "tokenizer.json").read_text())["model"]["vocab"]
    assert special.eos_token_ids[0] == vocab.get("<|endoftext|>", special.eos_token_ids[0])
    assert completion_tokens({"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2}, 1) == [
        0,
        2,
        1,
    ]
    assert completion_tokens({"<|im_end|>": 2, "<|endoftext|>": 0}, 2) == [0, 2]
    assert completion_tokens({"a": 0}, None) == []


def test_a_tune_base_resolves_to_the_kept_checkpoint(imported: Path) -> None:
    from codehone_training.base_model import resolve_model

    ref = resolve_model(imported, need_checkpoint=True)
    assert ref.checkpoint == imported / "checkpoint"


def test_bad_files_get_one_line(tiny_gguf: Path, tmp_path: Path) -> None:
    assert is_gguf(tiny_gguf) and is_gguf(tiny_gguf.parent)
    text = tmp_path / "model.gguf"
    text.write_text("hello, not a model\n")
    assert not is_gguf(text)
    with pytest.raises(ExportError, match="not a GGUF file"):
        read_gguf_info(text)
    data = tiny_gguf.read_bytes()
    for cut in (200, len(data) // 2, len(data) - 10):
        truncated = tmp_path / f"cut{cut}.gguf"
        truncated.write_bytes(data[:cut])
        with pytest.raises(ExportError, match="not a complete GGUF file"):
            read_gguf_info(truncated)


def test_an_architecture_we_do_not_export_is_refused(
    tiny_checkpoint: Callable[[str], Path], tmp_path: Path
) -> None:
    path = write_llama_gguf(tiny_checkpoint("llama"), tmp_path / "x.gguf", architecture="mamba")
    with pytest.raises(ExportError, match="architecture 'mamba' is not one codehone exports"):
        read_gguf_info(path)


def test_folders_must_hold_exactly_one_gguf_inside_them(tiny_gguf: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ExportError, match=r"no \.gguf file"):
        find_gguf(empty)
    two = tmp_path / "two"
    two.mkdir()
    (two / "a.gguf").write_bytes(b"GGUF")
    (two / "b.gguf").write_bytes(b"GGUF")
    with pytest.raises(ExportError, match=r"2 \.gguf files"):
        find_gguf(two)
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "model.gguf").symlink_to(tiny_gguf)  # leads out of the folder the user named
    with pytest.raises(ExportError, match="resolves outside"):
        find_gguf(linked)
    with pytest.raises(ExportError, match="does not exist"):
        find_gguf(tmp_path / "missing.gguf")


def test_only_the_gguf_takes_part_in_its_import(
    tiny_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder holding the GGUF and a config, an index and a pickle of weights: the import
    reads the GGUF alone (transformers gets a folder of its own), and no pickle is loaded."""
    import torch

    from codehone.cli import main

    folder = tmp_path / "download"
    folder.mkdir()
    shutil.copy(tiny_gguf, folder / tiny_gguf.name)
    (folder / "config.json").write_text('{"model_type": "gpt2"}')
    (folder / "pytorch_model.bin").write_bytes(b"not even a pickle")
    (folder / "model.safetensors.index.json").write_text(
        '{"weight_map": {"lm_head.weight": "pytorch_model.bin"}}'
    )

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", refuse)
    out = tmp_path / "model"
    assert main(["export", str(folder / tiny_gguf.name), "--out", str(out)]) == 0
    assert load_model_dir(out).manifest.architecture == "llama"
