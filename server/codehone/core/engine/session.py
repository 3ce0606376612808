"""The ONNX engine: one loaded model's ONNX Runtime session, its KV cache and its model calls,
decoded by the one loop (codehone.core.engine.loop).

Each step feeds only the new tokens plus the cache of the tokens before them. Two kinds of
graph are served (the manifest says which, ``kv.shared_buffer``):

- optimum's export: each step takes the past KV and returns a new, longer present;
- codehone's fused graph (``codehone_training.export.fused_graph``): past and present are one
  buffer per tensor, allocated once per engine at the context length and written in place; the
  graph is told the valid length, and it hands back the arg-max of the positions asked for, so
  a greedy step moves a few bytes between host and device (codehone.core.engine.fused_step).
  Only this graph can speculate (codehone.core.engine.speculation) and, on CUDA, replay its
  decode step as a CUDA graph.

Consecutive requests mostly share their beginning (a user typing), so ``generate`` keeps the
cache of the previous call and reuses it for the longest common prefix: only the new tokens
are prefilled (codehone.core.engine.kv_cache), on the CPU in chunks of ``PROMPT_CHUNK_TOKENS``
when there are more, between which a cancelled request stops (what it fed stays cached for the
next one). ``prefill`` fills that cache ahead of a request
(the server's background prefill), in chunks, between which it can be told to stop: what it
fed until then stays cached.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from codehone.core.engine.fused_step import FusedDecodeStep
from codehone.core.engine.kv_cache import KVCache, KVCropper, PrefixStats, common_prefix
from codehone.core.engine.loop import GreedyStep, Step, decode
from codehone.core.engine.protocol import Generation, Sampler, StopConditions
from codehone.core.engine.runtime import execution_providers, run_options, session_options
from codehone.core.engine.speculation import (
    DEFAULT_DRAFT_TOKENS,
    SpeculationStats,
    SpeculativeStep,
)
from codehone.core.errors import GenerationError
from codehone.core.model_dir import ModelDir
from codehone.core.providers import ProviderChoice

log = logging.getLogger("codehone.engine")

_NUMPY_KV_DTYPE = {"float32": np.float32, "float16": np.float16}
# Tokens per model call of a background prefill: a request that arrives meanwhile waits for
# one chunk at most.
PREFILL_CHUNK_TOKENS = 32
# On the CPU a request feeds a long uncached prompt in chunks of this many tokens: the chunks
# take less time than one call (SmolLM2-135M int8, 904 tokens on 2 cores: 1.74-1.86 s in
# chunks of 256 against 2.11-2.58 s in one call, as the attention of one long call is slower),
# and a request cancelled meanwhile stops at the next chunk, keeping what it fed for the next.
PROMPT_CHUNK_TOKENS = 256
# The shared KV buffers hold this many positions at first, not the whole context: ONNX
# Runtime's CPU attention allocates and strides by the buffer's length, so a 512-token prefill's
# attention took 1.3x as long in the 8,192 positions of SmolLM2's context (2 cores). A longer
# request grows them (to the next power of two, up to the context) and starts from an empty
# cache once.
MIN_KV_CAPACITY = 2048
# The room a background prefill leaves in them for the completion that follows (the server
# asks for 48 tokens by default), so that its request does not grow them and start over.
PREFILL_NEW_TOKENS = 256


@dataclass(frozen=True)
class Prefilled:
    """What one ``Engine.prefill`` did: of ``tokens`` wanted, ``reused`` were cached already
    and ``fed`` were fed now (fewer than the rest when it was told to stop)."""

    tokens: int
    reused: int
    fed: int
    ms: float
    stopped: bool

    @property
    def cached(self) -> int:
        """How many of the tokens the cache holds now."""
        return self.reused + self.fed


class Engine:
    """One loaded model: its ONNX Runtime session, manifest and model calls (a DecodeEngine).

    ``draft_tokens``: speculative tokens per step (prompt lookup; fused graph only).
    ``cuda_graph``: capture the decode step as a CUDA graph (fused graph on CUDA only).
    ``reuse_prefix``: keep the previous request's cache for the next one.
    ``threads``: CPU threads per operator (default: ONNX Runtime's, one per core).
    ``spinning``: whether idle operator threads spin before sleeping (default: ONNX Runtime's).
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
        spinning: bool | None = None,
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
        self.prompt_chunk = None if provider.is_cuda else PROMPT_CHUNK_TOKENS
        self.threads = threads
        self.spinning = spinning
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
        self._capacity = 0  # their positions
        self._decode_step: FusedDecodeStep | None = None
        self._cropper = KVCropper(kv, provider)
        if not self.shared_kv and reuse_prefix:
            self._cropper.prepare(len(self._past_names))  # at load, not in a request

    def _load_session(self) -> ort.InferenceSession:
        try:
            return ort.InferenceSession(
                str(self.model.model_path),
                sess_options=session_options(self.threads, self.spinning),
                providers=execution_providers(self.provider, self.cuda_graph),
            )
        except Exception as exc:
            raise GenerationError(
                f"{self.model.model_path}: ONNX Runtime could not load it: {exc}"
            ) from None

    # -- the cache --------------------------------------------------------------------------

    def empty_cache(self, capacity: int | None = None) -> KVCache:
        """A new, empty cache (with a shared-buffer graph: new buffers of ``capacity``
        positions, default the context length)."""
        kv = self.manifest.kv
        length = (capacity or self.manifest.context_length) if self.shared_kv else 0
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
        return KVCache(self._cropper.crop(cache.values, length), length, cache.token_ids[:length])

    def cached_prefix(self, token_ids: Sequence[int]) -> int:
        """How many leading tokens of ``token_ids`` the cache holds now."""
        previous = self._previous
        if previous is None or not self.reuse_prefix:
            return 0
        return common_prefix(previous.token_ids, token_ids)

    def _positions(self, tokens: int, new_tokens: int) -> int:
        """The KV positions a request of ``tokens`` and ``new_tokens`` more (and a draft) uses."""
        return min(self.manifest.context_length, tokens + new_tokens + self.draft_tokens + 1)

    def _start_cache(self, prompt: list[int]) -> KVCache:
        """The cache to start from: the previous request's, cut to the common prefix (leaving
        at least one prompt token to feed), or an empty one."""
        return self._reusable_cache(prompt, len(prompt) - 1)

    def _prefill_prompt(self, prompt: list[int], cancel: threading.Event | None) -> None:
        """Feed all but the last ``prompt_chunk`` or fewer of the prompt's uncached tokens in
        chunks of ``prompt_chunk`` (the decode loop's first step feeds the rest), stopping when
        ``cancel`` is set; what was fed stays the cache the loop starts from."""
        chunk = self.prompt_chunk
        if not chunk or not self.reuse_prefix:
            return
        if len(prompt) - self.cached_prefix(prompt) <= chunk:
            return
        stopped = cancel.is_set if cancel is not None else lambda: False
        self._feed_chunks(prompt, len(prompt) - 1, chunk, stopped, leave=chunk)

    def _feed_chunks(
        self,
        tokens: list[int],
        most: int,
        chunk: int,
        should_stop: Callable[[], bool],
        leave: int = 0,
    ) -> KVCache:
        """Feed ``tokens`` after what the cache holds of them (``most`` at most) ``chunk`` per
        model call, asking ``should_stop`` before each, until ``leave`` or fewer are left; each
        chunk fed is at once the cache the next request or step starts from."""
        cache = self._reusable_cache(tokens, most)
        self._previous = cache
        while len(tokens) - cache.length > leave and not should_stop():
            cache = self._prefill_chunk(tokens[cache.length : cache.length + chunk], cache)
            self._previous = cache
        return cache

    def _ensure_capacity(self, positions: int) -> None:
        """Shared KV buffers of at least ``positions`` (``MIN_KV_CAPACITY`` or the next power
        of two, up to the context); new ones forget the previous request's cache."""
        if not self.shared_kv or (self._buffers is not None and self._capacity >= positions):
            return
        grown = max(MIN_KV_CAPACITY, 1 << max(positions - 1, 1).bit_length())
        self._capacity = min(self.manifest.context_length, grown)
        self._buffers = self.empty_cache(self._capacity)
        self._previous = None  # it lived in the old buffers
        if self.fused_decode:
            self._decode_step = FusedDecodeStep(
                self.session,
                self.manifest,
                self.provider.device_type,
                self._buffers,
                cuda_graph=self.cuda_graph,
                static_total=self.cuda_graph,
            )

    def _reusable_cache(self, prompt: list[int], most: int) -> KVCache:
        """The previous request's cache cut to the prefix it shares with ``prompt`` (``most``
        tokens at most), or an empty one (in the buffers ``_ensure_capacity`` sized for the
        request); the engine forgets the previous cache, as the caller is about to write over
        it."""
        if self.shared_kv:
            self._ensure_capacity(0)  # sized by the caller already; made if there are none
            assert self._buffers is not None
            start = KVCache(self._buffers.values)
        else:
            start = self.empty_cache()
        previous = self._previous
        self._previous = None  # until this request ends well: its cache is being overwritten
        if previous is not None and self.reuse_prefix:
            common = min(common_prefix(previous.token_ids, prompt), most)
            if common > 0:
                start = self._truncate(previous, common)
        return start

    def prefill(
        self,
        token_ids: Sequence[int],
        should_stop: Callable[[], bool],
        chunk_tokens: int = PREFILL_CHUNK_TOKENS,
    ) -> Prefilled:
        """Put ``token_ids`` in the cache the next ``generate`` reuses, ``chunk_tokens`` per
        model call, asking ``should_stop`` before each; what was fed stays cached."""
        started = time.perf_counter()
        wanted = list(token_ids)[: self.manifest.context_length - 1]
        if not self.reuse_prefix or not wanted:
            return Prefilled(len(wanted), 0, 0, 0.0, False)
        with self._lock:
            self._ensure_capacity(self._positions(len(wanted), PREFILL_NEW_TOKENS))
            reused = self.cached_prefix(wanted)
            if reused >= len(wanted) or should_stop():
                stopped = reused < len(wanted)
                return Prefilled(len(wanted), reused, 0, _ms_since(started), stopped)
            cache = self._feed_chunks(wanted, len(wanted), max(1, chunk_tokens), should_stop)
        fed = cache.length - reused
        stopped = cache.length < len(wanted)
        return Prefilled(len(wanted), reused, fed, _ms_since(started), stopped)

    def _prefill_chunk(self, chunk: list[int], cache: KVCache) -> KVCache:
        """One model call of ``prefill``: ``cache`` extended by ``chunk``."""
        return self._next_tokens(chunk, cache, 1)[1]

    # -- model calls ------------------------------------------------------------------------

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
        self.session.run_with_iobinding(binding, run_options(self.cuda_graph))
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
        """The greedy next token after each of the last ``keep`` positions of ``token_ids``:
        through the fused step on the engine's own buffers, else a model call that returns
        the arg-max (or, from a plain exported graph, the logits)."""
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

    def _greedy(
        self, fed: list[int], cache: KVCache, generated: list[int], room: int
    ) -> Step[KVCache]:
        """The greedy step without speculation."""
        next_ids, cache = self._next_tokens(fed, cache, 1)
        return Step(next_ids, cache)

    # -- decoding ---------------------------------------------------------------------------

    def generate(
        self,
        prompt_ids: Sequence[int],
        stop: StopConditions,
        sample: Sampler | None = None,
        first_token_ids: np.ndarray | None = None,
    ) -> Generation:
        """Decode after ``prompt_ids`` with the KV cache, reusing the previous request's for
        the prefix they share; returns the generated ids (stop token excluded).

        ``sample`` picks each next token from the last position's logits instead of the
        arg-max (no speculation then). ``first_token_ids``: the tokens the first generated one
        must be among (token healing)."""
        greedy: GreedyStep[KVCache] = self._greedy
        if self.draft_tokens:
            greedy = SpeculativeStep(
                self._next_tokens,
                self._truncate,
                prompt_ids,
                self.manifest.context_length,
                self.draft_tokens,
                self.speculation_stats,
            )
        with self._lock:
            prompt = list(prompt_ids)
            self._ensure_capacity(self._positions(len(prompt), stop.max_new_tokens))
            reused = self.cached_prefix(prompt[:-1])
            started = time.perf_counter()
            self._prefill_prompt(prompt, stop.cancel)
            chunks_ms = _ms_since(started)
            generation, self._previous = decode(
                self,
                prompt,
                stop,
                start=self._start_cache,
                sample=sample,
                first_token_ids=first_token_ids,
                greedy=greedy,
            )
            if generation.reused_tokens != reused:  # the chunks are this request's prefill
                generation = dataclasses.replace(
                    generation,
                    reused_tokens=reused,
                    prefill_ms=generation.prefill_ms + chunks_ms,
                )
            self.prefix_stats.requests += 1
            self.prefix_stats.reused_tokens += reused
            self.prefix_stats.prefilled_tokens += len(prompt) - reused
            self.speculation_stats.drafted_tokens += generation.drafted_tokens
            self.speculation_stats.accepted_tokens += generation.accepted_tokens
        return generation

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


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
