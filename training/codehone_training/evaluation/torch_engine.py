"""A PyTorch stand-in for the server's ONNX ``Engine``, so a checkpoint can be evaluated
through the server's own ``Completer`` without exporting it first.

It is a ``DecodeEngine`` (codehone.core.engine.protocol): it provides the model calls,
``manifest`` (built from the checkpoint's config and tokenizer exactly as the export would
build it), ``empty_cache`` and ``forward``, and ``generate`` runs the server's own decode loop
(codehone.core.engine.loop) over them, so it stops exactly where the server would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codehone.core.engine.loop import decode
from codehone.core.engine.protocol import Generation, Sampler, StopConditions
from codehone.core.errors import GenerationError
from codehone.core.model_dir import (
    FORMAT_VERSION,
    GraphIO,
    KVLayout,
    Manifest,
    Provenance,
)


@dataclass
class TorchCache:
    """transformers' past key values and how many positions they hold."""

    past: Any = None
    length: int = 0


class TorchEngine:
    """A Hugging Face checkpoint on ``device`` (float32), served as a DecodeEngine."""

    def __init__(self, checkpoint: Path, device: str = "cpu") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        from codehone_training.base_model import check_safetensors_only
        from codehone_training.export.checkpoint import context_length_of, special_tokens_of

        check_safetensors_only(checkpoint)
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
            context_length=context_length_of(config),
            vocab_size=int(config.vocab_size),
            kv=KVLayout(num_layers=1, num_kv_heads=1, head_size=1, dtype="float32"),
            io=GraphIO(),
            special_tokens=special_tokens_of(tokenizer, generation_eos),
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
        sample: Sampler | None = None,
        first_token_ids: np.ndarray | None = None,
    ) -> Generation:
        """The server's decode loop over this model's forward pass (no prefix reuse, no fast
        paths: every greedy step is the arg-max of ``forward``)."""
        generation, _ = decode(
            self, prompt_ids, stop, sample=sample, first_token_ids=first_token_ids
        )
        return generation
