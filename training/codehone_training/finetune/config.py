"""The options of one fine-tuning run, what it returns, and what a resumed run must share
with the run it resumes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from codehone.core.errors import TrainingError

METHODS = ("full", "freeze", "lora")
# ``auto`` (the default) trains LoRA adapters on a base of this many parameters or more, and
# every weight below: on SmolLM2-135M LoRA gained +5.0 points of line exact match in 30
# minutes on 2 cores where the frozen-layer run lost 0.3, and on the 1.7M-parameter default
# model full fine-tuning is what the learning-rate defaults and the figures were measured with.
AUTO_LORA_PARAMETERS = 100e6
DEFAULT_LR = {"full": 2e-4, "freeze": 3e-4, "lora": 2e-3}
# Small models want much larger steps than the usual 2e-4 of 0.1-1B code models: fine-tuning
# the 1.7M-parameter default model for 3 epochs on a project it never saw reached validation
# loss 2.94 at 3e-3, 3.05 at 1e-3 and 3.29 at 2e-4 (line exact match 12.0, 11.3, 10.0; base
# 9.0). Full and frozen-layer fine-tuning of models under these sizes multiply the default
# by this much.
SMALL_MODEL_LR_SCALE = ((10e6, 15.0), (100e6, 5.0))
CONFIG_FILE = "codehone_finetune.json"


@dataclass
class FinetuneConfig:
    """One fine-tuning run. Stored in the run directory and in every checkpoint."""

    base: Path
    data_dir: Path
    out_dir: Path
    method: str = "auto"  # auto | full | freeze | lora (see AUTO_LORA_PARAMETERS)
    trainable_layers: int = 2  # freeze: how many top transformer blocks train
    lora_rank: int = 16
    lora_alpha: int = 32
    # dropout's random masks took a quarter of a LoRA step on the CPU (SmolLM2-135M), and runs
    # of a few epochs over one project gain nothing from it
    lora_dropout: float = 0.0
    learning_rate: float | None = None  # None: DEFAULT_LR[method]
    epochs: float = 3.0
    max_steps: int | None = None
    minutes: float | None = None  # wall-clock budget of the training loop
    batch_size: int = 8  # per device
    grad_accum: int = 1
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    eval_steps: int = 50
    eval_rows: int = 256  # validation rows scored at each evaluation (evenly spaced)
    early_stopping_patience: int = 4
    # What RUN/model holds: the checkpoint with the best validation loss, or the end of the
    # schedule (no early stopping then). Loss is not what completion is scored on: past its
    # minimum, greedy line exact match can still rise (see TuneConfig.patience).
    keep: str = "best"  # best | last
    gradient_checkpointing: bool = False
    seq_len: int | None = None  # None: min(the model's context, the data set's max_seq_len)
    precision: str = "auto"  # auto (bf16 or fp16 on CUDA, fp32 on the CPU) | fp32 | bf16 | fp16
    seed: int = 0
    resume: bool = True
    logging_steps: int = 10
    num_threads: int | None = None  # torch CPU threads (None: torch's default)
    eval_base: bool = True  # measure the validation loss before training too
    save_model: bool = True  # write RUN_DIR/model (search trials skip it)

    def resolved(self, parameters: int) -> FinetuneConfig:
        """This run with ``auto`` made the method it stands for on a base of ``parameters``."""
        if self.method != "auto":
            return self
        method = "lora" if parameters >= AUTO_LORA_PARAMETERS else "full"
        return replace(self, method=method)

    def lr(self, parameters: int | None = None) -> float:
        """The learning rate: the one given, else the method's default for a model of
        ``parameters`` parameters (see SMALL_MODEL_LR_SCALE)."""
        if self.learning_rate is not None:
            return self.learning_rate
        rate = DEFAULT_LR[self.method]
        if self.method != "lora" and parameters is not None:
            for size, scale in SMALL_MODEL_LR_SCALE:
                if parameters < size:
                    return rate * scale
        return rate

    def to_json(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class FinetuneResult:
    checkpoint: Path  # RUN_DIR/model: merged weights, tokenizer, model card
    metrics: dict[str, float]
    steps: int


# What a resumed run must share with the run that wrote the checkpoints: the weights' shape
# (method, layers, adapters), the data and the optimizer's schedule.
RESUME_KEYS = (
    "base", "data_dir", "method", "trainable_layers", "lora_rank", "lora_alpha",
    "learning_rate", "seq_len", "batch_size", "grad_accum", "seed",
)  # fmt: skip


def check_resumable(stored: dict[str, Any], config: FinetuneConfig, out_dir: Path) -> None:
    """Refuse (TrainingError) to resume checkpoints written by a run with other options."""
    current = config.to_json()
    differ = [
        f"{key} {stored.get(key)!r} then, {current[key]!r} now"
        for key in RESUME_KEYS
        if stored.get(key) != current[key]
    ]
    if differ:
        raise TrainingError(
            f"{out_dir} holds the checkpoints of a run with other options ({'; '.join(differ)}):"
            " resume it with the same options, or start over with --no-resume or another --out"
        )
