"""The decode engine: an ONNX Runtime session and a plain greedy decode loop with a KV cache.

Each step feeds only the new tokens plus the cache of the tokens before them; the cache stays
where the provider computes it (on the GPU with CUDA) as OrtValues bound through IO binding,
so it never round-trips through the host. The loop stops on a stop token, a text-level stop
rule, max-new-tokens, a wall-clock deadline, a full context, or cooperative cancellation
(checked between steps).

Two kinds of graph are served (the manifest says which, ``kv.shared_buffer``):

- optimum's export: each step takes the past KV and returns a new, longer present;
- codehone's fused graph (``codehone_training.export.optimize``): past and present are one buffer per
  tensor, allocated once per engine at the context length and written in place; the graph is
  told the valid length, and it hands back the arg-max of the positions asked for, so a decode
  step moves a few bytes between host and device.

Consecutive requests mostly share their beginning (a user typing), so ``generate`` keeps the
cache of the previous call and reuses it for the longest common prefix: only the new tokens
are prefilled. With the shared buffer that is just a shorter valid length; with optimum's
graphs the cache is sliced on the device (a tiny Slice graph on the same provider).

With the fused graph the loop can also speculate (prompt lookup): when the last tokens occurred
earlier in the text, the tokens that followed them are fed as a draft and the model checks them
all in one step; it keeps the drafts that equal its own greedy choice, so the output is exactly
the greedy output. On CUDA the single-token decode step can be captured as a CUDA graph.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from codehone.core.errors import GenerationError
from codehone.core.healing import constrained_choice
from codehone.core.model_dir import ModelDir
from codehone.core.providers import ProviderChoice

log = logging.getLogger("codehone.engine")

StopReason = Literal["eos", "stop_rule", "max_tokens", "deadline", "cancelled", "context_full"]
_NUMPY_KV_DTYPE = {"float32": np.float32, "float16": np.float16}
# Prompt lookup: longest and shortest n-gram matched against the text so far.
_DRAFT_NGRAM_MAX = 3
_DRAFT_NGRAM_MIN = 2
DEFAULT_DRAFT_TOKENS = 0  # speculative tokens per step with the fused graph (0: off)
_CUDA_GRAPH_ID = "1"


@dataclass
class StopConditions:
    """When generation ends. ``stop_rule`` sees the generated ids after every step."""

    max_new_tokens: int = 64
    stop_token_ids: frozenset[int] = frozenset()
    deadline: float | None = None  # time.monotonic() value
    cancel: threading.Event | None = None
    stop_rule: Callable[[list[int]], bool] | None = None

    def interruption(self) -> StopReason | None:
        """"cancelled" or "deadline" when generation must stop before its next token."""
        if self.cancel is not None and self.cancel.is_set():
            return "cancelled"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "deadline"
        return None


@dataclass
class Generation:
    token_ids: list[int]
    stop_reason: StopReason
    prompt_tokens: int
    prefill_ms: float
    decode_ms: float
    steps: int = 0
    reused_tokens: int = 0  # prompt tokens whose KV came from the previous request
    drafted_tokens: int = 0  # speculative tokens fed to the model
    accepted_tokens: int = 0  # of which the model confirmed

    @property
    def ms_per_token(self) -> float:
        """Decode time per token produced after the first (speculation included)."""
        return self.decode_ms / max(1, self.steps - 1 + self.accepted_tokens)


@dataclass
class KVCache:
    """The model's past keys and values (one OrtValue per graph input) and their length.

    With a shared-buffer graph the values are buffers of the context length and only the first
    ``length`` positions are valid; otherwise each value holds exactly ``length`` positions.
    ``token_ids`` are the tokens whose keys and values the cache holds."""

    values: list[ort.OrtValue]
    length: int = 0
    token_ids: list[int] = field(default_factory=list)


@dataclass
class PrefixStats:
    """How much prefilling prefix reuse saved, over the engine's lifetime."""

    requests: int = 0
    reused_tokens: int = 0
    prefilled_tokens: int = 0

    @property
    def reuse_rate(self) -> float:
        return self.reused_tokens / max(1, self.reused_tokens + self.prefilled_tokens)


@dataclass
class SpeculationStats:
    """Prompt-lookup speculation over the engine's lifetime."""

    steps: int = 0  # model calls that carried a draft
    drafted_tokens: int = 0
    accepted_tokens: int = 0


def _session_options(threads: int | None = None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: warnings about node placement are noise
    if threads:
        options.intra_op_num_threads = threads
    return options


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def prompt_lookup_draft(
    sequence: np.ndarray, length: int, max_tokens: int, ngram_max: int = _DRAFT_NGRAM_MAX
) -> list[int]:
    """Draft tokens by prompt lookup: find the latest earlier occurrence of the last n tokens
    of ``sequence[:length]`` (longest n first) and propose the tokens that followed it."""
    if max_tokens <= 0:
        return []
    for n in range(min(ngram_max, length - 1), _DRAFT_NGRAM_MIN - 1, -1):
        tail = sequence[length - n : length]
        starts = np.flatnonzero(sequence[: length - n] == tail[0])
        for j in range(1, n):
            starts = starts[sequence[starts + j] == tail[j]]
        if starts.size:
            follow = int(starts[-1]) + n
            return sequence[follow : min(follow + max_tokens, length)].tolist()
    return []


class _DecodeStep:
    """Steps over the engine's own shared KV buffers, bound once.

    ``run``: the single-token decode step, with small device tensors for the token, its
    position and the length, updated in place each step; this is what a CUDA graph captures
    (the same addresses every run). ``run_many``: several tokens (a prompt, a draft)."""

    def __init__(self, engine: Engine, buffers: KVCache, static_total: bool) -> None:
        io = engine.manifest.io
        device = engine.provider.device_type
        self.session = engine.session
        # True under CUDA graphs: total_sequence_length (a CPU input, read when the graph is
        # captured) stays at the buffer length; the kernel reads the real length from seqlens_k.
        self.static_total = static_total

        def device_value(shape: list[int], dtype: type) -> ort.OrtValue:
            return ort.OrtValue.ortvalue_from_shape_and_type(shape, dtype, device, 0)

        self.ids = device_value([1, 1], np.int64)
        self.positions = device_value([1, 1], np.int64) if io.position_ids else None
        self.seqlens = device_value([1], np.int32)
        # A CPU OrtValue made from numpy uses the array's memory: keep the arrays alive.
        self._total_array = np.array(engine.manifest.context_length, dtype=np.int32)
        self.total = ort.OrtValue.ortvalue_from_numpy(self._total_array)
        self._keep_array = np.zeros(1, dtype=np.int64)
        self.keep = ort.OrtValue.ortvalue_from_numpy(self._keep_array, device, 0)
        self.logits = device_value([1, 1, engine.manifest.vocab_size], np.float32)
        self.next = device_value([1, 1], np.int64)
        binding = engine.session.io_binding()
        binding.bind_ortvalue_input(io.input_ids, self.ids)
        if io.position_ids and self.positions is not None:
            binding.bind_ortvalue_input(io.position_ids, self.positions)
        assert io.seqlens_k and io.total_sequence_length and io.logits_positions and io.next_tokens
        binding.bind_ortvalue_input(io.seqlens_k, self.seqlens)
        binding.bind_ortvalue_input(io.total_sequence_length, self.total)
        binding.bind_ortvalue_input(io.logits_positions, self.keep)
        binding.bind_ortvalue_output(io.logits, self.logits)
        binding.bind_ortvalue_output(io.next_tokens, self.next)
        for name, value in zip(engine._past_names, buffers.values, strict=True):
            binding.bind_ortvalue_input(name, value)
        for name, value in zip(engine._present_names, buffers.values, strict=True):
            binding.bind_ortvalue_output(name, value)
        self.binding = binding
        self.run_options = engine._run_options(graph=True)
        self.io = io
        self.buffers = buffers
        self.past_names = engine._past_names
        self.present_names = engine._present_names
        self.many_binding: ort.IOBinding | None = None
        self.many_run_options = engine._run_options(graph=False)

    def run_many(self, token_ids: list[int], length: int, keep: int) -> list[int]:
        """A step of several tokens (a prompt, or a token and its draft): not captured, so the
        inputs are rebound; the KV buffers stay bound from the first call on."""
        io = self.io
        binding = self.many_binding
        if binding is None:
            binding = self.many_binding = self.session.io_binding()
            binding.bind_output(io.next_tokens, "cpu")  # output 0: read with get_outputs()
            for name, value in zip(self.past_names, self.buffers.values, strict=True):
                binding.bind_ortvalue_input(name, value)
            for name, value in zip(self.present_names, self.buffers.values, strict=True):
                binding.bind_ortvalue_output(name, value)
        n_new = len(token_ids)
        total = length + n_new
        binding.bind_cpu_input(io.input_ids, np.asarray([token_ids], dtype=np.int64))
        if io.position_ids:
            positions = np.arange(length, total, dtype=np.int64)[None, :]
            binding.bind_cpu_input(io.position_ids, positions)
        binding.bind_cpu_input(io.seqlens_k, np.array([total - 1], dtype=np.int32))
        binding.bind_cpu_input(io.total_sequence_length, np.array(total, dtype=np.int32))
        kept = np.arange(n_new - keep, n_new, dtype=np.int64)
        binding.bind_cpu_input(io.logits_positions, kept)
        binding.bind_output(io.next_tokens, "cpu")  # its shape changes with keep
        self.session.run_with_iobinding(binding, self.many_run_options)
        return binding.get_outputs()[0].numpy().reshape(-1).tolist()

    def run(self, token: int, length: int) -> int:
        """Feed ``token`` at position ``length`` (the valid cache length); return the next."""
        self.ids.update_inplace(np.array([[token]], dtype=np.int64))
        if self.positions is not None:
            self.positions.update_inplace(np.array([[length]], dtype=np.int64))
        self.seqlens.update_inplace(np.array([length], dtype=np.int32))
        if not self.static_total:
            self.total.update_inplace(np.array(length + 1, dtype=np.int32))
        self.session.run_with_iobinding(self.binding, self.run_options)
        return int(self.next.numpy().reshape(-1)[0])


class Engine:
    """One loaded model: its ONNX Runtime session, manifest and decode loop.

    ``draft_tokens``: speculative tokens per step (prompt lookup; fused graph only).
    ``cuda_graph``: capture the decode step as a CUDA graph (fused graph on CUDA only).
    ``reuse_prefix``: keep the previous request's cache for the next one.
    ``threads``: CPU threads per operator (default: ONNX Runtime's, one per core).
    """

    def __init__(
        self,
        model: ModelDir,
        provider: ProviderChoice,
        *,
        draft_tokens: int | None = None,
        cuda_graph: bool = False,
        reuse_prefix: bool = True,
        threads: int | None = None,
    ) -> None:
        self.model = model
        self.manifest = model.manifest
        self.provider = provider
        kv, io = self.manifest.kv, self.manifest.io
        self.shared_kv = kv.shared_buffer
        self.fused_decode = bool(self.shared_kv and io.next_tokens and io.logits_positions)
        self.cuda_graph = bool(cuda_graph and provider.is_cuda and self.fused_decode)
        self.draft_tokens = DEFAULT_DRAFT_TOKENS if draft_tokens is None else draft_tokens
        if not self.fused_decode:
            self.draft_tokens = 0
        self.reuse_prefix = reuse_prefix
        self.threads = threads
        self.session = self._load_session()
        active = self.session.get_providers()
        if provider.name not in active:
            raise GenerationError(f"{provider.name} was chosen but the session runs on {active}")
        self._kv_dtype = _NUMPY_KV_DTYPE[kv.dtype]
        self._past_names = kv.past_names()
        self._present_names = kv.present_names()
        self._lock = threading.Lock()
        self.prefix_stats = PrefixStats()
        self.speculation_stats = SpeculationStats()
        self._previous: KVCache | None = None  # the cache the last generate() left
        self._buffers: KVCache | None = None  # the engine's own shared KV buffers
        self._decode_step: _DecodeStep | None = None
        self._cropper: ort.InferenceSession | None = None

    def _load_session(self) -> ort.InferenceSession:
        providers: list[str | tuple[str, dict[str, str]]] = [self.provider.name]
        if self.provider.is_cuda:
            options = {"device_id": "0"}
            if self.cuda_graph:
                options["enable_cuda_graph"] = "1"
            providers = [(self.provider.name, options), "CPUExecutionProvider"]
        try:
            return ort.InferenceSession(
                str(self.model.model_path),
                sess_options=_session_options(self.threads),
                providers=providers,
            )
        except Exception as exc:
            raise GenerationError(
                f"{self.model.model_path}: ONNX Runtime could not load it: {exc}"
            ) from None

    def _run_options(self, graph: bool = False) -> ort.RunOptions | None:
        """Run options: with CUDA graphs on, only the decode step is captured (id 1)."""
        if not self.cuda_graph:
            return None
        options = ort.RunOptions()
        options.add_run_config_entry("gpu_graph_id", _CUDA_GRAPH_ID if graph else "-1")
        return options

    # -- the cache --------------------------------------------------------------------------

    def empty_cache(self) -> KVCache:
        """A new, empty cache (with a shared-buffer graph: new buffers of the context length)."""
        kv = self.manifest.kv
        length = self.manifest.context_length if self.shared_kv else 0
        shape = [1, kv.num_kv_heads, length, kv.head_size]
        values = [
            ort.OrtValue.ortvalue_from_shape_and_type(
                shape, self._kv_dtype, self.provider.device_type, 0
            )
            for _ in self._past_names
        ]
        return KVCache(values)

    def reset_prefix_cache(self) -> None:
        """Forget the previous request: the next one prefills its whole prompt."""
        with self._lock:
            self._previous = None

    def _truncate(self, cache: KVCache, length: int) -> KVCache:
        """The first ``length`` positions of ``cache`` (on the device where it lives)."""
        if length == cache.length:
            return cache
        if self.shared_kv or length == 0:
            if length == 0 and not self.shared_kv:
                return self.empty_cache()
            return KVCache(cache.values, length, cache.token_ids[:length])
        return KVCache(self._crop(cache.values, length), length, cache.token_ids[:length])

    def _crop(self, values: list[ort.OrtValue], length: int) -> list[ort.OrtValue]:
        """Slice every KV tensor to ``length`` positions with a Slice graph on the provider."""
        if self._cropper is None:
            self._cropper = self._build_cropper()
        binding = self._cropper.io_binding()
        for i, value in enumerate(values):
            binding.bind_ortvalue_input(f"x{i}", value)
            binding.bind_output(f"y{i}", self.provider.device_type, 0)
        binding.bind_cpu_input("length", np.array([length], dtype=np.int64))
        self._cropper.run_with_iobinding(binding)
        return list(binding.get_outputs())

    def _build_cropper(self) -> ort.InferenceSession:
        from onnx import TensorProto, helper

        kv = self.manifest.kv
        elem = TensorProto.FLOAT16 if kv.dtype == "float16" else TensorProto.FLOAT
        shape = [1, kv.num_kv_heads, "past", kv.head_size]
        count = len(self._past_names)
        nodes = [
            helper.make_node("Slice", [f"x{i}", "zero", "length", "axis"], [f"y{i}"])
            for i in range(count)
        ]
        graph = helper.make_graph(
            nodes,
            "codehone-kv-crop",
            [helper.make_tensor_value_info(f"x{i}", elem, shape) for i in range(count)]
            + [helper.make_tensor_value_info("length", TensorProto.INT64, [1])],
            [helper.make_tensor_value_info(f"y{i}", elem, shape) for i in range(count)],
            [
                helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
                helper.make_tensor("axis", TensorProto.INT64, [1], [2]),
            ],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        providers: list[str | tuple[str, dict[str, str]]] = [self.provider.name]
        if self.provider.is_cuda:
            providers = [(self.provider.name, {"device_id": "0"}), "CPUExecutionProvider"]
        return ort.InferenceSession(
            model.SerializeToString(), sess_options=_session_options(), providers=providers
        )

    # -- one forward step -------------------------------------------------------------------

    def forward(
        self, token_ids: Sequence[int], cache: KVCache, all_logits: bool = False
    ) -> tuple[np.ndarray, KVCache]:
        """Run the model on ``token_ids`` after ``cache``; return logits and the new cache.

        Logits are float32 of shape [len(token_ids), vocab] with ``all_logits``, else the
        last position's [vocab]. With a shared-buffer graph the new cache shares (and has
        written into) the buffers of ``cache``.
        """
        keep = len(token_ids) if all_logits else 1
        logits, _, new_cache = self._step(token_ids, cache, keep, want_logits=True)
        assert logits is not None
        if all_logits:
            return logits.astype(np.float32, copy=False), new_cache
        return logits[-1].astype(np.float32, copy=False), new_cache

    def _step(
        self, token_ids: Sequence[int], cache: KVCache, keep: int, want_logits: bool
    ) -> tuple[np.ndarray | None, list[int], KVCache]:
        """One model call: logits ([keep, vocab], if wanted) and the arg-max of the last
        ``keep`` positions, and the cache extended by ``token_ids``."""
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
        if io.seqlens_k:
            binding.bind_cpu_input(io.seqlens_k, np.array([total - 1], dtype=np.int32))
        if io.total_sequence_length:
            binding.bind_cpu_input(io.total_sequence_length, np.array(total, dtype=np.int32))
        if io.logits_positions:
            kept = np.arange(n_new - keep, n_new, dtype=np.int64)
            binding.bind_cpu_input(io.logits_positions, kept)
        for name, value in zip(self._past_names, cache.values, strict=True):
            binding.bind_ortvalue_input(name, value)
        # get_outputs() follows the binding order: logits, next tokens, then the cache.
        use_next = bool(io.next_tokens) and not want_logits
        if use_next:
            assert io.next_tokens
            binding.bind_output(io.next_tokens, "cpu")
        else:
            binding.bind_output(io.logits, "cpu")
        if self.shared_kv:
            for name, value in zip(self._present_names, cache.values, strict=True):
                binding.bind_ortvalue_output(name, value)
        else:
            for name in self._present_names:
                binding.bind_output(name, self.provider.device_type, 0)
        self.session.run_with_iobinding(binding, self._run_options())
        outputs = binding.get_outputs()
        new_values = cache.values if self.shared_kv else list(outputs[1:])
        new_cache = KVCache(new_values, total, [*cache.token_ids, *token_ids])
        if use_next:
            return None, outputs[0].numpy().reshape(-1)[-keep:].tolist(), new_cache
        logits = outputs[0].numpy()[0][-keep:]
        return logits, np.argmax(logits, axis=-1).tolist(), new_cache

    def _next_tokens(
        self, token_ids: list[int], cache: KVCache, keep: int
    ) -> tuple[list[int], KVCache]:
        """The greedy next token after each of the last ``keep`` positions of ``token_ids``."""
        own_buffers = self._buffers is not None and cache.values is self._buffers.values
        if not (own_buffers and self._decode_step is not None):
            if keep == 1 and not self.manifest.io.next_tokens:
                # A plain exported graph: the public forward() is the model call (subclasses
                # that stand in for the model override it).
                logits, new_cache = self.forward(token_ids, cache)
                return [int(np.argmax(logits))], new_cache
            _, next_ids, new_cache = self._step(token_ids, cache, keep, want_logits=False)
            return next_ids, new_cache
        extended = KVCache(
            cache.values, cache.length + len(token_ids), [*cache.token_ids, *token_ids]
        )
        if len(token_ids) == 1:
            return [self._decode_step.run(token_ids[0], cache.length)], extended
        return self._decode_step.run_many(token_ids, cache.length, keep), extended

    # -- the decode loop -------------------------------------------------------------------

    def generate(
        self,
        prompt_ids: Sequence[int],
        stop: StopConditions,
        sample: Callable[[np.ndarray], int] | None = None,
        first_token_ids: np.ndarray | None = None,
    ) -> Generation:
        """Greedy decoding with the KV cache; returns the generated ids (stop token excluded).

        ``sample`` picks each next token from the last position's logits instead of the
        arg-max (no speculation then). ``first_token_ids``: the tokens the first generated one
        must be among (token healing)."""
        if not prompt_ids:
            raise GenerationError("empty prompt")
        context_length = self.manifest.context_length
        if len(prompt_ids) >= context_length:
            raise GenerationError(
                f"prompt of {len(prompt_ids)} tokens does not fit the context of {context_length}"
            )
        with self._lock:
            try:
                return self._generate(
                    list(prompt_ids), stop, context_length, sample, first_token_ids
                )
            except BaseException:
                self._previous = None
                raise

    def _start_cache(self, prompt: list[int]) -> KVCache:
        """The cache to start from: the previous request's, cut to the common prefix (leaving
        at least one prompt token to feed), or an empty one."""
        if self.shared_kv:
            if self._buffers is None:
                self._buffers = self.empty_cache()
                if self.fused_decode:
                    self._decode_step = _DecodeStep(self, self._buffers, self.cuda_graph)
            empty = KVCache(self._buffers.values)
        else:
            empty = self.empty_cache()
        previous = self._previous
        self._previous = None
        if previous is None or not self.reuse_prefix:
            return empty
        common = min(_common_prefix(previous.token_ids, prompt), len(prompt) - 1)
        if common == 0:
            return empty
        return self._truncate(previous, common)

    def _generate(
        self,
        prompt: list[int],
        stop: StopConditions,
        context: int,
        sample: Callable[[np.ndarray], int] | None = None,
        first_token_ids: np.ndarray | None = None,
    ) -> Generation:
        started = time.perf_counter()
        cache = self._start_cache(prompt)
        reused = cache.length
        self.prefix_stats.requests += 1
        self.prefix_stats.reused_tokens += reused
        self.prefix_stats.prefilled_tokens += len(prompt) - reused
        # The text so far (prompt, then generated tokens), for prompt lookup.
        text = np.zeros(context + 1, dtype=np.int64)
        text[: len(prompt)] = prompt
        text_length = len(prompt)
        generated: list[int] = []
        reason: StopReason = "max_tokens"
        step_input = prompt[reused:]
        prefill_done = started
        steps = drafted = accepted = 0
        stopped = False
        while not stopped and len(generated) < stop.max_new_tokens:
            interrupted = stop.interruption()
            if interrupted is not None:
                reason = interrupted
                break
            if cache.length + len(step_input) > context:
                reason = "context_full"
                break
            draft: list[int] = []
            if steps > 0 and self.draft_tokens and sample is None:
                room = min(
                    self.draft_tokens,
                    context - cache.length - len(step_input),
                    stop.max_new_tokens - len(generated) - 1,
                )
                draft = prompt_lookup_draft(text, text_length, room)
            if steps == 0 and first_token_ids is not None:
                logits, cache = self.forward(step_input, cache)
                next_ids = [constrained_choice(logits, first_token_ids, sample)]
            elif sample is None:
                next_ids, cache = self._next_tokens(step_input + draft, cache, 1 + len(draft))
            else:
                logits, cache = self.forward(step_input, cache)
                next_ids = [sample(logits)]
            steps += 1
            if steps == 1:
                prefill_done = time.perf_counter()
            # next_ids[j] follows draft[j - 1]: keep the drafts the model agrees with.
            agreed = 0
            while agreed < len(draft) and draft[agreed] == next_ids[agreed]:
                agreed += 1
            if draft:
                self.speculation_stats.steps += 1
                drafted += len(draft)
                accepted += agreed
                cache = self._truncate(cache, cache.length - (len(draft) - agreed))
            for j, next_id in enumerate(next_ids[: agreed + 1]):
                if j > 0:  # a confirmed draft token: the checks a separate step would make
                    interrupted = stop.interruption()
                    if interrupted is not None:
                        reason, stopped = interrupted, True
                        break
                if next_id in stop.stop_token_ids:
                    reason, stopped = "eos", True
                    break
                generated.append(next_id)
                text[text_length] = next_id
                text_length += 1
                if stop.stop_rule is not None and stop.stop_rule(generated):
                    reason, stopped = "stop_rule", True
                    break
                if len(generated) >= stop.max_new_tokens:
                    break
            step_input = [next_ids[agreed]]
        finished = time.perf_counter()
        self._previous = cache
        self.speculation_stats.drafted_tokens += drafted
        self.speculation_stats.accepted_tokens += accepted
        return Generation(
            token_ids=generated,
            stop_reason=reason,
            prompt_tokens=len(prompt),
            prefill_ms=(prefill_done - started) * 1000,
            decode_ms=(finished - prefill_done) * 1000,
            steps=steps,
            reused_tokens=reused,
            drafted_tokens=drafted,
            accepted_tokens=accepted,
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

    def describe(self) -> dict[str, Any]:
        """What this engine runs (for benchmarks and status)."""
        return {
            "graph": "fused (shared KV buffer)" if self.shared_kv else "exported",
            "provider": self.provider.name,
            "kv_dtype": self.manifest.kv.dtype,
            "cuda_graph": self.cuda_graph,
            "draft_tokens": self.draft_tokens,
            "optimizations": list(self.manifest.provenance.optimizations),
        }
