"""Run untrusted Python (generated code, HumanEval candidates) in a subprocess sandbox.

Each run gets a fresh temporary directory as its working directory and home (removed after),
an isolated interpreter (``python -I``: no user site-packages, no PYTHON* variables) with a
minimal environment, its own session (so a timeout kills every process it started), resource
limits (address space, CPU seconds, file size, no core dumps) and a wall-clock timeout. The
network is cut twice: the child first tries to move into a new, empty network namespace
(Linux ``unshare``, when the kernel lets it), and in any case replaces ``socket`` so that no
connection can be made from Python.

This is a guard against accidents (infinite loops, memory blow-ups, stray writes, network
calls), not a security boundary against a determined attacker: that needs a container or VM.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

_PRELUDE = r"""
import ctypes as _ctypes, socket as _socket, sys as _sys
_isolation = "python-guard"
try:
    _libc = _ctypes.CDLL(None, use_errno=True)
    for _flags in (0x40000000, 0x40000000 | 0x10000000):  # CLONE_NEWNET (| CLONE_NEWUSER)
        if _libc.unshare(_flags) == 0:
            _isolation = "network-namespace+python-guard"
            break
except Exception:
    pass
def _no_network(*args, **kwargs):
    raise OSError("network access is disabled in the codehone sandbox")
class _NoSocket(_socket.socket):
    def __init__(self, *args, **kwargs):
        _no_network()
_socket.socket = _NoSocket
_socket.create_connection = _no_network
_socket.getaddrinfo = _no_network
_socket.socketpair = _no_network
open(".isolation", "w").write(_isolation)
del _ctypes, _socket, _libc, _flags, _no_network, _NoSocket
"""


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 5.0
    memory_mb: int = 1024  # address space
    file_mb: int = 16  # largest file the code may write
    output_bytes: int = 64_000  # stdout / stderr kept (each)


@dataclass(frozen=True)
class SandboxResult:
    status: str  # passed | failed | timeout | memory
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    isolation: str  # how the network was cut

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _limit_resources(limits: SandboxLimits) -> None:
    """Runs in the child between fork and exec."""
    import resource

    memory = limits.memory_mb * 1024 * 1024
    cpu = int(limits.timeout_s) + 1
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb * 1024 * 1024,) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_python(code: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run ``code`` as a script in the sandbox; passed means it exited with status 0."""
    limits = limits or SandboxLimits()
    workdir = Path(tempfile.mkdtemp(prefix="codehone-sandbox-"))
    try:
        script = workdir / "candidate.py"
        script.write_text(_PRELUDE + "\n" + code, encoding="utf-8")
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(workdir),
            "TMPDIR": str(workdir),
            "LANG": "C.UTF-8",
            "PYTHONHASHSEED": "0",
        }
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-I", "-B", str(script)],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=lambda: _limit_resources(limits),
        )
        timed_out = False
        try:
            out, err = process.communicate(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(process.pid)
            out, err = process.communicate()
        seconds = time.monotonic() - started
        _kill_group(process.pid)  # anything it left running in its session
        isolation_file = workdir / ".isolation"
        isolation = isolation_file.read_text() if isolation_file.is_file() else "unknown"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    stdout = out[: limits.output_bytes].decode("utf-8", errors="replace")
    stderr = err[-limits.output_bytes :].decode("utf-8", errors="replace")
    code_ = process.returncode
    if timed_out or code_ in (-signal.SIGXCPU, -signal.SIGKILL):
        status = "timeout"
    elif "MemoryError" in stderr:
        status = "memory"
    else:
        status = "passed" if code_ == 0 else "failed"
    return SandboxResult(status, code_, stdout, stderr, round(seconds, 3), isolation)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
