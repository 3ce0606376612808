"""Every option of a pretraining run, in one dataclass; the defaults build the first-run
fallback model, and ``codehone pretrain`` sets the others from its flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from codehone_training.data.corpus import (
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_PACKAGE_MAX_BYTES,
    HELDOUT_PACKAGES,
)
from codehone_training.export.finish import FinishSteps


@dataclass
class PretrainConfig:
    """Everything one pretraining run needs; the defaults build codehone's default model."""

    out_dir: Path
    corpus_dirs: list[Path] | None = None  # None: the Python standard library
    extra_corpus_dirs: list[Path] = field(default_factory=list)
    # installed third-party packages (import names) added to the corpus, each capped
    packages: list[str] = field(default_factory=list)
    exclude_packages: list[str] = field(default_factory=lambda: list(HELDOUT_PACKAGES))
    package_max_bytes: int = DEFAULT_PACKAGE_MAX_BYTES
    tokenizer_max_bytes: int = 16_000_000  # the BPE learns from about this much text (chars)
    minutes: float = 3.5  # wall-clock budget of the training loop itself
    device: str = "cpu"  # cpu | cuda
    # model: sized by measurement on a 2-core CPU with a 3.5-minute budget (~1M tokens/minute);
    # at that budget one wide-enough layer beats deeper models, which see too few tokens
    n_layer: int = 1
    n_embd: int = 128
    n_head: int = 4
    context_length: int = 256
    vocab_size: int = 4096
    activation: str = "gelu_pytorch_tanh"  # fused tanh GELU: same as GPT-2's, much faster on CPU
    # optimisation
    batch_size: int = 16
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 30
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    max_steps: int | None = None  # stop earlier than the time budget (tests, debugging)
    # data
    fim_rate: float = 0.5  # probability that a file chunk in a sample becomes a FIM sample
    # share of the FIM samples cut like a line completion (split_line_for_fim) rather than at
    # two random characters. An experiment: 15 more minutes of the shipped model at 0.5
    # (--init-checkpoint) lowered its losses but did not make its FIM completions beat its
    # plain ones (models/default/README.md), so the default stays StarCoder's random spans
    fim_line_rate: float = 0.0
    val_fraction: float = 0.05  # share of the files held out for validation
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    eval_samples: int = 128  # validation windows (evenly spaced over the held-out files)
    seed: int = 0
    num_threads: int | None = None  # torch CPU threads; None: every CPU this process may use
    log_every_s: float = 15.0
    bf16: bool = True  # bfloat16 autocast when training on CUDA (ignored on the CPU)
    tune_malloc: bool = True  # keep glibc from mmap-ing (and page-faulting) every big tensor
    # output
    checkpoint_dir: Path | None = None  # None: a temporary directory, removed after export
    # continue training this Hugging Face checkpoint (its tokenizer and shape; the n_*,
    # context_length and vocab_size options are ignored) instead of starting from scratch
    init_checkpoint: Path | None = None
    verify: bool = True
    export_dtype: str = "fp32"
    fuse: bool = False  # rebuild as codehone's fused decode graph (optimize.fuse)
    quantize_bits: int = 0  # 8 or 4: weight-only MatMulNBits (optimize.quantize); 0: none
    embed_checkpoint: bool = False  # copy the checkpoint into <out_dir>/checkpoint/
    # False: the manifest says fim.in_prompts = false, so the server prompts with the text
    # before the cursor only (for a model whose FIM completions measured worse than plain)
    fim_in_prompts: bool = True
    checkpoint_dtype: str = "fp16"  # of that copy: fp16 | bf16 | fp32

    def finish_steps(self) -> FinishSteps:
        """What happens after the export (step 7); raises ExportError on a bad option."""
        return FinishSteps(
            fuse=self.fuse,
            quantize_bits=self.quantize_bits,
            checkpoint_dtype=self.checkpoint_dtype if self.embed_checkpoint else None,
            fim_in_prompts=self.fim_in_prompts,
            verify=self.verify,
        )
