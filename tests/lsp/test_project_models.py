"""End to end: each workspace folder's .codehone.toml picks its model, several at once; config
changes (watched files, workspace folders, the `model` option) swap models live with progress
reports, the old model is unloaded, and a bad config or model directory only warns."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from lsp_session import (
    capabilities,
    complete,
    open_document,
    record_registrations,
    wait_idle,
)
from lsp_wire import start_client, stop_client
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from codehone.core import default_model

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


async def detail_for(client: LanguageClient, path: Path) -> str:
    """Which model answers a document in ``path`` (each item's detail names it)."""
    uri = path.as_uri()
    open_document(client, uri, TEXT)
    for line, character in CURSORS:
        result = await complete(client, uri, line, character)
        if result.items:
            (detail,) = {item.detail for item in result.items}
            assert detail is not None and detail.startswith("codehone")
            return detail
    raise AssertionError(f"no completion in {path} at any of {CURSORS}")


async def changed(client: LanguageClient, *files: Path) -> dict:
    client.workspace_did_change_watched_files(
        types.DidChangeWatchedFilesParams(
            changes=[
                types.FileEvent(uri=f.as_uri(), type=types.FileChangeType.Changed) for f in files
            ]
        )
    )
    return await wait_idle(client)


def warnings(client: LanguageClient) -> list[str]:
    return [m.message for m in client.messages if m.type == types.MessageType.Warning]


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

    client = await start_client(gpt2)
    registered = record_registrations(client)
    try:
        await client.initialize_session(
            types.InitializeParams(
                capabilities=capabilities(watch_files=True, progress=True),
                workspace_folders=[
                    types.WorkspaceFolder(uri=f.as_uri(), name=f.name) for f in (a, b, c)
                ],
                process_id=None,
            )
        )
        status = await wait_idle(client)
        # several folders, several models at once; an unconfigured folder uses the default
        assert serving(status, a) == str(llama.resolve())
        assert serving(status, b) == str(qwen2.resolve())
        assert serving(status, c) == str(gpt2.resolve())
        assert folder_entry(status, a)["state"] == "loaded"
        assert folder_entry(status, b)["source"].endswith("pyproject.toml")
        assert await detail_for(client, a / "x.py") == "codehone · llama"
        assert await detail_for(client, b / "pkg" / "y.py") == "codehone · qwen2"
        assert await detail_for(client, c / "z.py") == "codehone · gpt2"
        assert await detail_for(client, tmp_path / "elsewhere.py") == "codehone · gpt2"

        # the watcher, registered dynamically
        (watcher,) = registered
        assert watcher.method == types.WORKSPACE_DID_CHANGE_WATCHED_FILES
        options = watcher.register_options  # LSPAny on the client side: a plain object
        assert isinstance(options, dict)
        globs = [w["globPattern"] for w in options["watchers"]]
        assert globs == ["**/.codehone.toml", "**/pyproject.toml"]

        # work-done progress for each load: create, then begin ... report ... end
        loads = [reports for reports in client.progress_reports.values() if reports]
        assert len(loads) == 2
        for reports in loads:
            assert reports[0].kind == "begin" and reports[-1].kind == "end"
            assert any(r.kind == "report" for r in reports)
            assert reports[-1].message.startswith("loaded")

        # a's config now names qwen2: a shares b's model, llama is unloaded
        (a / ".codehone.toml").write_text(f'[model]\npath = "{qwen2}"\n')
        status = await changed(client, a / ".codehone.toml")
        assert serving(status, a) == str(qwen2.resolve())
        assert await detail_for(client, a / "x.py") == "codehone · qwen2"
        assert status["unloaded"] == 1
        loaded_dirs = {m["model_dir"] for m in status["models"]}
        assert str(llama.resolve()) not in loaded_dirs

        # an unrelated pyproject.toml change (same model) reloads nothing
        loads_before = status["loads"]
        (b / "pyproject.toml").write_text(
            f'[project]\nname = "b2"\n[tool.codehone]\nmodel = "{qwen2}"\n'
        )
        status = await changed(client, b / "pyproject.toml")
        assert status["loads"] == loads_before

        # a bad config: one warning, a keeps its model
        (a / ".codehone.toml").write_text("[model\n")
        status = await changed(client, a / ".codehone.toml")
        assert len(warnings(client)) == 1 and ".codehone.toml" in warnings(client)[0]
        assert serving(status, a) == str(qwen2.resolve())
        assert "not valid TOML" in folder_entry(status, a)["error"]
        # a model directory that is not one: one more warning, a still keeps its model
        (tmp_path / "empty").mkdir()
        (a / ".codehone.toml").write_text(f'model = "{tmp_path / "empty"}"\n')
        status = await changed(client, a / ".codehone.toml")
        assert len(warnings(client)) == 2 and "not a model directory" in warnings(client)[1]
        assert serving(status, a) == str(qwen2.resolve())
        assert await detail_for(client, a / "x.py") == "codehone · qwen2"

        # workspace folders change: b leaves (its documents go to the default), d arrives
        client.workspace_did_change_workspace_folders(
            types.DidChangeWorkspaceFoldersParams(
                event=types.WorkspaceFoldersChangeEvent(
                    added=[types.WorkspaceFolder(uri=d.as_uri(), name="d")],
                    removed=[types.WorkspaceFolder(uri=b.as_uri(), name="b")],
                )
            )
        )
        status = await wait_idle(client)
        assert {f["folder"] for f in status["folders"]} == {x.as_uri() for x in (a, c, d)}
        assert serving(status, d) == str(llama.resolve())
        assert await detail_for(client, b / "pkg" / "y.py") == "codehone · gpt2"
        assert await detail_for(client, d / "w.py") == "codehone · llama"

        # the `model` option replaces the default model; a bad one warns and changes nothing
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"codehone": {"model": str(qwen2)}})
        )
        status = await wait_idle(client)
        assert serving(status, c) == str(qwen2.resolve())
        assert await detail_for(client, c / "z.py") == "codehone · qwen2"
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"model": str(tmp_path / "nope")})
        )
        status = await wait_idle(client)
        assert len(warnings(client)) == 3 and "does not exist" in warnings(client)[2]
        assert serving(status, c) == str(qwen2.resolve())
        # clearing it brings back --model
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"model": ""})
        )
        status = await wait_idle(client)
        assert serving(status, c) == str(gpt2.resolve())
        (default,) = [m for m in status["models"] if m["folder"] is None]
        assert default["source"] == "--model" and default["state"] == "loaded"
    finally:
        await client.shutdown_session()
        await stop_client(client)


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
    config = ClientServerConfig(
        server_command=[sys.executable, "-m", "codehone", "serve"],
        server_env={**os.environ, "CODEHONE_HOME": str(home)},
    )
    for folders in ([project], []):
        client = await config.start()
        try:
            await client.initialize_session(
                types.InitializeParams(
                    capabilities=capabilities(),
                    workspace_folders=[
                        types.WorkspaceFolder(uri=f.as_uri(), name=f.name) for f in folders
                    ],
                    process_id=None,
                )
            )
            status = await wait_idle(client)
            if folders:
                assert serving(status, project) == str(tiny_model("llama").resolve())
                assert await detail_for(client, project / "x.py") == "codehone · llama"
                assert warnings(client) == []
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
                assert len(warnings(client)) == 1 and "no model" in warnings(client)[0]
            uri = (tmp_path / "elsewhere.py").as_uri()
            open_document(client, uri, TEXT)
            assert len((await complete(client, uri, 4, 24)).items) == 0
        finally:
            await client.shutdown_session()
            await stop_client(client)
