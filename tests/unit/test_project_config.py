"""A project's model selection: .codehone.toml, [tool.codehone] in pyproject.toml, and refusals."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from codehone.core.project_config import (
    ProjectConfigError,
    find_project_config,
    read_project_config,
)
from codehone_training.tune import write_project_config


def test_codehone_toml_with_a_relative_path(tmp_path: Path, tiny_model_dir: Path) -> None:
    shutil.copytree(tiny_model_dir, tmp_path / "models" / "tuned")
    (tmp_path / ".codehone.toml").write_text('[model]\npath = "models/tuned"\n')
    config = find_project_config(tmp_path)
    assert config is not None
    assert config.model_path == (tmp_path / "models" / "tuned").resolve()
    assert config.load_model().manifest.architecture == "gpt2"


def test_what_tune_writes_is_what_the_server_reads(tmp_path: Path, tiny_model_dir: Path) -> None:
    target = write_project_config(tmp_path, tiny_model_dir)
    config = read_project_config(target)
    assert config is not None and config.model_path == tiny_model_dir.resolve()
    config.load_model()


def test_pyproject_tool_table_and_precedence(tmp_path: Path, tiny_model_dir: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        f'[project]\nname = "x"\n\n[tool.codehone.model]\npath = "{tiny_model_dir}"\n'
    )
    config = find_project_config(tmp_path)
    assert config is not None and config.source.name == "pyproject.toml"
    # the short form, and .codehone.toml winning over pyproject.toml
    (tmp_path / ".codehone.toml").write_text(f'model = "{tiny_model_dir}"\n')
    config = find_project_config(tmp_path)
    assert config is not None and config.source.name == ".codehone.toml"


def test_pyproject_without_our_table_is_not_a_config(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert find_project_config(tmp_path) is None
    sub = tmp_path / "pkg" / "sub"
    sub.mkdir(parents=True)
    (tmp_path / ".codehone.toml").write_text('[model]\npath = "m"\n')
    assert find_project_config(sub) is None
    found = find_project_config(sub, search_parents=True)
    assert found is not None and found.folder == tmp_path.resolve()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[model\npath='x'", "not valid TOML"),
        ("[other]\nx = 1\n", "no [model] table"),
        ("[model]\nname = 'x'\n", "has no `path`"),
        ("[model]\npath = ''\n", "non-empty string"),
        ("[model]\npath = 3\n", "non-empty string"),
        ("model = 3\n", "must be a table or a path string"),
    ],
)
def test_malformed_files_get_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / ".codehone.toml").write_text(text)
    with pytest.raises(ProjectConfigError, match=r"\.codehone\.toml") as caught:
        find_project_config(tmp_path)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("[model]\npath = 'caf\xe9'\n".encode("latin-1"), "not UTF-8 text (byte 19)"),
        (b"\xff\xfe[\x00m\x00", "not UTF-8 text (byte 0)"),
        (b"model = '~no-such-user-zq/m'\n", "cannot be resolved"),
        (b"# " + b"x" * (1 << 20) + b"\n", "larger than 1 MB"),
    ],
)
def test_undecodable_or_huge_files_get_one_line(tmp_path: Path, data: bytes, message: str) -> None:
    """A config in Latin-1 or UTF-16 raised UnicodeDecodeError (a traceback in the server's
    log and the folder left in limbo): now the one line every bad config gets."""
    (tmp_path / ".codehone.toml").write_bytes(data)
    with pytest.raises(ProjectConfigError, match=r"\.codehone\.toml") as caught:
        find_project_config(tmp_path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_paths_that_are_not_model_directories_are_refused(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "file").write_text("x")
    for value, message in [
        ("missing", "does not exist"),
        ("file", "is not a directory"),
        ("plain", "is not a model directory"),
        ("../../../../../../etc", "is not a model directory"),
    ]:
        (tmp_path / ".codehone.toml").write_text(f'[model]\npath = "{value}"\n')
        config = find_project_config(tmp_path)
        assert config is not None
        with pytest.raises(ProjectConfigError, match=message):
            config.load_model()


def test_a_symlink_is_followed_and_then_validated(tmp_path: Path, tiny_model_dir: Path) -> None:
    os.symlink(tiny_model_dir, tmp_path / "link")
    (tmp_path / ".codehone.toml").write_text('[model]\npath = "link"\n')
    config = find_project_config(tmp_path)
    assert config is not None and config.model_path == tiny_model_dir.resolve()
    config.load_model()
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    (tmp_path / ".codehone.toml").write_text('[model]\npath = "loop"\n')
    with pytest.raises(ProjectConfigError):
        found = find_project_config(tmp_path)
        assert found is not None
        found.load_model()


def test_a_broken_manifest_names_the_config_file(tmp_path: Path, tiny_model_dir: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "codehone.json").write_text("{")
    (tmp_path / ".codehone.toml").write_text('[model]\npath = "model"\n')
    config = find_project_config(tmp_path)
    assert config is not None
    with pytest.raises(ProjectConfigError, match=r"\.codehone\.toml: "):
        config.load_model()
