"""The tree's layers, checked on every import statement (function-local ones included).

``codehone.core`` is the bottom: the serving core, importing neither torch nor pygls, so the
server runs without the training stack. ``codehone.lsp`` (the language server) and
``codehone_training`` build on it; ``codehone.check`` drives the server over the wire and
samples held-out lines with the training side's data functions; ``codehone.tools`` sits on
all of them; ``codehone.cli`` is the top. Nothing imports upward.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOTS = (REPO / "server", REPO / "training")

# The packages each layer may import from (its own included).
ALLOWED: dict[str, tuple[str, ...]] = {
    "codehone.core": ("codehone.core",),
    "codehone.lsp": ("codehone.core", "codehone.lsp"),
    "codehone_training": ("codehone.core", "codehone_training"),
    "codehone.check": (
        "codehone.core",
        "codehone.check",
        "codehone_training.data",
        "codehone_training.evaluation.cases",
    ),
    "codehone.tools": (
        "codehone.core",
        "codehone.lsp",
        "codehone.check",
        "codehone_training",
        "codehone.tools",
    ),
    "codehone.cli": ("codehone", "codehone_training"),
    "codehone.__main__": ("codehone.cli",),
    "codehone": ("codehone",),  # the package's own __init__
}
# Third-party packages the serving core must never import.
HEAVY = ("torch", "transformers", "optimum", "peft", "pygls", "lsprotocol", "pytest_lsp")


def module_name(path: Path) -> str:
    root = next(r for r in ROOTS if path.is_relative_to(r))
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    return max(
        (layer for layer in ALLOWED if module == layer or module.startswith(layer + ".")), key=len
    )


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in the file; relative imports resolved."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            # `from codehone import x` imports the module codehone.x (if x is one)
            found += [
                (node.lineno, f"{base}.{alias.name}")
                for alias in node.names
                if is_ours(base) and exists(f"{base}.{alias.name}")
            ]
    return found


def exists(module: str) -> bool:
    """Whether ``module`` is a module file or a package folder of the tree."""
    rel = Path(*module.split("."))
    return any(
        (r / rel).with_suffix(".py").is_file() or (r / rel / "__init__.py").is_file() for r in ROOTS
    )


def sources() -> list[Path]:
    return sorted(p for root in ROOTS for p in root.rglob("*.py"))


def is_ours(module: str) -> bool:
    return module.split(".")[0] in ("codehone", "codehone_training")


@pytest.mark.parametrize("path", sources(), ids=lambda p: module_name(p))
def test_no_module_imports_upward(path: Path) -> None:
    layer = layer_of(module_name(path))
    allowed = ALLOWED[layer]
    wrong = [
        f"line {line}: {target}"
        for line, target in imports_of(path)
        if is_ours(target)
        and target != "codehone"  # the package itself: its __version__, nothing else
        and not any(target == a or target.startswith(a + ".") for a in allowed)
    ]
    assert not wrong, f"{module_name(path)} ({layer}) imports above its layer: {wrong}"


@pytest.mark.parametrize(
    "path",
    [p for p in sources() if layer_of(module_name(p)) == "codehone.core"],
    ids=lambda p: module_name(p),
)
def test_the_core_needs_neither_torch_nor_pygls(path: Path) -> None:
    heavy = [f"line {line}: {t}" for line, t in imports_of(path) if t.split(".")[0] in HEAVY]
    assert not heavy, f"{module_name(path)} imports {heavy}"


def test_every_import_of_ours_names_a_file_of_the_tree() -> None:
    """The import path is the file path: every codehone import resolves to a module or a
    package folder in server/ or training/ (no import hook, no aliasing)."""
    missing = []
    for path in sources():
        for line, target in imports_of(path):
            if not is_ours(target) or exists(target):
                continue
            parent = target.rpartition(".")[0]  # `from package.module import name`
            if not exists(parent):
                missing.append(f"{module_name(path)} line {line}: {target}")
    assert not missing, missing
