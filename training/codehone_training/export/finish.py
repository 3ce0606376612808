"""From a trained checkpoint to the model directory that is served: the one last step of
``codehone pretrain`` and ``codehone tune``.

The checkpoint is exported (verified against PyTorch); then, as asked, rebuilt as the fused
decode graph, quantized, given a copy of its checkpoint (so ``codehone finetune`` / ``tune``
can start from the directory) and marked to be prompted without FIM. With no such step the
export writes the directory itself; otherwise every step works in a folder beside the target
and the last one is published (``codehone.core.staging``), so the target is at every moment the
old model directory or the finished new one.
"""

from __future__ import annotations

import functools
import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from codehone.core.errors import ExportError
from codehone.core.model_dir import ModelDir, load_model_dir, with_fim_in_prompts, write_manifest
from codehone.core.staging import new_staging_dir, publish
from codehone_training.export.quantize import INT8_ONLY, SCHEMES

log = logging.getLogger("codehone.export")

CHECKPOINT_SUBDIR = "checkpoint"
CHECKPOINT_DTYPES = ("fp16", "bf16", "fp32")


@dataclass(frozen=True)
class FinishSteps:
    """What happens to a checkpoint after its export, in this order."""

    fuse: bool = False  # rebuild as codehone's fused decode graph (export.optimize.fuse)
    fuse_dtype: str = "fp32"  # the fused graph's weights and KV cache (fp16: for CUDA)
    # a model the fused graph cannot express (or that fails its verification) keeps its
    # exported graph, with a warning, instead of failing the run
    keep_unfused: bool = False
    quantize_bits: int = 0  # 8 or 4: quantized weights (export.optimize.quantize); 0: none
    quantize_scheme: str = "block"  # block (MatMulNBits); channel or token: int8 only
    checkpoint_dtype: str | None = None  # copy the checkpoint into checkpoint/ in this dtype
    # False: the manifest says fim.in_prompts = false, so the server prompts with the text
    # before the cursor only (for a model whose FIM completions measured worse than plain)
    fim_in_prompts: bool = True
    verify: bool = True

    def __post_init__(self) -> None:
        if self.quantize_bits not in (0, 4, 8):
            raise ExportError(f"quantize_bits must be 0, 4 or 8, not {self.quantize_bits}")
        if self.quantize_scheme not in SCHEMES:
            raise ExportError(
                f"quantize_scheme must be one of {SCHEMES}, not {self.quantize_scheme!r}"
            )
        if self.quantize_scheme in INT8_ONLY and self.quantize_bits not in (0, 8):
            raise ExportError(
                f"the {self.quantize_scheme} quantization scheme is int8 only (quantize_bits 8)"
            )
        if self.checkpoint_dtype is not None and self.checkpoint_dtype not in CHECKPOINT_DTYPES:
            raise ExportError(
                f"checkpoint dtype must be one of {CHECKPOINT_DTYPES}, not {self.checkpoint_dtype!r}"
            )

    @property
    def after_export(self) -> bool:
        """Whether anything happens after the export."""
        return bool(
            self.fuse or self.quantize_bits or self.checkpoint_dtype or not self.fim_in_prompts
        )


def embed_checkpoint(checkpoint: Path, model_dir: Path, dtype: str = "fp16") -> Path:
    """Copy the Hugging Face checkpoint into ``model_dir/checkpoint`` (weights cast to
    ``dtype`` to save space), so ``codehone finetune`` / ``tune`` can start from the model
    directory (``codehone_training.base_model`` looks there first). Returns that directory."""
    import torch
    from safetensors.torch import load_file, save_file

    if dtype not in CHECKPOINT_DTYPES:
        raise ExportError(f"checkpoint dtype must be one of {CHECKPOINT_DTYPES}, not {dtype!r}")
    torch_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    target = Path(model_dir) / CHECKPOINT_SUBDIR
    target.mkdir(parents=True, exist_ok=True)
    for item in sorted(Path(checkpoint).iterdir()):
        if not item.is_file():
            continue
        if item.suffix == ".safetensors":
            tensors = {k: v.to(torch_dtype).contiguous() for k, v in load_file(item).items()}
            save_file(tensors, target / item.name, metadata={"format": "pt"})
        elif item.suffix in (".json", ".txt"):  # config, generation config, tokenizer files
            shutil.copy2(item, target / item.name)
    return target


def finish_model(
    checkpoint: Path,
    out_dir: Path,
    steps: FinishSteps,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    training_data: str = "",
    trained_steps: int = 0,
    metrics: dict[str, float] | None = None,
) -> ModelDir:
    """Export ``checkpoint`` to the model directory ``out_dir`` and apply ``steps``; the other
    arguments are the export's (``export_checkpoint``)."""
    from codehone_training.export.checkpoint import check_model_dir_target, export_checkpoint
    from codehone_training.export.optimize import OptimizeError, fuse, quantize

    out_dir = Path(out_dir)
    export = functools.partial(
        export_checkpoint,
        device=device,
        dtype=dtype,
        training_data=training_data,
        steps=trained_steps,
        metrics=metrics,
        verify=steps.verify,
    )
    if not steps.after_export:
        return export(checkpoint, out_dir)
    check_model_dir_target(out_dir)
    work = new_staging_dir(out_dir, "steps")
    try:
        model_dir = export(checkpoint, work / "exported")
        if steps.fuse:
            try:
                model_dir = fuse(
                    model_dir.root,
                    work / "fused",
                    dtype=steps.fuse_dtype,
                    checkpoint=checkpoint,
                    verify=steps.verify,
                    device=device,
                )
            except OptimizeError as exc:
                if not steps.keep_unfused:
                    raise
                log.warning("the model keeps its exported graph: %s", exc)
        if steps.quantize_bits:
            model_dir = quantize(
                model_dir.root,
                work / "quantized",
                bits=steps.quantize_bits,
                scheme=steps.quantize_scheme,
            )
        manifest = model_dir.manifest
        if steps.checkpoint_dtype is not None:
            embed_checkpoint(checkpoint, model_dir.root, steps.checkpoint_dtype)
            provenance = replace(manifest.provenance, base_checkpoint=CHECKPOINT_SUBDIR)
            manifest = replace(manifest, provenance=provenance)
        if not steps.fim_in_prompts:
            manifest = with_fim_in_prompts(manifest, False)
        write_manifest(model_dir.root, manifest)
        publish(model_dir.root, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return load_model_dir(out_dir)
