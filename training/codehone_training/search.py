"""Hyperparameter search over short fine-tuning trials: ``codehone search``.

Optuna's TPE sampler (seeded) proposes a method (full, freeze, LoRA), a learning rate, a
number of epochs, a LoRA rank or a number of trainable layers; each trial fine-tunes for at
most ``trial_steps`` steps and is scored by its best validation loss. The study lives in
``OUT/study.db`` (SQLite), so an interrupted search resumes; the best setting is printed and
saved to ``OUT/best.json`` with the ``codehone finetune`` options that reproduce it.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codehone.core.errors import TrainingError
from codehone_training.base_model import resolve_model
from codehone_training.finetune import METHODS, FinetuneConfig, finetune

log = logging.getLogger("codehone.search")

LORA_RANKS = (4, 8, 16, 32, 64)


@dataclass
class SearchConfig:
    base: Path
    data_dir: Path
    out_dir: Path
    trials: int = 12
    trial_steps: int = 60  # the most steps one trial trains
    methods: tuple[str, ...] = METHODS
    lr_range: tuple[float, float] = (1e-5, 1e-2)
    epochs_range: tuple[float, float] = (1.0, 10.0)
    batch_size: int = 8
    seed: int = 0


def _num_layers(checkpoint: Path) -> int:
    config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    return int(config.get("num_hidden_layers") or config.get("n_layer") or 1)


def suggest(trial: Any, config: SearchConfig, n_layers: int) -> dict[str, Any]:
    """One trial's hyperparameters (conditional ones only for their method)."""
    params: dict[str, Any] = {
        "method": trial.suggest_categorical("method", list(config.methods)),
        "learning_rate": trial.suggest_float("learning_rate", *config.lr_range, log=True),
        "epochs": trial.suggest_float("epochs", *config.epochs_range),
    }
    if params["method"] == "lora":
        params["lora_rank"] = trial.suggest_categorical("lora_rank", list(LORA_RANKS))
    if params["method"] == "freeze":
        params["trainable_layers"] = trial.suggest_int("trainable_layers", 1, n_layers)
    return params


def finetune_options(params: dict[str, Any]) -> str:
    options = [
        f"--method {params['method']}",
        f"--lr {params['learning_rate']:.3g}",
        f"--epochs {params['epochs']:.2f}",
    ]
    if "lora_rank" in params:
        options.append(f"--lora-rank {params['lora_rank']}")
    if "trainable_layers" in params:
        options.append(f"--trainable-layers {params['trainable_layers']}")
    return " ".join(options)


def search(config: SearchConfig) -> dict[str, Any]:
    import optuna

    unknown = [m for m in config.methods if m not in METHODS]
    if unknown or not config.methods:
        raise TrainingError(f"--methods must be among {', '.join(METHODS)}")
    base = resolve_model(config.base, need_checkpoint=True)
    assert base.checkpoint is not None
    n_layers = _num_layers(base.checkpoint)
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="codehone-search",
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=config.seed),
        storage=f"sqlite:///{(out_dir / 'study.db').resolve()}",
        load_if_exists=True,
    )

    def objective(trial: Any) -> float:
        params = suggest(trial, config, n_layers)
        run_dir = out_dir / f"trial-{trial.number}"
        log.info("trial %d: %s", trial.number, finetune_options(params))
        ft = FinetuneConfig(
            base=config.base,
            data_dir=config.data_dir,
            out_dir=run_dir,
            method=params["method"],
            learning_rate=params["learning_rate"],
            epochs=params["epochs"],
            lora_rank=params.get("lora_rank", 16),
            lora_alpha=2 * params.get("lora_rank", 16),
            trainable_layers=params.get("trainable_layers", 1),
            max_steps=config.trial_steps,
            eval_steps=max(1, config.trial_steps // 3),
            early_stopping_patience=0,
            batch_size=config.batch_size,
            seed=config.seed,
            resume=False,
            eval_base=False,
            save_model=False,
        )
        try:
            result = finetune(ft)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
        loss = result.metrics["val_loss"]
        log.info("trial %d: validation loss %.4f", trial.number, loss)
        return loss if math.isfinite(loss) else float("inf")

    remaining = config.trials - len(study.trials)
    if remaining > 0:
        study.optimize(objective, n_trials=remaining)
    best = study.best_trial
    best_params = dict(best.params)
    report = {
        "best_val_loss": best.value,
        "best_params": best_params,
        "finetune_options": finetune_options(best_params),
        "trials": [
            {"number": t.number, "val_loss": t.value, "params": t.params, "state": t.state.name}
            for t in study.trials
        ],
    }
    (out_dir / "best.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    log.info(
        "best of %d trials: validation loss %.4f with %s",
        len(study.trials),
        best.value,
        report["finetune_options"],
    )
    return report
