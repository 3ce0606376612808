"""The fine-tuning subcommands of ``codehone``: prepare, finetune, search, eval, tune.

Only argparse here: the heavy modules are imported inside each command, so ``codehone --help``
stays instant. Progress and logs go to stderr; results (summaries, JSON) to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

AddCommand = Callable[[str, str], argparse.ArgumentParser]


def _setup_logging(args: argparse.Namespace) -> None:
    from codehone.core.logging_setup import setup_logging

    setup_logging(args.verbose)


def _print_json(result: object, out: str | None) -> None:
    text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    if out:
        Path(out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


def _base_or_default(base: str | None, need_checkpoint: bool) -> Path | None:
    if base:
        return Path(base)
    from codehone.core.default_model import find_default_model

    found = find_default_model()
    if found is None and need_checkpoint:
        from codehone.core.errors import CodehoneError

        raise CodehoneError("no --base given and no default model built yet")
    return found


def cmd_prepare(args: argparse.Namespace) -> int:
    from codehone_training.base_model import resolve_model
    from codehone_training.data.prepare import PrepareConfig, format_summary, prepare

    _setup_logging(args)
    config = PrepareConfig(
        project_dir=Path(args.project_dir),
        out_dir=Path(args.out),
        seed=args.seed,
        fim_rate=args.fim_rate,
        spm_rate=args.spm_rate,
        line_rate=args.line_rate,
        chunk_offsets=args.chunk_offsets,
        max_file_bytes=args.max_file_bytes,
        validation_fraction=args.validation_fraction,
        test_fraction=args.test_fraction,
    )
    if args.languages:
        config.languages = tuple(x.strip() for x in args.languages.split(",") if x.strip())
    base = _base_or_default(args.base, need_checkpoint=False)
    model = resolve_model(base) if base is not None else None
    summary = prepare(config, model)
    print(format_summary(summary, Path(args.out)))
    return 0


def _finetune_config(args: argparse.Namespace) -> object:
    from codehone_training.finetune import FinetuneConfig

    return FinetuneConfig(
        base=Path(args.base),
        data_dir=Path(args.data),
        out_dir=Path(args.out),
        method=args.method,
        trainable_layers=args.trainable_layers,
        lora_rank=args.lora_rank,
        lora_alpha=args.lora_alpha if args.lora_alpha else 2 * args.lora_rank,
        learning_rate=args.lr,
        epochs=args.epochs,
        max_steps=args.max_steps,
        minutes=args.minutes,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        eval_steps=args.eval_steps,
        early_stopping_patience=args.patience,
        keep=args.keep,
        gradient_checkpointing=args.gradient_checkpointing,
        seq_len=args.seq_len,
        precision=args.precision,
        seed=args.seed,
        resume=not args.no_resume,
        num_threads=args.threads,
    )


def cmd_finetune(args: argparse.Namespace) -> int:
    from codehone_training.finetune import finetune

    _setup_logging(args)
    result = finetune(_finetune_config(args))  # type: ignore[arg-type]
    if os.environ.get("RANK", "0") == "0":  # one report under torchrun / accelerate launch
        _print_json({"model": str(result.checkpoint), "metrics": result.metrics}, None)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from codehone_training.evaluation.evaluate import (
        EvalConfig,
        compare_results,
        evaluate,
        format_compare,
    )

    _setup_logging(args)
    config = EvalConfig(
        data_dir=Path(args.data),
        line_samples=args.line_samples,
        seed=args.seed,
        docstring_samples=args.docstring_samples,
        humaneval=args.humaneval,
        humaneval_limit=args.humaneval_limit,
        bpb_max_tokens=args.bpb_max_tokens,
        device=args.device,
        fim=not args.no_fim,
        token_healing=not args.no_healing,
    )
    result = evaluate(Path(args.model), config)
    if args.compare:
        base = evaluate(Path(args.compare), config)
        comparison = compare_results(base, result)
        print(format_compare(comparison), file=sys.stderr if not args.out else sys.stdout)
        _print_json(comparison, args.out)
    else:
        _print_json(result, args.out)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from codehone_training.search import SearchConfig, search

    _setup_logging(args)
    config = SearchConfig(
        base=Path(args.base),
        data_dir=Path(args.data),
        out_dir=Path(args.out),
        trials=args.trials,
        trial_steps=args.trial_steps,
        methods=tuple(m.strip() for m in args.methods.split(",")),
        seed=args.seed,
        batch_size=args.batch_size,
    )
    best = search(config)
    _print_json(best, None)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from codehone_training.tune import TuneConfig, tune

    _setup_logging(args)
    config = TuneConfig(
        project_dir=Path(args.project_dir),
        base=Path(args.base) if args.base else None,
        work_dir=Path(args.work_dir) if args.work_dir else None,
        method=args.method,
        minutes=args.minutes,
        learning_rate=args.lr,
        epochs=args.epochs,
        patience=args.patience,
        line_samples=args.line_samples,
        device=args.device,
        seed=args.seed,
        num_threads=args.threads,
    )
    report = tune(config)
    _print_json(report, None)
    return 0


def add_training_commands(add: AddCommand) -> None:
    """Register the subcommands on the ``codehone`` parser (``add(name, help)``)."""
    p = add("prepare", "collect, filter, deduplicate, split and pack a project for fine-tuning")
    p.add_argument("project_dir")
    p.add_argument("--out", required=True, help="data set directory to write")
    p.add_argument("--languages", help="comma-separated (default: every known language)")
    p.add_argument("--base", help="model whose tokenizer packs the data (default: default model)")
    p.add_argument("--fim-rate", type=float, default=0.8, help="share of FIM samples")
    p.add_argument("--spm-rate", type=float, default=0.2, help="share of FIM samples in SPM")
    p.add_argument(
        "--line-rate", type=float, default=0.5, help="share of FIM middles that end a line"
    )
    p.add_argument(
        "--chunk-offsets",
        type=int,
        default=6,
        help="cut the train split into rows this many times, at other places each time",
    )
    p.add_argument("--max-file-bytes", type=int, default=500_000)
    p.add_argument("--validation-fraction", type=float, default=0.1)
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=1234)
    p.set_defaults(func=cmd_prepare)

    def finetune_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--method", choices=["full", "freeze", "lora"], default="lora")
        p.add_argument("--lr", type=float, default=None, help="default depends on --method")
        p.add_argument("--epochs", type=float, default=3.0)
        p.add_argument("--seed", type=int, default=0)

    p = add("finetune", "fine-tune a checkpoint on a prepared data set")
    p.add_argument("--base", required=True, help="checkpoint (or model directory with one)")
    p.add_argument("--data", required=True, help="data set directory (codehone prepare)")
    p.add_argument("--out", required=True, help="run directory")
    finetune_options(p)
    p.add_argument("--trainable-layers", type=int, default=2, help="freeze: top N layers train")
    p.add_argument("--lora-rank", type=int, default=16)
    p.add_argument("--lora-alpha", type=int, default=None, help="default: 2 x rank")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget")
    p.add_argument("--batch-size", type=int, default=8, help="per device")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--eval-steps", type=int, default=50)
    p.add_argument("--patience", type=int, default=4, help="early stopping (0: off)")
    p.add_argument(
        "--keep",
        choices=["best", "last"],
        default="best",
        help="RUN/model: the best validation loss, or the schedule's end (needs --patience 0)",
    )
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--seq-len", type=int, default=None)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    p.add_argument("--no-resume", action="store_true", help="start over, ignoring checkpoints")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.set_defaults(func=cmd_finetune)

    p = add("search", "hyperparameter search (Optuna TPE) over short fine-tuning trials")
    p.add_argument("--base", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True, help="search directory (trials, best.json)")
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--trial-steps", type=int, default=60, help="most steps per trial")
    p.add_argument("--methods", default="lora,full,freeze")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_search)

    p = add("eval", "evaluate a model on a data set's test files (JSON)")
    p.add_argument("model", help="model directory or checkpoint")
    p.add_argument("--data", required=True)
    p.add_argument("--compare", metavar="BASE", help="also evaluate BASE; print side by side")
    p.add_argument("--line-samples", type=int, default=500)
    p.add_argument("--docstring-samples", type=int, default=50, help="0: skip")
    p.add_argument("--humaneval", action="store_true", help="also HumanEval pass@1")
    p.add_argument("--humaneval-limit", type=int, default=None)
    p.add_argument("--bpb-max-tokens", type=int, default=200_000)
    p.add_argument(
        "--no-fim", action="store_true", help="prompt with the text before the cursor only"
    )
    p.add_argument(
        "--no-healing",
        action="store_true",
        help="leave the prompt's last token as the tokenizer split it (no token healing)",
    )
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write the JSON here instead of stdout")
    p.set_defaults(func=cmd_eval)

    p = add("tune", "prepare -> finetune -> export -> eval; point .codehone.toml at a winner")
    p.add_argument("project_dir")
    p.add_argument("--base", help="checkpoint or model directory (default: the default model)")
    p.add_argument("--work-dir", help="default: PROJECT_DIR/.codehone")
    p.add_argument("--method", choices=["full", "freeze", "lora"], default="full")
    p.add_argument("--minutes", type=float, default=10.0, help="fine-tuning budget")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument(
        "--epochs",
        type=float,
        default=15.0,
        help="epochs the schedule is planned over (fewer if --minutes runs out first)",
    )
    p.add_argument(
        "--patience",
        type=int,
        default=0,
        help="stop after this many validations without a better loss (0: run the schedule)",
    )
    p.add_argument("--line-samples", type=int, default=1000)
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.set_defaults(func=cmd_tune)
