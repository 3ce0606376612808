"""The tools' subcommands of ``codehone``: demo, bench engine, bench lsp, bench documents.

Only argparse here (the tools are imported inside each command, so ``codehone --help`` stays
instant); registered by ``codehone.cli`` through the same ``add(name, help)`` as every part.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from codehone.core.command_line import Commands, add_shared
from codehone.core.errors import CodehoneError


def _quiet_logging(verbose: bool) -> None:
    """Warnings only (a benchmark prints its figures); -v: codehone's debug lines too."""
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    if verbose:
        logging.getLogger("codehone").setLevel(logging.DEBUG)


def cmd_demo(args: argparse.Namespace) -> int:
    import asyncio

    from codehone.core.logging_setup import setup_logging
    from codehone.tools.demo import run_demo

    setup_logging(args.verbose)
    return asyncio.run(run_demo(Path(args.model) if args.model else None, args.device))


def cmd_bench_engine(args: argparse.Namespace) -> int:
    from codehone.tools.bench_engine import BenchConfig, run_bench

    _quiet_logging(args.verbose)  # -v: tracebacks of failed contenders
    if args.repeats < 1 or args.new_tokens < 2 or min(args.prompt_lengths) < 1:
        raise CodehoneError("--repeats and --prompt-lengths must be at least 1, --new-tokens 2")
    if args.shapes and (args.model or args.llama_cpp):
        raise CodehoneError("--shapes (random weights) and --model/--llama-cpp do not mix")
    config = BenchConfig(
        device=args.device,
        shapes=args.shapes or [],
        models=[Path(m) for m in args.model or []],
        llama_cpp=[Path(g) for g in args.llama_cpp or []],
        checkpoint=Path(args.checkpoint) if args.checkpoint else None,
        prompt_file=Path(args.prompt_file) if args.prompt_file else None,
        conditions=args.conditions or [],
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
    except (ValueError, OSError) as exc:
        raise CodehoneError(str(exc)) from None
    return 0


def cmd_bench_lsp(args: argparse.Namespace) -> int:
    from codehone.tools.bench_lsp import main as bench_lsp_main

    _quiet_logging(args.verbose)
    if args.keystrokes < 1 or args.context_tokens < 1:
        raise CodehoneError("--keystrokes and --context-tokens must be at least 1")
    low, high = args.keystroke_ms
    if not 0 <= low <= high:
        raise CodehoneError("--keystroke-ms needs 0 <= FROM <= TO")
    if args.cold_repeats < 0 or args.reading_pause_ms < 0:
        raise CodehoneError("--cold-repeats and --reading-pause-ms must not be negative")
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
        typed_ahead=not args.no_typed_ahead,
        cold_repeats=args.cold_repeats,
        reading_pause_s=args.reading_pause_ms / 1000,
        keystroke_ms=(args.keystroke_ms[0], args.keystroke_ms[1]),
    )


def cmd_bench_documents(args: argparse.Namespace) -> int:
    from codehone.tools.bench_documents import main as bench_documents_main

    _quiet_logging(args.verbose)
    if args.edits < 1:
        raise CodehoneError("--edits must be at least 1")
    return bench_documents_main(
        Path(args.model) if args.model else None,
        args.shapes,
        args.edits,
        args.device,
        Path(args.json) if args.json else None,
    )


def add_tool_commands(add: Commands) -> None:
    """Register demo and bench (engine, lsp)."""
    from codehone.tools.bench_engine import ALL_CONTENDERS, BENCH_DRAFT_TOKENS
    from codehone.tools.bench_engine.config import CONDITIONS

    p = add("demo", "start the server, open a sample file and print completions")
    add_shared(p, "--model")
    add_shared(p, "--device")
    p.set_defaults(func=cmd_demo)

    bench = add.group("bench", "benchmarks", "BENCH")
    p = bench(
        "engine",
        "codehone's engine vs llama.cpp (real weights) or transformers and optimum, side by side",
        "codehone's decode engine against the runtimes people would use instead, each contender "
        "in its own process, interleaved run by run on the same token ids: with --model DIR "
        "(real weights) against llama.cpp on GGUFs of the same weights (--llama-cpp); without, "
        "against Hugging Face transformers (PyTorch eager) and optimum ORTModelForCausalLM on "
        "random-weight shapes. Time to first token, decode time per token, typing latency on "
        "a cached prompt, resident memory, greedy tokens checked against PyTorch's, and ratios",
    )
    add_shared(p, "--device")
    add_shared(
        p,
        "--model",
        repeatable=True,
        note="each one given is benchmarked on its real weights (repeat it: the fp32, int8 and "
        "int4 directories of the same weights)",
        default_text="none: random-weight shapes (--shapes)",
        why="a benchmark of the default model alone compares nothing",
    )
    p.add_argument(
        "--llama-cpp",
        nargs="+",
        metavar="GGUF",
        help="GGUF files of the same weights for llama.cpp (needs the bench extra: "
        "pip install -e '.[bench]')",
    )
    p.add_argument(
        "--checkpoint",
        metavar="DIR",
        help="Hugging Face checkpoint of PyTorch's reference tokens (default: the one the "
        "first --model was exported from)",
    )
    p.add_argument(
        "--prompt-file",
        metavar="FILE",
        help="code the prompts are cut from (default: pathspec's pathspec.py, installed with "
        "codehone)",
    )
    p.add_argument(
        "--conditions",
        nargs="+",
        choices=CONDITIONS,
        help="how idle threads wait: spin (each library's default) and/or passive (ONNX "
        "Runtime without spinning, OMP_WAIT_POLICY=PASSIVE) (default: both with --model on "
        "the CPU, else spin)",
    )
    p.add_argument(
        "--shapes",
        nargs="+",
        help="random-weight shapes (default: gpt2-124m qwen2.5-coder-0.5b on cuda, gpt2-small "
        "qwen2-small on the CPU)",
    )
    p.add_argument("--prompt-lengths", nargs="+", type=int, default=[512, 1500])
    p.add_argument("--new-tokens", type=int, default=48)
    p.add_argument("--repeats", type=int, default=5, help="runs per contender (medians)")
    p.add_argument(
        "--contenders",
        nargs="+",
        help=f"random shapes only: {' '.join(ALL_CONTENDERS)} (default: all that apply)",
    )
    p.add_argument(
        "--draft-tokens",
        type=int,
        help=f"prompt-lookup draft tokens of the +spec contenders (default: {BENCH_DRAFT_TOKENS} "
        "for codehone+spec on random shapes; with --model, N > 0 adds a +spec row per model)",
    )
    p.add_argument(
        "--cache-dir", help="where random shapes are built (default ~/.cache/codehone/bench)"
    )
    add_shared(p, "--json")
    add_shared(p, "--threads", note="for every contender")
    p.set_defaults(func=cmd_bench_engine)

    p = bench(
        "lsp",
        "end-to-end latency of the real server while a user types",
        "start `codehone serve` over stdio, type a real file a keystroke at a time (by default 50-150 ms "
        "apart) with an inline-completion request after each, cancelling stale ones as editors "
        "do; print p50/p95/p99 latency, cancellations, the prefix-cache hit rate and where a "
        "request's time goes; then the cold first request in a freshly opened file, with and "
        "without the background prefill",
    )
    add_shared(p, "--model")
    p.add_argument("--file", help="source file to type (default: the stdlib's json/decoder.py)")
    p.add_argument("--keystrokes", type=int, default=200)
    p.add_argument(
        "--keystroke-ms",
        type=int,
        nargs=2,
        default=[50, 150],
        metavar=("FROM", "TO"),
        help="the pause between keystrokes, uniformly drawn between these (default 50 150)",
    )
    p.add_argument("--context-tokens", type=int, default=1024, help="context before the cursor")
    add_shared(p, "--device")
    add_shared(p, "--seed", note="the typing rhythm")
    add_shared(p, "--max-new-tokens")
    p.add_argument(
        "--no-anchor",
        action="store_true",
        help="prompt = exactly the last tokens before the cursor (anchorPrompt false), to compare",
    )
    p.add_argument(
        "--no-typed-ahead",
        action="store_true",
        help="every request reaches the model, also when the user types the start of the "
        "completion just offered (typedAhead false), to compare",
    )
    p.add_argument(
        "--cold-repeats",
        type=int,
        default=3,
        help="then the cold first request in a freshly opened file, this many times with the "
        "background prefill and as many without, alternately (0: skip; default 3)",
    )
    p.add_argument(
        "--reading-pause-ms",
        type=int,
        default=1500,
        help="how long the user reads the freshly opened file before typing (default 1500)",
    )
    add_shared(p, "--json")
    p.set_defaults(func=cmd_bench_lsp)

    from codehone.tools.bench_documents import SHAPES

    p = bench(
        "documents",
        "what a keystroke costs the server in a huge document",
        "start `codehone serve` over stdio, open a small file, a 5 MB single-line file and a "
        "30 MB file, type at the end of each and print how long the server's event loop took "
        "for each one-character edit and for the inline completion after it",
    )
    add_shared(p, "--model")
    p.add_argument("--shapes", nargs="+", metavar="SHAPE", help=f"default: {' '.join(SHAPES)}")
    p.add_argument("--edits", type=int, default=10, help="keystrokes per document")
    add_shared(p, "--device")
    add_shared(p, "--json")
    p.set_defaults(func=cmd_bench_documents)
