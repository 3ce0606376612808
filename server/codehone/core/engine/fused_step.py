"""The fused graph's decode step, bound once: what makes a step move a few bytes, and what a
CUDA graph captures.

codehone's fused graph (``codehone_training.export.fused_graph``) keeps past and present keys
and values in one buffer per tensor, written in place, and hands back the arg-max of the
positions asked for. So the engine allocates its buffers once, binds them here once, and a
single-token step only updates small device tensors (the token, its position, the valid
length) in place: the same addresses every run, which is what lets CUDA replay the step as a
captured graph. Several tokens at once (a prompt, a token and its draft) go through a second
binding whose inputs are rebound each time.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from codehone.core.engine.kv_cache import KVCache
from codehone.core.engine.runtime import run_options
from codehone.core.model_dir import Manifest


class FusedDecodeStep:
    """Steps over the engine's own shared KV buffers (``buffers``), bound once.

    ``run``: the single-token decode step; with ``cuda_graph`` it is the captured one.
    ``static_total``: total_sequence_length (a CPU input, read when the graph is captured)
    stays at the buffer length and the kernel reads the real length from seqlens_k, as it
    must under CUDA graphs. ``run_many``: several tokens."""

    def __init__(
        self,
        session: ort.InferenceSession,
        manifest: Manifest,
        device: str,
        buffers: KVCache,
        cuda_graph: bool,
        static_total: bool,
    ) -> None:
        io = manifest.io
        assert io.seqlens_k and io.total_sequence_length and io.logits_positions and io.next_tokens
        self.session = session
        self.io = io
        self.buffers = buffers
        self.past_names = manifest.kv.past_names()
        self.present_names = manifest.kv.present_names()
        self.static_total = static_total

        def device_value(shape: list[int], dtype: type) -> ort.OrtValue:
            return ort.OrtValue.ortvalue_from_shape_and_type(shape, dtype, device, 0)

        self.ids = device_value([1, 1], np.int64)
        self.positions = device_value([1, 1], np.int64) if io.position_ids else None
        self.seqlens = device_value([1], np.int32)
        # A CPU OrtValue made from numpy uses the array's memory: keep the arrays alive.
        buffer_length = buffers.values[0].shape()[2]  # [batch, kv heads, positions, head size]
        self._total_array = np.array(buffer_length, dtype=np.int32)
        self.total = ort.OrtValue.ortvalue_from_numpy(self._total_array)
        self._keep_array = np.zeros(1, dtype=np.int64)
        self.keep = ort.OrtValue.ortvalue_from_numpy(self._keep_array, device, 0)
        self.logits = device_value([1, 1, manifest.vocab_size], np.float32)
        self.next = device_value([1, 1], np.int64)
        binding = session.io_binding()
        binding.bind_ortvalue_input(io.input_ids, self.ids)
        if io.position_ids and self.positions is not None:
            binding.bind_ortvalue_input(io.position_ids, self.positions)
        binding.bind_ortvalue_input(io.seqlens_k, self.seqlens)
        binding.bind_ortvalue_input(io.total_sequence_length, self.total)
        binding.bind_ortvalue_input(io.logits_positions, self.keep)
        binding.bind_ortvalue_output(io.logits, self.logits)
        binding.bind_ortvalue_output(io.next_tokens, self.next)
        self._bind_buffers(binding)
        self.binding = binding
        self.run_options = run_options(cuda_graph, captured=True)
        self.many_binding: ort.IOBinding | None = None
        self.many_run_options = run_options(cuda_graph)

    def _bind_buffers(self, binding: ort.IOBinding) -> None:
        """The KV buffers as both the past inputs and the present outputs."""
        for name, value in zip(self.past_names, self.buffers.values, strict=True):
            binding.bind_ortvalue_input(name, value)
        for name, value in zip(self.present_names, self.buffers.values, strict=True):
            binding.bind_ortvalue_output(name, value)

    def run_many(self, token_ids: list[int], length: int, keep: int) -> list[int]:
        """A step of several tokens (a prompt, or a token and its draft) after ``length`` valid
        positions; the arg-max after each of the last ``keep``. Not captured, so the inputs are
        rebound; the KV buffers stay bound from the first call on."""
        io = self.io
        binding = self.many_binding
        if binding is None:
            binding = self.many_binding = self.session.io_binding()
            binding.bind_output(io.next_tokens, "cpu")  # output 0: read with get_outputs()
            self._bind_buffers(binding)
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
