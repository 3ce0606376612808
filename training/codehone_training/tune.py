"""The one-command loop: ``codehone tune PROJECT_DIR``.

prepare -> finetune -> export -> eval against the base -> point the project's
``.codehone.toml`` at the new model, only if it beats the base (line-completion exact match,
ties broken by edit similarity), and say by how much.

Everything is written under a work directory (default ``PROJECT_DIR/.codehone``, which
``prepare`` never reads back as source): ``data/``, ``run/`` (checkpoints and the merged
model), ``model/`` (the exported model directory) and ``report.json``. Each is replaced
whole, so none of them (nor the work directory) may be a symbolic link: tune refuses to start
rather than write, or delete, where a link points.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codehone.core.errors import TrainingError
from codehone.core.model_dir import load_model_dir
from codehone.core.staging import read_text_nofollow, refuse_links, write_text_atomic
from codehone_training.export.quantize import INT8_ONLY

log = logging.getLogger("codehone.tune")

CONFIG_FILE = ".codehone.toml"
# What tune writes in its work directory (each replaced whole).
WORK_ENTRIES = (".gitignore", "data", "run", "model", "report.json")
# Inside those, what is deleted in place (finetune's fresh run clears its checkpoints).
DELETED_ENTRIES = ("run/checkpoints",)


def quantized_bits(optimizations: list[str]) -> int:
    """8 or 4 when a model's optimization steps include weight-only int8/int4 (the step names
    ``export.optimize.quantize`` records, e.g. "int8-block32"), else 0."""
    for step in optimizations:
        if match := re.match(r"int([48])\b", step):
            return int(match[1])
    return 0


def quantized_scheme(optimizations: list[str]) -> str:
    """The quantization scheme of a model's steps: ``channel`` after "int8-channel", ``token``
    after "int8-token", else ``block`` (``export.optimize.quantize``'s names)."""
    for step in optimizations:
        for scheme in INT8_ONLY:
            if step.endswith(f"-{scheme}"):
                return scheme
    return "block"


@dataclass
class TuneConfig:
    project_dir: Path
    base: Path | None = None  # None: the default model
    work_dir: Path | None = None  # None: PROJECT_DIR/.codehone
    method: str = "auto"  # see finetune.config.AUTO_LORA_PARAMETERS
    minutes: float = 10.0  # fine-tuning budget (the training loop)
    learning_rate: float | None = None
    # The learning-rate schedule is planned over this many epochs (fewer if the time budget
    # is shorter), each epoch a new cutting of the train split (PrepareConfig.chunk_offsets).
    # On optuna's source, line exact match on the validation files after 6, 10 and 15 epochs:
    # 21.7, 23.4, 24.8 (base 9.6), although validation loss is best at 6 (2.125, 2.153, 2.31).
    epochs: float = 15.0
    # Early stopping on validation loss is off and the end of the schedule is kept (patience
    # > 0: early stopping, and the checkpoint with the best validation loss is kept). On
    # optuna's source the validation loss of a 15-epoch schedule bottoms out mid-way (2.24 at
    # step 1,750 of 3,120; 2.31 at the end) while line exact match on the validation files
    # keeps rising: 21.9 at the loss's best, 24.8 at the end (early stopping had stopped it
    # at step 1,550).
    patience: int = 0
    max_steps: int | None = None
    seq_len: int | None = None
    num_threads: int | None = None  # torch CPU threads for fine-tuning (None: torch's default)
    batch_size: int = 8
    languages: tuple[str, ...] | None = None
    line_samples: int = 1000
    docstring_samples: int = 0
    bpb_max_tokens: int = 200_000
    device: str = "auto"
    seed: int = 0


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_project_config(project_dir: Path, model_dir: Path) -> Path:
    """Point ``PROJECT_DIR/.codehone.toml``'s ``[model] path`` at ``model_dir`` (relative when
    inside the project), keeping any other content of the file."""
    project_dir = project_dir.resolve()
    model_dir = model_dir.resolve()
    path_value = (
        model_dir.relative_to(project_dir).as_posix()
        if model_dir.is_relative_to(project_dir)
        else str(model_dir)
    )
    line = f"path = {_toml_string(path_value)}"
    target = project_dir / CONFIG_FILE
    text = read_text_nofollow(target, TrainingError) or ""
    lines = text.splitlines()
    header = next((i for i, s in enumerate(lines) if s.strip() == "[model]"), None)
    if header is None:
        prefix = "\n".join(lines).rstrip()
        new_text = (prefix + "\n\n" if prefix else "") + f"[model]\n{line}\n"
    else:
        end = next(
            (i for i in range(header + 1, len(lines)) if re.match(r"\s*\[", lines[i])),
            len(lines),
        )
        found = next(
            (i for i in range(header + 1, end) if re.match(r"\s*path\s*=", lines[i])), None
        )
        if found is None:
            lines.insert(header + 1, line)
        else:
            lines[found] = line
        new_text = "\n".join(lines) + "\n"
    write_text_atomic(target, new_text)
    return target


def check_work_dir(work: Path, project: Path | None = None) -> None:
    """Refuse (TrainingError) a work directory, an entry of it that tune writes or deletes, or
    the project's ``.codehone.toml``, that is a symbolic link: tune must not write, delete or
    read where a link points."""
    paths = [work, *(work / name for name in (*WORK_ENTRIES, *DELETED_ENTRIES))]
    if project is not None:
        paths.append(project / CONFIG_FILE)
    refuse_links(paths, TrainingError, " (remove the link, or pass another --work-dir)")


def ignore_generated_files(work: Path) -> None:
    """Create ``work`` with a .gitignore that keeps its generated data, runs and models out of
    git, but not the project's check cases (``codehone check`` reads .codehone/checks.toml)."""
    work.mkdir(parents=True, exist_ok=True)
    write_text_atomic(work / ".gitignore", "*\n!.gitignore\n!checks.toml\n")


class CreatedEntries:
    """What of the work directory did not exist when tune started: removed again if the run
    fails before training (never through a link: ``check_work_dir`` refused those)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.new_work = not work.exists()
        self.new = [name for name in WORK_ENTRIES if not (work / name).exists()]

    def remove(self) -> None:
        import shutil

        for name in self.new:
            path = self.work / name
            if path.is_symlink() or not path.exists():
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        if self.new_work:
            try:
                self.work.rmdir()  # only if empty: nothing of anyone else's goes
            except OSError:
                pass


def beats(base: dict[str, Any], tuned: dict[str, Any]) -> bool:
    b, t = base["line_completion"], tuned["line_completion"]
    if t["exact_match"] != b["exact_match"]:
        return t["exact_match"] > b["exact_match"]
    return t["edit_similarity"] > b["edit_similarity"]


def tune(config: TuneConfig) -> dict[str, Any]:
    """The whole loop (the module docstring); returns the report also written to
    ``report.json``."""
    project = Path(config.project_dir)
    if not project.is_dir():
        raise TrainingError(f"{project}: not a directory")
    work = Path(config.work_dir) if config.work_dir else project / ".codehone"
    check_work_dir(work, project)
    created = CreatedEntries(work)
    try:
        return _tune(config, project, work)
    except BaseException:
        if not _trained(work):  # failed before training made anything: leave no trace
            created.remove()
        raise


def _trained(work: Path) -> bool:
    """Whether fine-tuning got as far as a checkpoint or a model."""
    return (work / "run" / "checkpoints").exists() or (work / "run" / "model").exists()


def _tune(config: TuneConfig, project: Path, work: Path) -> dict[str, Any]:
    import torch

    from codehone_training.base_model import resolve_model
    from codehone_training.data.prepare import format_summary, prepare
    from codehone_training.data.project import PrepareConfig
    from codehone_training.evaluation.evaluate import (
        EvalConfig,
        compare_results,
        evaluate,
        format_compare,
    )
    from codehone_training.export.finish import FinishSteps, finish_model
    from codehone_training.finetune import FinetuneConfig, finetune

    started = time.monotonic()
    ignore_generated_files(work)
    from codehone.core.default_model import model_or_default

    base_path = model_or_default(config.base, "--base")
    base = resolve_model(base_path, need_checkpoint=True)
    log.info("base model: %s (checkpoint %s)", base.path, base.checkpoint)

    # 1. prepare
    prepare_config = PrepareConfig(project_dir=project, out_dir=work / "data", seed=config.seed)
    # Train in the format the server will prompt with: a base whose manifest says its FIM
    # prompts complete worse (fim.in_prompts false) is prompted with the prefix only, so the
    # fine-tuning data is plain continuation too (FIM rows would only take capacity from it).
    prefix_only = base.fim is not None and not base.fim.in_prompts
    if prefix_only:
        prepare_config.fim_rate = 0.0
    prepare_config.chunk_offsets = max(1, math.ceil(config.epochs))  # every epoch cut anew
    if config.languages:
        prepare_config.languages = config.languages
    summary = prepare(prepare_config, base)
    log.info("%s", format_summary(summary, work / "data"))

    # 2. finetune
    result = finetune(
        FinetuneConfig(
            base=base_path,
            data_dir=work / "data",
            out_dir=work / "run",
            method=config.method,
            learning_rate=config.learning_rate,
            epochs=config.epochs,
            early_stopping_patience=config.patience,
            keep="last" if config.patience == 0 else "best",
            minutes=config.minutes,
            max_steps=config.max_steps,
            seq_len=config.seq_len,
            num_threads=config.num_threads,
            batch_size=config.batch_size,
            seed=config.seed,
            resume=False,
        )
    )

    # 3. export, served as the base is: prefix-only prompts if it is, fused if it is (a model
    # the fused graph cannot express keeps its exported graph), and quantized as it is
    use_cuda = config.device != "cpu" and torch.cuda.is_available()
    base_manifest = (
        load_model_dir(base.model_dir, check_graph=False).manifest if base.model_dir else None
    )
    fused = base_manifest is not None and base_manifest.kv.shared_buffer
    base_steps = base_manifest.provenance.optimizations if base_manifest else []
    steps = FinishSteps(
        fuse=fused,
        keep_unfused=True,
        quantize_bits=quantized_bits(base_steps),
        quantize_scheme=quantized_scheme(base_steps),
        fim_in_prompts=not prefix_only,
    )
    model_dir = finish_model(
        result.checkpoint,
        work / "model",
        steps,
        device="cuda" if use_cuda else "cpu",
        training_data=f"fine-tuned on {project.resolve()} ({summary['files']} files)",
        trained_steps=result.steps,
        metrics={k: float(v) for k, v in result.metrics.items()},
    )

    # 4. evaluate both on the held-out test files
    eval_config = EvalConfig(
        data_dir=work / "data",
        line_samples=config.line_samples,
        docstring_samples=config.docstring_samples,
        bpb_max_tokens=config.bpb_max_tokens,
        seed=config.seed,
        device=config.device,
    )
    base_result = evaluate(base.model_dir or base.path, eval_config)
    tuned_result = evaluate(model_dir.root, eval_config)
    comparison = compare_results(base_result, tuned_result)
    log.info("base vs fine-tuned:\n%s", format_compare(comparison))

    # 5. decide
    won = beats(base_result, tuned_result)
    delta_em = (
        tuned_result["line_completion"]["exact_match"]
        - base_result["line_completion"]["exact_match"]
    )
    delta_bpb = (
        tuned_result["bits_per_byte"]["bits_per_byte"]
        - base_result["bits_per_byte"]["bits_per_byte"]
    )
    config_path = write_project_config(project, model_dir.root) if won else None
    message = (
        f"the fine-tuned model {'beats' if won else 'does not beat'} the base: line exact match "
        f"{delta_em:+.1f} points, bits per byte {delta_bpb:+.3f}"
        + (f"; {config_path} now points at {model_dir.root}" if config_path else "; left as is")
    )
    log.info("%s", message)
    report = {
        "project": str(project.resolve()),
        "base": str(base.path),
        "model": str(model_dir.root),
        "beats_base": won,
        "exact_match_delta": round(delta_em, 2),
        "bits_per_byte_delta": round(delta_bpb, 4),
        "config_written": str(config_path) if config_path else None,
        "message": message,
        "report": str(work / "report.json"),
        "seconds": round(time.monotonic() - started, 1),
        "data": summary,
        "finetune": result.metrics,
        "comparison": comparison["comparison"],
        "base_eval": base_result,
        "model_eval": tuned_result,
    }
    write_text_atomic(work / "report.json", json.dumps(report, indent=2) + "\n")
    return report


# The rows of the evaluation's comparison the summary shows: their decimals and unit.
SUMMARY_METRICS = {
    "line exact match": (1, "%"),
    "line edit similarity": (1, ""),
    "line BLEU": (1, ""),
    "bits per byte": (3, ""),
}


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def format_summary(report: dict[str, Any]) -> str:
    """What ``codehone tune`` prints at the end: base -> tuned on the held-out files, the
    training time, and whether the project's ``.codehone.toml`` now points at the new model."""
    lines = [
        f"codehone tune {report['project']}",
        f"  base:  {report['base']}",
        f"  tuned: {report['model']}",
        "  held-out test files (base -> tuned):",
    ]
    for row in report["comparison"]:
        if row["metric"] not in SUMMARY_METRICS:
            continue
        places, unit = SUMMARY_METRICS[row["metric"]]
        base, tuned = f"{row['base']:.{places}f}{unit}", f"{row['model']:.{places}f}{unit}"
        delta = f"{row['delta']:+.{places}f}"
        lines.append(f"    {row['metric']:22} {base:>8} -> {tuned:>8}  ({delta})")
    trained = report["finetune"]
    steps = trained.get("steps")
    training = f"  training: {int(steps)} steps" if steps is not None else "  training:"
    if trained.get("train_seconds") is not None:
        training += f" in {_duration(float(trained['train_seconds']))}"
    if report.get("seconds") is not None:
        training += f" (the whole loop {_duration(float(report['seconds']))})"
    lines.append(training)
    if report["config_written"]:
        lines.append(
            f"  {report['config_written']}: written, it points at the tuned model "
            "(it beats the base)"
        )
    else:
        lines.append(
            f"  {CONFIG_FILE}: not written: the tuned model does not beat the base "
            "(line exact match, ties broken by edit similarity)"
        )
    if report.get("report"):
        lines.append(f"  full report: {report['report']}")
    return "\n".join(lines)
