"""A data set packed for one tokenizer: the token rows ``codehone finetune`` trains on.

Files are cut into chunks that fit the model's context; a share of the chunks become
fill-in-the-middle samples in PSM or SPM order, laid out with ``codehone.core.fim`` exactly as
the server's prompt builder lays out a prompt; the samples are packed into rows of ``seq_len``
tokens (``PAD`` fills a row's end). The train split is cut several times, each time at other
places. Packed rows are cached in the data set, under ``packed/`` and a key of everything that
made them (tokenizer, length, rates, seed); ``load_packed`` and ``PackedRows`` read them back.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from codehone.core.errors import TrainingError
from codehone.core.fim import fim_prompt_ids
from codehone.core.staging import staged_dir
from codehone_training.data.project import SPLITS, SourceFile, load_dataset, load_split

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer

    from codehone.core.model_dir import FimTokens
    from codehone_training.base_model import ModelRef

log = logging.getLogger("codehone.prepare")

PACKED_DIR = "packed"
PAD = -1  # padding in packed rows: the loader turns it into EOS inputs and ignored labels
IGNORE_INDEX = -100  # a label cross-entropy ignores (torch's and transformers' default)
MAX_PACKED_TRAIN_TOKENS = 64_000_000  # all cuttings of the train split together (256 MB)


@dataclass(frozen=True)
class PackSpec:
    """How samples are made for one tokenizer."""

    seq_len: int
    eos_id: int
    fim: FimTokens | None
    fim_rate: float
    spm_rate: float
    seed: int
    line_rate: float = 0.0
    chunk_offsets: int = 1  # cuttings of the train split (validation: always one)


def fim_span(chunk: str, line_rate: float, rng: np.random.Generator) -> tuple[int, int]:
    """Where the middle of a FIM sample lies in ``chunk``: with probability ``line_rate`` the
    rest of a line from a random point (what single-line completion asks for), else between
    two random characters (StarCoder's spans)."""
    if rng.random() < line_rate:
        lo = int(rng.integers(0, len(chunk) + 1))
        end = chunk.find("\n", lo)
        return lo, len(chunk) if end < 0 else end
    lo, hi = sorted(int(x) for x in rng.integers(0, len(chunk) + 1, size=2))
    return lo, hi


def fim_sample(
    prefix_ids: list[int],
    middle_ids: list[int],
    suffix_ids: list[int],
    fim: FimTokens,
    mode: str,
    max_len: int,
    tail: list[int],
) -> list[int]:
    """A FIM training sample: the server's prompt for this cursor, then the middle (and tail).

    If it is too long the suffix loses its end, then the prefix its start, just as the server
    keeps the first suffix tokens and the last prefix tokens when a prompt is over budget.
    """
    extra = 3 + len(prefix_ids) + len(suffix_ids) + len(middle_ids) + len(tail) - max_len
    if extra > 0:
        cut = min(extra, len(suffix_ids))
        suffix_ids = suffix_ids[: len(suffix_ids) - cut]
        prefix_ids = prefix_ids[extra - cut :]
    sample = [*fim_prompt_ids(prefix_ids, suffix_ids, fim, mode), *middle_ids, *tail]  # type: ignore[arg-type]
    return sample[:max_len]


def chunk_room(seq_len: int) -> int:
    """Tokens of source per chunk: a row less the 3 FIM tokens, EOS and the few extra tokens
    that cutting a chunk in three can cost."""
    return max(8, seq_len - 8)


def file_samples(
    text: str,
    tokenizer: Tokenizer,
    spec: PackSpec,
    rng: np.random.Generator,
    first_cut: int = 0,
    encoding: Any = None,
) -> list[list[int]]:
    """Cut one file into chunks that fit a row; turn a share of them into FIM samples.

    Chunks start every ``chunk_room`` tokens; with ``first_cut`` (0 < first_cut < room) the
    first chunk is only that many tokens long, which moves every later cut. ``encoding``: the
    file's encoding, when the caller has it already.
    """
    if encoding is None:
        encoding = tokenizer.encode(text, add_special_tokens=False)
    ids, offsets = encoding.ids, encoding.offsets
    room = chunk_room(spec.seq_len)
    samples: list[list[int]] = []
    second = first_cut if 0 < first_cut < room else room
    starts = [0, *range(second, len(ids), room)]
    # character cuts between chunks: every character belongs to exactly one chunk
    cuts = [0, *(offsets[s][0] for s in starts[1:]), len(text)]
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(ids)
        tail = [spec.eos_id] if end == len(ids) else []
        chunk_ids = ids[start:end]
        if spec.fim is None or len(chunk_ids) < 8 or rng.random() >= spec.fim_rate:
            samples.append([*chunk_ids, *tail])
            continue
        chunk = text[cuts[k] : cuts[k + 1]]
        lo, hi = fim_span(chunk, spec.line_rate, rng)
        pieces = tokenizer.encode_batch(
            [chunk[:lo], chunk[lo:hi], chunk[hi:]], add_special_tokens=False
        )
        mode = "spm" if rng.random() < spec.spm_rate else "psm"
        p, m, s = (piece.ids for piece in pieces)
        samples.append(fim_sample(p, m, s, spec.fim, mode, spec.seq_len, tail))
    return samples


def pack_rows(samples: list[list[int]], seq_len: int, rng: np.random.Generator) -> np.ndarray:
    """Pack samples (in a seeded shuffled order) into rows of ``seq_len``; PAD fills ends."""
    rows: list[np.ndarray] = []
    current: list[int] = []
    for index in rng.permutation(len(samples)):
        sample = samples[int(index)]
        if current and len(current) + len(sample) > seq_len:
            rows.append(np.asarray(current + [PAD] * (seq_len - len(current)), dtype=np.int32))
            current = []
        current += sample
    if current:
        rows.append(np.asarray(current + [PAD] * (seq_len - len(current)), dtype=np.int32))
    if not rows:
        return np.zeros((0, seq_len), dtype=np.int32)
    return np.stack(rows)


def pack_split(
    files: Sequence[SourceFile], tokenizer: Tokenizer, spec: PackSpec, split: str
) -> tuple[np.ndarray, int]:
    """The split's rows and how many cuttings of it they hold: the train split is cut
    ``spec.chunk_offsets`` times (fewer if that would pass MAX_PACKED_TRAIN_TOKENS), the first
    time from each file's start, then from a random first cut per file; other splits once."""
    salt = SPLITS.index(split)
    rng = np.random.default_rng([spec.seed, salt])
    encodings = tokenizer.encode_batch([f.text for f in files], add_special_tokens=False)
    room = chunk_room(spec.seq_len)
    cuttings = spec.chunk_offsets if split == "train" else 1
    packed: list[np.ndarray] = []
    for cutting in range(max(1, cuttings)):
        samples = [
            sample
            for f, encoding in zip(files, encodings, strict=True)
            for sample in file_samples(
                f.text,
                tokenizer,
                spec,
                rng,
                first_cut=int(rng.integers(1, room)) if cutting else 0,
                encoding=encoding,
            )
        ]
        packed.append(pack_rows(samples, spec.seq_len, rng))
        if cutting == 0:  # the cap, now that one cutting's size is known
            tokens = int((packed[0] != PAD).sum())
            cuttings = min(cuttings, max(1, MAX_PACKED_TRAIN_TOKENS // tokens)) if tokens else 1
        if len(packed) >= cuttings:
            break
    return np.concatenate(packed), len(packed)


def pack_spec_for(model: ModelRef, meta: dict[str, Any], seq_len: int | None = None) -> PackSpec:
    config = meta["config"]
    length = min(seq_len or config["max_seq_len"], model.context_length)
    return PackSpec(
        seq_len=length,
        eos_id=model.eos_id,
        fim=model.fim,
        fim_rate=config["fim_rate"] if model.fim is not None else 0.0,
        spm_rate=config["spm_rate"],
        seed=config["seed"],
        line_rate=config.get("line_rate", 0.0),
        chunk_offsets=config.get("chunk_offsets", 1),
    )


def packed_dir(data_dir: Path, model: ModelRef, spec: PackSpec) -> Path:
    key = hashlib.sha256(
        f"{model.tokenizer_fingerprint()}:{spec.seq_len}:{spec.eos_id}:{spec.fim_rate}:"
        f"{spec.spm_rate}:{spec.seed}:{spec.line_rate}:{model.fim}:{spec.chunk_offsets}".encode()
    ).hexdigest()[:16]
    return Path(data_dir) / PACKED_DIR / key


def pack_dataset(data_dir: Path, model: ModelRef, seq_len: int | None = None) -> Path:
    """Pack the train and validation splits for ``model``'s tokenizer (cached on disk)."""
    from tokenizers import Tokenizer

    meta = load_dataset(data_dir)
    spec = pack_spec_for(model, meta, seq_len)
    target = packed_dir(data_dir, model, spec)
    if (target / "meta.json").is_file():
        return target
    tokenizer = Tokenizer.from_file(str(model.tokenizer_path))
    # finished rows returned above: whatever else is there is not ours to replace
    with staged_dir(target, lambda _: False, "packed rows", TrainingError) as staging:
        counts = {}
        for split in ("train", "validation"):
            rows, cuttings = pack_split(load_split(data_dir, split), tokenizer, spec, split)
            np.save(staging / f"{split}.npy", rows)
            counts[split] = {
                "rows": len(rows),
                "tokens": int((rows != PAD).sum()) // cuttings,  # one cutting: the data's size
                "cuttings": cuttings,
            }
        info = {
            "tokenizer": str(model.tokenizer_path),
            "tokenizer_sha256_16": model.tokenizer_fingerprint(),
            "seq_len": spec.seq_len,
            "eos_id": spec.eos_id,
            "fim": None if spec.fim is None else spec.fim.convention,
            "fim_rate": spec.fim_rate,
            "spm_rate": spec.spm_rate,
            "line_rate": spec.line_rate,
            "seed": spec.seed,
            "splits": counts,
        }
        (staging / "meta.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    log.info(
        "packed for %s: %d train rows (%d tokens), %d validation rows, %d tokens each",
        model.path,
        counts["train"]["rows"],
        counts["train"]["tokens"],
        counts["validation"]["rows"],
        spec.seq_len,
    )
    return target


def load_packed(directory: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    return np.load(directory / "train.npy"), np.load(directory / "validation.npy"), meta


class PackedRows:
    """A map-style dataset over packed rows: PAD becomes EOS in the inputs and -100 in the
    labels (the model shifts labels itself)."""

    def __init__(self, rows: np.ndarray, eos_id: int) -> None:
        self.rows = rows
        self.eos_id = eos_id

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        import torch

        row = torch.from_numpy(self.rows[index].astype(np.int64))
        pad = row == PAD
        return {
            "input_ids": row.masked_fill(pad, self.eos_id),
            "labels": row.masked_fill(pad, IGNORE_INDEX),
        }
