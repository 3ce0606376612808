"""End to end: each workspace folder's .codehone.toml picks its model, several at once; config
changes (watched files, workspace folders, the `model` option) swap models live with progress
reports, the old model is unloaded, and a bad config or model directory only warns."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from lsp_session import capabilities, complete, start, wait_idle
from lsprotocol import types

from codehone.check.client import EditorSession
from codehone.core import default_model

# The folders' models live outside them (the session's tiny models): a workspace the user
# trusts, with models outside it allowed (tests/lsp/test_workspace_trust.py: without them).
TRUSTED = {"trustedWorkspace": True, "allowModelsOutsideWorkspace": True}
TEXT = "import os\n\n\ndef main():\n    path = os.path.join(\n    x = \n    print(\n"
CURSORS = [
    (4, 24),
    (5, 8),
    (6, 10),
    (3, 11),
]  # line ends: one of them completes, whatever the model


def serving(status: dict, folder: Path) -> str | None:
    (entry,) = [f for f in status["folders"] if f["folder"] == folder.as_uri()]
    return entry["model_dir"]


def folder_entry(status: dict, folder: Path) -> dict:
    (entry,) = [m for m in status["models"] if m["folder"] == folder.as_uri()]
    return entry


async def detail_for(session: EditorSession, path: Path) -> str:
    """Which model answers a document in ``path`` (each item's detail names it)."""
    uri = session.open(path.as_uri(), TEXT)
    for line, character in CURSORS:
        result = await complete(session, uri, line, character)
        if result.items:
            (detail,) = {item.detail for item in result.items}
            assert detail is not None and detail.startswith("codehone")
            return detail
    raise AssertionError(f"no completion in {path} at any of {CURSORS}")


async def changed(session: EditorSession, *files: Path) -> dict:
    session.client.workspace_did_change_watched_files(
        types.DidChangeWatchedFilesParams(
            changes=[
                types.FileEvent(uri=f.as_uri(), type=types.FileChangeType.Changed) for f in files
            ]
        )
    )
    return await wait_idle(session)


def warnings(session: EditorSession) -> list[str]:
    """The window/showMessage warnings so far (pytest-lsp's client records them)."""
    messages = session.client.messages  # type: ignore[attr-defined]
    return [m.message for m in messages if m.type == types.MessageType.Warning]


async def test_per_folder_models_and_live_swaps(
    tmp_path: Path, tiny_model: Callable[[str], Path]
) -> None:
    gpt2, llama, qwen2 = tiny_model("gpt2"), tiny_model("llama"), tiny_model("qwen2")
    a, b, c, d = (tmp_path / name for name in "abcd")
    for folder in (a, b, c, d):
        folder.mkdir()
    (a / ".codehone.toml").write_text(f'[model]\npath = "{llama}"\n')
    (b / "pyproject.toml").write_text(
        f'[project]\nname = "b"\n[tool.codehone]\nmodel = "{qwen2}"\n'
    )
    (d / ".codehone.toml").write_text(f'model = "{llama}"\n')

    session = await start(gpt2)
    client = session.client
    try:
        await session.initialize(
            [a, b, c],
            capabilities=capabilities(watch_files=True, progress=True),
            initialization_options=TRUSTED,
        )
        status = await wait_idle(session)
        # several folders, several models at once; an unconfigured folder uses the default
        assert serving(status, a) == str(llama.resolve())
        assert serving(status, b) == str(qwen2.resolve())
        assert serving(status, c) == str(gpt2.resolve())
        assert folder_entry(status, a)["state"] == "loaded"
        assert folder_entry(status, b)["source"].endswith("pyproject.toml")
        assert await detail_for(session, a / "x.py") == "codehone · llama"
        assert await detail_for(session, b / "pkg" / "y.py") == "codehone · qwen2"
        assert await detail_for(session, c / "z.py") == "codehone · gpt2"
        assert await detail_for(session, tmp_path / "elsewhere.py") == "codehone · gpt2"

        # the watcher, registered dynamically
        (watcher,) = session.registrations
        assert watcher.method == types.WORKSPACE_DID_CHANGE_WATCHED_FILES
        options = watcher.register_options  # LSPAny on the client side: a plain object
        assert isinstance(options, dict)
        globs = [w["globPattern"] for w in options["watchers"]]
        assert globs == ["**/.codehone.toml", "**/pyproject.toml"]

        # work-done progress for each load: create, then begin ... report ... end
        progress = client.progress_reports  # type: ignore[attr-defined]  # pytest-lsp's
        loads = [reports for reports in progress.values() if reports]
        assert len(loads) == 2
        for reports in loads:
            assert reports[0].kind == "begin" and reports[-1].kind == "end"
            assert any(r.kind == "report" for r in reports)
            assert reports[-1].message.startswith("loaded")

        # a's config now names qwen2: a shares b's model, llama is unloaded
        (a / ".codehone.toml").write_text(f'[model]\npath = "{qwen2}"\n')
        status = await changed(session, a / ".codehone.toml")
        assert serving(status, a) == str(qwen2.resolve())
        assert await detail_for(session, a / "x.py") == "codehone · qwen2"
        assert status["unloaded"] == 1
        loaded_dirs = {m["model_dir"] for m in status["models"]}
        assert str(llama.resolve()) not in loaded_dirs

        # an unrelated pyproject.toml change (same model) reloads nothing
        loads_before = status["loads"]
        (b / "pyproject.toml").write_text(
            f'[project]\nname = "b2"\n[tool.codehone]\nmodel = "{qwen2}"\n'
        )
        status = await changed(session, b / "pyproject.toml")
        assert status["loads"] == loads_before

        # a bad config: one warning, a keeps its model
        (a / ".codehone.toml").write_text("[model\n")
        status = await changed(session, a / ".codehone.toml")
        assert len(warnings(session)) == 1 and ".codehone.toml" in warnings(session)[0]
        assert serving(status, a) == str(qwen2.resolve())
        assert "not valid TOML" in folder_entry(status, a)["error"]
        # a model directory that is not one: one more warning, a still keeps its model
        (tmp_path / "empty").mkdir()
        (a / ".codehone.toml").write_text(f'model = "{tmp_path / "empty"}"\n')
        status = await changed(session, a / ".codehone.toml")
        assert len(warnings(session)) == 2 and "not a model directory" in warnings(session)[1]
        assert serving(status, a) == str(qwen2.resolve())
        assert await detail_for(session, a / "x.py") == "codehone · qwen2"

        # workspace folders change: b leaves (its documents go to the default), d arrives
        client.workspace_did_change_workspace_folders(
            types.DidChangeWorkspaceFoldersParams(
                event=types.WorkspaceFoldersChangeEvent(
                    added=[types.WorkspaceFolder(uri=d.as_uri(), name="d")],
                    removed=[types.WorkspaceFolder(uri=b.as_uri(), name="b")],
                )
            )
        )
        status = await wait_idle(session)
        assert {f["folder"] for f in status["folders"]} == {x.as_uri() for x in (a, c, d)}
        assert serving(status, d) == str(llama.resolve())
        assert await detail_for(session, b / "pkg" / "y.py") == "codehone · gpt2"
        assert await detail_for(session, d / "w.py") == "codehone · llama"

        # the `model` option replaces the default model; a bad one warns and changes nothing
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"codehone": {"model": str(qwen2)}})
        )
        status = await wait_idle(session)
        assert serving(status, c) == str(qwen2.resolve())
        assert await detail_for(session, c / "z.py") == "codehone · qwen2"
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"model": str(tmp_path / "nope")})
        )
        status = await wait_idle(session)
        assert len(warnings(session)) == 3 and "does not exist" in warnings(session)[2]
        assert serving(status, c) == str(qwen2.resolve())
        # clearing it brings back --model
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"model": ""})
        )
        status = await wait_idle(session)
        assert serving(status, c) == str(gpt2.resolve())
        (default,) = [m for m in status["models"] if m["folder"] is None]
        assert default["source"] == "--model" and default["state"] == "loaded"
    finally:
        await session.close()


async def test_serving_only_project_models_without_a_default(
    tmp_path: Path, tiny_model: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No --model and no default model built: configured folders are served, other documents
    get empty answers, and a session with nothing to serve says so."""
    home = tmp_path / "home"
    monkeypatch.setenv("CODEHONE_HOME", str(home))
    if default_model.find_default_model() is not None:
        pytest.skip("a default model is committed in this checkout")
    project = tmp_path / "project"
    project.mkdir()
    (project / ".codehone.toml").write_text(f'model = "{tiny_model("llama")}"\n')
    for folders in ([project], []):
        session = await start(None, env={"CODEHONE_HOME": str(home)})
        try:
            await session.initialize(
                folders, capabilities=capabilities(), initialization_options=TRUSTED
            )
            status = await wait_idle(session)
            if folders:
                assert serving(status, project) == str(tiny_model("llama").resolve())
                assert await detail_for(session, project / "x.py") == "codehone · llama"
                assert warnings(session) == []
            else:
                assert status["models"] == [
                    {
                        "folder": None,
                        "state": "unconfigured",
                        "source": None,
                        "loading": False,
                        "error": None,
                        "model_dir": None,
                    }
                ]
                assert len(warnings(session)) == 1 and "no model" in warnings(session)[0]
            uri = session.open(tmp_path / "elsewhere.py", TEXT)
            assert len((await complete(session, uri, 4, 24)).items) == 0
        finally:
            await session.close()
