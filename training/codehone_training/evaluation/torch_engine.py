"""A PyTorch stand-in for the server's ONNX ``Engine``, so a checkpoint can be evaluated
through the server's own ``Completer`` without exporting it first.

It offers what ``Completer`` and the evaluator use: ``manifest`` (built from the checkpoint's
config and tokenizer exactly as the export would build it), ``empty_cache``, ``forward`` and
``generate`` (greedy, with the KV cache, honouring the same ``StopConditions``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codehone.core.engine import Generation, StopConditions, StopReason
from codehone.core.errors import GenerationError
from codehone.core.healing import constrained_choice
from codehone.core.model_dir import (
    FORMAT_VERSION,
    GraphIO,
    KVLayout,
    Manifest,
    Provenance,
)


@dataclass
class TorchCache:
    past: Any = None
    length: int = 0


class TorchEngine:
    def __init__(self, checkpoint: Path, device: str = "cpu") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        from codehone_training.export.checkpoint import _context_length, _special_tokens

        self.device = torch.device(device)
        self.model = AutoModelForCausalLM.from_pretrained(
            checkpoint, trust_remote_code=False, use_safetensors=True, dtype=torch.float32
        ).to(self.device)
        self.model.eval()
        tokenizer = AutoTokenizer.from_pretrained(checkpoint, trust_remote_code=False)
        try:
            generation_eos = GenerationConfig.from_pretrained(checkpoint).eos_token_id
        except OSError:
            generation_eos = None
        config = self.model.config
        self.manifest = Manifest(
            format_version=FORMAT_VERSION,
            architecture=str(config.model_type),
            context_length=_context_length(config),
            vocab_size=int(config.vocab_size),
            kv=KVLayout(num_layers=1, num_kv_heads=1, head_size=1, dtype="float32"),
            io=GraphIO(),
            special_tokens=_special_tokens(tokenizer, generation_eos),
            provenance=Provenance(base_checkpoint=str(checkpoint)),
        )

    def empty_cache(self) -> TorchCache:
        return TorchCache()

    def forward(
        self, token_ids: Sequence[int], cache: TorchCache, all_logits: bool = False
    ) -> tuple[np.ndarray, TorchCache]:
        import torch

        if not token_ids:
            raise GenerationError("forward() needs at least one token")
        with torch.no_grad():
            ids = torch.tensor([list(token_ids)], device=self.device)
            output = self.model(input_ids=ids, past_key_values=cache.past, use_cache=True)
        logits = output.logits[0].float().cpu().numpy()
        new_cache = TorchCache(output.past_key_values, cache.length + len(token_ids))
        return (logits if all_logits else logits[-1]), new_cache

    def generate(
        self,
        prompt_ids: Sequence[int],
        stop: StopConditions,
        first_token_ids: np.ndarray | None = None,
    ) -> Generation:
        """Greedy decoding (``first_token_ids``: what the first token may be, as in Engine)."""
        if not prompt_ids:
            raise GenerationError("empty prompt")
        context = self.manifest.context_length
        started = time.perf_counter()
        prefill_done = started
        generated: list[int] = []
        reason: StopReason = "max_tokens"
        cache = self.empty_cache()
        step_input = list(prompt_ids)
        steps = 0
        while len(generated) < stop.max_new_tokens:
            interrupted = stop.interruption()
            if interrupted is not None:
                reason = interrupted
                break
            if cache.length + len(step_input) > context:
                reason = "context_full"
                break
            logits, cache = self.forward(step_input, cache)
            steps += 1
            if steps == 1:
                prefill_done = time.perf_counter()
            if steps == 1 and first_token_ids is not None:
                next_id = constrained_choice(logits, first_token_ids)
            else:
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
            prompt_tokens=len(prompt_ids),
            prefill_ms=(prefill_done - started) * 1000,
            decode_ms=(finished - prefill_done) * 1000,
            steps=steps,
        )
