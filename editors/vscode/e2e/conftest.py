"""Fixtures for the real-VS-Code tests: one code-server per session, one browser per test.

Environment (all optional):
  CODEHONE_E2E_CACHE      where setup.sh put node 24, code-server and selenium
                          (default ~/.cache/codehone-e2e)
  CODEHONE_E2E_ARTIFACTS  screenshots and logs (default editors/vscode/e2e/artifacts)
  CODEHONE_E2E_MODEL      the model directory (default models/default)
  CODEHONE_E2E_SERVER     the server command as a JSON list (default: the `codehone` script
                          beside this Python, else .venv/bin/codehone, then `serve`)
  CODEHONE_E2E_VSIX       a built .vsix to install (default editors/vscode/codehone.vsix,
                          rebuilt with `make -C editors vsix` when older than the sources)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import ROOT, VSCODE_DIR, CodeServer, Tools, Workbench, artifacts_dir  # noqa: E402


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def tools() -> Tools:
    try:
        return Tools.find()
    except FileNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)


def _newest_source_mtime() -> float:
    paths = [VSCODE_DIR / "package.json", VSCODE_DIR / "package-lock.json", VSCODE_DIR / "esbuild.mjs"]
    paths += list((VSCODE_DIR / "src").glob("*.ts"))
    return max(p.stat().st_mtime for p in paths if p.exists())


@pytest.fixture(scope="session")
def vsix() -> Path:
    given = os.environ.get("CODEHONE_E2E_VSIX")
    if given:
        return Path(given).resolve()
    path = VSCODE_DIR / "codehone.vsix"
    if not path.exists() or path.stat().st_mtime < _newest_source_mtime():
        subprocess.run(["make", "-C", str(ROOT / "editors"), "vsix"], check=True, timeout=600,
                       stdout=subprocess.DEVNULL)
    return path


@pytest.fixture(scope="session")
def server_command() -> list[str]:
    given = os.environ.get("CODEHONE_E2E_SERVER")
    if given:
        return list(json.loads(given))
    for candidate in (Path(sys.executable).parent / "codehone", ROOT / ".venv" / "bin" / "codehone"):
        if candidate.exists():
            return [str(candidate), "serve"]
    pytest.fail("no codehone script: set CODEHONE_E2E_SERVER", pytrace=False)


@pytest.fixture(scope="session")
def model() -> Path:
    return Path(os.environ.get("CODEHONE_E2E_MODEL") or ROOT / "models" / "default").resolve()


@pytest.fixture(scope="session")
def code_server(tools: Tools, vsix: Path, server_command: list[str], model: Path) -> Iterator[CodeServer]:
    server = CodeServer(tools, vsix, server_command, str(model))
    server.start()
    try:
        yield server
    finally:
        server.stop()
        logs = artifacts_dir() / "logs"
        shutil.rmtree(logs, ignore_errors=True)
        logs.mkdir(parents=True)
        if server.log_path and server.log_path.exists():
            shutil.copy(server.log_path, logs / "code-server.log")
        if (server.user_data / "logs").exists():
            shutil.copytree(server.user_data / "logs", logs / "user-data-logs", dirs_exist_ok=True)
        shutil.rmtree(server.base, ignore_errors=True)


@pytest.fixture(scope="session")
def alt_model(model: Path, code_server: CodeServer) -> Path:
    """A second model directory: a copy of the model under the name `alt` (the status bar shows
    a model by its directory's name)."""
    alt = code_server.base / "models" / "alt"
    if not alt.exists():
        shutil.copytree(model, alt)
    return alt


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Path:
    name = request.node.name.replace("/", "_").replace("[", "-").replace("]", "").replace(" ", "_")
    path = artifacts_dir() / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@pytest.fixture
def workspace(request: pytest.FixtureRequest, code_server: CodeServer) -> Path:
    """An empty folder for this test, under the code-server's throwaway base."""
    name = request.node.name.replace("/", "_").replace("[", "-").replace("]", "").replace(" ", "_")
    path = code_server.base / "workspaces" / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@pytest.fixture
def open_workbench(
    request: pytest.FixtureRequest, tools: Tools, code_server: CodeServer, workspace: Path, shots: Path
) -> Iterator[Callable[..., Workbench]]:
    """open_workbench() -> a browser window on `workspace`, closed (with a screenshot and the
    editor's state on failure) after the test; user settings are reset afterwards."""
    opened: list[Workbench] = []

    def open_(folder: Path | None = None, size: tuple[int, int] = (1280, 800)) -> Workbench:
        wb = Workbench(tools, code_server, folder or workspace, shots, size)
        opened.append(wb)
        wb.open()
        return wb

    yield open_
    report = getattr(request.node, "report_call", None)
    failed = report is not None and report.failed
    for wb in opened:
        if failed and not wb.closed:
            wb.shot("failure")
            try:
                state = wb.editor()
                (shots / "failure-editor.json").write_text(json.dumps(vars(state), indent=2))
            except Exception as exc:  # no editor open
                (shots / "failure-editor.json").write_text(json.dumps({"error": repr(exc)}))
            (shots / "failure-status.json").write_text(json.dumps(wb.status_item(), indent=2))
        wb.close()
    code_server.reset_between_tests()
