"""What every part of the ``codehone`` command line shares: how a part registers its
subcommands, and the options several subcommands have, each defined once.

``codehone.cli`` builds the one argparse tree and hands each part (the server, ``check``, the
tools, the training side) the same ``add(name, help)`` callback, a ``Commands``; a part with a
command of its own subcommands (``codehone bench engine``) asks it for a ``group``. An option
that several subcommands take (``--device``, ``--model``, ``--base``, ``--method``, ``--json``
...) is added with ``add_shared``: one meaning and one default per name, and a subcommand whose
default must differ says why in its help (``add_shared`` refuses a different default without
a reason). It lives in the core because every part may import the core and nothing above it;
it is argparse only, so ``codehone --help`` stays instant.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any


class Commands:
    """Where a part adds its subcommands: ``add(name, help)`` returns the new subcommand's
    parser (with ``-v/--verbose``); set its ``func`` with ``set_defaults``."""

    def __init__(self, parser: argparse.ArgumentParser, dest: str, metavar: str) -> None:
        self._sub = parser.add_subparsers(dest=dest, required=True, metavar=metavar)

    def __call__(
        self, name: str, help_text: str, description: str | None = None
    ) -> argparse.ArgumentParser:
        parser = self._sub.add_parser(name, help=help_text, description=description or help_text)
        parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
        return parser

    def group(self, name: str, help_text: str, metavar: str) -> Commands:
        """A subcommand that only holds subcommands of its own (``codehone bench ...``)."""
        parser = self._sub.add_parser(name, help=help_text, description=help_text)
        return Commands(parser, name, metavar)


@dataclass(frozen=True)
class SharedOption:
    """An option several subcommands take: what it means and its one default."""

    meaning: str
    default: Any = None
    default_text: str | None = None  # how the help names the default (else the value)
    argparse: dict[str, Any] = field(default_factory=dict)  # type, choices, metavar


DEVICES = ("auto", "cuda", "cpu")
TORCH_DEVICES = ("cpu", "cuda")

SHARED: dict[str, SharedOption] = {
    "--device": SharedOption(
        "the device it runs on",
        "auto",
        "auto: CUDA when available, else the CPU",
        {"choices": DEVICES},
    ),
    "--model": SharedOption(
        "model directory to serve",
        None,
        "the default model: the shipped models/default, else the fallback built on first run",
        {"metavar": "DIR"},
    ),
    "--base": SharedOption(
        "the model to start from: a Hugging Face checkpoint, or a model directory that leads to "
        "one (its checkpoint/ folder, or the checkpoint its provenance names)",
        None,
        "the default model",
        {"metavar": "MODEL"},
    ),
    "--method": SharedOption(
        "what trains: every weight (full), only the top blocks (freeze), or LoRA adapters (lora)",
        "auto",
        "auto: lora for a base of 100M parameters or more (measured best on SmolLM2-135M), "
        "else full (measured best on the small default model)",
        {"choices": ("auto", "full", "freeze", "lora")},
    ),
    "--lr": SharedOption(
        "peak learning rate",
        None,
        "by --method and the model's size (codehone_training.finetune.DEFAULT_LR)",
        {"type": float},
    ),
    "--epochs": SharedOption(
        "epochs the learning-rate schedule is planned over (fewer if a budget ends it first)",
        3.0,
        argparse={"type": float},
    ),
    "--patience": SharedOption(
        "early stopping: validations without a better loss before it stops (0: never)",
        4,
        argparse={"type": int},
    ),
    "--minutes": SharedOption(
        "wall-clock budget of the training loop", None, "none", {"type": float}
    ),
    "--max-steps": SharedOption(
        "stop after this many optimizer steps", None, "no limit", {"type": int}
    ),
    "--batch-size": SharedOption("rows per optimizer step (per device)", 8, argparse={"type": int}),
    "--line-samples": SharedOption(
        "held-out lines completed to score a model", 500, argparse={"type": int}
    ),
    "--seed": SharedOption("seeds every random choice it makes", 0, argparse={"type": int}),
    "--threads": SharedOption(
        "CPU threads", None, "the libraries' own choice: every core", {"type": int}
    ),
    "--max-new-tokens": SharedOption(
        "most tokens a completion generates",
        None,
        "the server's (option maxNewTokens)",
        {"type": int},
    ),
    "--json": SharedOption(
        "also write the results here, as JSON", None, "none", {"metavar": "FILE"}
    ),
}
_SAME = object()


def add_shared(
    parser: argparse.ArgumentParser,
    name: str,
    *,
    default: Any = _SAME,
    default_text: str | None = None,
    choices: tuple[str, ...] | None = None,
    note: str | None = None,
    why: str | None = None,
    repeatable: bool = False,
) -> None:
    """Add the shared option ``name``. A default (or a description of it, or choices) other
    than the shared one needs ``why``: the help then says it; ``note`` adds what the option
    does in this subcommand; ``repeatable``: given several times, it collects a list."""
    spec = SHARED[name]
    value = spec.default if default is _SAME else default
    differs = value != spec.default or default_text is not None or choices is not None
    if differs and not why:
        raise ValueError(f"{name}: a default or choices other than the shared ones need a why")
    if default_text is None:
        default_text = spec.default_text if value == spec.default else None
    shown = default_text or str(value)
    details = f"default: {shown}" + (f"; {why}" if why else "")
    text = spec.meaning + (f"; {note}" if note else "") + f" ({details})"
    kwargs = dict(spec.argparse)
    if choices is not None:
        kwargs["choices"] = choices
    if repeatable:
        kwargs["action"] = "append"
    parser.add_argument(name, default=value, help=text.replace("%", "%%"), **kwargs)
