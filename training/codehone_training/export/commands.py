"""``codehone optimize {fuse,last-logits,quantize,measure}``: the optimization steps of
``export.optimize`` and their measurement (``evaluation.measure``) on the command line.

Only argparse here: the heavy modules are imported inside each command, so ``codehone --help``
stays instant. Progress goes to stderr; the one-line result (or the measurement table) to
stdout.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from codehone.core.command_line import TORCH_DEVICES, add_shared

if TYPE_CHECKING:
    from codehone.core.model_dir import ModelDir

AddCommand = Callable[[str, str], argparse.ArgumentParser]


def _setup_logging(args: argparse.Namespace) -> None:
    from codehone.core.logging_setup import setup_logging

    setup_logging(args.verbose)


def _write(args: argparse.Namespace, step: Callable[[], ModelDir]) -> int:
    """Run one step that writes a model directory; say what it wrote."""
    _setup_logging(args)
    started = time.monotonic()
    result = step()
    steps = ", ".join(result.manifest.provenance.optimizations)
    print(f"wrote {result.root} ({steps}) in {time.monotonic() - started:.1f} s")
    return 0


def cmd_fuse(args: argparse.Namespace) -> int:
    from codehone_training.export.optimize import fuse

    return _write(
        args,
        lambda: fuse(
            Path(args.model_dir),
            Path(args.out),
            dtype=args.dtype,
            checkpoint=Path(args.checkpoint) if args.checkpoint else None,
            verify=not args.no_verify,
            device=args.device,
        ),
    )


def cmd_last_logits(args: argparse.Namespace) -> int:
    from codehone_training.export.optimize import last_logits

    return _write(args, lambda: last_logits(Path(args.model_dir), Path(args.out)))


def cmd_quantize(args: argparse.Namespace) -> int:
    from codehone_training.export.optimize import quantize

    return _write(
        args,
        lambda: quantize(
            Path(args.model_dir),
            Path(args.out),
            bits=args.bits,
            block_size=args.block_size,
            accuracy_level=args.accuracy_level,
            scheme=args.scheme,
            calibration=[Path(f) for f in args.calibration] if args.calibration else None,
        ),
    )


def cmd_measure(args: argparse.Namespace) -> int:
    from codehone_training.evaluation.measure import (
        default_eval_files,
        format_measurements,
        measure,
    )

    _setup_logging(args)
    results = measure(
        [Path(d) for d in args.model_dirs],
        default_eval_files(),
        windows=args.windows,
        window_length=args.window_length,
        new_tokens=args.new_tokens,
        threads=args.threads,
    )
    print(format_measurements(results))
    if args.json:
        Path(args.json).write_text(
            json.dumps([r.__dict__ for r in results], indent=2) + "\n", encoding="utf-8"
        )
    return 0


def add_optimize_commands(add: AddCommand) -> None:
    """Register ``codehone optimize`` and its steps on the ``codehone`` parser."""
    optimize = add("optimize", "rebuild, rewrite or quantize an exported model directory")
    steps = optimize.add_subparsers(dest="step", required=True, metavar="STEP")

    def step(name: str, help_text: str) -> argparse.ArgumentParser:
        p = steps.add_parser(name, help=help_text, description=help_text)
        # -v after the step too; SUPPRESS keeps `codehone optimize -v STEP` working
        p.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging"
        )
        return p

    p = step("fuse", "rebuild as the fused GroupQueryAttention graph (gpt2/llama/qwen2), verified")
    p.add_argument("model_dir")
    p.add_argument("--out", required=True)
    p.add_argument("--dtype", choices=["fp32", "fp16"], default="fp32")
    p.add_argument("--checkpoint", help="Hugging Face checkpoint (default: the manifest's)")
    add_shared(
        p,
        "--device",
        default="cpu",
        choices=TORCH_DEVICES,
        note="PyTorch verifies the graph there",
        why="the reference runs in PyTorch; fp16 needs cuda",
    )
    p.add_argument("--no-verify", action="store_true")
    p.set_defaults(func=cmd_fuse)

    p = step("last-logits", "rewrite an exported graph: last logits + arg-max")
    p.add_argument("model_dir")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_last_logits)

    p = step(
        "quantize",
        "int4/int8 weights for the CPU (MatMulNBits blocks, int8 channels or int8 tokens)",
    )
    p.add_argument("model_dir")
    p.add_argument("--out", required=True)
    p.add_argument("--bits", type=int, choices=[4, 8], default=4)
    p.add_argument(
        "--scheme",
        default="block",
        help="block: MatMulNBits, a scale per block of input rows (int4 or int8); channel: "
        "int8 only, a scale per output channel and int8 arithmetic for prompts "
        "(DynamicQuantizeMatMul; block int8 where the input is not normalized); token: int8 "
        "only, smoothed, a scale per token and int8 arithmetic (default: block)",
    )
    p.add_argument(
        "--calibration",
        nargs="+",
        metavar="FILE",
        help="the token scheme's calibration text (default: modules of Python's standard library)",
    )
    p.add_argument("--block-size", type=int, default=32, help="the block scheme's (default 32)")
    p.add_argument(
        "--accuracy-level",
        type=int,
        choices=[0, 1, 2, 3, 4],
        default=4,
        help="the block scheme's: 4 = int8 activations (default), 1 = float32",
    )
    p.set_defaults(func=cmd_quantize)

    p = step("measure", "CPU speed and quality of models; the first is the reference")
    p.add_argument("model_dirs", nargs="+")
    p.add_argument("--windows", type=int, default=16)
    p.add_argument("--window-length", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, help="CPU threads (default: one per core)")
    add_shared(p, "--json")
    p.set_defaults(func=cmd_measure)
