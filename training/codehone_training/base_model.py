"""What a model path names: a Hugging Face checkpoint, a codehone model directory, or both.

Fine-tuning needs PyTorch weights (a checkpoint); the server and eval can use a model directory.
A model directory leads to its checkpoint when it carries one in ``checkpoint/`` or when its
provenance names a checkpoint directory that still exists (an export made by ``codehone
finetune`` or ``codehone tune`` does). Everything else the training side needs to know about a
model without loading its weights is read here: the tokenizer file, the context length, the
end-of-text token and the fill-in-the-middle tokens.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from codehone.core.errors import CodehoneError, ModelDirError
from codehone.core.model_dir import MANIFEST_NAME, FimTokens, detect_fim_tokens, load_model_dir


@dataclass(frozen=True)
class ModelRef:
    """A model path, resolved."""

    path: Path
    checkpoint: Path | None  # Hugging Face checkpoint directory (safetensors), if any
    model_dir: Path | None  # codehone model directory (ONNX), if it is one
    tokenizer_path: Path
    context_length: int
    eos_id: int
    fim: FimTokens | None

    @property
    def kind(self) -> str:
        return "model_dir" if self.model_dir is not None else "checkpoint"

    def tokenizer_fingerprint(self) -> str:
        return hashlib.sha256(self.tokenizer_path.read_bytes()).hexdigest()[:16]


def is_checkpoint(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def _checkpoint_context_length(config: dict) -> int:
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    raise CodehoneError("the checkpoint's config.json names no context length")


def _checkpoint_eos(path: Path, config: dict) -> int | None:
    candidates: list[object] = []
    generation = path / "generation_config.json"
    if generation.is_file():
        candidates.append(json.loads(generation.read_text(encoding="utf-8")).get("eos_token_id"))
    candidates.append(config.get("eos_token_id"))
    for value in candidates:
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, int):
                return item
    return None


def resolve_model(path: str | Path, need_checkpoint: bool = False) -> ModelRef:
    """Resolve ``path``; with ``need_checkpoint``, fail unless PyTorch weights can be found."""
    from tokenizers import Tokenizer

    path = Path(path).expanduser()
    if not path.is_dir():
        raise CodehoneError(f"{path}: no such model directory or checkpoint")
    if (path / MANIFEST_NAME).is_file():
        try:
            model_dir = load_model_dir(path, check_graph=False)
        except ModelDirError as exc:
            raise CodehoneError(str(exc)) from None
        manifest = model_dir.manifest
        checkpoint = None
        for candidate in (path / "checkpoint", Path(manifest.provenance.base_checkpoint or "/")):
            if candidate.is_dir() and is_checkpoint(candidate):
                checkpoint = candidate.resolve()
                break
        if need_checkpoint and checkpoint is None:
            raise CodehoneError(
                f"{path}: this model directory carries no PyTorch checkpoint to fine-tune "
                "(none in checkpoint/ and its provenance names none that exists); pass a "
                "Hugging Face checkpoint instead, e.g. one kept by "
                "`codehone pretrain --out OUT --keep-checkpoint DIR`"
            )
        return ModelRef(
            path=path,
            checkpoint=checkpoint,
            model_dir=model_dir.root,
            tokenizer_path=model_dir.tokenizer_path,
            context_length=manifest.context_length,
            eos_id=manifest.special_tokens.eos_token_ids[0],
            fim=manifest.special_tokens.fim,
        )
    if not (path / "config.json").is_file():
        raise CodehoneError(
            f"{path}: neither a codehone model directory ({MANIFEST_NAME}) nor a Hugging Face "
            "checkpoint (config.json)"
        )
    if not any(path.glob("*.safetensors")):
        raise CodehoneError(f"{path}: no .safetensors weights (codehone loads safetensors only)")
    tokenizer_path = path / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise CodehoneError(f"{path}: no tokenizer.json (a fast tokenizer is required)")
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    eos = _checkpoint_eos(path, config)
    if eos is None:
        raise CodehoneError(f"{path}: the checkpoint declares no EOS token")
    return ModelRef(
        path=path,
        checkpoint=path.resolve(),
        model_dir=None,
        tokenizer_path=tokenizer_path,
        context_length=_checkpoint_context_length(config),
        eos_id=eos,
        fim=detect_fim_tokens(tokenizer.get_vocab(with_added_tokens=True)),
    )
