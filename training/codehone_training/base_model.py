"""What a model path names: a Hugging Face checkpoint, a codehone model directory, or both.

Fine-tuning needs PyTorch weights (a checkpoint); the server and eval can use a model directory.
A model directory leads to its checkpoint when it carries one in ``checkpoint/`` or when its
provenance names a checkpoint directory that still exists (an export made by ``codehone
finetune`` or ``codehone tune`` does). Everything else the training side needs to know about a
model without loading its weights is read here: the tokenizer file, the context length, the
end-of-text token and the fill-in-the-middle tokens.

Weights are loaded from safetensors only, never from a pickle (``torch.load`` can run code).
Passing ``use_safetensors=True`` to transformers is not enough: a ``*.index.json`` that maps
the weights to ``pytorch_model.bin`` makes transformers hand that pickle to ``torch.load``.
``check_safetensors_only`` is the one check, run on every checkpoint folder before
transformers sees it (resolving a model, export, fine-tuning, the PyTorch engine of eval,
GGUF import): every file an index names must be a ``.safetensors`` file inside the folder,
and the folder may hold no pickle of weights (``*.bin``, ``*.pt``, ``*.pth``, ``*.ckpt``,
``*.pkl``, ``*.pickle``; the state files ``transformers.Trainer`` writes next to a checkpoint's
weights, which loading a model never reads, are allowed).
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


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# What transformers.Trainer saves beside a checkpoint's weights: read only by Trainer when it
# resumes, never by from_pretrained.
TRAINER_STATE_FILES = ("training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt")
_MAX_INDEX_BYTES = 64 << 20  # an index lists tensor names: a few megabytes at most


def _is_trainer_state(name: str) -> bool:
    return name in TRAINER_STATE_FILES or (name.startswith("rng_state") and name.endswith(".pth"))


def check_safetensors_only(folder: Path, error: type[CodehoneError] = CodehoneError) -> None:
    """Raise ``error`` (one line) unless every weight file of the checkpoint ``folder`` is
    safetensors: see the module docstring."""
    folder = Path(folder)
    root = folder.resolve()
    for item in sorted(folder.iterdir()):
        name = item.name
        if name.lower().endswith(PICKLE_SUFFIXES) and not _is_trainer_state(name):
            raise error(
                f"{item}: a pickle ({item.suffix}) in the checkpoint; codehone loads weights "
                "from safetensors only (remove it, or convert the checkpoint to safetensors)"
            )
        if not name.endswith(".index.json") or not item.is_file():
            continue
        try:
            if item.stat().st_size > _MAX_INDEX_BYTES:
                raise ValueError(f"larger than {_MAX_INDEX_BYTES >> 20} MB")
            index = json.loads(item.read_text(encoding="utf-8"))
            files = set(index["weight_map"].values())
            if not all(isinstance(f, str) for f in files):
                raise ValueError("weight_map values must be file names")
        except (
            OSError,
            UnicodeDecodeError,
            ValueError,
            TypeError,
            KeyError,
            AttributeError,
        ) as exc:
            raise error(f"{item}: not a readable weight index ({exc})") from None
        for shard in sorted(files):
            target = (folder / shard).resolve()
            if not shard.endswith(".safetensors"):
                raise error(
                    f"{item}: names the weight file {shard!r}, which is not safetensors; "
                    "codehone loads weights from safetensors only"
                )
            if Path(shard).is_absolute() or not target.is_relative_to(root):
                raise error(f"{item}: names the weight file {shard!r} outside the checkpoint")
            if not target.is_file():
                raise error(f"{item}: names the weight file {shard!r}, which is missing")


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
                check_safetensors_only(checkpoint)
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
    check_safetensors_only(path)
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
