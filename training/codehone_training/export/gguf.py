"""Import a GGUF file (llama.cpp's format) as a verified codehone model directory.

Most small open models reach users as GGUF files (the package index carries SmolLM2-135M that
way), so ``codehone export MODEL.gguf`` takes one as readily as a Hugging Face checkpoint:

1. find the file: a ``.gguf`` file, or a folder holding exactly one (inside that folder);
2. read its header with the ``gguf`` package (metadata and tensor table only: a GGUF holds no
   code, and nothing in it is executed) and refuse an architecture codehone does not export,
   a truncated file or something that is not a GGUF, each with one line;
3. dequantize it into an ordinary safetensors checkpoint (transformers' GGUF loader, fp32) with
   its tokenizer, and give that tokenizer the special tokens plain code completion needs
   (``completion_tokens``);
4. export and verify that checkpoint exactly like any other (``export.finish``: the optimum
   export, then the fused graph and quantization when asked), and keep it in the model
   directory's ``checkpoint/`` so ``codehone tune`` can start from it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from codehone.core.errors import ExportError
from codehone.core.model_dir import ModelDir, load_model_dir, write_manifest
from codehone.core.staging import new_staging_dir
from codehone_training.export.finish import CHECKPOINT_SUBDIR, FinishSteps, finish_model

log = logging.getLogger("codehone.export")

GGUF_MAGIC = b"GGUF"
# GGUF ``general.architecture`` -> the Hugging Face family codehone exports (and transformers'
# GGUF loader reads).
GGUF_ARCHITECTURES = {"llama": "llama", "qwen2": "qwen2", "gpt2": "gpt2"}
# Tokens that end a document or a turn in the common vocabularies: a completion stops at any
# that the model's vocabulary has (see ``completion_tokens``).
STOP_TOKENS = ("<|endoftext|>", "<|im_end|>", "<|end_of_text|>", "<|eot_id|>", "</s>")


@dataclass(frozen=True)
class GgufInfo:
    """What the header says, read without loading any tensor."""

    path: Path
    architecture: str  # the GGUF name, a key of GGUF_ARCHITECTURES
    name: str
    layers: int
    context_length: int
    tensors: int
    add_bos: bool  # tokenizer.ggml.add_bos_token (llama.cpp's default when absent: true)


def find_gguf(source: Path) -> Path:
    """The GGUF file ``source`` names: the file itself, or the one ``.gguf`` in a folder.
    A link that leads out of the folder is refused."""
    source = Path(source).expanduser()
    if not source.exists():
        raise ExportError(f"{source}: does not exist")
    if source.is_file():
        return source.resolve()
    folder = source.resolve()
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".gguf")
    if not found:
        raise ExportError(f"{source}: no .gguf file in this folder")
    if len(found) > 1:
        names = ", ".join(p.name for p in found[:4])
        raise ExportError(f"{source}: {len(found)} .gguf files ({names}); name one")
    chosen = found[0].resolve()
    if not chosen.is_relative_to(folder) or not chosen.is_file():
        raise ExportError(f"{found[0]}: resolves outside {source}; refusing")
    return chosen


def is_gguf(path: Path) -> bool:
    """Whether ``path`` is a GGUF file or a folder holding one (by the file's magic bytes)."""
    path = Path(path)
    if path.is_dir():
        return any(p.suffix.lower() == ".gguf" for p in path.iterdir())
    try:
        with path.open("rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def read_gguf_info(path: Path) -> GgufInfo:
    """Parse the header and tensor table; raise ExportError with one line if it is not a
    complete GGUF of a family codehone exports."""
    import gguf

    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise ExportError(f"{path}: cannot read ({exc.strerror})") from None
    if magic != GGUF_MAGIC:
        raise ExportError(f"{path}: not a GGUF file (it does not start with 'GGUF')")
    try:
        reader = gguf.GGUFReader(path)
    except Exception as exc:  # numpy/struct errors on a cut file: one line is what helps
        raise ExportError(
            f"{path}: not a complete GGUF file (truncated or corrupt: {type(exc).__name__})"
        ) from None

    def field(key: str, default: object = None) -> object:
        value = reader.fields.get(key)
        if value is None:
            return default
        try:
            return value.contents()
        except Exception:
            return default

    architecture = str(field("general.architecture", ""))
    if architecture not in GGUF_ARCHITECTURES:
        raise ExportError(
            f"{path}: GGUF architecture {architecture!r} is not one codehone exports "
            f"(supported: {', '.join(GGUF_ARCHITECTURES)})"
        )
    data_end = max((t.data_offset + t.n_bytes for t in reader.tensors), default=0)
    if not reader.tensors or data_end > path.stat().st_size:
        raise ExportError(f"{path}: not a complete GGUF file (its tensors end past the file)")
    return GgufInfo(
        path=path,
        architecture=architecture,
        name=str(field("general.name", path.stem)),
        layers=int(field(f"{architecture}.block_count", 0) or 0),  # type: ignore[arg-type]
        context_length=int(field(f"{architecture}.context_length", 0) or 0),  # type: ignore[arg-type]
        tensors=len(reader.tensors),
        add_bos=bool(field("tokenizer.ggml.add_bos_token", True)),
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def completion_tokens(vocab: dict[str, int], gguf_eos: int | None) -> list[int]:
    """The stop tokens of a plain code completion: every end-of-document / end-of-turn token
    the vocabulary has, then the GGUF's own EOS. A chat model's converted tokenizer often
    names a chat marker as BOS and EOS (SmolLM2's names ``<|im_start|>`` for both), which
    would stop nothing useful and start every prompt with a chat turn."""
    ids = [vocab[t] for t in STOP_TOKENS if t in vocab]
    if gguf_eos is not None and gguf_eos not in ids and gguf_eos >= 0:
        ids.append(gguf_eos)
    return ids


def dequantize(info: GgufInfo, checkpoint: Path) -> Path:
    """Write ``info.path`` as an fp32 safetensors checkpoint with a fast tokenizer that adds
    no BOS (unless the GGUF asks for one) and stops on ``completion_tokens``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # transformers reads the GGUF from a folder of its own, so nothing else in the user's
    # folder (a config, an index, a pickle of weights) takes part in the load
    isolated = checkpoint.parent / "gguf-source"
    isolated.mkdir()
    (isolated / info.path.name).symlink_to(info.path.resolve())
    folder, name = str(isolated), info.path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    if GGUF_ARCHITECTURES[info.architecture] != model.config.model_type:
        raise ExportError(
            f"{info.path}: read as {model.config.model_type!r}, expected "
            f"{GGUF_ARCHITECTURES[info.architecture]!r}"
        )
    stops = completion_tokens(tokenizer.get_vocab(), model.generation_config.eos_token_id)
    if not stops:
        raise ExportError(f"{info.path}: the vocabulary has no end-of-text token")
    if hasattr(tokenizer, "add_bos_token"):
        tokenizer.add_bos_token = info.add_bos  # the post-processor follows this setting
    tokenizer.eos_token = tokenizer.convert_ids_to_tokens(stops[0])
    model.generation_config.eos_token_id = stops
    model.config.eos_token_id = stops[0]
    checkpoint.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(checkpoint, safe_serialization=True)
    tokenizer.save_pretrained(checkpoint)
    for weights in checkpoint.glob("*.safetensors"):
        weights.chmod(0o644)  # a shared model directory; safetensors writes 0600
    return checkpoint


def import_gguf(
    source: Path,
    out_dir: Path,
    *,
    device: str = "cpu",
    steps: FinishSteps | None = None,
) -> ModelDir:
    """``codehone export MODEL.gguf --out DIR``: a verified model directory whose
    ``checkpoint/`` holds the dequantized weights (a base for ``codehone tune``); ``steps``
    (``export.finish``): what follows the export, e.g. the fused graph and quantization."""
    path = find_gguf(source)
    info = read_gguf_info(path)
    out_dir = Path(out_dir)
    digest = sha256_of(path)
    log.info(
        "importing %s (%s, %d layers, %d tensors, sha256 %s)",
        path,
        info.architecture,
        info.layers,
        info.tensors,
        digest[:12],
    )
    scratch = new_staging_dir(out_dir, "gguf")
    try:
        checkpoint = dequantize(info, scratch / CHECKPOINT_SUBDIR)
        (checkpoint / "codehone_source.json").write_text(
            json.dumps({"gguf": str(path), "sha256": digest, "name": info.name}, indent=2) + "\n",
            encoding="utf-8",
        )
        source_note = f"GGUF {path.name} (sha256 {digest})"
        model_dir = finish_model(
            checkpoint, out_dir, steps or FinishSteps(), device=device, training_data=source_note
        )
        kept = out_dir / CHECKPOINT_SUBDIR
        shutil.rmtree(kept, ignore_errors=True)
        checkpoint.rename(kept)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    manifest = model_dir.manifest
    # relative, as export.finish writes it: the directory can move
    provenance = replace(manifest.provenance, base_checkpoint=CHECKPOINT_SUBDIR)
    write_manifest(out_dir, replace(manifest, provenance=provenance))
    return load_model_dir(out_dir)
