"""Export a Hugging Face causal-LM checkpoint to a codehone model directory, and verify it.

The checkpoint is loaded with safetensors only and never with remote code, exported by optimum
(`text-generation-with-past`: one graph that takes the KV cache as inputs and returns the
updated cache), and then checked: ONNX Runtime's logits must match PyTorch's within a stated
tolerance for a whole prompt and step by step through the KV cache, using the server's own
engine (``export.verify``). Only a verified export is moved into place, with its manifest.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from codehone import __version__
from codehone.core.errors import ExportError, ModelDirError
from codehone.core.model_dir import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    SUPPORTED_ARCHITECTURES,
    GraphIO,
    KVLayout,
    Manifest,
    ModelDir,
    Provenance,
    SpecialTokens,
    detect_fim_tokens,
    load_model_dir,
    write_manifest,
)
from codehone.core.staging import check_target, staged_dir
from codehone_training.base_model import check_safetensors_only
from codehone_training.export.verify import TOLERANCE, TorchReference, verify_logits

log = logging.getLogger("codehone.export")

_VERIFY_PROMPT = "def fibonacci(n):\n    if n < 2:\n        return n\n    return fib"
_VERIFY_STEPS = 4
_ELEM_TYPE_NAMES = {1: "float32", 10: "float16"}


def _check_checkpoint(checkpoint: Path) -> str:
    """Refuse what we cannot load safely; return the architecture family."""
    from transformers import AutoConfig

    if not checkpoint.is_dir():
        raise ExportError(f"{checkpoint}: not a checkpoint directory")
    if not (checkpoint / "config.json").is_file():
        raise ExportError(f"{checkpoint}: no config.json (not a Hugging Face checkpoint)")
    if not any(checkpoint.glob("*.safetensors")):
        raise ExportError(
            f"{checkpoint}: no .safetensors weights; codehone loads weights with safetensors only"
        )
    check_safetensors_only(checkpoint, ExportError)
    config = AutoConfig.from_pretrained(checkpoint, trust_remote_code=False)
    if config.model_type not in SUPPORTED_ARCHITECTURES:
        raise ExportError(
            f"{checkpoint}: architecture {config.model_type!r} is not supported "
            f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
        )
    return str(config.model_type)


def context_length_of(config: object) -> int:
    """The context length a transformers config names (ExportError if none)."""
    for attribute in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, attribute, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ExportError("the checkpoint's config names no context length")


def _kv_layout_and_io(model_path: Path) -> tuple[KVLayout, GraphIO]:
    """Read the KV layout and I/O names from the exported graph itself."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    inputs = {v.name: v for v in graph.input}
    outputs = {v.name for v in graph.output}
    layers = 0
    while f"past_key_values.{layers}.key" in inputs:
        layers += 1
    if layers == 0 or "logits" not in outputs:
        raise ExportError(f"{model_path}: the exported graph has no KV-cache inputs or no logits")
    first = inputs["past_key_values.0.key"].type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else 0 for d in first.shape.dim]
    if len(dims) != 4 or not dims[1] or not dims[3]:
        raise ExportError(f"{model_path}: unexpected KV shape {dims}")
    kv = KVLayout(
        num_layers=layers,
        num_kv_heads=dims[1],
        head_size=dims[3],
        dtype=_ELEM_TYPE_NAMES.get(first.elem_type, "unknown"),
    )
    io = GraphIO(
        attention_mask="attention_mask" if "attention_mask" in inputs else None,
        position_ids="position_ids" if "position_ids" in inputs else None,
    )
    return kv, io


def special_tokens_of(tokenizer: object, generation_eos: object) -> SpecialTokens:
    """EOS (the generation config's and the tokenizer's), BOS and FIM tokens of a
    transformers tokenizer, as the manifest records them."""
    eos_ids: list[int] = []
    for value in (generation_eos, getattr(tokenizer, "eos_token_id", None)):
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, int) and item not in eos_ids:
                eos_ids.append(item)
    if not eos_ids:
        raise ExportError("the checkpoint declares no EOS token")
    bos = getattr(tokenizer, "bos_token_id", None)
    probe = tokenizer("x")["input_ids"]  # type: ignore[operator]
    add_bos = bool(bos is not None and probe and probe[0] == bos and len(probe) > 1)
    return SpecialTokens(
        eos_token_ids=eos_ids,
        bos_token_id=bos,
        add_bos=add_bos,
        fim=detect_fim_tokens(tokenizer.get_vocab()),  # type: ignore[attr-defined]
    )


def _is_model_dir(path: Path) -> bool:
    return (path / MANIFEST_NAME).is_file()


def check_model_dir_target(out_dir: Path, error: type[ExportError] = ExportError) -> None:
    """Refuse an ``out_dir`` that a model directory must not replace (see ``check_target``)."""
    check_target(out_dir, _is_model_dir, "a model directory", error)


def staged_model_dir(
    out_dir: Path, error: type[ExportError] = ExportError
) -> contextlib.AbstractContextManager[Path]:
    """``with staged_model_dir(out) as staging:`` build a model directory that replaces
    ``out`` (an old model directory, or nothing) only when the block completes."""
    return staged_dir(out_dir, _is_model_dir, "a model directory", error)


def load_causal_lm(checkpoint: Path, dtype: str, device: str) -> Any:
    """The checkpoint's PyTorch model in eval mode, as it is exported and verified:
    safetensors only, never remote code, eager attention."""
    import torch
    from transformers import AutoModelForCausalLM

    check_safetensors_only(checkpoint, ExportError)
    model = AutoModelForCausalLM.from_pretrained(
        checkpoint,
        trust_remote_code=False,
        use_safetensors=True,
        dtype=torch.float16 if dtype == "fp16" else torch.float32,
        attn_implementation="eager",
    ).to(device)
    model.eval()
    return model


def export_checkpoint(
    checkpoint: Path,
    out_dir: Path,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    training_data: str = "",
    steps: int = 0,
    metrics: dict[str, float] | None = None,
    verify: bool = True,
) -> ModelDir:
    """Export ``checkpoint`` into the model directory ``out_dir`` (replaced atomically)."""
    import torch
    from optimum.exporters.onnx import onnx_export_from_model
    from transformers import AutoTokenizer, GenerationConfig

    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    if dtype not in TOLERANCE:
        raise ExportError(f"unknown dtype {dtype!r}; use fp32 or fp16")
    if device not in ("cpu", "cuda"):
        raise ExportError(f"unknown device {device!r}; use cpu or cuda")
    if dtype == "fp16" and device != "cuda":
        raise ExportError("fp16 export needs --device cuda (optimum exports fp16 on the GPU)")
    if device == "cuda" and not torch.cuda.is_available():
        raise ExportError("--device cuda was asked for but PyTorch sees no CUDA device")
    architecture = _check_checkpoint(checkpoint)
    check_model_dir_target(out_dir)  # before the minutes of loading and exporting

    tokenizer = AutoTokenizer.from_pretrained(checkpoint, trust_remote_code=False)
    if not tokenizer.is_fast:
        raise ExportError(
            f"{checkpoint}: no fast tokenizer (tokenizer.json) to ship with the model"
        )
    model = load_causal_lm(checkpoint, dtype, device)
    try:
        generation_eos = GenerationConfig.from_pretrained(checkpoint).eos_token_id
    except OSError:
        generation_eos = None

    with staged_model_dir(out_dir) as staging:
        log.info("exporting %s (%s, %s on %s) to ONNX", checkpoint, architecture, dtype, device)
        onnx_export_from_model(
            model,
            output=staging,
            task="text-generation-with-past",
            device=device,
            dtype=dtype,
            do_validation=False,
        )
        tokenizer.save_pretrained(staging)
        kv, io = _kv_layout_and_io(staging / "model.onnx")
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            architecture=architecture,
            context_length=context_length_of(model.config),
            vocab_size=int(model.config.vocab_size),
            kv=kv,
            io=io,
            special_tokens=special_tokens_of(tokenizer, generation_eos),
            provenance=Provenance(
                base_checkpoint=str(checkpoint.resolve()),
                training_data=training_data,
                steps=steps,
                metrics=dict(metrics or {}),
                export_dtype=dtype,
                export_device=device,
                created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                codehone_version=__version__,
            ),
        )
        write_manifest(staging, manifest)
        try:
            staged = load_model_dir(staging)
        except ModelDirError as exc:
            raise ExportError(f"the exported directory does not validate: {exc}") from None
        if verify:
            prompt_ids = tokenizer(_VERIFY_PROMPT)["input_ids"][: manifest.context_length - 8]
            verification = verify_logits(
                staged, TorchReference(model), prompt_ids, dtype, device=device, steps=_VERIFY_STEPS
            )
            manifest = replace(
                manifest, provenance=replace(manifest.provenance, verification=verification)
            )
            write_manifest(staging, manifest)
            log.info(
                "verified: max |ORT - PyTorch| logit difference %.3g (prompt), %.3g (cached steps)",
                verification["max_abs_diff_prompt"],
                verification["max_abs_diff_steps"],
            )
    return load_model_dir(out_dir)
