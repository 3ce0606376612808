"""The VS Code extension's own tests (editors/vscode): type-check, bundle, and node's test runner.

They cover the logic kept apart from the VS Code API (settings -> server command, workspace
trust, status bar text, debouncing, package.json consistency), and activate the bundled
extension against a fake `vscode` module and the real `codehone serve` on the tiny model.
`npm ci` runs first when node_modules is missing or older than package-lock.json; it needs the
npm registry.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

VSCODE = Path(__file__).resolve().parents[2] / "editors" / "vscode"


def missing(reason: str) -> None:
    """Skip on a developer's machine without node; fail in CI, where node must be there."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def npm() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        missing("node and npm are needed for the VS Code extension's tests (node >= 20)")
    assert npm is not None
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout  # type: ignore[list-item]
    m = re.match(r"v(\d+)\.", version)
    if not m or int(m[1]) < 20:
        missing(f"node >= 20 is needed for the VS Code extension's tests, found {version.strip()}")
    return npm


def needs_install() -> bool:
    stamp = VSCODE / "node_modules" / ".package-lock.json"
    lock = VSCODE / "package-lock.json"
    return not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime


def run(
    cmd: list[str], timeout: int, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd,
        cwd=VSCODE,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def test_vscode_extension(npm: str, tiny_model_dir: Path) -> None:
    """Unit tests, plus the bundled extension activated against a fake `vscode` module and the
    real `codehone serve` on the tiny model (test/activation.test.ts)."""
    if needs_install():
        r = run([npm, "ci", "--no-audit", "--no-fund"], timeout=600)
        assert r.returncode == 0, f"npm ci failed:\n{r.stdout}\n{r.stderr}"
    env = {"CODEHONE_TEST_PYTHON": sys.executable, "CODEHONE_TEST_MODEL": str(tiny_model_dir)}
    r = run([npm, "test"], timeout=300, env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    passed = re.search(r"^# pass (\d+)$", out, re.M)
    failed = re.search(r"^# fail (\d+)$", out, re.M)
    assert passed and int(passed[1]) > 0, out
    assert failed and int(failed[1]) == 0, out
    skipped = re.search(r"^# skipped (\d+)$", out, re.M)
    assert skipped and int(skipped[1]) == 0, out


def test_vscode_extension_bundles(npm: str) -> None:
    """The production bundle builds and keeps `vscode` external (VS Code provides it)."""
    if needs_install():
        r = run([npm, "ci", "--no-audit", "--no-fund"], timeout=600)
        assert r.returncode == 0, f"npm ci failed:\n{r.stdout}\n{r.stderr}"
    r = run([npm, "run", "build", "--", "--production"], timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    bundle = (VSCODE / "dist" / "extension.js").read_text()
    assert 'require("vscode")' in bundle
    assert "codehone/status" in bundle
    assert "vscode-languageclient" not in re.findall(r'require\("([^"]+)"\)', bundle)
    # The minified bundle (what the .vsix ships) activates too (no server: those tests skip).
    if (VSCODE / "out" / "test" / "activation.test.js").exists():
        r = run(["node", "--test", "out/test/activation.test.js"], timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
