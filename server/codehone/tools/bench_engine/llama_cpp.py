"""The llama.cpp contender: the runtime most self-hosted completion servers (Tabby,
llama.vscode, llama.vim) run on, through its Python binding, on a GGUF of the same weights.

llama-cpp-python is a benchmark extra, never a runtime or test dependency: ``pip install -e
'.[bench]'`` builds llama.cpp from source (15-20 minutes on 2 cores; the README's "Against
llama.cpp" gives the CMAKE_ARGS). Without it the benchmark says how to install it and stops.

It is driven the way a completion server drives it, as fairly as codehone: both thread counts
(decode and prefill) set to the run's, one batch for the whole prompt, greedy tokens as the
arg-max of the last position's logits (``sample(temp=0)`` is the same token, through a sampler
chain rebuilt on every call), a warm-up before timing (page-in, weight repacking), and its own
prefix reuse for the typing row: the KV cache is cut back to the longest prefix the new prompt
shares with what it holds, and only the rest is evaluated.
"""

from __future__ import annotations

import importlib.util
import struct
import time
from pathlib import Path
from typing import Any, BinaryIO

from codehone.tools.bench_engine.config import ContenderSpec

INSTALL_HINT = (
    "llama-cpp-python is not installed; install the benchmark extra: "
    "CMAKE_ARGS='-DGGML_NATIVE=ON -DGGML_OPENMP=ON' pip install -e '.[bench]' "
    "(builds llama.cpp from source, 15-20 minutes on 2 cores; on a CPU with AMX also "
    "CFLAGS=CXXFLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16': its AMX path crashes; "
    'see the README\'s "Against llama.cpp")'
)


def available() -> bool:
    """Whether llama-cpp-python can be imported here (without importing it)."""
    return importlib.util.find_spec("llama_cpp") is not None


# ---------------------------------------------------------------------------------------------
# GGUF: the file type, read from the header (no llama.cpp needed)
# ---------------------------------------------------------------------------------------------

_FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    32: "BF16",
}
# GGUF metadata value types: struct format of the fixed-size ones; 8 = string, 9 = array.
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY = 8, 9


class GGUFError(ValueError):
    """Not a GGUF file this benchmark can read."""


def _read(f: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise GGUFError("truncated header")
    return struct.unpack("<" + fmt, data)[0]


def _skip_value(f: BinaryIO, kind: int) -> None:
    if kind in _SCALARS:
        f.seek(struct.calcsize(_SCALARS[kind]), 1)
    elif kind == _STRING:
        f.seek(_read(f, "Q"), 1)
    elif kind == _ARRAY:
        item, count = _read(f, "I"), _read(f, "Q")
        if item in _SCALARS:
            f.seek(struct.calcsize(_SCALARS[item]) * count, 1)
        else:
            for _ in range(count):
                _skip_value(f, item)
    else:
        raise GGUFError(f"unknown metadata type {kind}")


def gguf_file_type(path: Path) -> str:
    """The GGUF's weight type as llama.cpp names it (``Q4_0``, ``Q8_0``, ``F16`` ...), from its
    ``general.file_type`` metadata."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                raise GGUFError("not a GGUF file")
            _read(f, "I")  # version
            _read(f, "Q")  # tensors
            for _ in range(_read(f, "Q")):
                key = f.read(_read(f, "Q")).decode("utf-8", "replace")
                kind = _read(f, "I")
                if key == "general.file_type" and kind in _SCALARS:
                    value = int(_read(f, _SCALARS[kind]))
                    return _FILE_TYPES.get(value, f"type{value}")
                _skip_value(f, kind)
    except OSError as exc:
        raise GGUFError(f"{path}: cannot read it: {exc}") from None
    except GGUFError as exc:
        raise GGUFError(f"{path}: {exc}") from None
    raise GGUFError(f"{path}: no general.file_type in its metadata")


# ---------------------------------------------------------------------------------------------
# The contender (runs in its worker process)
# ---------------------------------------------------------------------------------------------


class LlamaCppContender:
    """A GGUF loaded by llama-cpp-python, driven like a completion server drives it."""

    def __init__(self, spec: ContenderSpec) -> None:
        import llama_cpp
        import numpy as np

        self._np = np
        self._lib = llama_cpp
        threads = spec.threads or 1
        self.llm = llama_cpp.Llama(
            spec.path,
            n_threads=threads,
            n_threads_batch=threads,
            n_ctx=int(spec.options.get("n_ctx", 2048)),
            n_batch=int(spec.options.get("n_ctx", 2048)),
            n_ubatch=512,
            n_gpu_layers=-1 if spec.device == "cuda" else 0,
            flash_attn=bool(spec.options.get("flash_attn", False)),
            logits_all=False,
            verbose=False,
        )
        self.n_vocab = self.llm.n_vocab()
        self.offloaded = spec.device == "cuda" and bool(llama_cpp.llama_supports_gpu_offload())
        if spec.device == "cuda" and not self.offloaded:
            raise RuntimeError(
                "this llama-cpp-python build has no GPU offload (build it with CUDA)"
            )

    def _next(self) -> int:
        logits = self._np.ctypeslib.as_array(
            self._lib.llama_get_logits_ith(self.llm.ctx, -1), shape=(self.n_vocab,)
        )
        return int(self._np.argmax(logits))

    def cold(self, prompt: list[int], new_tokens: int) -> dict[str, Any]:
        """A request with nothing cached: prefill, then greedy decode."""
        llm = self.llm
        llm.reset()  # the next eval() drops the KV cache from position 0
        started = time.perf_counter()
        llm.eval(prompt)
        token = self._next()
        first = time.perf_counter()
        tokens = [token]
        for _ in range(new_tokens - 1):
            llm.eval([token])
            token = self._next()
            tokens.append(token)
        done = time.perf_counter()
        return {
            "ttft_ms": (first - started) * 1000,
            "ms_per_token": (done - first) * 1000 / max(1, new_tokens - 1),
            "tokens": tokens,
        }

    def typing(self, prompt: list[int]) -> dict[str, Any]:
        """The first token of ``prompt`` after the previous request, reusing the KV cache of
        the prefix they share (llama.cpp's own prefix reuse, as its server does)."""
        llm = self.llm
        started = time.perf_counter()
        held = llm.input_ids[: llm.n_tokens]
        common = 0
        for a, b in zip(held, prompt, strict=False):
            if a != b:
                break
            common += 1
        common = min(common, len(prompt) - 1)  # evaluate at least one token: fresh logits
        llm.n_tokens = common  # eval() cuts the KV cache back to n_tokens first
        llm.eval(prompt[common:])
        self._next()
        return {"ms": (time.perf_counter() - started) * 1000, "prefilled": len(prompt) - common}

    def last_logits(self, prompt: list[int]) -> Any:
        self.llm.reset()
        self.llm.eval(prompt)
        return self._np.ctypeslib.as_array(
            self._lib.llama_get_logits_ith(self.llm.ctx, -1), shape=(self.n_vocab,)
        ).copy()

    def describe(self) -> str:
        info = self._lib.llama_print_system_info().decode("utf-8", "replace")
        features = [f.split("=")[0].strip() for f in info.split("|") if f.strip().endswith("= 1")]
        where = "GPU offload" if self.offloaded else "CPU"
        return f"llama-cpp-python {self._lib.__version__} on the {where}: {' '.join(features)}"
