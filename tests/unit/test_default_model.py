"""The default model: the shipped ``models/default`` is found and served first; the
build-on-first-run path is the fallback when there is none (or it does not validate).

Fast: the shipped model is small (a few MB), and the fallback build is replaced by a copy of
the tiny fixture model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from codehone.core import default_model
from codehone.core.errors import TrainingError
from codehone.core.model_dir import MANIFEST_NAME, load_model_dir
from codehone_training import fallback_model
from codehone_training.data.corpus import HELDOUT_PACKAGES, TRAIN_PACKAGES

SHIPPED = default_model.shipped_model_dir()
MAX_SHIPPED_BYTES = 16 * 1024 * 1024


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _no_build(config: object) -> None:
    raise AssertionError("the default model must not be built when one is shipped")


# -- the shipped model ------------------------------------------------------------------------


def test_the_shipped_model_is_in_the_repository_and_small() -> None:
    assert SHIPPED == Path(__file__).resolve().parents[2] / "models" / "default"
    model_dir = load_model_dir(SHIPPED)
    manifest = model_dir.manifest
    assert manifest.architecture == "gpt2"
    assert manifest.special_tokens.fim is not None  # it can fill in the middle
    assert "fused-fp32" in manifest.provenance.optimizations  # the fast CPU decode graph
    assert _dir_bytes(SHIPPED) <= MAX_SHIPPED_BYTES
    card = (SHIPPED / "README.md").read_text(encoding="utf-8")
    for needed in ("codehone pretrain", "exact match", "bits per byte", "HumanEval", "p50"):
        assert needed in card
    for package in HELDOUT_PACKAGES:  # the card names the hold-out
        assert package in card
    # nothing but the final version lives there
    allowed = {"checkpoint", "README.md", MANIFEST_NAME}
    stray = [
        p.name
        for p in SHIPPED.iterdir()
        if p.name not in allowed
        and not p.name.startswith(("model.onnx", "tokenizer", "special_tokens", "config", "gen"))
    ]
    assert stray == []


def test_the_shipped_model_never_saw_the_held_out_packages() -> None:
    assert not set(HELDOUT_PACKAGES) & set(TRAIN_PACKAGES)
    training_data = load_model_dir(SHIPPED).manifest.provenance.training_data
    for package in HELDOUT_PACKAGES:
        assert f"never {', '.join(HELDOUT_PACKAGES)}" in training_data, package


def test_the_shipped_model_carries_a_checkpoint_to_fine_tune() -> None:
    from codehone_training.base_model import resolve_model

    ref = resolve_model(SHIPPED, need_checkpoint=True)
    assert ref.checkpoint == (SHIPPED / "checkpoint").resolve()
    config = json.loads((SHIPPED / "checkpoint" / "config.json").read_text(encoding="utf-8"))
    manifest = load_model_dir(SHIPPED).manifest
    assert config["n_layer"] == manifest.kv.num_layers
    assert config["vocab_size"] == manifest.vocab_size
    # the same tokenizer for serving and fine-tuning
    assert (SHIPPED / "checkpoint" / "tokenizer.json").read_bytes() == (
        SHIPPED / "tokenizer.json"
    ).read_bytes()


def test_the_server_pipeline_completes_with_the_shipped_model() -> None:
    from codehone.core.completion.cursor import CursorContext
    from codehone.core.completion.options import CompletionOptions
    from codehone.lsp.models.service import ModelService

    text = "import os\n\n\ndef read_file(path):\n    with open(path) as f:\n        return f.\n"
    service = ModelService.load(load_model_dir(SHIPPED), "cpu")
    try:
        outcome = service.complete_blocking(
            CursorContext(text, text.index("f.\n") + 2), CompletionOptions(max_new_tokens=8)
        )
    finally:
        service.close()
    assert outcome.text  # something, on the CPU, through the server's own path


# -- finding it -------------------------------------------------------------------------------


def test_find_and_ensure_use_the_shipped_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import codehone_training.pretrain as pretrain_module

    monkeypatch.setenv("CODEHONE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(pretrain_module, "pretrain", _no_build)
    assert default_model.find_default_model() == SHIPPED
    assert fallback_model.ensure_default_model() == SHIPPED
    assert not (tmp_path / "home").exists()  # no cache, no build


def test_a_shipped_model_wins_over_a_built_fallback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_dir: Path
) -> None:
    import codehone_training.pretrain as pretrain_module

    shipped = tmp_path / "repo" / "models" / "default"
    shutil.copytree(tiny_model_dir, shipped)
    shutil.copytree(tiny_model_dir, tmp_path / "home" / "default-model")
    monkeypatch.setattr(default_model, "shipped_model_dir", lambda: shipped)
    monkeypatch.setenv("CODEHONE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(pretrain_module, "pretrain", _no_build)
    assert default_model.find_default_model() == shipped
    assert fallback_model.ensure_default_model() == shipped


def test_without_a_shipped_model_the_first_run_builds_the_fallback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_dir: Path
) -> None:
    import codehone_training.pretrain as pretrain_module
    from codehone_training.pretrain import PretrainConfig

    monkeypatch.setattr(default_model, "shipped_model_dir", lambda: tmp_path / "absent")
    monkeypatch.setenv("CODEHONE_HOME", str(tmp_path / "home"))
    builds: list[PretrainConfig] = []

    def fake_build(config: PretrainConfig):
        builds.append(config)
        shutil.copytree(tiny_model_dir, config.out_dir)
        return load_model_dir(config.out_dir)

    monkeypatch.setattr(pretrain_module, "pretrain", fake_build)
    assert default_model.find_default_model() is None
    target = tmp_path / "home" / "default-model"
    assert fallback_model.ensure_default_model() == target
    assert fallback_model.ensure_default_model() == target  # built once, then cached
    assert len(builds) == 1
    # the fallback is the short stdlib-only build: PretrainConfig's defaults
    config = builds[0]
    assert config.minutes == fallback_model.DEFAULT_BUILD_MINUTES
    assert config.packages == [] and config.corpus_dirs is None
    assert not config.quantize_bits and not config.embed_checkpoint


def test_a_broken_shipped_model_falls_back_to_the_build(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_dir: Path, caplog
) -> None:
    import codehone_training.pretrain as pretrain_module

    shipped = tmp_path / "repo" / "models" / "default"
    shutil.copytree(tiny_model_dir, shipped)
    (shipped / "model.onnx").write_text("version https://git-lfs.github.com/spec/v1\n")
    monkeypatch.setattr(default_model, "shipped_model_dir", lambda: shipped)
    monkeypatch.setenv("CODEHONE_HOME", str(tmp_path / "home"))

    def failing_build(config: object) -> None:
        raise TrainingError("no build in this test")

    monkeypatch.setattr(pretrain_module, "pretrain", failing_build)
    with caplog.at_level("WARNING", logger="codehone.default_model"):
        assert default_model.find_default_model() is None
    assert "ignoring the shipped default model" in caplog.text
    with pytest.raises(TrainingError, match="no build"):
        fallback_model.ensure_default_model()  # it goes on to build the fallback
