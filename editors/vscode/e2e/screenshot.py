"""Render the README's picture of ghost text in the real VS Code (code-server, headless Chromium).

    python editors/vscode/e2e/screenshot.py [OUT.png]      # default editors/vscode/ghost-text.png

(`make -C editors vscode-screenshot` runs setup.sh, then this.) The model is CODEHONE_E2E_MODEL
or models/default; the file is a small realistic script, and the ghost text is whatever the
model completes after `logger = logging.` (with the default model: `getLogger(__name__)`).
Exits non-zero if no ghost text shows (three tries of 20 s; screenshots in the artifacts).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import ROOT, VSCODE_DIR, CodeServer, Tools, Workbench, artifacts_dir  # noqa: E402

WIDTH, HEIGHT, SCALE = 960, 540, 2

BEFORE = '''"""Copy a file and log what happens."""

import logging
import shutil
import sys

logger = logging'''
TYPED = "."
AFTER = '''


def copy(source, destination):
    logger.info("copying %s to %s", source, destination)
    shutil.copyfile(source, destination)


def main(argv):
    if len(argv) != 3:
        print("usage: copy.py SOURCE DESTINATION", file=sys.stderr)
        return 2
    copy(argv[1], argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
'''


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else VSCODE_DIR / "ghost-text.png").resolve()
    tools = Tools.find()
    vsix = Path(os.environ.get("CODEHONE_E2E_VSIX") or VSCODE_DIR / "codehone.vsix")
    if not vsix.exists():
        raise SystemExit(f"{vsix} is missing: make -C editors vsix")
    command = json.loads(os.environ["CODEHONE_E2E_SERVER"]) if os.environ.get("CODEHONE_E2E_SERVER") else [
        str(ROOT / ".venv" / "bin" / "codehone"), "serve"]
    model = str(Path(os.environ.get("CODEHONE_E2E_MODEL") or ROOT / "models" / "default").resolve())
    server = CodeServer(tools, vsix, command, model)
    server.start()
    wb = None
    try:
        server.write_settings(**{
            "editor.minimap.enabled": False,
            "editor.fontSize": 15,
            "editor.suggestOnTriggerCharacters": False,  # ghost text alone (see e2e README, bug b)
            "workbench.statusBar.visible": True,
            "breadcrumbs.enabled": False,
            "window.commandCenter": True,
        })
        folder = server.base / "copytool"
        folder.mkdir()
        (folder / "copy.py").write_text(BEFORE + AFTER)
        wb = Workbench(tools, server, folder, artifacts_dir() / "screenshot")
        wb.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": WIDTH, "height": HEIGHT, "deviceScaleFactor": SCALE, "mobile": False})
        wb.open()
        wb.wait_running(Path(model).name)
        wb.open_file("copy.py")
        from selenium.webdriver.common.keys import Keys

        wb.chord(Keys.CONTROL, "b")  # close the side bar: the editor is the picture
        # Put the cursor after `logger = logging` (line 7), as if typing it.
        wb.chord(Keys.CONTROL, Keys.HOME)
        for _ in range(BEFORE.count("\n")):
            wb.keys(Keys.DOWN)
        wb.keys(Keys.END)
        time.sleep(3)  # the folder's settings apply a moment after opening (see the tests)
        state = None
        for attempt in range(3):  # a keystroke VS Code asked nothing for: type it again
            if attempt:
                wb.keys(Keys.BACKSPACE)
                time.sleep(1)
            wb.type(TYPED)
            try:
                state = wb.wait_ghost(20)
                break
            except TimeoutError:
                wb.shot(f"no-ghost-{attempt + 1}")
        if state is None:
            print(f"no ghost text; see {wb.shots}", file=sys.stderr)
            return 1
        time.sleep(1.5)  # the status bar's latency figure
        wb.driver.save_screenshot(str(out))
        print(f"{out}: ghost text {state.ghost!r} ({WIDTH}x{HEIGHT} at {SCALE}x)")
        return 0
    finally:
        if wb is not None:
            wb.close()
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
