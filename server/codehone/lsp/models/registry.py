"""Which model serves which document: a global one, and one per configured workspace folder.

A slot is the global slot (for documents no configured folder claims: the ``model`` option's
model, else the server's ``--model``, which is the default model when ``codehone serve`` was
given none) or a workspace folder whose ``.codehone.toml`` / ``[tool.codehone]`` names a model.
A document is served by the slot of the innermost folder holding it that has a model, else by
the global slot. Slots naming the same model directory (same manifest on disk) share one
loaded model.

Loading happens on a background thread, one model at a time, while the slot's previous model
keeps serving; the new one is swapped in on the event loop when ready, and a model no slot uses
any more is retired (its session and memory released once its request in flight is done). A
load that fails leaves the slot as it was and is reported; a load overtaken by a newer request
for the same slot is thrown away. All state changes happen on the event loop thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from codehone.core.errors import CodehoneError
from codehone.core.model_dir import MANIFEST_NAME, ModelDir
from codehone.core.percentiles import latency_summary
from codehone.core.providers import Device
from codehone.lsp.models.service import ModelService, prefill_totals

log = logging.getLogger("codehone.models")

GLOBAL = "global"  # the key of the global slot (the others: workspace folder URIs)
SlotState = Literal["loaded", "loading", "failed", "unconfigured"]
Fingerprint = tuple[str, int, int]


def fingerprint(model_path: Path) -> Fingerprint:
    """Identifies a model directory's current contents cheaply: its resolved path and its
    manifest's modification time and size (every export rewrites the manifest)."""
    resolved = Path(model_path).expanduser().resolve()
    try:
        stat = (resolved / MANIFEST_NAME).stat()
    except OSError:
        return (str(resolved), -1, -1)
    return (str(resolved), stat.st_mtime_ns, stat.st_size)


class LoadReporter(Protocol):
    """How a load tells the user about itself (LSP work-done progress and messages)."""

    async def begin(self, title: str, message: str) -> None: ...

    def report(self, message: str, percentage: int) -> None: ...

    def end(self, message: str) -> None: ...

    def warn(self, message: str) -> None: ...


@dataclass
class LoadRequest:
    """A model to load into a slot: ``open_dir`` validates and opens the directory (raising a
    CodehoneError naming the problem)."""

    model_path: Path
    source: str  # what chose it: "--model", "option `model`", a .codehone.toml ...
    open_dir: Callable[[], ModelDir]
    fingerprint: Fingerprint


@dataclass
class Slot:
    key: str  # GLOBAL or a workspace folder URI
    folder: Path | None  # the folder on disk (None for the global slot)
    service: ModelService | None = None
    source: str = ""
    fingerprint: Fingerprint | None = None
    state: SlotState = "unconfigured"
    error: str | None = None
    pending: int = 0  # loads requested and not finished
    generation: int = 0  # bumped by every change; a load finishing under an older one is stale
    wanted: Fingerprint | None = None  # the model last asked for (loaded, loading or failed)


class ModelRegistry:
    def __init__(
        self,
        global_service: ModelService | None,
        device: Device = "auto",
        global_source: str = "--model",
    ) -> None:
        self.device = device
        self.slots: dict[str, Slot] = {GLOBAL: Slot(GLOBAL, None)}
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="codehone-load")
        self.loads = 0
        self.retired = 0
        if global_service is not None:
            fp = fingerprint(global_service.model_dir.root)
            self._install(self.slots[GLOBAL], global_service, global_source, fp)

    # -- lookups -------------------------------------------------------------------------------

    @property
    def global_slot(self) -> Slot:
        """The slot for documents outside every configured workspace folder."""
        return self.slots[GLOBAL]

    def folder_slots(self) -> list[Slot]:
        return [slot for key, slot in self.slots.items() if key != GLOBAL]

    def slot_for_path(self, path: Path | None) -> Slot:
        """The slot serving a file: the innermost folder with a model holding it, else the
        global slot."""
        if path is not None:
            best: Slot | None = None
            for slot in self.folder_slots():
                if slot.service is None or slot.folder is None:
                    continue
                if path.is_relative_to(slot.folder) and (
                    best is None or len(slot.folder.parts) > len(best.folder.parts)  # type: ignore[union-attr]
                ):
                    best = slot
            if best is not None:
                return best
        return self.global_slot

    def service_for_path(self, path: Path | None) -> ModelService | None:
        return self.slot_for_path(path).service

    def services(self) -> list[ModelService]:
        """Every loaded model, once each."""
        seen: dict[int, ModelService] = {}
        for slot in self.slots.values():
            if slot.service is not None:
                seen.setdefault(id(slot.service), slot.service)
        return list(seen.values())

    # -- changes -------------------------------------------------------------------------------

    def add_folder(self, key: str, folder: Path) -> Slot:
        if key not in self.slots:
            self.slots[key] = Slot(key, folder)
        return self.slots[key]

    def remove_folder(self, key: str) -> None:
        slot = self.slots.pop(key, None)
        if slot is not None and slot.service is not None:
            log.info("folder %s removed", key)
            self._retire_unused(slot.service)

    def unconfigure(self, key: str) -> None:
        """The folder no longer names a model: its documents go to the global slot."""
        slot = self.slots.get(key)
        if slot is None or key == GLOBAL:
            return
        slot.generation += 1
        old = slot.service
        slot.service, slot.source, slot.fingerprint, slot.wanted = None, "", None, None
        slot.state, slot.error = "unconfigured", None
        if old is not None:
            log.info("folder %s has no model configured any more: it uses the global one", key)
            self._retire_unused(old)

    def ignore_config(self, key: str, reason: str) -> None:
        """The folder's config is not followed (``reason`` says why, in codehone/status): its
        documents go to the global slot, as if it named no model."""
        self.unconfigure(key)
        slot = self.slots.get(key)
        if slot is not None and key != GLOBAL:
            slot.error = reason

    def mark_failed(self, key: str, error: str) -> None:
        """A configuration problem: the slot keeps what it had and records why."""
        slot = self.slots.get(key)
        if slot is None:
            return
        slot.generation += 1  # a load for the configuration before this one is stale now
        slot.wanted = None  # whatever is asked for next is tried, even the model it serves
        slot.error = error
        if slot.service is None:
            slot.state = "failed"

    async def load(self, key: str, request: LoadRequest, reporter: LoadReporter) -> bool:
        """Load ``request`` into the slot ``key`` in the background and swap it in; True if
        the slot now serves it."""
        slot = self.slots.get(key)
        if slot is None:
            return False
        slot.generation += 1
        generation = slot.generation
        slot.wanted = request.fingerprint
        if slot.fingerprint == request.fingerprint and slot.service is not None:
            slot.error = None
            return True  # already serving exactly this
        shared = self._loaded(request.fingerprint)
        if shared is not None:
            log.info("%s: shares the loaded model %s", key, shared.model_dir.root)
            self._swap(slot, shared, request)
            return True
        slot.pending += 1
        if slot.service is None:
            slot.state = "loading"
        self.loads += 1
        loop = asyncio.get_running_loop()
        where = f"the model ({request.source})" if key == GLOBAL else f"the model of {slot.folder}"
        await reporter.begin("codehone: loading a model", f"{where}: {request.model_path}")

        def report(message: str, percentage: int) -> None:
            loop.call_soon_threadsafe(reporter.report, message, percentage)

        try:
            service = await loop.run_in_executor(self._loader, self._open, request, report)
        except Exception as exc:
            slot.pending -= 1
            message = str(exc) if str(exc) else type(exc).__name__
            if isinstance(exc, CodehoneError):
                log.warning("loading %s failed: %s", request.model_path, message)
            else:
                log.exception("loading %s failed unexpectedly", request.model_path)
            reporter.end(f"failed: {message}")
            if slot.generation == generation and self.slots.get(key) is slot:
                keeps = (
                    f"; still serving {slot.service.model_dir.root}"
                    if slot.service is not None
                    else ""
                )
                slot.error = message
                if slot.service is None:
                    slot.state = "failed"
                reporter.warn(f"codehone: {where} could not be loaded: {message}{keeps}")
            return False
        slot.pending -= 1
        if slot.generation != generation or self.slots.get(key) is not slot:
            log.info("dropping %s: a newer change overtook it", request.model_path)
            reporter.end("superseded")
            self._retire_unused(service)
            return False
        self._swap(slot, service, request)
        reporter.end(f"loaded {service.model_dir.root.name} on {service.provider.name}")
        return True

    def _open(self, request: LoadRequest, report: Callable[[str, int], None]) -> ModelService:
        """On the loader thread: validate, then create the session."""
        report(f"validating {request.model_path}", 10)
        model_dir = request.open_dir()
        report(f"starting {model_dir.manifest.architecture} ({model_dir.root.name})", 50)
        return ModelService.load(model_dir, self.device)

    def _loaded(self, fp: Fingerprint) -> ModelService | None:
        for slot in self.slots.values():
            if slot.service is not None and slot.fingerprint == fp:
                return slot.service
        return None

    def _install(self, slot: Slot, service: ModelService, source: str, fp: Fingerprint) -> None:
        slot.service, slot.source, slot.fingerprint, slot.wanted = service, source, fp, fp
        slot.state, slot.error = "loaded", None

    def _swap(self, slot: Slot, service: ModelService, request: LoadRequest) -> None:
        old = slot.service
        self._install(slot, service, request.source, request.fingerprint)
        log.info(
            "%s now uses %s (%s)",
            "the global slot" if slot.key == GLOBAL else slot.key,
            service.model_dir.root,
            request.source,
        )
        if old is not None and old is not service:
            self._retire_unused(old)

    def _retire_unused(self, service: ModelService) -> None:
        if any(slot.service is service for slot in self.slots.values()):
            return
        service.retire()
        self.retired += 1

    def close(self, keep: ModelService | None = None) -> None:
        """Close every model but ``keep`` (one that outlives this registry)."""
        for service in self.services():
            if service is not keep:
                service.close()
        self._loader.shutdown(wait=False, cancel_futures=True)

    # -- reporting -----------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The models per slot, for codehone/status."""
        models = []
        for slot in self.slots.values():
            if slot.key != GLOBAL and slot.state == "unconfigured" and slot.error is None:
                continue  # a folder without a model of its own: see "folders"
            entry: dict[str, Any] = {
                "folder": None if slot.key == GLOBAL else slot.key,
                "state": slot.state,
                "source": slot.source or None,
                "loading": slot.pending > 0,
                "error": slot.error,
                "model_dir": None,
            }
            service = slot.service
            if service is not None:
                manifest = service.model_dir.manifest
                entry.update(
                    model_dir=str(service.model_dir.root),
                    architecture=manifest.architecture,
                    context_length=manifest.context_length,
                    fim=manifest.special_tokens.fim is not None,
                    provider=service.provider.name,
                    completions=len(service.latencies_ms),
                    latency_ms=latency_summary(list(service.latencies_ms)),
                )
            models.append(entry)
        folders = []  # a list, not an object keyed by URI: clients turn keys into names
        for slot in self.folder_slots():
            serving = self.slot_for_path(slot.folder).service
            folders.append(
                {
                    "folder": slot.key,
                    "model_dir": str(serving.model_dir.root) if serving is not None else None,
                }
            )
        return {"models": models, "folders": folders}

    def totals(self) -> dict[str, Any]:
        """Latency and prefix-cache figures over every loaded model."""
        services = self.services()
        latencies = [ms for service in services for ms in service.latencies_ms]
        requests = sum(s.requests for s in services)
        hits = sum(s.prefix_hits for s in services)
        reused = sum(s.engine.prefix_stats.reused_tokens for s in services if not s.released)
        prefilled = sum(s.engine.prefix_stats.prefilled_tokens for s in services if not s.released)
        last = max(services, key=lambda s: s.last_request_at, default=None)
        return {
            "latency_ms": latency_summary(latencies),
            "completions": len(latencies),
            "cancelled": sum(s.cancelled for s in services),
            # answered from the completion offered before, its start typed (no model call)
            "typed_ahead": sum(s.typed_ahead.hits for s in services),
            "prefix_cache": {
                "requests": requests,
                "hits": hits,
                "hit_rate": round(hits / requests, 4) if requests else 0.0,
                "reused_tokens": reused,
                "prefilled_tokens": prefilled,
                "token_reuse_rate": round(reused / max(1, reused + prefilled), 4),
                # the last request that reached a model: its prompt, and how much was cached
                "last_prompt_tokens": last.last_prompt_tokens if last else 0,
                "last_reused_tokens": last.last_reused_tokens if last else 0,
            },
            "background_prefill": prefill_totals(services),
        }
