"""Collect the local source files codehone pretrains its embedded default model on.

codehone must build a usable default model on a machine with no network, so the corpus has to
be something every machine already has: the Python standard library's own sources. Callers may
add (or substitute) their own directories. The walk skips what would only add noise or cost:
test suites, IDLE and lib2to3 (old, unusual code), caches, third-party ``site-packages``, files
over a size limit and files that are not UTF-8. The order is deterministic (sorted by path), so
the same machine always yields the same corpus, tokenizer and held-out split.
"""

from __future__ import annotations

import os
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from codehone.errors import TrainingError

DEFAULT_SKIP_DIRS: frozenset[str] = frozenset(
    {
        "site-packages",
        "dist-packages",
        "test",
        "tests",
        "idlelib",
        "lib2to3",
        "__pycache__",
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        "node_modules",
    }
)
DEFAULT_MAX_FILE_BYTES = 200_000


def stdlib_dir() -> Path:
    """The directory holding this interpreter's pure-Python standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


@dataclass(frozen=True)
class CorpusSpec:
    """What to collect: the roots to walk and the filters to apply."""

    dirs: Sequence[Path] = field(default_factory=lambda: [stdlib_dir()])
    suffixes: tuple[str, ...] = (".py",)
    skip_dirs: frozenset[str] = DEFAULT_SKIP_DIRS
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    min_file_bytes: int = 1


def _is_utf8(path: Path) -> bool:
    try:
        path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return True


def _walk(root: Path, spec: CorpusSpec) -> Iterable[Path]:
    """Yield candidate files under ``root`` in a deterministic order, pruning skipped dirs."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in spec.skip_dirs)
        for name in sorted(filenames):
            if name.endswith(spec.suffixes):
                yield Path(dirpath) / name


def collect_corpus_files(
    dirs: Sequence[str | os.PathLike[str]] | None = None,
    *,
    extra_dirs: Sequence[str | os.PathLike[str]] = (),
    suffixes: tuple[str, ...] = (".py",),
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    skip_dirs: frozenset[str] = DEFAULT_SKIP_DIRS,
) -> list[Path]:
    """Return the corpus files under ``dirs`` (default: the stdlib) plus ``extra_dirs``.

    Files are filtered by suffix, size (empty files and files over ``max_file_bytes`` are
    dropped) and encoding (UTF-8 only), de-duplicated by resolved path and returned in a
    deterministic order: root by root in the order given, paths sorted within each root.
    Raises ``TrainingError`` if a root does not exist or nothing at all is found.
    """
    roots = [Path(d).expanduser() for d in (dirs if dirs is not None else [stdlib_dir()])]
    roots += [Path(d).expanduser() for d in extra_dirs]
    if not roots:
        raise TrainingError("no corpus directories given")
    spec = CorpusSpec(
        dirs=roots, suffixes=suffixes, skip_dirs=skip_dirs, max_file_bytes=max_file_bytes
    )
    seen: set[Path] = set()
    files: list[Path] = []
    for root in roots:
        if not root.is_dir():
            raise TrainingError(f"corpus directory {root} does not exist or is not a directory")
        for path in _walk(root, spec):
            try:
                if not path.is_file():
                    continue
                size = path.stat().st_size
                resolved = path.resolve()
            except OSError:
                continue
            if size < spec.min_file_bytes or size > spec.max_file_bytes or resolved in seen:
                continue
            if not _is_utf8(path):
                continue
            seen.add(resolved)
            files.append(path)
    if not files:
        where = ", ".join(str(r) for r in roots)
        raise TrainingError(
            f"no usable source files ({'/'.join(suffixes)}, UTF-8, at most {max_file_bytes} "
            f"bytes) found under {where}"
        )
    return files
