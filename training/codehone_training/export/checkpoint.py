"""Export a Hugging Face causal-LM checkpoint to a codehone model directory, and verify it.

The checkpoint is loaded with safetensors only and never with remote code, exported by optimum
(`text-generation-with-past`: one graph that takes the KV cache as inputs and returns the
updated cache), and then checked: ONNX Runtime's logits must match PyTorch's within a stated
tolerance for a whole prompt and step by step through the KV cache, using the server's own
engine. Only a verified export is moved into place, with its manifest.
"""

from __future__ import annotations

import datetime
import logging
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

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

log = logging.getLogger("codehone.export")

# Largest |ORT - PyTorch| logit difference accepted, relative to max(1, largest |logit|).
TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2}
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
    config = AutoConfig.from_pretrained(checkpoint, trust_remote_code=False)
    if config.model_type not in SUPPORTED_ARCHITECTURES:
        raise ExportError(
            f"{checkpoint}: architecture {config.model_type!r} is not supported "
            f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
        )
    return str(config.model_type)


def _context_length(config: object) -> int:
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


def _special_tokens(tokenizer: object, generation_eos: object) -> SpecialTokens:
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


def _verify(model: object, model_dir: ModelDir, prompt_ids: list[int], dtype: str) -> dict:
    """Compare ONNX Runtime with PyTorch: whole prompt, then step by step through the cache."""
    import torch

    from codehone.core.engine.session import Engine
    from codehone.core.providers import choose_provider

    device = next(model.parameters()).device  # type: ignore[attr-defined]
    engine = Engine(model_dir, choose_provider("cuda" if device.type == "cuda" else "cpu"))
    ort_prompt, cache = engine.forward(prompt_ids, engine.empty_cache(), all_logits=True)
    with torch.no_grad():
        ids = torch.tensor([prompt_ids], device=device)
        output = model(input_ids=ids, use_cache=True)  # type: ignore[operator]
        torch_prompt = output.logits[0].float().cpu().numpy()
        past = output.past_key_values
        prompt_diff = float(np.max(np.abs(ort_prompt - torch_prompt)))
        scale = max(1.0, float(np.max(np.abs(torch_prompt))))
        step_diff = 0.0
        next_id = int(np.argmax(torch_prompt[-1]))
        for _ in range(_VERIFY_STEPS):
            ort_step, cache = engine.forward([next_id], cache)
            output = model(  # type: ignore[operator]
                input_ids=torch.tensor([[next_id]], device=device),
                past_key_values=past,
                use_cache=True,
            )
            past = output.past_key_values
            torch_step = output.logits[0, -1].float().cpu().numpy()
            step_diff = max(step_diff, float(np.max(np.abs(ort_step - torch_step))))
            scale = max(scale, float(np.max(np.abs(torch_step))))
            next_id = int(np.argmax(torch_step))
    tolerance = TOLERANCE[dtype]
    result = {
        "max_abs_diff_prompt": prompt_diff,
        "max_abs_diff_steps": step_diff,
        "logit_scale": scale,
        "tolerance_relative": tolerance,
    }
    worst = max(prompt_diff, step_diff)
    if worst > tolerance * scale:
        raise ExportError(
            f"verification failed: ONNX Runtime logits differ from PyTorch by {worst:.3g} "
            f"(allowed {tolerance * scale:.3g} = {tolerance} x {scale:.3g}); "
            f"prompt {prompt_diff:.3g}, cached steps {step_diff:.3g}"
        )
    return result


def _prepare_out_dir(out_dir: Path) -> None:
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ExportError(f"{out_dir}: exists and is not a directory")
        if any(out_dir.iterdir()) and not (out_dir / MANIFEST_NAME).is_file():
            raise ExportError(
                f"{out_dir}: not empty and not a model directory; refusing to overwrite"
            )


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
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

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
    _prepare_out_dir(out_dir)

    tokenizer = AutoTokenizer.from_pretrained(checkpoint, trust_remote_code=False)
    if not tokenizer.is_fast:
        raise ExportError(
            f"{checkpoint}: no fast tokenizer (tokenizer.json) to ship with the model"
        )
    model = AutoModelForCausalLM.from_pretrained(
        checkpoint,
        trust_remote_code=False,
        use_safetensors=True,
        dtype=torch.float16 if dtype == "fp16" else torch.float32,
        attn_implementation="eager",
    ).to(device)
    model.eval()
    try:
        generation_eos = GenerationConfig.from_pretrained(checkpoint).eos_token_id
    except OSError:
        generation_eos = None

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
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
            context_length=_context_length(model.config),
            vocab_size=int(model.config.vocab_size),
            kv=kv,
            io=io,
            special_tokens=_special_tokens(tokenizer, generation_eos),
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
            verification = _verify(model, staged, prompt_ids, dtype)
            manifest = replace(
                manifest, provenance=replace(manifest.provenance, verification=verification)
            )
            write_manifest(staging, manifest)
            log.info(
                "verified: max |ORT - PyTorch| logit difference %.3g (prompt), %.3g (cached steps)",
                verification["max_abs_diff_prompt"],
                verification["max_abs_diff_steps"],
            )
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return load_model_dir(out_dir)
