"""The model card (README.md) written beside a fine-tuned checkpoint."""

from __future__ import annotations

import json
from typing import Any


def _table(rows: dict[str, Any]) -> str:
    lines = ["| | |", "|---|---|"]
    for key, value in rows.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        lines.append(f"| {key} | {value} |")
    return "\n".join(lines)


def model_card(
    base: str,
    method: str,
    data_summary: dict[str, Any],
    hyperparameters: dict[str, Any],
    metrics: dict[str, Any],
    project: str = "",
) -> str:
    """Markdown with a YAML header, as the Hugging Face hub reads model cards."""
    languages = ", ".join(data_summary.get("languages", {})) or "code"
    splits = data_summary.get("splits", {})
    data_rows = {
        "project": project or "(not recorded)",
        "files kept": data_summary.get("files", "?"),
        "bytes": data_summary.get("bytes", "?"),
        "languages": json.dumps(data_summary.get("languages", {})),
        **{f"{name} files": s.get("files", "?") for name, s in splits.items()},
    }
    return "\n".join(
        [
            "---",
            "library_name: transformers",
            f"base_model: {base}",
            "tags: [codehone, code-completion, fine-tuned]",
            "---",
            "",
            "# codehone fine-tuned code model",
            "",
            f"Fine-tuned from `{base}` with codehone ({method}) on one project's {languages} "
            "sources, for code completion. The test split of the project was never trained on.",
            "",
            "## Data",
            "",
            _table(data_rows),
            "",
            "## Hyperparameters",
            "",
            _table(hyperparameters),
            "",
            "## Metrics",
            "",
            _table(metrics),
            "",
            "Weights are stored as safetensors only. Export to a codehone model directory with "
            "`codehone export THIS_DIR --out MODEL_DIR`.",
            "",
        ]
    )
