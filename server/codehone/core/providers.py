"""Choose the ONNX Runtime execution provider, checking for CUDA before asking for it.

onnxruntime-gpu registers its CUDA provider even on machines without CUDA; creating a session
with it there logs an error-level message and silently falls back. codehone checks first (the
driver and the CUDA 13 / cuDNN 9 libraries it needs) and says in one clear log line which
provider serves and why, so running on the CPU is never silent.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
from dataclasses import dataclass
from functools import cache
from typing import Literal

from codehone.core.errors import CodehoneError

log = logging.getLogger("codehone.providers")

Device = Literal["auto", "cuda", "cpu"]
CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"
# What onnxruntime-gpu 1.31 (CUDA 13) loads: the driver, the runtime, cuBLAS and cuDNN.
_CUDA_LIBRARIES = ("libcuda.so.1", "libcudart.so.13", "libcublas.so.13", "libcudnn.so.9")


@dataclass(frozen=True)
class ProviderChoice:
    name: str  # CUDA_PROVIDER or CPU_PROVIDER
    reason: str

    @property
    def is_cuda(self) -> bool:
        return self.name == CUDA_PROVIDER

    @property
    def device_type(self) -> str:
        """The OrtValue / IO-binding device name for this provider."""
        return "cuda" if self.is_cuda else "cpu"


@cache
def cuda_unavailable_reason() -> str | None:
    """None when the CUDA provider can run here, else why not (one short phrase)."""
    import onnxruntime as ort

    if CUDA_PROVIDER not in ort.get_available_providers():
        return "this onnxruntime build has no CUDA provider"
    try:
        ctypes.CDLL(_CUDA_LIBRARIES[0])  # no driver: nothing else matters
    except OSError:
        return f"{_CUDA_LIBRARIES[0]} (the NVIDIA driver) cannot be loaded"
    # preload_dlls finds CUDA/cuDNN in the nvidia-* wheels; it prints, and stdout is protocol.
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.suppress(Exception):
        ort.preload_dlls(cuda=True, cudnn=True, msvc=False)
    if printed.getvalue().strip():
        log.debug("onnxruntime.preload_dlls: %s", printed.getvalue().strip())
    for library in _CUDA_LIBRARIES[1:]:
        try:
            ctypes.CDLL(library)
        except OSError:
            return f"{library} cannot be loaded"
    return None


def choose_provider(device: Device = "auto") -> ProviderChoice:
    """Pick CUDA when asked for or available; otherwise the CPU, said loudly once."""
    if device == "cpu":
        return ProviderChoice(CPU_PROVIDER, "the CPU was asked for")
    reason = cuda_unavailable_reason()
    if reason is None:
        return ProviderChoice(CUDA_PROVIDER, "CUDA is available")
    if device == "cuda":
        raise CodehoneError(f"CUDA was asked for but is not available: {reason}")
    _warn_cpu_once(reason)
    return ProviderChoice(CPU_PROVIDER, f"CUDA is not available ({reason})")


@cache
def _warn_cpu_once(reason: str) -> None:
    log.warning("CUDA is not available (%s): running on the CPU provider, which is slower", reason)
