"""codehone/status (and the `codehone.status` command): what is loaded and how fast it is.

Editors show it in a status bar; users and CI use it to see which model serves each workspace
folder (and which failed to load, and why), whether it runs on CUDA or the CPU, the latency
percentiles of recent completions, the prefix-cache hit rate (and the last request's prompt
and cached tokens), the background prefills (codehone.lsp.prefill) and the options in effect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from codehone.lsp.server import CodehoneServer

STATUS_REQUEST = "codehone/status"
STATUS_COMMAND = "codehone.status"


def status_report(ls: CodehoneServer) -> dict[str, Any]:
    registry = ls.models.registry
    services = registry.services()
    main = registry.global_slot.service or (services[0] if services else None)
    totals = registry.totals()
    totals["background_prefill"]["running"] = ls.prefill.running  # scheduled, not finished
    return {
        **registry.describe(),  # "models" (global and per folder) and "folders"
        "provider": main.provider.name if main else None,
        "provider_reason": main.provider.reason if main else None,
        **totals,  # "latency_ms", "completions", "prefix_cache", "background_prefill"
        "options": ls.options.to_json(),
        "workspace_trust": ls.models.trust.to_json(),
        "pending": ls.models.pending,
        "loads": registry.loads,
        "unloaded": registry.retired,
    }


def register(server: CodehoneServer) -> None:
    @server.feature(STATUS_REQUEST)
    def status(ls: CodehoneServer, params: Any) -> dict[str, Any]:
        return status_report(ls)

    @server.command(STATUS_COMMAND)
    def status_command(ls: CodehoneServer, *args: Any) -> dict[str, Any]:
        return status_report(ls)
