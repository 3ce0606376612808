"""Which model a project uses: ``.codehone.toml`` or ``[tool.codehone]`` in ``pyproject.toml``.

A workspace folder names its model directory in one of two places (the first found wins)::

    # .codehone.toml                     # pyproject.toml
    [model]                              [tool.codehone.model]
    path = "models/tuned"                path = "models/tuned"

A relative path is relative to the folder holding the file. ``codehone tune`` writes the first
form; ``codehone serve`` (per workspace folder) and ``codehone check`` read it through
``find_project_config``. A path that comes from a workspace is untrusted: before anything loads
it must resolve (symlinks followed) to a real directory holding a manifest, and the manifest and
every file it names are validated by ``load_model_dir`` (which refuses files escaping the
directory). Every problem is a ``ProjectConfigError`` with one line naming the file and the fault.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codehone.core.errors import CodehoneError, ModelDirError
from codehone.core.model_dir import MANIFEST_NAME, ModelDir, load_model_dir

CONFIG_FILE = ".codehone.toml"
PYPROJECT_FILE = "pyproject.toml"
MAX_CONFIG_BYTES = 1 << 20  # a configuration is a few lines; a pyproject.toml a few kB


class ProjectConfigError(CodehoneError):
    """A project's codehone configuration is malformed or names an unusable model."""


@dataclass(frozen=True)
class ProjectConfig:
    """The model a project folder selects, and the file that said so."""

    folder: Path  # the folder holding the config file (resolved)
    source: Path  # .codehone.toml or pyproject.toml
    model_path: Path  # as resolved (symlinks followed); validated only by ``load_model``
    raw: dict[str, Any]  # the whole codehone table, for options beyond the model

    @property
    def model_inside(self) -> bool:
        """Whether the model path (links followed) lies inside the folder."""
        return self.model_path.is_relative_to(self.folder)

    def load_model(self, check_graph: bool = True) -> ModelDir:
        """Validate and load the selected model directory, or raise ``ProjectConfigError``."""
        return load_project_model(self, check_graph=check_graph)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ProjectConfigError(
                f"{path}: larger than {MAX_CONFIG_BYTES >> 20} MB; not read as a configuration"
            )
        with path.open("rb") as handle:
            return tomllib.loads(handle.read().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ProjectConfigError(
            f"{path}: not UTF-8 text (byte {exc.start}); TOML files are UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ProjectConfigError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise ProjectConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _codehone_table(path: Path) -> dict[str, Any] | None:
    """The codehone table of one config file, or None when the file does not configure us."""
    data = _read_toml(path)
    if path.name == PYPROJECT_FILE:
        tool = data.get("tool")
        table = tool.get("codehone") if isinstance(tool, dict) else None
        if table is None:
            return None
        if not isinstance(table, dict):
            raise ProjectConfigError(f"{path}: [tool.codehone] must be a table")
        return table
    return data


def _model_path_value(path: Path, table: dict[str, Any]) -> str:
    model = table.get("model")
    where = "[tool.codehone.model]" if path.name == PYPROJECT_FILE else "[model]"
    if isinstance(model, str):  # the short form: model = "path"
        value: Any = model
    elif isinstance(model, dict):
        value = model.get("path")
        if value is None:
            raise ProjectConfigError(f"{path}: {where} has no `path`")
    elif model is None:
        raise ProjectConfigError(f"{path}: no {where} table with a `path` naming the model")
    else:
        raise ProjectConfigError(f"{path}: `model` must be a table or a path string")
    if not isinstance(value, str) or not value.strip():
        raise ProjectConfigError(f"{path}: {where} path must be a non-empty string")
    if "\x00" in value:
        raise ProjectConfigError(f"{path}: {where} path contains a NUL character")
    return value


def read_project_config(path: Path) -> ProjectConfig | None:
    """Read one config file; None for a pyproject.toml without ``[tool.codehone]``."""
    path = Path(path)
    table = _codehone_table(path)
    if table is None:
        return None
    value = _model_path_value(path, table)
    folder = path.parent.resolve()
    try:
        candidate = Path(value).expanduser()  # RuntimeError: ~user of no such user
        if not candidate.is_absolute():
            candidate = folder / candidate
        resolved = candidate.resolve(strict=False)
    except (OSError, RuntimeError) as exc:  # symlink loops
        raise ProjectConfigError(
            f"{path}: model path {value!r} cannot be resolved ({exc})"
        ) from None
    return ProjectConfig(folder=folder, source=path, model_path=resolved, raw=table)


def config_files(folder: Path) -> list[Path]:
    """The files that may configure ``folder``, in order of precedence."""
    return [folder / CONFIG_FILE, folder / PYPROJECT_FILE]


def find_project_config(folder: Path, search_parents: bool = False) -> ProjectConfig | None:
    """The config of ``folder`` (and, when asked, of its nearest configured ancestor)."""
    start = Path(folder).resolve()
    for directory in [start, *start.parents] if search_parents else [start]:
        for path in config_files(directory):
            if path.is_file():
                config = read_project_config(path)
                if config is not None:
                    return config
    return None


def load_project_model(config: ProjectConfig, check_graph: bool = True) -> ModelDir:
    """Validate the selected model path as a real model directory, then load it."""
    target = config.model_path
    shown = f"{config.source}: model path {str(target)!r}"
    if not target.exists():
        raise ProjectConfigError(f"{shown} does not exist")
    if not target.is_dir():
        raise ProjectConfigError(f"{shown} is not a directory")
    if not (target / MANIFEST_NAME).is_file():
        raise ProjectConfigError(f"{shown} is not a model directory (no {MANIFEST_NAME})")
    try:
        return load_model_dir(target, check_graph=check_graph)
    except ModelDirError as exc:
        raise ProjectConfigError(f"{config.source}: {exc}") from None
