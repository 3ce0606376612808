"""End to end: which workspace folders may choose the model that runs, and what a hostile
model directory or config in one does (a warning; the server keeps answering).

A cloned repository's .codehone.toml selecting weights is a trust decision, the editor's: the
server follows a folder's config only with ``trustedWorkspace``, and one naming a model
outside its folder only with ``allowModelsOutsideWorkspace`` too."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from lsp_session import capabilities, start, wait_idle
from test_project_models import changed, detail_for, folder_entry, serving, warnings

from codehone.check.client import EditorSession
from codehone.core.model_dir import MANIFEST_NAME


def own_model(folder: Path, source: Path, name: str = "model") -> Path:
    """A copy of ``source`` inside ``folder`` (where a tuned project keeps its model)."""
    return Path(shutil.copytree(source, folder / ".codehone" / name))


async def started(
    gpt2: Path, folders: list[Path], options: dict | None
) -> tuple[EditorSession, dict]:
    session = await start(gpt2)
    await session.initialize(
        folders, capabilities=capabilities(watch_files=True), initialization_options=options
    )
    return session, await wait_idle(session)


async def test_an_untrusted_workspace_keeps_the_global_model(
    tmp_path: Path, tiny_model: Callable[[str], Path]
) -> None:
    gpt2, llama = tiny_model("gpt2"), tiny_model("llama")
    project = tmp_path / "cloned"
    project.mkdir()
    inside = own_model(project, llama)
    (project / ".codehone.toml").write_text('model = ".codehone/model"\n')
    for options in (None, {"trustedWorkspace": False}):
        session, status = await started(gpt2, [project], options)
        try:
            assert status["workspace_trust"]["trustedWorkspace"] is False
            assert serving(status, project) == str(gpt2.resolve())
            assert "not trusted" in folder_entry(status, project)["error"]
            assert await detail_for(session, project / "x.py") == "codehone · gpt2"
            assert warnings(session) == []  # a log line, not a message box
            # a changed config is still not followed
            (project / ".codehone.toml").write_text(f'model = "{inside}"\n')
            status = await changed(session, project / ".codehone.toml")
            assert serving(status, project) == str(gpt2.resolve())
            assert status["loads"] == 0
        finally:
            await session.close()


async def test_a_trusted_folder_chooses_a_model_inside_it_only(
    tmp_path: Path, tiny_model: Callable[[str], Path]
) -> None:
    gpt2, llama, qwen2 = tiny_model("gpt2"), tiny_model("llama"), tiny_model("qwen2")
    inside, outside, up, linked = (tmp_path / n for n in ("inside", "out", "up", "linked"))
    for folder in (inside, outside, up, linked):
        folder.mkdir()
    own_model(inside, llama, "llama")
    (inside / ".codehone.toml").write_text('model = ".codehone/llama"\n')
    (outside / ".codehone.toml").write_text(f'model = "{qwen2}"\n')
    shutil.copytree(qwen2, tmp_path / "sibling-model")
    (up / ".codehone.toml").write_text('model = "../sibling-model"\n')
    (linked / "models").symlink_to(qwen2.parent)  # a link inside leading out
    (linked / ".codehone.toml").write_text(f'model = "models/{qwen2.name}"\n')
    folders = [inside, outside, up, linked]

    session, status = await started(gpt2, folders, {"trustedWorkspace": True})
    try:
        assert serving(status, inside) == str((inside / ".codehone" / "llama").resolve())
        assert await detail_for(session, inside / "x.py") == "codehone · llama"
        for folder in (outside, up, linked):
            assert serving(status, folder) == str(gpt2.resolve())
            error = folder_entry(status, folder)["error"]
            assert "outside the workspace folder" in error and "allowModels" in error
        assert len(warnings(session)) == 3
    finally:
        await session.close()

    allowed = {"trustedWorkspace": True, "allowModelsOutsideWorkspace": True}
    session, status = await started(gpt2, folders, allowed)
    try:
        assert serving(status, outside) == str(qwen2.resolve())
        assert serving(status, up) == str((tmp_path / "sibling-model").resolve())
        assert serving(status, linked) == str(qwen2.resolve())
        assert warnings(session) == []
    finally:
        await session.close()


async def test_hostile_model_directories_and_configs_only_warn(
    tmp_path: Path, tiny_model: Callable[[str], Path]
) -> None:
    """A manifest whose numbers would fail every completion, a tokenizer too big to parse
    without freezing the server, a config that is not UTF-8: each folder gets one warning and
    the global model; the server answers throughout (it used to report such a model loaded
    and fail every completion with -32603, or log a traceback)."""
    gpt2 = tiny_model("gpt2")
    huge_context, huge_tokenizer, latin1 = (tmp_path / n for n in ("ctx", "tok", "latin1"))
    for folder in (huge_context, huge_tokenizer, latin1):
        folder.mkdir()
        (folder / ".codehone.toml").write_text('model = ".codehone/model"\n')
    model = own_model(huge_context, gpt2)
    raw = json.loads((model / MANIFEST_NAME).read_text())
    raw["context_length"] = 10**12
    (model / MANIFEST_NAME).write_text(json.dumps(raw))
    model = own_model(huge_tokenizer, gpt2)
    with (model / "tokenizer.json").open("r+b") as f:
        f.truncate(17 << 20)  # sparse: past the limit without being written
    (latin1 / ".codehone.toml").write_bytes("# caf\xe9\nmodel = 'm'\n".encode("latin-1"))

    session, status = await started(
        gpt2, [huge_context, huge_tokenizer, latin1], {"trustedWorkspace": True}
    )
    try:
        shown = warnings(session)
        assert len(shown) == 3 and all("\n" not in m for m in shown)
        assert (
            "context_length 1,000,000,000,000 is outside"
            in folder_entry(status, huge_context)["error"]
        )
        assert (
            "MB; codehone loads a tokenizer.json of at most"
            in folder_entry(status, huge_tokenizer)["error"]
        )
        assert "not UTF-8" in folder_entry(status, latin1)["error"]
        for folder in (huge_context, huge_tokenizer, latin1):
            assert folder_entry(status, folder)["state"] == "failed"
            assert serving(status, folder) == str(gpt2.resolve())
            assert await detail_for(session, folder / "x.py") == "codehone · gpt2"
    finally:
        await session.close()
