"""``codehone check`` on the command line: its options, and the run they start.

Only argparse here (``codehone.check.run`` does the work), registered by ``codehone.cli``
through the same ``add(name, help)`` as every part.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from codehone.check.cases import CASES_FILE, CheckInputError
from codehone.check.report import junit_on_error
from codehone.check.run import (
    DEFAULT_MIN_EXACT_MATCH,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_SAMPLES,
    DEFAULT_SEED,
    DEFAULT_START_TIMEOUT,
    CheckOptions,
    run_check,
)
from codehone.core.command_line import Commands, add_shared


def add_check_commands(add: Commands) -> None:
    """Register ``check``."""
    p = add("check", "check a project's model and server headless, for CI (exit 0/1/2)")
    p.set_defaults(func=run_check_command)
    p.add_argument("project_dir", nargs="?", default=".", metavar="PROJECT_DIR", help="default: .")
    p.add_argument(
        "--cases",
        metavar="FILE",
        help=f"cases file (default: PROJECT_DIR/{CASES_FILE.as_posix()} if it exists, else "
        "sampled held-out lines)",
    )
    add_shared(
        p,
        "--model",
        default_text="the model PROJECT_DIR's .codehone.toml selects",
        why="a check is of the project's own model",
    )
    p.add_argument("--junit", metavar="FILE", help="also write the results as JUnit XML")
    add_shared(p, "--device")
    p.add_argument(
        "--min-pass-rate", type=float, help="cases: fraction that must pass (overrides the file)"
    )
    p.add_argument("--max-p95-ms", type=float, help="p95 completion latency limit (default 2000)")
    p.add_argument(
        "--max-load-seconds",
        type=float,
        help="server start to first completion limit (default 120)",
    )
    p.add_argument(
        "--sample", action="store_true", help="sample held-out lines even if a cases file exists"
    )
    p.add_argument("--samples", type=int, help=f"lines to sample (default {DEFAULT_SAMPLES})")
    p.add_argument(
        "--min-exact-match",
        type=float,
        help=f"sampled lines: fraction to complete exactly (default {DEFAULT_MIN_EXACT_MATCH})",
    )
    add_shared(
        p,
        "--seed",
        default=None,
        default_text=str(DEFAULT_SEED),
        note="sampled lines: the data split and the lines",
        why="left unset unless given: with a cases file, giving it is an error",
    )
    p.add_argument(
        "--data",
        metavar="DIR",
        help="sampled lines: a prepared data set's test split (default: PROJECT_DIR/.codehone/"
        "data when `codehone tune` made one, else the project's files split as prepare does)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_REQUEST_TIMEOUT,
        help=f"seconds to wait for each completion (default {DEFAULT_REQUEST_TIMEOUT:g})",
    )
    p.add_argument(
        "--start-timeout",
        type=float,
        default=DEFAULT_START_TIMEOUT,
        help="seconds to wait for the server to start and answer its first completion "
        f"(default {DEFAULT_START_TIMEOUT:g})",
    )
    p.add_argument(
        "--serve-command",
        metavar="CMD",
        help="start the server with CMD instead of `python -m codehone serve` (e.g. a wrapper "
        "script or a container); `--model DIR --device D` are appended",
    )


def options_from_args(args: argparse.Namespace) -> CheckOptions:
    serve = shlex.split(args.serve_command) if args.serve_command else None
    if serve == []:
        raise CheckInputError("--serve-command is empty")
    return CheckOptions(
        project_dir=Path(args.project_dir),
        model=Path(args.model) if args.model else None,
        cases=Path(args.cases) if args.cases else None,
        sample=args.sample,
        samples=args.samples,
        seed=args.seed,
        data=Path(args.data) if args.data else None,
        min_exact_match=args.min_exact_match,
        min_pass_rate=args.min_pass_rate,
        max_p95_ms=args.max_p95_ms,
        max_load_seconds=args.max_load_seconds,
        device=args.device,
        request_timeout=args.timeout,
        start_timeout=args.start_timeout,
        serve_command=serve,
        echo_server=args.verbose,
    )


def run_check_command(args: argparse.Namespace) -> int:
    from codehone.core.logging_setup import setup_logging

    setup_logging(args.verbose)
    junit = Path(args.junit) if args.junit else None

    def out(line: str) -> None:
        print(line, flush=True)

    with junit_on_error(junit):
        options = options_from_args(args)
    return run_check(options, out, junit)
