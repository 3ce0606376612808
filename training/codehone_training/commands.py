"""The fine-tuning loop's subcommands of ``codehone``: prepare, finetune, search, eval, tune.

Only argparse here: the heavy modules are imported inside each command, so ``codehone --help``
stays instant. Registered by ``codehone.cli`` through the same ``add(name, help)`` as every
part; options several subcommands share come from ``codehone.core.command_line``. Progress and
logs go to stderr; results (summaries, JSON) to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from codehone.core.command_line import Commands, add_shared
from codehone.core.errors import CodehoneError


def _setup_logging(args: argparse.Namespace) -> None:
    from codehone.core.logging_setup import setup_logging

    setup_logging(args.verbose)


def _check_out(out: str | None, option: str) -> None:
    """Refuse, before any work, a results file whose folder does not exist."""
    if out and not Path(out).absolute().parent.is_dir():
        raise CodehoneError(f"{option} {out}: its folder does not exist")


def _print_json(result: object, out: str | None) -> None:
    from codehone.core.staging import write_text_atomic

    text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    if not out:
        sys.stdout.write(text)
        return
    try:
        write_text_atomic(Path(out), text)
    except OSError as exc:
        raise CodehoneError(f"{out}: cannot write ({exc.strerror or exc})") from None


def cmd_prepare(args: argparse.Namespace) -> int:
    from codehone.core.default_model import model_or_default
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
    base = model_or_default(args.base, "--base", required=False)
    model = resolve_model(base) if base is not None else None
    summary = prepare(config, model)
    print(format_summary(summary, Path(args.out)))
    return 0


def _finetune_config(args: argparse.Namespace) -> object:
    from codehone.core.default_model import model_or_default
    from codehone_training.finetune import FinetuneConfig

    return FinetuneConfig(
        base=model_or_default(args.base, "--base"),
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
    _check_out(args.out, "--out")
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
    from codehone.core.default_model import model_or_default
    from codehone_training.search import SearchConfig, search

    _setup_logging(args)
    config = SearchConfig(
        base=model_or_default(args.base, "--base"),
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
    from codehone.core.default_model import model_or_default
    from codehone_training.tune import TuneConfig, format_summary, tune

    _setup_logging(args)
    _check_out(args.json, "--json")
    config = TuneConfig(
        project_dir=Path(args.project_dir),
        base=model_or_default(args.base, "--base"),
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
    print(format_summary(report))
    if args.json:
        _print_json(report, args.json)
    return 0


def add_training_commands(add: Commands) -> None:
    """Register prepare, finetune, search, eval and tune."""
    p = add("prepare", "collect, filter, deduplicate, split and pack a project for fine-tuning")
    p.add_argument("project_dir")
    p.add_argument("--out", required=True, help="data set directory to write")
    p.add_argument("--languages", help="comma-separated (default: every known language)")
    add_shared(
        p, "--base", note="its tokenizer packs the data (no model at all: split, not packed)"
    )
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
    add_shared(
        p,
        "--seed",
        default=1234,
        note="the split",
        why="PrepareConfig's: the split data sets prepared so far have (tune prepares with its "
        "own --seed)",
    )
    p.set_defaults(func=cmd_prepare)

    p = add("finetune", "fine-tune a checkpoint on a prepared data set")
    add_shared(p, "--base")
    p.add_argument("--data", required=True, help="data set directory (codehone prepare)")
    p.add_argument("--out", required=True, help="run directory")
    add_shared(p, "--method")
    add_shared(p, "--lr")
    add_shared(p, "--epochs")
    add_shared(p, "--seed")
    p.add_argument("--trainable-layers", type=int, default=2, help="freeze: top N layers train")
    p.add_argument("--lora-rank", type=int, default=16)
    p.add_argument("--lora-alpha", type=int, default=None, help="default: 2 x rank")
    add_shared(p, "--max-steps")
    add_shared(p, "--minutes")
    add_shared(p, "--batch-size")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--eval-steps", type=int, default=50)
    add_shared(p, "--patience")
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
    add_shared(p, "--threads")
    p.set_defaults(func=cmd_finetune)

    p = add("search", "hyperparameter search (Optuna TPE) over short fine-tuning trials")
    add_shared(p, "--base")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True, help="search directory (trials, best.json)")
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--trial-steps", type=int, default=60, help="most steps per trial")
    p.add_argument("--methods", default="lora,full,freeze")
    add_shared(p, "--batch-size")
    add_shared(p, "--seed")
    p.set_defaults(func=cmd_search)

    p = add("eval", "evaluate a model on a data set's test files (JSON)")
    p.add_argument("model", help="model directory or checkpoint")
    p.add_argument("--data", required=True)
    p.add_argument("--compare", metavar="BASE", help="also evaluate BASE; print side by side")
    add_shared(p, "--line-samples")
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
    add_shared(p, "--device")
    add_shared(p, "--seed")
    p.add_argument("--out", help="write the JSON here instead of stdout")
    p.set_defaults(func=cmd_eval)

    p = add("tune", "prepare -> finetune -> export -> eval; point .codehone.toml at a winner")
    p.add_argument("project_dir")
    add_shared(p, "--base")
    p.add_argument("--work-dir", help="default: PROJECT_DIR/.codehone")
    add_shared(p, "--method")
    measured = "measured on optuna's source (README, TuneConfig)"
    add_shared(p, "--minutes", default=10.0, why=f"the budget {measured}")
    add_shared(p, "--lr")
    add_shared(
        p,
        "--epochs",
        default=15.0,
        why=f"line exact match kept rising up to 15 epochs, {measured}",
    )
    add_shared(
        p,
        "--patience",
        default=0,
        why=f"line exact match kept rising after the validation loss bottomed out, {measured}",
    )
    add_shared(
        p,
        "--line-samples",
        default=1000,
        why="these lines decide whether the tuned model replaces the base: more, a surer call",
    )
    add_shared(p, "--device")
    add_shared(p, "--seed")
    add_shared(p, "--threads")
    add_shared(
        p, "--json", note="the whole report (it is also in the work directory's report.json)"
    )
    p.set_defaults(func=cmd_tune)
