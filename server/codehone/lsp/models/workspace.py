"""The models of a workspace, as the LSP session changes it: the glue between the server and
the ``ModelRegistry``.

- Workspace folders come from ``initialize`` (its ``workspaceFolders``, else ``rootUri``) and
  ``workspace/didChangeWorkspaceFolders``; each is checked for a ``.codehone.toml`` /
  ``[tool.codehone]`` (``codehone.core.project_config``) and its model loaded.
- A watched config file that changes (``workspace/didChangeWatchedFiles``) re-checks its folder;
  the model is reloaded only if the model it names changed on disk (so editing a
  ``pyproject.toml``'s dependencies costs nothing).
- The ``model`` option replaces ``--model`` in the registry's global slot (documents outside
  every configured folder); clearing it restores ``--model``.
- A cloned repository choosing which weights run on the user's machine is a trust decision,
  the editor's (``codehone.lsp.config.WorkspaceTrust``): unless the workspace is trusted, a
  folder's config is ignored (one log line; the global model serves the folder), and even in
  a trusted one a config naming a model outside its folder is refused unless
  ``allowModelsOutsideWorkspace`` says otherwise.

Every step that touches the disk runs on a thread: reading a config, the fingerprint of the
model it names, and the load itself (``ModelRegistry.load``: manifest, graph summary, tokenizer,
ONNX Runtime session). Loads run in the background with ``$/progress`` reports while the
previous model serves; a bad config or model directory is shown to the user
(window/showMessage) and logged, and the previous model keeps serving.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.uris import to_fs_path

from codehone.core.model_dir import load_model_dir
from codehone.core.project_config import ProjectConfig, ProjectConfigError, find_project_config
from codehone.lsp.config import WorkspaceTrust
from codehone.lsp.models.registry import (
    GLOBAL,
    Fingerprint,
    LoadRequest,
    ModelRegistry,
    fingerprint,
)
from codehone.lsp.models.service import ModelService

if TYPE_CHECKING:
    from codehone.lsp.server import CodehoneServer

log = logging.getLogger("codehone.workspace")
_PROGRESS_CREATE_TIMEOUT_S = 10.0


def uri_path(uri: str) -> Path | None:
    """The file system path of a ``file:`` URI (normalized, not resolved), else None."""
    try:
        path = to_fs_path(uri)
    except Exception:
        return None
    if not path or not uri.startswith("file:"):
        return None
    return Path(os.path.normpath(path))


def _read_config(folder: Path) -> tuple[ProjectConfig, Fingerprint] | None:
    """On a thread: a folder's config and the fingerprint of the model it names."""
    config = find_project_config(folder)
    return None if config is None else (config, fingerprint(config.model_path))


class LspLoadReporter:
    """Reports one model load to the editor: window/workDoneProgress/create, then $/progress
    begin / report / end (when the client supports work-done progress), and warnings."""

    _tokens = itertools.count(1)

    def __init__(self, server: CodehoneServer) -> None:
        self.server = server
        self.token: str | None = None

    async def begin(self, title: str, message: str) -> None:
        log.info("%s: %s", title, message)
        if not self.server.supports("window.work_done_progress"):
            return
        token = f"codehone/load/{os.getpid()}/{next(self._tokens)}"
        progress = self.server.work_done_progress
        try:
            await asyncio.wait_for(progress.create_async(token), _PROGRESS_CREATE_TIMEOUT_S)
        except Exception as exc:  # the client refused or never answered: no progress UI
            log.debug("window/workDoneProgress/create failed: %s", exc)
            return
        self.token = token
        progress.begin(
            token, types.WorkDoneProgressBegin(title=title, message=message, percentage=0)
        )

    def report(self, message: str, percentage: int) -> None:
        log.info("loading: %s", message)
        if self.token is not None:
            self.server.work_done_progress.report(
                self.token, types.WorkDoneProgressReport(message=message, percentage=percentage)
            )

    def end(self, message: str) -> None:
        log.info("load finished: %s", message)
        if self.token is not None:
            self.server.work_done_progress.end(
                self.token, types.WorkDoneProgressEnd(message=message)
            )
            self.token = None

    def warn(self, message: str) -> None:
        self.server.warn_user(message)


class WorkspaceModels:
    def __init__(
        self, server: CodehoneServer, registry: ModelRegistry, model_path: Path | None
    ) -> None:
        self.server = server
        self.registry = registry
        self.model_path = model_path  # --model (or the default model found at startup)
        self.trust = WorkspaceTrust()  # set from initializationOptions
        self._tasks: set[asyncio.Task[Any]] = set()
        self._said_untrusted: set[str] = set()  # folders whose ignored config was logged

    # -- background work -----------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Background tasks (configuration, discovery, loads) not finished yet."""
        return len(self._tasks)

    def schedule(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` in the background; counted in ``pending`` from this moment on."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    async def settle(self) -> None:
        """Wait for the background work scheduled so far (but the caller itself)."""
        current = asyncio.current_task()
        others = [task for task in self._tasks if task is not current]
        if others:
            await asyncio.wait(others)

    # -- lookups -------------------------------------------------------------------------------

    def service_for(self, uri: str) -> ModelService | None:
        return self.registry.service_for_path(uri_path(uri))

    def folder_paths(self) -> list[Path]:
        return [slot.folder for slot in self.registry.folder_slots() if slot.folder is not None]

    # -- folders -------------------------------------------------------------------------------

    def set_initial_folders(
        self,
        folders: Sequence[types.WorkspaceFolder] | None,
        root_uri: str | None,
        root_path: str | None,
    ) -> None:
        """The folders of ``initialize``: its workspace folders, else its root."""
        uris = [folder.uri for folder in folders or []]
        if not uris and root_uri:
            uris = [root_uri]
        elif not uris and root_path:
            uris = [Path(root_path).resolve().as_uri()]
        for uri in uris:
            self._add_folder(uri)

    def _add_folder(self, uri: str) -> bool:
        path = uri_path(uri)
        if path is None:
            log.info("workspace folder %s is not on the file system: ignored", uri)
            return False
        self.registry.add_folder(uri, path)
        return True

    def discover_folders(self) -> None:
        for slot in self.registry.folder_slots():
            self.schedule(self.refresh_folder(slot.key))

    def folders_changed(
        self,
        added: Sequence[types.WorkspaceFolder],
        removed: Sequence[types.WorkspaceFolder],
    ) -> None:
        for folder in removed:
            self.registry.remove_folder(folder.uri)
        for folder in added:
            if self._add_folder(folder.uri):
                self.schedule(self.refresh_folder(folder.uri))

    def files_changed(self, uris: Sequence[str]) -> None:
        """Config files changed: re-check the folders they configure (a config file configures
        the folder it sits in)."""
        folders: list[str] = []
        for uri in uris:
            path = uri_path(uri)
            if path is None:
                continue
            for slot in self.registry.folder_slots():
                if slot.folder == path.parent and slot.key not in folders:
                    folders.append(slot.key)
        for key in folders:
            self.schedule(self.refresh_folder(key))

    async def refresh_folder(self, key: str) -> None:
        """Read a folder's config and load the model it names, if that changed."""
        slot = self.registry.slots.get(key)
        if slot is None or slot.folder is None:
            return
        try:
            found = await asyncio.to_thread(_read_config, slot.folder)
        except (ProjectConfigError, OSError) as exc:
            if not self.trust.trusted:
                self._ignore_untrusted(key, f"{exc}")
                return
            self.registry.mark_failed(key, str(exc))
            keeps = self.registry.slot_for_path(slot.folder).service
            still = f"; still serving {keeps.model_dir.root}" if keeps is not None else ""
            self.server.warn_user(f"codehone: {exc}{still}")
            return
        if found is None:
            self.registry.unconfigure(key)
            return
        config, model_fingerprint = found
        if not self.trust.trusted:
            self._ignore_untrusted(key, str(config.source))
            return
        if not config.model_inside and not self.trust.models_outside:
            why = (
                f"{config.source}: the model path {str(config.model_path)!r} is outside the "
                f"workspace folder {config.folder}; set allowModelsOutsideWorkspace to allow it"
            )
            self.registry.mark_failed(key, why)
            self.server.warn_user(f"codehone: {why}")
            return
        request = LoadRequest(
            model_path=config.model_path,
            source=str(config.source),
            open_dir=config.load_model,
            fingerprint=model_fingerprint,
        )
        if slot.wanted == request.fingerprint:
            return  # the same model as before (loaded, loading, or known to fail)
        await self.registry.load(key, request, LspLoadReporter(self.server))

    def _ignore_untrusted(self, key: str, what: str) -> None:
        """A folder's config in a workspace the editor does not trust: not followed."""
        why = (
            f"{what}: ignored, the workspace is not trusted (the editor did not pass "
            "trustedWorkspace); the global model serves this folder"
        )
        self.registry.ignore_config(key, why)
        if key not in self._said_untrusted:  # one line per folder, not per change
            self._said_untrusted.add(key)
            log.warning("%s", why)

    # -- the global slot -----------------------------------------------------------------------

    async def use_global_model(self, option: str | None) -> None:
        """Serve the ``model`` option's directory in the global slot, or ``--model`` without
        one."""
        if option:
            path = Path(option).expanduser()
            if not path.is_absolute():
                folders = self.folder_paths()
                path = (folders[0] if folders else Path.cwd()) / path
            source = "option `model`"
        elif self.model_path is not None:
            path, source = self.model_path, "--model"
        else:
            return
        request = LoadRequest(
            model_path=path,
            source=source,
            open_dir=lambda: load_model_dir(path),
            fingerprint=await asyncio.to_thread(fingerprint, path),
        )
        if self.registry.global_slot.wanted == request.fingerprint:
            return
        await self.registry.load(GLOBAL, request, LspLoadReporter(self.server))

    async def warn_if_nothing_serves(self) -> None:
        await self.settle()
        if not self.registry.services():
            self.server.warn_user(
                "codehone: no model to serve completions: start the server with --model DIR, "
                "set the `model` option, or name a model in a workspace folder's .codehone.toml"
            )
