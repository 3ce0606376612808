"""codehone/status (and the `codehone.status` command): what is loaded and how fast it is.

Editors show it in a status bar; users and CI use it to see which model serves a folder,
whether it runs on CUDA or the CPU, and the latency percentiles of recent completions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from codehone.lsp_server import CodehoneServer

STATUS_REQUEST = "codehone/status"
STATUS_COMMAND = "codehone.status"


def status_report(ls: CodehoneServer) -> dict[str, Any]:
    model = ls.model
    manifest = model.model_dir.manifest
    return {
        "models": [
            {
                "folder": None,
                "model_dir": str(model.model_dir.root),
                "architecture": manifest.architecture,
                "context_length": manifest.context_length,
                "fim": manifest.special_tokens.fim is not None,
            }
        ],
        "provider": model.provider.name,
        "provider_reason": model.provider.reason,
        "latency_ms": model.latency_percentiles(),
        "completions": len(model.latencies_ms),
    }


def register(server: CodehoneServer) -> None:
    @server.feature(STATUS_REQUEST)
    def status(ls: CodehoneServer, params: Any) -> dict[str, Any]:
        return status_report(ls)

    @server.command(STATUS_COMMAND)
    def status_command(ls: CodehoneServer, *args: Any) -> dict[str, Any]:
        return status_report(ls)
