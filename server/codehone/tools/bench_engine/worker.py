"""One contender per process: the worker that runs it, and the handle the benchmark drives it by.

Why processes: runtimes sharing one process share its CPU time in ways a user's setup never
would (an idle OpenMP or ONNX Runtime pool spinning while the other library works), OpenMP's
wait policy can only be set before the library loads, and a process's resident memory is the
contender's own. So each contender loads in a worker of its own; the benchmark hands every
worker the same token ids, one request at a time, and the workers not being asked sleep.

The protocol is one JSON object per line: requests on the worker's stdin, replies on its
stdout (anything a library prints goes to stderr, which is kept in a log file and quoted when
the worker fails). Run as ``python -m codehone.tools.bench_engine.worker``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import selectors
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from codehone.tools.bench_engine.config import ContenderSpec

# Longest a request may take (a big model's load on a busy machine) before the worker is given up.
REQUEST_TIMEOUT_S = 1800.0


class WorkerError(RuntimeError):
    """The worker failed a request, exited or stopped answering."""


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip().replace("\n", " ")[:300]


# ---------------------------------------------------------------------------------------------
# The worker process
# ---------------------------------------------------------------------------------------------


def _handle(request: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    from codehone.tools.bench_engine.contenders import load_contender

    op = request["op"]
    if op == "load":
        state["contender"] = load_contender(ContenderSpec(**request["spec"]))
        return {"describe": state["contender"].describe()}
    contender = state["contender"]
    if op == "cold":
        return contender.cold(request["prompt"], request["new_tokens"])
    if op == "typing":
        return {"typing": contender.typing(request["prompt"])}
    if op == "logits":
        import numpy as np

        logits = np.asarray(contender.last_logits(request["prompt"]), dtype=np.float32)
        return {"logits": base64.b64encode(logits.tobytes()).decode("ascii")}
    raise ValueError(f"unknown request {op!r}")


def main() -> int:
    """Answer requests until stdin closes or an ``exit`` request."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # a library's print() or C-level output must not corrupt the protocol
    sys.stdout = sys.stderr
    state: dict[str, Any] = {}
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("op") == "exit":
            break
        try:
            reply = _handle(request, state)
        except Exception as exc:
            reply = {"error": _short(exc)}
        protocol.write(json.dumps(reply) + "\n")
    return 0


# ---------------------------------------------------------------------------------------------
# The benchmark's handle on a worker
# ---------------------------------------------------------------------------------------------


def decode_logits(reply: dict[str, Any]) -> Any:
    import numpy as np

    return np.frombuffer(base64.b64decode(reply["logits"]), dtype=np.float32)


class Worker:
    """A started worker process for ``spec``; ``request`` sends one request and waits."""

    def __init__(self, spec: ContenderSpec) -> None:
        self.spec = spec
        self._log: IO[bytes] = tempfile.TemporaryFile()  # the worker's stderr
        env = {**os.environ, **spec.environment(), "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "codehone.tools.bench_engine.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
        )
        self.describe = ""
        self.error = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, request: dict[str, Any]) -> None:
        """Send a request without waiting for its reply (``receive`` it later)."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode("utf-8"))
            self.process.stdin.flush()
        except OSError:
            raise WorkerError(self._exited()) from None

    def receive(self, timeout: float = REQUEST_TIMEOUT_S) -> dict[str, Any]:
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                self.close()
                raise WorkerError(f"no answer in {timeout:.0f} s")
        line = self.process.stdout.readline()
        if not line:
            raise WorkerError(self._exited())
        reply = json.loads(line)
        if "error" in reply:
            raise WorkerError(reply["error"])
        return reply

    def request(
        self, request: dict[str, Any], timeout: float = REQUEST_TIMEOUT_S
    ) -> dict[str, Any]:
        self.send(request)
        return self.receive(timeout)

    def load(self) -> None:
        self.send({"op": "load", "spec": asdict(self.spec)})

    def memory_mib(self) -> tuple[float | None, float | None]:
        """The worker's resident memory now and at its peak (Linux; None elsewhere)."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None, None
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)

        def mib(name: str) -> float | None:
            value = fields.get(name, "").split()
            return int(value[0]) / 1024 if value else None

        return mib("VmRSS"), mib("VmHWM")

    def _exited(self) -> str:
        code = self.process.wait(timeout=30)
        self._log.seek(0)
        lines = [line for line in self._log.read().decode("utf-8", "replace").splitlines() if line]
        tail = " | ".join(lines[-3:])[-400:]
        return f"the worker exited with code {code}" + (f": {tail}" if tail else "")

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError, WorkerError):
                self.send({"op": "exit"})
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._log.close()


if __name__ == "__main__":
    sys.exit(main())
