"""The optimization steps: each reads an exported model directory and writes a new one.

- ``fuse``: the model rebuilt as codehone's fused decode graph (``export.fused_graph``; gpt2,
  llama, qwen2), verified against PyTorch (or, without a checkpoint, against the exported graph) like
  an export;
- ``last_logits``: for the families the fused graph does not cover, the exported graph
  rewritten to compute the logits of the asked-for positions only, and their arg-max;
- ``quantize``: int8/int4 weights for CPU users (``export.quantize``: the ``block`` scheme's
  ``MatMulNBits``, or int8 ``channel`` scales for int8 prompt arithmetic); not verified, since its logits are meant to differ: ``codehone optimize measure`` says by
  how much.

Each writes beside its target and replaces it only when complete (``codehone.core.staging``).
The command line is ``codehone optimize`` (``export.commands``).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from codehone.core.model_dir import MANIFEST_NAME, ModelDir, load_model_dir, write_manifest
from codehone_training.export.checkpoint import load_causal_lm, staged_model_dir
from codehone_training.export.fused import (
    ONNX_FILE,
    OptimizeError,
    fused_config,
    fused_manifest,
    load_checkpoint_weights,
    load_onnx_weights,
)
from codehone_training.export.fused_graph import build_fused_graph
from codehone_training.export.quantize import (
    INT8_ONLY,
    SCHEMES,
    quantize_matmuls,
    quantize_matmuls_per_channel,
    quantize_matmuls_per_token,
)
from codehone_training.export.quantize_embedding import quantize_embeddings
from codehone_training.export.smooth import smooth_for_int8
from codehone_training.export.verify import (
    TOLERANCE,
    EngineReference,
    Reference,
    TorchReference,
    verify_logits,
)

log = logging.getLogger("codehone.optimize")

_DATA_FILE = "model.onnx.data"
# A fused graph is checked on these ids (modulo the vocabulary): 7 cached steps, 8 greedy tokens.
_VERIFY_PROMPT_IDS = [12, 40, 7, 99, 150, 3, 200, 41, 42, 43, 44, 300, 17, 12, 40, 7]
_VERIFY_STEPS = 7


def _save_onnx(model: Any, directory: Path) -> None:
    """Save with the weights in one external-data file (no 2 GB protobuf limit)."""
    import onnx

    onnx.save_model(
        model,
        str(directory / ONNX_FILE),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=_DATA_FILE,
        size_threshold=1024,
    )


def _copy_side_files(src: Path, dst: Path) -> None:
    """The tokenizer and other files of ``src`` (not its graph or manifest) into ``dst``."""
    for item in src.iterdir():
        if item.is_file() and item.name != MANIFEST_NAME and not item.name.startswith("model.onnx"):
            shutil.copy2(item, dst / item.name)


# ---------------------------------------------------------------------------------------------
# fuse
# ---------------------------------------------------------------------------------------------


def _checkpoint_of(model_dir: ModelDir, checkpoint: Path | None) -> Path | None:
    if checkpoint is not None:
        if not any(Path(checkpoint).glob("*.safetensors")):
            raise OptimizeError(f"{checkpoint}: no .safetensors weights")
        return Path(checkpoint)
    base = Path(model_dir.manifest.provenance.base_checkpoint)
    if base.is_dir() and any(base.glob("*.safetensors")):
        return base
    return None


def _hf_config(model_dir: ModelDir, checkpoint: Path | None) -> Any:
    from transformers import AutoConfig

    for where in (checkpoint, model_dir.root):
        if where is not None and (Path(where) / "config.json").is_file():
            return AutoConfig.from_pretrained(where, trust_remote_code=False)
    raise OptimizeError(f"{model_dir.root}: no config.json beside the model or its checkpoint")


def fuse(
    src_dir: Path,
    out_dir: Path,
    *,
    dtype: str = "fp32",
    checkpoint: Path | None = None,
    verify: bool = True,
    device: str = "cpu",
) -> ModelDir:
    """Write ``out_dir``: the model of ``src_dir`` as codehone's fused graph, verified."""
    if dtype not in TOLERANCE:
        raise OptimizeError(f"unknown dtype {dtype!r}; use fp32 or fp16")
    source = load_model_dir(src_dir)
    checkpoint = _checkpoint_of(source, checkpoint)
    cfg = fused_config(_hf_config(source, checkpoint))
    if checkpoint is not None:
        tensors = load_checkpoint_weights(checkpoint)
    elif cfg.family == "gpt2" and not source.manifest.kv.shared_buffer:
        tensors = load_onnx_weights(source.model_path)  # gpt2 exports keep PyTorch's names
    else:
        raise OptimizeError(
            f"{source.root}: the fused {cfg.family} graph is built from the Hugging Face "
            "checkpoint; pass --checkpoint DIR"
        )
    cfg = replace(cfg, context_length=source.manifest.context_length)
    with staged_model_dir(Path(out_dir), OptimizeError) as staging:
        log.info("building the fused %s graph (%s)", cfg.family, dtype)
        _save_onnx(build_fused_graph(cfg, tensors, dtype), staging)
        del tensors
        _copy_side_files(source.root, staging)
        manifest = fused_manifest(source.manifest, cfg, dtype)
        write_manifest(staging, manifest)
        if verify:
            reference: Reference
            if checkpoint is not None:
                reference = TorchReference(load_causal_lm(checkpoint, dtype, device))
            else:  # the exported graph was itself verified against PyTorch
                reference = EngineReference(source, device)
            vocab = source.manifest.vocab_size
            verification = verify_logits(
                load_model_dir(staging),
                reference,
                [t % vocab for t in _VERIFY_PROMPT_IDS],
                dtype,
                device=device,
                steps=_VERIFY_STEPS,
                greedy=True,
                error=OptimizeError,
            )
            provenance = replace(manifest.provenance, verification=verification)
            write_manifest(staging, replace(manifest, provenance=provenance))
            log.info(
                "verified against %s: max logit difference %.3g (prompt), %.3g (steps)",
                reference.name,
                verification["max_abs_diff_prompt"],
                verification["max_abs_diff_steps"],
            )
    return load_model_dir(out_dir)


# ---------------------------------------------------------------------------------------------
# last_logits
# ---------------------------------------------------------------------------------------------


def add_last_logits(model: Any) -> Any:
    """Rewrite an exported graph so it computes the logits of ``logits_positions`` only (a
    Gather before the vocabulary projection) and their arg-max (``next_tokens``)."""
    from onnx import TensorProto, helper

    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    constants = {t.name for t in graph.initializer}
    node = producer.get("logits")
    while node is not None and node.op_type in ("Cast", "Identity", "Add"):
        inputs = [i for i in node.input if i not in constants]  # Add: skip the bias
        node = producer.get(inputs[0]) if len(inputs) == 1 else None
    if node is None or node.op_type != "MatMul":
        raise OptimizeError("could not find the vocabulary projection (a MatMul) before logits")
    hidden = node.input[0]
    gathered = hidden + "/last_positions"
    index = list(graph.node).index(node)
    graph.node.insert(
        index,
        helper.make_node(
            "Gather",
            [hidden, "logits_positions"],
            [gathered],
            name="/codehone/logits_gather",
            axis=1,
        ),
    )
    node.input[0] = gathered
    graph.input.append(
        helper.make_tensor_value_info("logits_positions", TensorProto.INT64, ["kept"])
    )
    logits_out = next(o for o in graph.output if o.name == "logits")
    logits_out.type.tensor_type.shape.dim[1].ClearField("dim_value")
    logits_out.type.tensor_type.shape.dim[1].dim_param = "kept"
    graph.node.append(
        helper.make_node(
            "ArgMax", ["logits"], ["next_tokens"], name="/codehone/argmax", axis=-1, keepdims=0
        )
    )
    graph.output.append(
        helper.make_tensor_value_info("next_tokens", TensorProto.INT64, [1, "kept"])
    )
    return model


def last_logits(src_dir: Path, out_dir: Path) -> ModelDir:
    """Write ``out_dir``: the exported graph of ``src_dir`` with last-position logits and
    arg-max inside (for the families the fused graph does not cover)."""
    import onnx

    source = load_model_dir(src_dir)
    if source.manifest.io.logits_positions:
        raise OptimizeError(f"{source.root}: the graph already computes selected logits only")
    with staged_model_dir(Path(out_dir), OptimizeError) as staging:
        model = add_last_logits(onnx.load(str(source.model_path), load_external_data=True))
        _save_onnx(model, staging)
        _copy_side_files(source.root, staging)
        manifest = source.manifest
        io = replace(manifest.io, logits_positions="logits_positions", next_tokens="next_tokens")
        provenance = replace(
            manifest.provenance, optimizations=[*manifest.provenance.optimizations, "last-logits"]
        )
        write_manifest(
            staging, replace(manifest, io=io, provenance=provenance, model_file=ONNX_FILE)
        )
    return load_model_dir(out_dir)


# ---------------------------------------------------------------------------------------------
# quantize
# ---------------------------------------------------------------------------------------------


def quantize(
    src_dir: Path,
    out_dir: Path,
    *,
    bits: int = 4,
    block_size: int = 32,
    accuracy_level: int = 4,
    scheme: str = "block",
    calibration: list[Path] | None = None,
) -> ModelDir:
    """Write ``out_dir``: ``src_dir`` with its MatMul weights quantized to ``bits`` (4 or 8)
    for CPU serving, by ``scheme`` (``export.quantize``):

    - ``block``: ``MatMulNBits`` per block of ``block_size`` input rows; ``accuracy_level`` 4
      lets the CPU kernel quantize activations to int8 on the fly (fastest), 1 keeps float32
      activations;
    - ``channel`` (8 bits only): per-output-channel int8 weights multiplied in int8
      (``DynamicQuantizeMatMul``), block int8 where the input is not normalized;
    - ``token`` (8 bits only): smoothed (``export.smooth``, calibrated on ``calibration``,
      default: modules of Python's standard library), then per-channel int8 weights times
      per-token int8 activations."""
    import onnx

    if scheme not in SCHEMES:
        raise OptimizeError(
            f"the quantization scheme is one of {', '.join(SCHEMES)}, not {scheme!r}"
        )
    if bits not in (4, 8):
        raise OptimizeError(f"bits must be 4 or 8, not {bits}")
    if scheme in INT8_ONLY and bits != 8:
        raise OptimizeError(f"the {scheme} scheme is int8 only (--bits 8)")
    source = load_model_dir(src_dir)
    if source.manifest.kv.dtype != "float32":
        raise OptimizeError("weight quantization is for float32 (CPU) models")
    step = f"int{bits}-{scheme}" if scheme in INT8_ONLY else f"int{bits}-block{block_size}"
    with staged_model_dir(Path(out_dir), OptimizeError) as staging:
        quantized = onnx.load(str(source.model_path), load_external_data=True)
        if scheme == "channel":
            count = quantize_matmuls_per_channel(quantized, block_size)
        elif scheme == "token":
            smooth_for_int8(quantized, source, calibration)
            count = quantize_matmuls_per_token(quantized, block_size)
        else:
            count = quantize_matmuls(quantized, bits, block_size, accuracy_level)
        if count == 0:
            raise OptimizeError("no MatMul weight could be quantized")
        log.info("quantized %d MatMul weights (%s)", count, step)
        tables = quantize_embeddings(quantized, bits, block_size)
        _save_onnx(quantized, staging)
        _copy_side_files(source.root, staging)
        manifest = source.manifest
        provenance = replace(
            manifest.provenance,
            optimizations=[
                *manifest.provenance.optimizations,
                step,
                *([f"embedding-int{bits}"] if tables else []),
            ],
        )
        write_manifest(staging, replace(manifest, provenance=provenance, model_file=ONNX_FILE))
    return load_model_dir(out_dir)
