"""The extension in a real VS Code (code-server 4.139.1 = VS Code 1.139.1), driven through
headless Chromium: what a person sees and does. See README.md in this folder.

The tests at the end (a, b, d) were strict xfails for server bugs found here, until fixed: an
auto-closed bracket doubled, the menu opening on every space and bracket, ghost text repeating
the selected menu item.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

from harness import GRACE_S, CodeServer, Workbench, wait_for

# Only ghost text, no menu: for tests of inline completion alone (VS Code's quick suggestions
# open its word menu while typing; the menu's own tests keep VS Code's defaults).
NO_MENU = {
    "editor.suggestOnTriggerCharacters": False,
    "editor.quickSuggestions": {"other": "off", "comments": "off", "strings": "off"},
}

# No ghost text, only the menu: for tests of the menu alone.
NO_INLINE = {"editor.inlineSuggest.enabled": False}

PREFIX = 'import os\n\n\ndef main():\n    path = os.path'
# VS Code applies a folder's .vscode/settings.json a moment after the window opens; an edit
# made before that gets no inline completion request at all (seen in 3 of 4 tries with no
# pause, none in 10 with 3 s). A person does not type within a second of opening a window.
SETTLE_S = 3.0


def write_workspace(folder: Path, files: dict[str, str], settings: dict | None = None) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    if settings:
        (folder / ".vscode").mkdir(exist_ok=True)
        (folder / ".vscode" / "settings.json").write_text(json.dumps(settings, indent=2))


def start(open_workbench, folder: Path, files: dict[str, str], settings: dict | None = None,
          model: str = "default", open_name: str | None = "main.py") -> Workbench:
    write_workspace(folder, files, settings)
    wb = open_workbench()
    wb.wait_running(model)
    if open_name:
        wb.open_file(open_name)
        from selenium.webdriver.common.keys import Keys

        wb.chord(Keys.CONTROL, Keys.END)
        time.sleep(SETTLE_S)
    return wb


def new_pids(server: CodeServer, before: list[int], timeout: float = 60) -> list[int]:
    return wait_for("a new codehone serve process", lambda: sorted(set(server.server_pids()) - set(before)),
                    timeout)


def gone(pids: list[int]) -> bool:
    return all(not Path(f"/proc/{p}").exists() or "zombie" in _state(p) for p in pids)


def _state(pid: int) -> str:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line
    except OSError:
        return "gone"
    return ""


# ---- inline completion (ghost text) ---------------------------------------------------------


def test_ghost_text_appears_and_tab_accepts_it(open_workbench, workspace: Path) -> None:
    wb = start(open_workbench, workspace, {"main.py": PREFIX}, NO_MENU)
    wb.shot("opened")
    wb.type(".")
    state = wb.wait_ghost()
    wb.shot("ghost-text")
    ghost = state.ghost
    assert ghost and ghost.strip(), state
    style = wb.js("""const s = document.querySelector('.monaco-editor .view-lines .ghost-text-decoration');
                     const c = getComputedStyle(s); return {fontStyle: c.fontStyle, color: c.color, opacity: c.opacity};""")
    assert style["fontStyle"] == "italic", style
    assert state.text.endswith("path = os.path."), state.text  # ghost text is not document text
    assert not state.suggest, "NO_MENU keeps the menu away"
    from selenium.webdriver.common.keys import Keys

    wb.keys(Keys.TAB)
    wait_for("the ghost text to be accepted", lambda: not wb.editor().ghost, 10)
    wb.shot("accepted")
    saved = wb.save(workspace / "main.py")
    assert saved == PREFIX + "." + ghost


def test_no_ghost_text_in_the_middle_of_a_word(open_workbench, workspace: Path) -> None:
    """The server skips a cursor followed by an identifier character; nothing shows."""
    wb = start(open_workbench, workspace, {"main.py": "import os\n\n\ndef main():\n    x = os.pa"}, NO_MENU)
    from selenium.webdriver.common.keys import Keys

    wb.keys(Keys.LEFT, Keys.LEFT)
    wb.type("t")  # os.tpa: the cursor sits before "pa"
    time.sleep(3)
    assert wb.editor().ghost is None
    wb.shot("no-ghost")


# ---- the menu -------------------------------------------------------------------------------


def test_ctrl_space_menu_inserts_the_completion(open_workbench, workspace: Path) -> None:
    wb = start(open_workbench, workspace, {"main.py": PREFIX + "."})
    from selenium.webdriver.common.keys import Keys

    wb.chord(Keys.CONTROL, Keys.SPACE)
    state = wb.wait_suggest()
    wb.shot("menu")
    ours = [r for r in state.rows if r["detail"].startswith("codehone")]
    assert ours, state.rows
    assert ours[0]["detail"] == "codehone · default"
    assert ours[0]["focused"], "the greedy completion is preselected"
    label = ours[0]["label"]
    wb.keys(Keys.ENTER)
    wait_for("the menu to close", lambda: not wb.editor().suggest, 10)
    wb.shot("inserted")
    saved = wb.save(workspace / "main.py")
    # The label is the completion's first line, stripped (and cut at 80 characters).
    assert saved.startswith(PREFIX + "." + label), saved
    assert "\n" in saved[len(PREFIX + "." + label):] or saved == PREFIX + "." + label


# ---- status bar and commands ----------------------------------------------------------------


def test_status_bar_shows_model_and_provider(open_workbench, workspace: Path, model: Path) -> None:
    write_workspace(workspace, {"main.py": PREFIX})
    wb = open_workbench()
    item = wb.wait_running(model.name)
    wb.shot("status-bar")
    assert re.fullmatch(rf"{re.escape(model.name)} · (CPU|CUDA|TensorRT|ROCm|CoreML|DirectML)( · .*)?",
                        item["text"]), item
    assert "codehone: running" in item["label"], item
    assert f"dir: {model}" in item["label"], item
    assert re.search(r"provider: \w+ExecutionProvider", item["label"]), item


def test_commands_toggle_restart_and_show_log(open_workbench, workspace: Path, code_server: CodeServer) -> None:
    before = code_server.server_pids()
    wb = start(open_workbench, workspace, {"main.py": PREFIX}, NO_MENU)
    [pid] = new_pids(code_server, before)

    # Toggle off: the status bar says so, the server stops, typing brings no ghost text.
    wb.run_command("codehone: Toggle Completions")
    item = wb.wait_status("completions off", lambda i: "circle-slash" in i["icons"], 30)
    wb.shot("toggled-off")
    assert "completions are off" in item["label"], item
    assert json.loads(code_server.settings_path.read_text())["codehone.enable"] is False
    wait_for(f"the server {pid} to stop", lambda: gone([pid]), 30)
    wb.type(".")
    time.sleep(3)
    assert wb.editor().ghost is None
    wb.shot("off-no-ghost")

    # Toggle on: running again, with a new server, and ghost text again.
    wb.run_command("codehone: Toggle Completions")
    wb.wait_running("default")
    [pid2] = new_pids(code_server, before + [pid])
    from selenium.webdriver.common.keys import Keys

    wb.keys(Keys.BACKSPACE)
    wb.type(".")
    wb.wait_ghost()
    wb.shot("toggled-on")
    wb.keys(Keys.ESCAPE)

    # Restart: a new process replaces the old one.
    wb.run_command("codehone: Restart Server")
    [pid3] = new_pids(code_server, before + [pid, pid2])
    wait_for(f"the old server {pid2} to stop", lambda: gone([pid2]), 30)
    wb.wait_running("default")
    wb.shot("restarted")

    # Show Server Log: the output channel in the panel, and the server's log file in an editor.
    wb.run_command("codehone: Show Server Log")
    wait_for("a server.log editor", lambda: wb.js(
        "return [...document.querySelectorAll('.tabs-container .tab')].some(t => (t.getAttribute('aria-label') || '').startsWith('server.log'))"),
             20)
    wait_for("the codehone output channel in the panel", lambda: wb.js(
        """const p = document.querySelector('.part.panel');
           if (!p || p.offsetParent === null) return false;
           return [...p.querySelectorAll('.monaco-editor .view-line')].some(l => l.textContent.includes('Starting:'));"""),
             20)
    wb.shot("show-log")
    assert pid3 in code_server.server_pids()


def test_changing_the_model_setting_swaps_the_model(open_workbench, workspace: Path, code_server: CodeServer,
                                                      alt_model: Path) -> None:
    before = code_server.server_pids()
    wb = start(open_workbench, workspace, {"main.py": PREFIX + "."})
    [pid] = new_pids(code_server, before)
    wb.shot("default-model")
    wb.set_user_setting("codehone.model", str(alt_model))
    item = wb.wait_running("alt", 60)
    wb.shot("alt-model")
    assert f"dir: {alt_model}" in item["label"], item
    wait_for(f"the old server {pid} to stop", lambda: gone([pid]), 30)
    from selenium.webdriver.common.keys import Keys

    wb.chord(Keys.CONTROL, Keys.SPACE)
    state = wb.wait_suggest()
    wb.shot("alt-menu")
    assert any(r["detail"] == "codehone · alt" for r in state.rows), state.rows


def test_workspace_codehone_toml_selects_the_folders_model(open_workbench, workspace: Path,
                                                           alt_model: Path) -> None:
    # the model inside the folder, where `codehone tune` puts it: the server follows a trusted
    # workspace's config to a model inside it (one outside needs allowModelsOutsideWorkspace)
    files = {"main.py": PREFIX + ".", ".codehone.toml": '[model]\npath = ".codehone/alt"\n'}
    write_workspace(workspace, files)
    shutil.copytree(alt_model, workspace / ".codehone" / "alt")
    wb = open_workbench()
    item = wb.wait_status("the folder's model", lambda i: "model: alt" in i["label"], 90)
    wb.shot("status-folder-model")
    assert "for: " in item["label"] and workspace.name in item["label"], item
    wb.open_file("main.py")
    from selenium.webdriver.common.keys import Keys

    wb.chord(Keys.CONTROL, Keys.END)
    wb.chord(Keys.CONTROL, Keys.SPACE)
    state = wb.wait_suggest()
    wb.shot("menu-folder-model")
    assert any(r["detail"] == "codehone · alt" for r in state.rows), state.rows


def test_trace_server_setting_traces_lsp_messages(open_workbench, workspace: Path, code_server: CodeServer) -> None:
    """codehone.trace.server = messages puts the LSP traffic in the codehone output channel
    (vscode-languageclient 11 alone traces only when the channel's log level is Trace)."""
    code_server.write_settings(**{"codehone.trace.server": "messages"})
    wb = start(open_workbench, workspace, {"main.py": PREFIX}, NO_MENU)
    wb.type(".")
    wb.wait_ghost()

    def traced() -> list[Path]:
        return [p for p in code_server.exthost_logs() if p.name.endswith("codehone.log")
                and "Sending request 'textDocument/inlineCompletion" in p.read_text(errors="replace")]

    logs = wait_for("trace lines in the codehone output channel's log", traced, 30)
    wb.shot("traced")
    assert "Received response 'textDocument/inlineCompletion" in logs[-1].read_text()


def test_closing_the_window_stops_the_server(open_workbench, workspace: Path, code_server: CodeServer) -> None:
    before = code_server.server_pids()
    hosts_before = code_server.extension_host_pids()
    wb = start(open_workbench, workspace, {"main.py": PREFIX})
    pids = new_pids(code_server, before)
    hosts = sorted(set(code_server.extension_host_pids()) - set(hosts_before))
    assert hosts, "an extension host for this window"
    wb.shot("before-close")
    wb.close()
    started = time.monotonic()
    wait_for(f"the servers {pids} to stop after the browser closed", lambda: gone(pids), GRACE_S + 30)
    took = time.monotonic() - started
    assert gone(hosts), "the window's extension host is gone too"
    print(f"server stopped {took:.1f} s after the browser closed (grace time {GRACE_S} s)")


# ---- editing: the server bugs found here (strict xfails until they were fixed) --------------

AUTOCLOSE_PREFIX = "import os\n\n\ndef main():\n    for name in os.listdir"


@pytest.mark.parametrize("accept", ["tab", "menu"])
def test_a_accepting_after_an_autoclosed_bracket_does_not_double_it(open_workbench, workspace: Path,
                                                                     accept: str) -> None:
    """(a) VS Code auto-closes `(`; the server's completion closes the bracket itself and goes
    on (`path):`). Its range covers the auto-closed `)`, so accepting it replaces that `)`
    (VS Code draws the ghost text around the kept `)`: `path` before it, `:` after)."""
    from selenium.webdriver.common.keys import Keys

    settings = NO_MENU if accept == "tab" else {**NO_INLINE, "editor.suggestOnTriggerCharacters": False}
    wb = start(open_workbench, workspace, {"main.py": AUTOCLOSE_PREFIX}, settings)
    wb.type("(")
    if accept == "tab":
        state = wb.wait_ghost()
        completion = state.ghost or ""
    else:
        time.sleep(1)
        wb.chord(Keys.CONTROL, Keys.SPACE)
        state = wb.wait_suggest()
        completion = next(r["label"] for r in state.rows if r["detail"].startswith("codehone"))
    wb.shot(f"before-{accept}")
    assert state.text.endswith("os.listdir()"), "VS Code auto-closed the bracket"
    wb.keys(Keys.TAB if accept == "tab" else Keys.ENTER)
    wait_for("the completion to be accepted", lambda: not (s := wb.editor()).ghost and not s.suggest, 10)
    wb.shot(f"after-{accept}")
    line = wb.save(workspace / "main.py").splitlines()[-1]
    if ")" not in completion and line == AUTOCLOSE_PREFIX.splitlines()[-1] + "(" + completion + ")":
        pytest.skip(f"this model's completion here closes no bracket: {completion!r}")
    assert line.count("(") == line.count(")"), f"unbalanced after accepting {completion!r}: {line!r}"


@pytest.mark.parametrize("char", [" ", "("], ids=["space", "paren"])
def test_b_space_and_bracket_do_not_open_the_menu(open_workbench, workspace: Path, char: str) -> None:
    """(b) A client with ghost text gets no trigger characters: the menu comes on Ctrl+Space
    only (it used to open after every space, `(`, `.` and line break)."""
    from selenium.webdriver.common.keys import Keys

    prefix = "import os\n\n\ndef main():\n    value =" if char == " " else AUTOCLOSE_PREFIX
    wb = start(open_workbench, workspace, {"main.py": prefix}, NO_INLINE)
    wb.type(char)
    time.sleep(2.5)  # time for a menu to come
    state = wb.editor()
    wb.shot("after-typing")
    if not state.suggest:
        # Not opened: make sure that is the trigger characters, not a model with nothing to say.
        wb.chord(Keys.CONTROL, Keys.SPACE)
        asked = wb.wait_suggest(15)
        wb.shot("ctrl-space")
        assert any(r["detail"].startswith("codehone") for r in asked.rows), asked.rows
        wb.keys(Keys.ESCAPE)
    assert not state.suggest, f"the menu opened after typing {char!r}: {state.rows}"


def test_d_ghost_text_and_menu_do_not_show_the_same_completion(open_workbench, workspace: Path) -> None:
    """(d) With the menu open VS Code asks the inline provider again, passing the selected item
    (selectedCompletionInfo); when it is ours the server answers no ghost text, so the same
    completion never shows twice (as the menu item and as ghost text after it)."""
    from selenium.webdriver.common.keys import Keys

    wb = start(open_workbench, workspace, {"main.py": PREFIX + "."})
    wb.chord(Keys.CONTROL, Keys.SPACE)
    state = wb.wait_suggest()
    ours = [r for r in state.rows if r["detail"].startswith("codehone")]
    assert ours, state.rows
    with_ghost = None
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and with_ghost is None:
        s = wb.editor()
        if s.suggest and s.ghost:
            with_ghost = s
        time.sleep(0.2)
    wb.shot("menu-and-ghost")
    if with_ghost is not None:
        first = with_ghost.ghost.split("\n", 1)[0].strip()
        assert first not in [r["label"] for r in ours], (
            f"the menu item {ours[0]['label']!r} and the ghost text {with_ghost.ghost!r} at once")
        focused = [r for r in with_ghost.rows if r["focused"]]
        assert not any(r["detail"].startswith("codehone") for r in focused), (
            f"ghost text {with_ghost.ghost!r} beside our selected menu item {focused}")
