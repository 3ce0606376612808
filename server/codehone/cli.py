"""The `codehone` command: one CLI, with a subcommand for each step of the loop.

Heavy modules (torch, transformers, onnxruntime) are imported inside each subcommand, so
`codehone --help` is instant and `codehone serve` never imports the training stack.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from codehone import __version__
from codehone.core.errors import CodehoneError

log = logging.getLogger("codehone.cli")


def _resolve_model(path: str | None) -> Path:
    if path:
        return Path(path)
    from codehone.core.default_model import find_default_model

    found = find_default_model()
    if found is None:
        raise CodehoneError(
            "no model given and no default model built yet: pass --model DIR, or run "
            "`make run` (or `codehone pretrain --out DIR`) to build the default model"
        )
    return found


def cmd_serve(args: argparse.Namespace) -> int:
    from codehone.core.default_model import find_default_model
    from codehone.core.logging_setup import setup_logging
    from codehone.core.model_dir import load_model_dir
    from codehone.lsp.models.service import ModelService
    from codehone.lsp.server import build_server

    setup_logging(args.verbose, Path(args.log_file) if args.log_file else None)
    model_path = Path(args.model) if args.model else find_default_model()
    service = None
    if model_path is not None:
        service = ModelService.load(load_model_dir(model_path), args.device)
    else:
        log.warning(
            "no --model and no default model built yet: only models named by workspace "
            "folders (.codehone.toml) or the `model` option will serve"
        )
    server = build_server(service, args.device, model_path)
    try:
        if args.tcp:
            log.info("serving on 127.0.0.1:%d", args.port)
            server.start_tcp("127.0.0.1", args.port)
        else:
            server.start_io()
    finally:
        server.models.registry.close()
    return 0


def cmd_complete(args: argparse.Namespace) -> int:
    from codehone.core.completion import CompletionOptions, CursorContext
    from codehone.core.logging_setup import setup_logging
    from codehone.core.model_dir import load_model_dir
    from codehone.core.text_positions import offset_at
    from codehone.lsp.models.service import ModelService

    setup_logging(args.verbose)
    model_dir = load_model_dir(args.model_dir)
    try:
        raw = Path(args.file).read_bytes()
    except OSError as exc:
        raise CodehoneError(f"{args.file}: cannot read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        log.warning("%s is not valid UTF-8; undecodable bytes are replaced", args.file)
        text = raw.decode("utf-8", errors="replace")
    if args.line < 1 or args.col < 1:
        raise CodehoneError("LINE and COL are 1-based and must be at least 1")
    offset = offset_at(text, args.line - 1, args.col - 1, "utf-32")
    service = ModelService.load(model_dir, args.device)
    try:
        options = CompletionOptions(max_new_tokens=args.max_new_tokens)
        outcome = service.complete_blocking(CursorContext(text, offset), options)
    finally:
        service.close()
    log.info(
        "tokens=%d+%d reason=%s timings_ms=%s",
        outcome.prompt_tokens,
        outcome.new_tokens,
        outcome.reason,
        outcome.timings_ms,
    )
    if outcome.text is None:
        log.info("no completion here (%s)", outcome.reason)
        return 1
    sys.stdout.write(outcome.text + "\n")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from codehone.core.logging_setup import setup_logging
    from codehone_training.export.checkpoint import export_checkpoint

    setup_logging(args.verbose)
    model_dir = export_checkpoint(
        Path(args.checkpoint), Path(args.out), device=args.device, dtype=args.dtype
    )
    verification = model_dir.manifest.provenance.verification
    print(
        f"exported {args.checkpoint} -> {model_dir.root} ({model_dir.manifest.architecture}, "
        f"{args.dtype}); max |ORT - PyTorch| logit difference: "
        f"{verification.get('max_abs_diff_prompt', float('nan')):.3g} (prompt), "
        f"{verification.get('max_abs_diff_steps', float('nan')):.3g} (cached steps)"
    )
    return 0


def _names(value: str | None) -> list[str] | None:
    return None if value is None else [x.strip() for x in value.split(",") if x.strip()]


# `codehone pretrain` options that map one to one onto PretrainConfig fields (None: default).
_PRETRAIN_FIELDS = (
    "n_layer",
    "n_embd",
    "n_head",
    "context_length",
    "vocab_size",
    "batch_size",
    "lr",
    "warmup_steps",
    "fim_rate",
    "fim_line_rate",
    "seed",
    "max_steps",
    "quantize_bits",
    "checkpoint_dtype",
)


def cmd_pretrain(args: argparse.Namespace) -> int:
    from codehone.core.logging_setup import setup_logging
    from codehone_training.data.corpus import TRAIN_PACKAGES
    from codehone_training.pretrain import PretrainConfig, format_summary, pretrain

    setup_logging(args.verbose)
    overrides = {k: getattr(args, k) for k in _PRETRAIN_FIELDS if getattr(args, k) is not None}
    packages = _names(args.packages) or []
    if packages == ["default"]:
        packages = list(TRAIN_PACKAGES)
    if args.exclude_packages is not None:
        overrides["exclude_packages"] = _names(args.exclude_packages)
    if args.package_max_mb is not None:
        overrides["package_max_bytes"] = int(args.package_max_mb * 1e6)
    config = PretrainConfig(
        out_dir=Path(args.out),
        corpus_dirs=[Path(c) for c in args.corpus] if args.corpus else None,
        packages=packages,
        minutes=args.minutes,
        device=args.device,
        num_threads=args.threads,
        checkpoint_dir=Path(args.keep_checkpoint) if args.keep_checkpoint else None,
        init_checkpoint=Path(args.init_checkpoint) if args.init_checkpoint else None,
        fuse=args.fuse,
        embed_checkpoint=args.embed_checkpoint,
        fim_in_prompts=not args.no_fim_prompts,
        **overrides,
    )
    model_dir = pretrain(config)
    print(f"pretrained model written to {model_dir.root}")
    print(format_summary(model_dir))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import asyncio

    from codehone.core.logging_setup import setup_logging
    from codehone.tools.demo import run_demo

    setup_logging(args.verbose)
    return asyncio.run(run_demo(Path(args.model) if args.model else None, args.device))


def cmd_check(args: argparse.Namespace) -> int:
    from codehone.check.run import run_check_command

    return run_check_command(args)


def cmd_bench_engine(args: argparse.Namespace) -> int:
    from codehone.tools.bench_engine import BenchConfig, run_bench

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    if args.verbose:  # tracebacks of failed contenders (stderr); other libraries stay quiet
        logging.getLogger("codehone").setLevel(logging.DEBUG)
    config = BenchConfig(
        device=args.device,
        shapes=args.shapes or [],
        prompt_lengths=args.prompt_lengths,
        new_tokens=args.new_tokens,
        repeats=args.repeats,
        contenders=args.contenders or [],
        draft_tokens=args.draft_tokens,
        json_path=Path(args.json) if args.json else None,
        threads=args.threads,
    )
    if args.cache_dir:
        config.cache_dir = Path(args.cache_dir)
    try:
        run_bench(config)
    except ValueError as exc:
        raise CodehoneError(str(exc)) from None
    return 0


def cmd_bench_lsp(args: argparse.Namespace) -> int:
    from codehone.tools.bench_lsp import main as bench_lsp_main

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    if args.keystrokes < 1 or args.context_tokens < 1:
        raise CodehoneError("--keystrokes and --context-tokens must be at least 1")
    return bench_lsp_main(
        Path(args.model) if args.model else None,
        Path(args.file) if args.file else None,
        args.keystrokes,
        args.context_tokens,
        args.device,
        args.seed,
        args.max_new_tokens,
        Path(args.json) if args.json else None,
        anchor_prompt=not args.no_anchor,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codehone", description="Code completion honed on your own project."
    )
    parser.add_argument("--version", action="version", version=f"codehone {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
        return p

    device_choices = ["auto", "cuda", "cpu"]
    p = add("serve", "run the language server (stdio by default)")
    p.add_argument("--model", help="model directory (default: the embedded default model)")
    p.add_argument("--device", choices=device_choices, default="auto")
    p.add_argument("--tcp", action="store_true", help="listen on 127.0.0.1 instead of stdio")
    p.add_argument("--port", type=int, default=2087)
    p.add_argument("--log-file", help="write logs here instead of stderr")
    p.add_argument("--stdio", action="store_true", help="accepted and ignored (stdio is the default)")
    p.set_defaults(func=cmd_serve)

    p = add("complete", "print the completion at a position of a file")
    p.add_argument("model_dir")
    p.add_argument("file")
    p.add_argument("line", type=int, help="1-based line")
    p.add_argument("col", type=int, help="1-based column (characters)")
    p.add_argument("--device", choices=device_choices, default="auto")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.set_defaults(func=cmd_complete)

    p = add("export", "export a Hugging Face checkpoint to a verified model directory")
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtype", choices=["fp32", "fp16"], default="fp32")
    p.set_defaults(func=cmd_export)

    p = add("pretrain", "train a small code model from scratch on local sources and export it")
    p.add_argument(
        "--corpus",
        action="append",
        help="source directory (repeatable; default: this Python's standard library)",
    )
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--minutes", type=float, default=3.5, help="training time budget")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument(
        "--packages",
        help="comma-separated installed packages (import names) added to the corpus; "
        "'default': the list the shipped default model was trained on",
    )
    p.add_argument(
        "--exclude-packages",
        help="comma-separated packages never trained on (default: the evaluation hold-out, "
        "codehone_training.data.corpus.HELDOUT_PACKAGES)",
    )
    p.add_argument("--package-max-mb", type=float, help="source taken from one package (2.5)")
    p.add_argument("--n-layer", type=int)
    p.add_argument("--n-embd", type=int, help="width")
    p.add_argument("--n-head", type=int)
    p.add_argument("--context-length", type=int)
    p.add_argument("--vocab-size", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--fim-rate", type=float, help="share of file chunks made FIM samples")
    p.add_argument(
        "--fim-line-rate", type=float, help="share of FIM samples cut like a line completion"
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--max-steps", type=int, help="stop earlier than the time budget")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: every CPU)")
    p.add_argument("--keep-checkpoint", metavar="DIR", help="keep the PyTorch checkpoint here")
    p.add_argument(
        "--init-checkpoint",
        metavar="DIR",
        help="continue training this checkpoint (its tokenizer and shape) instead of starting "
        "from scratch",
    )
    p.add_argument(
        "--embed-checkpoint",
        action="store_true",
        help="put the PyTorch checkpoint in OUT/checkpoint (a base for finetune / tune)",
    )
    p.add_argument("--checkpoint-dtype", choices=["fp16", "bf16", "fp32"])
    p.add_argument(
        "--no-fim-prompts",
        action="store_true",
        help="mark the model (manifest fim.in_prompts) to be prompted with the text before the "
        "cursor only, for a model whose FIM completions measured worse than plain ones",
    )
    p.add_argument(
        "--fuse", action="store_true", help="rebuild as codehone's fused decode graph"
    )
    p.add_argument(
        "--quantize-bits", type=int, choices=[4, 8], help="weight-only int8/int4 (CPU)"
    )
    p.set_defaults(func=cmd_pretrain)

    p = add("demo", "start the server, open a sample file and print completions")
    p.add_argument("--model", help="model directory (default: find or build the default model)")
    p.add_argument("--device", choices=device_choices, default="auto")
    p.set_defaults(func=cmd_demo)

    from codehone.check.run import add_check_arguments

    p = add("check", "check a project's model and server headless, for CI (exit 0/1/2)")
    add_check_arguments(p)
    p.set_defaults(func=cmd_check)

    from codehone_training.commands import add_training_commands
    from codehone_training.export.commands import add_optimize_commands

    add_training_commands(add)  # prepare, finetune, search, eval, tune
    add_optimize_commands(add)  # optimize fuse|last-logits|quantize|measure

    bench = sub.add_parser("bench", help="benchmarks", description="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench", required=True, metavar="BENCH")
    p = bench_sub.add_parser(
        "engine",
        help="codehone's engine vs transformers and optimum, side by side",
        description="codehone's decode engine vs Hugging Face transformers (PyTorch eager) and "
        "optimum ORTModelForCausalLM on random-weight models: time to first token, per-token "
        "decode time, tokens/s, and greedy tokens checked against PyTorch's",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument(
        "--shapes",
        nargs="+",
        help="default: gpt2-124m qwen2.5-coder-0.5b (cuda), gpt2-small qwen2-small (cpu)",
    )
    p.add_argument("--prompt-lengths", nargs="+", type=int, default=[512, 1500])
    p.add_argument("--new-tokens", type=int, default=48)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--contenders",
        nargs="+",
        help="hf-eager optimum codehone-export codehone codehone+graph codehone+spec (default: "
        "all that apply to the device)",
    )
    p.add_argument("--draft-tokens", type=int, default=6, help="for codehone+spec")
    p.add_argument("--cache-dir", help="where models are built (default ~/.cache/codehone/bench)")
    p.add_argument("--json", help="also write the rows here")
    p.add_argument("--threads", type=int, help="CPU threads for every contender")
    p.set_defaults(func=cmd_bench_engine)

    p = bench_sub.add_parser(
        "lsp",
        help="end-to-end latency of the real server while a user types",
        description="start `codehone serve` over stdio, type a real file a keystroke at a time "
        "(50-150 ms apart) with an inline-completion request after each, cancelling stale ones "
        "as editors do; print p50/p95/p99 latency, cancellations and the prefix-cache hit rate",
    )
    p.add_argument("--model", help="model directory (default: find or build the default model)")
    p.add_argument("--file", help="source file to type (default: the stdlib's json/decoder.py)")
    p.add_argument("--keystrokes", type=int, default=200)
    p.add_argument("--context-tokens", type=int, default=1024, help="context before the cursor")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    p.add_argument("--seed", type=int, default=0, help="seeds the typing rhythm")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument(
        "--no-anchor",
        action="store_true",
        help="prompt = exactly the last tokens before the cursor (anchorPrompt false), to compare",
    )
    p.add_argument("--json", help="also write the figures here")
    p.set_defaults(func=cmd_bench_lsp)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CodehoneError as exc:
        print(f"codehone: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
