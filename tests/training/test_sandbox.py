"""The subprocess sandbox that runs generated code: its limits hold."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from codehone_training.evaluation.sandbox import SandboxLimits, run_python


def test_a_good_program_passes_and_a_failing_one_fails() -> None:
    ok = run_python("print(sum(range(10)))")
    assert ok.passed and ok.stdout == "45\n" and ok.returncode == 0
    bad = run_python("assert 1 == 2, 'nope'")
    assert bad.status == "failed" and "AssertionError: nope" in bad.stderr


def test_timeout_kills_the_program_and_its_children() -> None:
    started = time.monotonic()
    result = run_python(
        "import subprocess, sys\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "while True: pass\n",
        SandboxLimits(timeout_s=1.0),
    )
    assert result.status == "timeout"
    assert time.monotonic() - started < 10


def test_memory_limit_holds() -> None:
    result = run_python("x = bytearray(1 << 30)\nprint('allocated')", SandboxLimits(memory_mb=256))
    assert result.status == "memory" and "allocated" not in result.stdout


def test_no_network() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)  # the kernel completes connections to it even before accept()
    port = server.getsockname()[1]
    try:
        result = run_python(
            "import socket\n"
            f"socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "print('connected')\n"
        )
        below_the_guard = run_python(
            "import _socket\n"
            "s = _socket.socket()\n"
            "s.settimeout(2)\n"
            f"s.connect(('127.0.0.1', {port}))\n"
            "print('connected')\n"
        )
        server.setblocking(False)
        try:
            server.accept()
            reached = True
        except BlockingIOError:
            reached = False
    finally:
        server.close()
    assert result.status == "failed" and "network access is disabled" in result.stderr
    assert "connected" not in result.stdout
    if below_the_guard.isolation.startswith("network-namespace"):
        assert "connected" not in below_the_guard.stdout
        assert not reached


def test_runs_in_a_temporary_directory_that_is_removed() -> None:
    result = run_python(
        "import os\nopen('left_behind.txt', 'w').write('x')\nprint(os.getcwd())\n"
        "print(os.environ.get('HOME'))\n"
    )
    cwd, home = result.stdout.split()
    assert cwd == home and "codehone-sandbox-" in cwd
    assert not Path(cwd).exists()


def test_file_size_limit_holds() -> None:
    result = run_python("open('big', 'wb').write(b'x' * (8 << 20))", SandboxLimits(file_mb=1))
    assert not result.passed
