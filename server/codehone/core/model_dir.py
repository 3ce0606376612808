"""The model directory: the contract between ``training/`` (which writes it) and the server.

A model directory holds ``model.onnx`` (plus its external data, if any), ``tokenizer.json``
and a manifest ``codehone.json`` that describes everything the runtime needs without guessing:
the architecture family, the context length, the KV-cache layout and the graph's input and
output names, the special tokens (EOS, fill-in-the-middle) and where the model came from.

``load_model_dir`` validates all of it and raises ``ModelDirError`` with one clear line naming
the problem: a missing file, an unknown format version, a number out of range (see
``MANIFEST_LIMITS``), a graph whose inputs, outputs or sizes do not match the manifest, or a
path that resolves outside the directory (symlinks included). A manifest is small: one over
``MAX_MANIFEST_BYTES`` is refused before it is read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cattrs

from codehone.core.converters import strict_converter
from codehone.core.errors import ModelDirError
from codehone.core.onnx_summary import OnnxFormatError, read_summary
from codehone.core.staging import write_text_atomic

MANIFEST_NAME = "codehone.json"
FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1,)
SUPPORTED_ARCHITECTURES = ("gpt2", "codegen", "gpt_bigcode", "llama", "qwen2")
KV_DTYPES = ("float32", "float16")

# Bounds on the manifest's numbers, checked on load: a value past them would pass the type
# checks and then fail every completion (a KV buffer of 10^12 positions, a vocabulary of one).
# Generous: the largest open code models have 128k-token contexts, 256k-entry vocabularies, a
# few hundred layers, 128 KV heads and heads of 256.
MANIFEST_LIMITS: dict[str, tuple[int, int]] = {
    "context_length": (2, 1 << 20),
    "vocab_size": (2, 1 << 22),
    "kv.num_layers": (1, 1024),
    "kv.num_kv_heads": (1, 1024),
    "kv.head_size": (1, 4096),
}
# The manifest is a few kilobytes; 1 MB is far above any real one and keeps a hostile file
# from costing memory and time before it is even parsed.
MAX_MANIFEST_BYTES = 1 << 20
# Graph initializers whose first dimension is the number of positions the model can take: the
# learned position table (gpt2, gpt_bigcode) and the rotary caches of codehone's fused graph.
_POSITION_TABLES = ("wpe.weight", "cos_cache", "sin_cache")

# ONNX TensorProto element types for the KV dtypes above.
_ONNX_ELEM_TYPE = {"float32": 1, "float16": 10}

# Fill-in-the-middle conventions: name -> (prefix, suffix, middle) token strings.
FIM_CONVENTIONS: dict[str, tuple[str, str, str]] = {
    "starcoder": ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),  # also codehone's own
    "qwen2.5-coder": ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    "deepseek-coder": ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),
    "codellama": ("▁<PRE>", "▁<SUF>", "▁<MID>"),
}


@dataclass(frozen=True)
class KVLayout:
    """How the KV cache is laid out: one key and one value tensor per layer,
    each of shape [batch, num_kv_heads, sequence, head_size]."""

    num_layers: int
    num_kv_heads: int
    head_size: int
    dtype: str
    # False (optimum's graphs): each step takes the past [.., past_len, ..] and returns a new
    # present [.., past_len + new, ..]. True (codehone's fused graph): past and present are one
    # buffer per tensor, allocated once by the engine at the context length and bound as both;
    # the graph takes the valid length from GraphIO.seqlens_k / total_sequence_length.
    shared_buffer: bool = False
    past_key: str = "past_key_values.{layer}.key"
    past_value: str = "past_key_values.{layer}.value"
    present_key: str = "present.{layer}.key"
    present_value: str = "present.{layer}.value"

    def past_names(self) -> list[str]:
        names: list[str] = []
        for layer in range(self.num_layers):
            names += [self.past_key.format(layer=layer), self.past_value.format(layer=layer)]
        return names

    def present_names(self) -> list[str]:
        names: list[str] = []
        for layer in range(self.num_layers):
            names += [self.present_key.format(layer=layer), self.present_value.format(layer=layer)]
        return names


@dataclass(frozen=True)
class GraphIO:
    """Names of the graph's inputs and outputs besides the KV cache."""

    input_ids: str = "input_ids"
    attention_mask: str | None = "attention_mask"
    position_ids: str | None = None
    logits: str = "logits"
    # Shared-buffer KV (GroupQueryAttention's convention): int32 [batch] = valid length after
    # the step - 1, and int32 scalar = that length (the largest of the batch).
    seqlens_k: str | None = None
    total_sequence_length: str | None = None
    # int64 [K]: which of the step's positions get logits (then logits is [batch, K, vocab]);
    # None: logits for every position.
    logits_positions: str | None = None
    # int64 [batch, K] output: the arg-max of those logits, computed inside the graph.
    next_tokens: str | None = None

    def optional_inputs(self) -> list[str]:
        """The graph inputs besides input_ids and the KV cache that this graph has."""
        names = (
            self.attention_mask,
            self.position_ids,
            self.seqlens_k,
            self.total_sequence_length,
            self.logits_positions,
        )
        return [n for n in names if n]


@dataclass(frozen=True)
class FimTokens:
    """The fill-in-the-middle tokens a model was trained with (prefix-suffix-middle order)."""

    convention: str
    prefix: str
    suffix: str
    middle: str
    prefix_id: int
    suffix_id: int
    middle_id: int
    # False: the server prompts with the text before the cursor only, because this model's
    # fill-in-the-middle was measured to complete worse than its plain continuation (the
    # model card gives the figures); training and `codehone eval --no-fim` still can use FIM
    in_prompts: bool = True


@dataclass(frozen=True)
class SpecialTokens:
    eos_token_ids: list[int]
    bos_token_id: int | None = None
    add_bos: bool = False
    fim: FimTokens | None = None


@dataclass(frozen=True)
class Provenance:
    """Where the model came from: shown by `codehone status` and model cards."""

    base_checkpoint: str
    training_data: str = ""
    steps: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    export_dtype: str = "fp32"
    export_device: str = "cpu"
    verification: dict[str, float] = field(default_factory=dict)
    created: str = ""
    codehone_version: str = ""
    optimizations: list[str] = field(default_factory=list)  # `codehone optimize` steps


@dataclass(frozen=True)
class Manifest:
    format_version: int
    architecture: str
    context_length: int
    vocab_size: int
    kv: KVLayout
    io: GraphIO
    special_tokens: SpecialTokens
    provenance: Provenance
    model_file: str = "model.onnx"
    tokenizer_file: str = "tokenizer.json"


@dataclass(frozen=True)
class ModelDir:
    """A validated model directory: resolved paths plus its manifest."""

    root: Path
    manifest: Manifest
    model_path: Path
    tokenizer_path: Path


_converter = strict_converter()


def manifest_to_json(manifest: Manifest) -> str:
    return json.dumps(_converter.unstructure(manifest), indent=2, ensure_ascii=False) + "\n"


def with_fim_in_prompts(manifest: Manifest, in_prompts: bool) -> Manifest:
    """``manifest`` with ``fim.in_prompts`` set (unchanged if the model has no FIM tokens)."""
    fim = manifest.special_tokens.fim
    if fim is None or fim.in_prompts == in_prompts:
        return manifest
    special = replace(manifest.special_tokens, fim=replace(fim, in_prompts=in_prompts))
    return replace(manifest, special_tokens=special)


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    """Write ``directory``'s manifest atomically (a reader sees the old one or the new one)."""
    path = directory / MANIFEST_NAME
    write_text_atomic(path, manifest_to_json(manifest))
    return path


def _inside(root: Path, name: str, what: str) -> Path:
    """Resolve ``name`` under ``root`` and refuse anything that escapes it."""
    if not name or Path(name).is_absolute():
        raise ModelDirError(f"{root}: {what} must be a relative file name, got {name!r}")
    resolved = (root / name).resolve()
    if not resolved.is_relative_to(root):
        raise ModelDirError(f"{root}: {what} {name!r} resolves outside the model directory")
    if not resolved.is_file():
        raise ModelDirError(f"{root}: {what} {name!r} is missing")
    return resolved


def _read_manifest(root: Path) -> Manifest:
    manifest_path = _inside(root, MANIFEST_NAME, "manifest")
    size = manifest_path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise ModelDirError(
            f"{manifest_path}: {size:,} bytes; a manifest is at most {MAX_MANIFEST_BYTES:,}"
        )
    try:
        raw: Any = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelDirError(f"{manifest_path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ModelDirError(f"{manifest_path}: expected a JSON object")
    version = raw.get("format_version")
    if type(version) is not int or version not in SUPPORTED_FORMAT_VERSIONS:
        raise ModelDirError(
            f"{manifest_path}: unknown format_version {version!r} "
            f"(this codehone reads {', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))})"
        )
    try:
        manifest = _converter.structure(raw, Manifest)
    except Exception as exc:  # cattrs raises a class group; flatten it to one line
        detail = "; ".join(cattrs.transform_error(exc)) if isinstance(exc, Exception) else ""
        raise ModelDirError(f"{manifest_path}: malformed manifest: {detail}") from None
    _check_manifest_values(manifest_path, manifest)
    return manifest


def _check_manifest_values(path: Path, m: Manifest) -> None:
    if m.architecture not in SUPPORTED_ARCHITECTURES:
        raise ModelDirError(
            f"{path}: architecture {m.architecture!r} is not one of {SUPPORTED_ARCHITECTURES}"
        )
    if m.kv.dtype not in KV_DTYPES:
        raise ModelDirError(f"{path}: kv.dtype {m.kv.dtype!r} is not one of {KV_DTYPES}")
    values = {
        "context_length": m.context_length,
        "vocab_size": m.vocab_size,
        "kv.num_layers": m.kv.num_layers,
        "kv.num_kv_heads": m.kv.num_kv_heads,
        "kv.head_size": m.kv.head_size,
    }
    for name, value in values.items():
        low, high = MANIFEST_LIMITS[name]
        if value <= 0:
            raise ModelDirError(f"{path}: {name} must be positive, got {value}")
        if not low <= value <= high:
            raise ModelDirError(f"{path}: {name} {value:,} is outside {low:,}..{high:,}")
    special = m.special_tokens
    if not special.eos_token_ids:
        raise ModelDirError(f"{path}: special_tokens.eos_token_ids is empty")
    ids = {f"special_tokens.eos_token_ids[{i}]": t for i, t in enumerate(special.eos_token_ids)}
    if special.bos_token_id is not None:
        ids["special_tokens.bos_token_id"] = special.bos_token_id
    if special.fim is not None:
        for part in ("prefix", "suffix", "middle"):
            ids[f"special_tokens.fim.{part}_id"] = getattr(special.fim, f"{part}_id")
    for name, token_id in ids.items():
        if not 0 <= token_id < m.vocab_size:
            raise ModelDirError(
                f"{path}: {name} {token_id:,} is not a token id (vocab_size {m.vocab_size:,})"
            )
    if m.kv.shared_buffer and not (m.io.seqlens_k and m.io.total_sequence_length):
        raise ModelDirError(
            f"{path}: kv.shared_buffer needs io.seqlens_k and io.total_sequence_length"
        )
    if m.io.next_tokens and not m.io.logits_positions:
        raise ModelDirError(f"{path}: io.next_tokens needs io.logits_positions")


def _check_graph(root: Path, model_path: Path, m: Manifest) -> None:
    """Compare the ONNX graph's inputs and outputs with the manifest (weights are not read:
    ``codehone.core.onnx_summary``)."""
    try:
        graph = read_summary(model_path)
    except (OSError, OnnxFormatError) as exc:
        raise ModelDirError(f"{model_path}: not a readable ONNX model ({exc})") from None
    for tensor in graph.initializers:
        for location in tensor.external_locations:
            _inside(root, location, "external data file")
    inputs, outputs = graph.inputs, graph.outputs
    expected_inputs = [m.io.input_ids, *m.kv.past_names(), *m.io.optional_inputs()]
    expected_outputs = [m.io.logits, *m.kv.present_names()]
    if m.io.next_tokens:
        expected_outputs.append(m.io.next_tokens)
    missing_in = [n for n in expected_inputs if n not in inputs]
    extra_in = [n for n in inputs if n not in expected_inputs]
    missing_out = [n for n in expected_outputs if n not in outputs]
    if missing_in or extra_in or missing_out:
        parts = []
        if missing_in:
            parts.append(f"inputs missing from the graph: {missing_in[:4]}")
        if extra_in:
            parts.append(f"graph inputs the manifest does not name: {extra_in[:4]}")
        if missing_out:
            parts.append(f"outputs missing from the graph: {missing_out[:4]}")
        raise ModelDirError(f"{model_path}: graph does not match the manifest: {'; '.join(parts)}")
    want_type = _ONNX_ELEM_TYPE[m.kv.dtype]
    kv_values = [("input", name, inputs[name]) for name in m.kv.past_names()]
    kv_values += [("output", name, outputs[name]) for name in m.kv.present_names()]
    for kind, name, value in kv_values:
        if value.elem_type != want_type:
            raise ModelDirError(
                f"{model_path}: {kind} {name} has element type {value.elem_type}, "
                f"the manifest says {m.kv.dtype}"
            )
        dims = list(value.dims)
        if (
            len(dims) != 4
            or dims[1] not in (None, m.kv.num_kv_heads)
            or dims[3] not in (None, m.kv.head_size)
            or (m.kv.shared_buffer and dims[2] not in (None, m.context_length))
        ):
            raise ModelDirError(
                f"{model_path}: {kind} {name} has shape {dims}, the manifest says "
                f"[batch, {m.kv.num_kv_heads}, past, {m.kv.head_size}]"
            )
    logits = outputs[m.io.logits].dims
    if logits and logits[-1] is not None and logits[-1] != m.vocab_size:
        raise ModelDirError(
            f"{model_path}: output {m.io.logits} has {logits[-1]:,} entries per position, "
            f"the manifest's vocab_size is {m.vocab_size:,}"
        )
    for tensor in graph.initializers:
        if tensor.name.endswith(_POSITION_TABLES) and tensor.dims:
            positions = int(tensor.dims[0])
            if m.context_length > positions:
                raise ModelDirError(
                    f"{model_path}: the graph takes at most {positions:,} positions "
                    f"({tensor.name}), the manifest's context_length is {m.context_length:,}"
                )


def load_model_dir(path: str | os.PathLike[str], check_graph: bool = True) -> ModelDir:
    """Validate a model directory and return it; raise ModelDirError naming the problem."""
    given = Path(path).expanduser()
    if not given.exists():
        raise ModelDirError(f"{given}: model directory does not exist")
    if not given.is_dir():
        raise ModelDirError(f"{given}: not a directory")
    root = given.resolve()
    manifest = _read_manifest(root)
    model_path = _inside(root, manifest.model_file, "model file")
    tokenizer_path = _inside(root, manifest.tokenizer_file, "tokenizer file")
    if check_graph:
        _check_graph(root, model_path, manifest)
    return ModelDir(root, manifest, model_path, tokenizer_path)


def detect_fim_tokens(vocab: dict[str, int]) -> FimTokens | None:
    """Find which fill-in-the-middle convention (if any) a tokenizer's vocabulary carries."""
    for convention, (prefix, suffix, middle) in FIM_CONVENTIONS.items():
        candidates = [(prefix, suffix, middle)]
        if convention == "codellama":  # stored with or without the sentencepiece marker
            candidates.append(tuple(t.lstrip("▁") for t in (prefix, suffix, middle)))
        for p, s, mid in candidates:
            if p in vocab and s in vocab and mid in vocab:
                return FimTokens(convention, p, s, mid, vocab[p], vocab[s], vocab[mid])
    return None
