"""The `codehone` command: one argparse tree, with a subcommand for each step of the loop.

Each part registers its own subcommands through the same ``add(name, help)``
(``codehone.core.command_line.Commands``): the server's (serve, complete) here, pretrain and
export in ``codehone_training.model_commands``, the fine-tuning loop's in
``codehone_training.commands``, ``check`` in ``codehone.check.commands``, the demo and the
benchmarks in ``codehone.tools.commands``: ``command_parts`` lists the parts, and a new part
(a function ``add_..._commands(add)``) joins that list. Options
several subcommands share are defined once, in ``codehone.core.command_line``. Heavy modules
(torch, transformers, onnxruntime) are imported inside each subcommand, so `codehone --help` is
instant and `codehone serve` never imports the training stack.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from codehone import __version__
from codehone.core.command_line import Commands, add_shared
from codehone.core.errors import CodehoneError

log = logging.getLogger("codehone.cli")


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from codehone.core.default_model import model_or_default
    from codehone.core.logging_setup import setup_logging
    from codehone.core.model_dir import load_model_dir
    from codehone.lsp.models.service import ModelService
    from codehone.lsp.server import CodehoneServer, build_server
    from codehone.lsp.transport import serve_stdio, serve_tcp

    setup_logging(args.verbose, Path(args.log_file) if args.log_file else None)
    model_path = model_or_default(args.model, "--model", required=False)
    service = None
    if model_path is not None:
        service = ModelService.load(load_model_dir(model_path), args.device)
    else:
        log.warning(
            "no --model and no default model built yet: only models named by workspace "
            "folders (.codehone.toml) or the `model` option will serve"
        )
    if not args.tcp:
        server = build_server(service, args.device, model_path)
        try:
            return serve_stdio(server.protocol)
        finally:
            server.close()

    async def open_session() -> CodehoneServer:
        """Each TCP connection a fresh server; the startup model is shared, and loaded again
        (off the event loop) if a session's `model` option retired it."""
        nonlocal service
        if service is not None and service.closed and model_path is not None:
            service = await asyncio.to_thread(
                lambda: ModelService.load(load_model_dir(model_path), args.device)
            )
        return build_server(service, args.device, model_path)

    try:
        return serve_tcp(args.port, open_session, lambda server: server.close(keep=service))
    finally:
        if service is not None:
            service.close()


def cmd_complete(args: argparse.Namespace) -> int:
    from codehone.core.completion.cursor import CursorContext
    from codehone.core.completion.options import CompletionOptions
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
        options = CompletionOptions()
        if args.max_new_tokens is not None:
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
    if not outcome.completions:
        log.info("no completion here (%s)", outcome.reason)
        return 1
    completion = outcome.completions[0]
    if completion.replaced:
        log.info("it replaces the %d closing characters after the cursor", completion.replaced)
    sys.stdout.write(completion.text + "\n")
    return 0


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (0-65535)")
    return port


def add_server_commands(add: Commands) -> None:
    """The server's own subcommands: serve, complete."""
    p = add("serve", "run the language server (stdio by default)")
    add_shared(
        p,
        "--model",
        default_text="the default model, if one is found",
        why="serve never builds one (minutes of training): without one, only the models that "
        "workspace folders' .codehone.toml or the `model` option name serve",
    )
    add_shared(p, "--device")
    p.add_argument(
        "--tcp",
        action="store_true",
        help="listen on 127.0.0.1 instead of stdio, for one editor at a time",
    )
    p.add_argument("--port", type=_port, default=2087, help="the TCP port (0: any free one)")
    p.add_argument("--log-file", help="write logs here instead of stderr")
    p.add_argument(
        "--stdio", action="store_true", help="accepted and ignored (stdio is the default)"
    )
    p.set_defaults(func=cmd_serve)

    p = add("complete", "print the completion at a position of a file")
    p.add_argument("model_dir")
    p.add_argument("file")
    p.add_argument("line", type=int, help="1-based line")
    p.add_argument("col", type=int, help="1-based column (characters)")
    add_shared(p, "--device")
    add_shared(p, "--max-new-tokens")
    p.set_defaults(func=cmd_complete)


def command_parts() -> list[Callable[[Commands], None]]:
    """Each part's registration function, in the order ``codehone --help`` lists them: every
    part adds its subcommands through the same ``add(name, help)``."""
    from codehone.check.commands import add_check_commands
    from codehone.tools.commands import add_tool_commands
    from codehone_training.commands import add_training_commands
    from codehone_training.export.commands import add_optimize_commands
    from codehone_training.model_commands import add_model_commands

    return [
        add_server_commands,  # serve, complete
        add_model_commands,  # pretrain, export
        add_training_commands,  # prepare, finetune, search, eval, tune
        add_optimize_commands,  # optimize fuse|last-logits|quantize|measure
        add_check_commands,  # check
        add_tool_commands,  # demo, bench engine, bench lsp
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codehone", description="Code completion honed on your own project."
    )
    parser.add_argument("--version", action="version", version=f"codehone {__version__}")
    add = Commands(parser, "command", "COMMAND")
    for add_part_commands in command_parts():
        add_part_commands(add)
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
