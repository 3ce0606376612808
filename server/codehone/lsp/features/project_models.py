"""Per-project models: each workspace folder may name its own model, swapped in live.

A project fine-tuned with ``codehone tune`` gets a ``.codehone.toml`` naming its model (or
``[tool.codehone]`` in ``pyproject.toml``); documents under that folder are completed by it,
other documents by the default model. The server asks the client to watch those files
(client/registerCapability for workspace/didChangeWatchedFiles, when the client supports
dynamic registration) and follows workspace/didChangeWorkspaceFolders, so re-tuning a project
or opening another one swaps models without a restart. The loading itself, with progress
reports and warnings, is in ``codehone.lsp.models.workspace``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from lsprotocol import types

from codehone.core.project_config import CONFIG_FILE, PYPROJECT_FILE

if TYPE_CHECKING:
    from codehone.lsp.server import CodehoneServer

log = logging.getLogger("codehone.project_models")
WATCHER_ID = "codehone-project-config"
WATCH_GLOBS = (f"**/{CONFIG_FILE}", f"**/{PYPROJECT_FILE}")
_TIMEOUT_S = 10.0


async def register_watchers(ls: CodehoneServer) -> None:
    if not ls.supports("workspace.did_change_watched_files.dynamic_registration"):
        log.info("the client cannot watch files for us: config changes apply after a restart")
        return
    registration = types.Registration(
        id=WATCHER_ID,
        method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
        register_options=types.DidChangeWatchedFilesRegistrationOptions(
            watchers=[types.FileSystemWatcher(glob_pattern=glob) for glob in WATCH_GLOBS]
        ),
    )
    await ls.register_capability(registration, "the config file watcher", _TIMEOUT_S)


def register(server: CodehoneServer) -> None:
    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def did_change_watched_files(
        ls: CodehoneServer, params: types.DidChangeWatchedFilesParams
    ) -> None:
        ls.models.files_changed([change.uri for change in params.changes])

    @server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    def did_change_workspace_folders(
        ls: CodehoneServer, params: types.DidChangeWorkspaceFoldersParams
    ) -> None:
        ls.models.folders_changed(params.event.added, params.event.removed)
