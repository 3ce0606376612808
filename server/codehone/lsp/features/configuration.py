"""workspace/configuration and workspace/didChangeConfiguration: the user's options, live.

Editors keep settings in their own UI and change them while the server runs. Options start from
``initializationOptions``; after ``initialized`` and on every ``didChangeConfiguration`` the
server pulls the ``codehone`` section (``workspace/configuration``) when the client supports
it, else it takes what the notification pushes (``{"settings": {"codehone": {...}}}``, or the
options bare). Parsing is field by field (``codehone.lsp.config``): a bad value gets one warning
(log and window/logMessage) and its previous value, never a crash. A changed ``model`` loads
the new default model in the background.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from codehone.lsp.config import SECTION

if TYPE_CHECKING:
    from codehone.lsp.server import CodehoneServer

log = logging.getLogger("codehone.configuration")
NOT_PULLED = object()  # the client cannot be asked (or did not answer)
_TIMEOUT_S = 10.0


async def pull_settings(ls: CodehoneServer) -> Any:
    """The client's ``codehone`` section, or NOT_PULLED."""
    if not ls.supports("workspace.configuration"):
        return NOT_PULLED
    params = types.ConfigurationParams(items=[types.ConfigurationItem(section=SECTION)])
    try:
        result = await asyncio.wait_for(ls.workspace_configuration_async(params), _TIMEOUT_S)
    except Exception as exc:
        log.warning("workspace/configuration failed: %s", exc)
        return NOT_PULLED
    return result[0] if result else None


async def register_for_changes(ls: CodehoneServer) -> None:
    """Clients that pull configuration send change notifications only to servers that ask."""
    if not (
        ls.supports("workspace.configuration")
        and ls.supports("workspace.did_change_configuration.dynamic_registration")
    ):
        return
    registration = types.Registration(
        id="codehone-configuration",
        method=types.WORKSPACE_DID_CHANGE_CONFIGURATION,
        register_options=types.DidChangeConfigurationRegistrationOptions(section=SECTION),
    )
    await ls.register_capability(registration, "for configuration changes", _TIMEOUT_S)


async def reload_settings(ls: CodehoneServer, pushed: Any) -> None:
    settings = await pull_settings(ls)
    if settings is not NOT_PULLED:
        ls.apply_settings(settings, "workspace/configuration")
    elif pushed is not None:
        ls.apply_settings(pushed, "workspace/didChangeConfiguration")


def register(server: CodehoneServer) -> None:
    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(
        ls: CodehoneServer, params: types.DidChangeConfigurationParams
    ) -> None:
        ls.models.schedule(reload_settings(ls, params.settings))
