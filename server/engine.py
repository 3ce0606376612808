"""The decode engine: an ONNX Runtime session and a plain greedy decode loop with a KV cache.

Each step feeds only the new tokens plus the cache of the tokens before them; the cache stays
where the provider computes it (on the GPU with CUDA) as OrtValues bound through IO binding,
so it never round-trips through the host. The loop stops on a stop token, a text-level stop
rule, max-new-tokens, a wall-clock deadline, a full context, or cooperative cancellation
(checked between steps).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import onnxruntime as ort
from codehone.errors import GenerationError
from codehone.model_dir import ModelDir
from codehone.providers import ProviderChoice

log = logging.getLogger("codehone.engine")

StopReason = Literal["eos", "stop_rule", "max_tokens", "deadline", "cancelled", "context_full"]
_NUMPY_KV_DTYPE = {"float32": np.float32, "float16": np.float16}


@dataclass
class StopConditions:
    """When generation ends. ``stop_rule`` sees the generated ids after every step."""

    max_new_tokens: int = 64
    stop_token_ids: frozenset[int] = frozenset()
    deadline: float | None = None  # time.monotonic() value
    cancel: threading.Event | None = None
    stop_rule: Callable[[list[int]], bool] | None = None


@dataclass
class Generation:
    token_ids: list[int]
    stop_reason: StopReason
    prompt_tokens: int
    prefill_ms: float
    decode_ms: float
    steps: int = 0

    @property
    def ms_per_token(self) -> float:
        return self.decode_ms / max(1, self.steps - 1)


@dataclass
class KVCache:
    """The model's past keys and values (one OrtValue per graph input) and their length."""

    values: list[ort.OrtValue]
    length: int = 0
    token_ids: list[int] = field(default_factory=list)


def _session_options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: warnings about node placement are noise
    return options


class Engine:
    """One loaded model: its ONNX Runtime session, manifest and decode loop."""

    def __init__(self, model: ModelDir, provider: ProviderChoice) -> None:
        self.model = model
        self.manifest = model.manifest
        self.provider = provider
        providers: list[str | tuple[str, dict[str, str]]] = [provider.name]
        if provider.is_cuda:
            providers = [(provider.name, {"device_id": "0"}), "CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(
                str(model.model_path), sess_options=_session_options(), providers=providers
            )
        except Exception as exc:
            raise GenerationError(
                f"{model.model_path}: ONNX Runtime could not load it: {exc}"
            ) from None
        active = self.session.get_providers()
        if provider.name not in active:
            raise GenerationError(f"{provider.name} was chosen but the session runs on {active}")
        kv = self.manifest.kv
        self._kv_dtype = _NUMPY_KV_DTYPE[kv.dtype]
        self._past_names = kv.past_names()
        self._present_names = kv.present_names()
        self._lock = threading.Lock()

    # -- one forward step -------------------------------------------------------------------

    def empty_cache(self) -> KVCache:
        kv = self.manifest.kv
        shape = [1, kv.num_kv_heads, 0, kv.head_size]
        values = [
            ort.OrtValue.ortvalue_from_shape_and_type(
                shape, self._kv_dtype, self.provider.device_type, 0
            )
            for _ in self._past_names
        ]
        return KVCache(values)

    def forward(
        self, token_ids: Sequence[int], cache: KVCache, all_logits: bool = False
    ) -> tuple[np.ndarray, KVCache]:
        """Run the model on ``token_ids`` after ``cache``; return logits and the new cache.

        Logits are float32 of shape [len(token_ids), vocab] with ``all_logits``, else the
        last position's [vocab].
        """
        if not token_ids:
            raise GenerationError("forward() needs at least one token")
        io = self.manifest.io
        n_new = len(token_ids)
        total = cache.length + n_new
        binding = self.session.io_binding()
        binding.bind_cpu_input(io.input_ids, np.asarray([token_ids], dtype=np.int64))
        if io.attention_mask:
            binding.bind_cpu_input(io.attention_mask, np.ones((1, total), dtype=np.int64))
        if io.position_ids:
            positions = np.arange(cache.length, total, dtype=np.int64)[None, :]
            binding.bind_cpu_input(io.position_ids, positions)
        for name, value in zip(self._past_names, cache.values, strict=True):
            binding.bind_ortvalue_input(name, value)
        binding.bind_output(io.logits, "cpu")
        for name in self._present_names:
            binding.bind_output(name, self.provider.device_type, 0)
        self.session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        logits = outputs[0].numpy()[0]
        new_cache = KVCache(list(outputs[1:]), total, [*cache.token_ids, *token_ids])
        if all_logits:
            return logits.astype(np.float32, copy=False), new_cache
        return logits[-1].astype(np.float32, copy=False), new_cache

    # -- the decode loop -------------------------------------------------------------------

    def generate(self, prompt_ids: Sequence[int], stop: StopConditions) -> Generation:
        """Greedy decoding with the KV cache; returns the generated ids (stop token excluded)."""
        if not prompt_ids:
            raise GenerationError("empty prompt")
        context_length = self.manifest.context_length
        if len(prompt_ids) >= context_length:
            raise GenerationError(
                f"prompt of {len(prompt_ids)} tokens does not fit the context of {context_length}"
            )
        with self._lock:
            return self._generate(list(prompt_ids), stop, context_length)

    def _generate(self, prompt: list[int], stop: StopConditions, context: int) -> Generation:
        started = time.perf_counter()
        generated: list[int] = []
        reason: StopReason = "max_tokens"
        cache = self.empty_cache()
        step_input = prompt
        prefill_done = started
        steps = 0
        while len(generated) < stop.max_new_tokens:
            if stop.cancel is not None and stop.cancel.is_set():
                reason = "cancelled"
                break
            if stop.deadline is not None and time.monotonic() >= stop.deadline:
                reason = "deadline"
                break
            if cache.length + len(step_input) > context:
                reason = "context_full"
                break
            logits, cache = self.forward(step_input, cache)
            steps += 1
            if steps == 1:
                prefill_done = time.perf_counter()
            next_id = int(np.argmax(logits))
            if next_id in stop.stop_token_ids:
                reason = "eos"
                break
            generated.append(next_id)
            if stop.stop_rule is not None and stop.stop_rule(generated):
                reason = "stop_rule"
                break
            step_input = [next_id]
        finished = time.perf_counter()
        return Generation(
            token_ids=generated,
            stop_reason=reason,
            prompt_tokens=len(prompt),
            prefill_ms=(prefill_done - started) * 1000,
            decode_ms=(finished - prefill_done) * 1000,
            steps=steps,
        )

    def generate_without_cache(self, prompt_ids: Sequence[int], max_new_tokens: int) -> list[int]:
        """Reference decoding: recompute the whole sequence every step (for tests and checks)."""
        sequence = list(prompt_ids)
        generated: list[int] = []
        for _ in range(max_new_tokens):
            logits, _ = self.forward(sequence, self.empty_cache())
            next_id = int(np.argmax(logits))
            generated.append(next_id)
            sequence.append(next_id)
        return generated
