"""Turn a project's source tree into a fine-tuning data set: ``codehone prepare``.

Reads top to bottom (``prepare``): 1. collect the project's source files, 2. drop duplicates,
3. split train / validation / test by file (``data.project``), 4. write the data set, and
5. pack its train and validation splits for the model's tokenizer when one is known
(``data.packing``; else ``codehone finetune`` packs later).

Everything is written into a staging directory that replaces ``out_dir`` only when complete, so
bad input (an empty directory, no files of the languages asked for) leaves nothing half-written.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codehone.core.errors import TrainingError
from codehone_training.data.packing import pack_dataset
from codehone_training.data.project import (
    DATASET_FILE,
    DATASET_FORMAT,
    DATASET_VERSION,
    LANGUAGES,
    PrepareConfig,
    collect_files,
    deduplicate,
    split_files,
    staged_dataset_dir,
    write_split,
)

if TYPE_CHECKING:
    from codehone_training.base_model import ModelRef

log = logging.getLogger("codehone.prepare")


def prepare(config: PrepareConfig, model: ModelRef | None = None) -> dict[str, Any]:
    """Steps 1-5; returns the summary (also stored in ``dataset.json``)."""
    unknown = [lang for lang in config.languages if lang not in LANGUAGES]
    if unknown:
        raise TrainingError(
            f"unknown language(s) {', '.join(unknown)}; known: {', '.join(LANGUAGES)}"
        )
    if config.chunk_offsets < 1:
        raise TrainingError(f"chunk_offsets must be at least 1, not {config.chunk_offsets}")
    project = Path(config.project_dir)
    if not project.is_dir():
        raise TrainingError(f"{project}: not a directory")
    if not any(project.iterdir()):
        raise TrainingError(f"{project}: the directory is empty")
    # 1. collect
    collection = collect_files(config)
    for path, reason in collection.skipped:
        if reason.startswith("unreadable"):
            log.warning("skipping %s: %s", path, reason)
    if not collection.files:
        raise TrainingError(
            f"{project}: no usable source files of the language(s) "
            f"{', '.join(config.languages)} ({len(collection.skipped)} skipped)"
        )
    # 2. deduplicate, 3. split
    files, duplicates = deduplicate(collection.files, config.near_duplicate_threshold)
    skipped = collection.skipped + duplicates
    splits = split_files(files, config.validation_fraction, config.test_fraction, config.seed)

    summary: dict[str, Any] = {
        "files": len(files),
        "bytes": sum(len(f.text.encode("utf-8")) for f in files),
        "languages": dict(Counter(f.language for f in files).most_common()),
        "splits": {
            name: {"files": len(fs), "bytes": sum(len(f.text.encode("utf-8")) for f in fs)}
            for name, fs in splits.items()
        },
        "skipped": dict(Counter(_reason_kind(r) for _, r in skipped).most_common()),
    }
    meta = {
        "format": DATASET_FORMAT,
        "version": DATASET_VERSION,
        "project": str(project.resolve()),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "config": {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in asdict(config).items()
            if k not in ("project_dir", "out_dir")
        },
        "summary": summary,
        "splits": {name: [f.record() for f in fs] for name, fs in splits.items()},
        "skipped_files": [{"path": p, "reason": r} for p, r in skipped],
    }
    with staged_dataset_dir(Path(config.out_dir)) as staging:
        # 4. write the data set
        for name, fs in splits.items():
            write_split(staging / f"{name}.jsonl", fs)
        (staging / DATASET_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        # 5. pack it for the model's tokenizer, if there is one yet
        if model is not None:
            packed = pack_dataset(staging, model)
            info = json.loads((packed / "meta.json").read_text(encoding="utf-8"))
            summary["tokens"] = {
                "tokenizer": str(model.tokenizer_path),
                "seq_len": info["seq_len"],
                **{k: v["tokens"] for k, v in info["splits"].items()},
                "train_cuttings": info["splits"]["train"].get("cuttings", 1),
            }
            (staging / DATASET_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return summary


def _reason_kind(reason: str) -> str:
    for prefix in ("exact duplicate", "near duplicate", "unreadable"):
        if reason.startswith(prefix):
            return prefix
    return reason


def format_summary(summary: dict[str, Any], out_dir: Path) -> str:
    split_text = ", ".join(
        f"{name} {s['files']} files / {s['bytes'] / 1e3:.0f} kB"
        for name, s in summary["splits"].items()
    )
    lines = [
        f"data set written to {out_dir}",
        f"  files: {summary['files']} kept ({summary['bytes'] / 1e6:.2f} MB); "
        + (
            "skipped: " + ", ".join(f"{n} {r}" for r, n in summary["skipped"].items())
            if summary["skipped"]
            else "none skipped"
        ),
        "  languages: " + ", ".join(f"{k} {v}" for k, v in summary["languages"].items()),
        f"  splits: {split_text}",
    ]
    tokens = summary.get("tokens")
    if tokens:
        lines.append(
            f"  tokens: train {tokens['train']} (cut {tokens.get('train_cuttings', 1)} ways), "
            f"validation {tokens['validation']} "
            f"(rows of {tokens['seq_len']}, tokenizer {tokens['tokenizer']})"
        )
    else:
        lines.append("  tokens: not packed yet (no tokenizer known; finetune packs)")
    return "\n".join(lines)
