"""codehone finetune: a few steps lower the loss; freeze, LoRA (merge + export), resume."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from test_prepare import make_project

from codehone.core.errors import TrainingError
from codehone_training.base_model import resolve_model
from codehone_training.data.prepare import prepare
from codehone_training.data.project import PrepareConfig
from codehone_training.finetune import FinetuneConfig, finetune
from codehone_training.finetune.model import add_lora


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Callable) -> Path:
    root = tmp_path_factory.mktemp("finetune")
    project = make_project(root / "project")
    out = root / "data"
    prepare(PrepareConfig(project, out), resolve_model(tiny_checkpoint("gpt2")))
    return out


def _config(base: Path, data: Path, out: Path, **changes: object) -> FinetuneConfig:
    defaults: dict[str, object] = dict(
        method="full",
        learning_rate=3e-3,
        max_steps=6,
        batch_size=4,
        eval_steps=3,
        eval_rows=8,
        seq_len=128,
        logging_steps=3,
    )
    defaults.update(changes)
    return FinetuneConfig(base=base, data_dir=data, out_dir=out, **defaults)  # type: ignore[arg-type]


def _weights(checkpoint: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(checkpoint / "model.safetensors"))


def test_a_few_steps_lower_the_loss(
    tmp_path: Path, data_dir: Path, tiny_checkpoint: Callable[[str], Path]
) -> None:
    result = finetune(_config(tiny_checkpoint("gpt2"), data_dir, tmp_path / "run"))
    metrics = result.metrics
    assert metrics["val_loss"] < metrics["base_val_loss"] - 0.05
    model = result.checkpoint
    names = {p.name for p in model.iterdir()}
    assert {"model.safetensors", "tokenizer.json", "config.json", "README.md"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth"))]  # safetensors only
    card = (model / "README.md").read_text()
    assert "base_model:" in card and "learning_rate" in card and "val_loss" in card
    carried = json.loads((model / "codehone_finetune.json").read_text())
    assert carried["config"]["method"] == "full" and carried["plan"]["max_steps"] == 6
    for checkpoint in (tmp_path / "run" / "checkpoints").glob("checkpoint-*"):
        assert (checkpoint / "codehone_finetune.json").is_file()
        assert (checkpoint / "model.safetensors").is_file()


def test_freeze_trains_only_the_top_layers(
    tmp_path: Path, data_dir: Path, tiny_checkpoint: Callable[[str], Path]
) -> None:
    base = tiny_checkpoint("gpt2")
    config = _config(base, data_dir, tmp_path / "run", method="freeze", trainable_layers=1)
    config.max_steps, config.eval_steps = 2, 2
    result = finetune(config)
    before, after = _weights(base), _weights(result.checkpoint)
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    assert changed, "nothing trained"
    assert all(k.startswith(("transformer.h.1.", "transformer.ln_f.")) for k in changed)
    assert "transformer.wte.weight" not in changed


def test_lora_merge_then_export_equals_the_merged_model(
    tmp_path: Path, tiny_checkpoint: Callable[[str], Path]
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from codehone.core.engine.session import Engine
    from codehone.core.model_dir import load_model_dir
    from codehone.core.providers import choose_provider
    from codehone_training.export.checkpoint import export_checkpoint

    base = tiny_checkpoint("gpt2")
    model = AutoModelForCausalLM.from_pretrained(base, use_safetensors=True)
    config = FinetuneConfig(
        base=base, data_dir=tmp_path, out_dir=tmp_path, method="lora", lora_rank=4
    )
    peft_model = add_lora(model, config)
    torch.manual_seed(0)
    with torch.no_grad():  # stand-in for training: LoRA starts as a no-op (B = 0)
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    peft_model.eval()
    ids = torch.tensor([[5, 17, 42, 99, 7, 300, 12]])
    with torch.no_grad():
        adapted = peft_model(input_ids=ids).logits[0].numpy()
        merged = peft_model.merge_and_unload()
        merged_logits = merged(input_ids=ids).logits[0].numpy()
        plain = AutoModelForCausalLM.from_pretrained(base, use_safetensors=True)
        base_logits = plain(input_ids=ids).logits[0].numpy()
    assert np.abs(adapted - base_logits).max() > 1e-2  # the adapters do change the model
    np.testing.assert_allclose(merged_logits, adapted, atol=1e-4)

    checkpoint = tmp_path / "merged"
    merged.save_pretrained(checkpoint, safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(checkpoint)
    model_dir = export_checkpoint(checkpoint, tmp_path / "model")
    engine = Engine(load_model_dir(model_dir.root), choose_provider("cpu"))
    onnx_logits, _ = engine.forward(ids[0].tolist(), engine.empty_cache(), all_logits=True)
    np.testing.assert_allclose(onnx_logits, merged_logits, atol=1e-3)


def test_lora_run_saves_a_merged_plain_checkpoint(
    tmp_path: Path, data_dir: Path, tiny_checkpoint: Callable[[str], Path]
) -> None:
    base = tiny_checkpoint("gpt2")
    config = _config(base, data_dir, tmp_path / "run", method="lora", lora_rank=4)
    config.max_steps, config.eval_steps, config.learning_rate = 4, 2, 1e-2
    result = finetune(config)
    assert result.metrics["val_loss"] < result.metrics["base_val_loss"]
    after = _weights(result.checkpoint)
    assert not [k for k in after if "lora" in k]  # merged: a plain model of the base's shape
    assert set(after) == set(_weights(base))


def test_resume_after_an_interruption(
    tmp_path: Path, data_dir: Path, tiny_checkpoint: Callable[[str], Path], caplog
) -> None:
    base = tiny_checkpoint("gpt2")
    run = tmp_path / "run"
    config = _config(base, data_dir, run, max_steps=4, eval_steps=2, early_stopping_patience=0)
    finetune(config)
    # the run is "interrupted" after its step-2 checkpoint: later state is lost
    shutil.rmtree(run / "checkpoints" / "checkpoint-4")
    shutil.rmtree(run / "model")
    caplog.set_level("INFO", logger="codehone.finetune")
    result = finetune(config)
    assert "resuming from" in caplog.text and "checkpoint-2" in caplog.text
    assert result.steps == 4
    assert (run / "model" / "model.safetensors").is_file()
    # checkpoints of another kind of run (LoRA adapters, not full weights) are never loaded
    shutil.rmtree(run / "checkpoints" / "checkpoint-4")
    other = _config(base, data_dir, run, max_steps=4, eval_steps=2, method="lora", lora_rank=4)
    with pytest.raises(TrainingError, match=r"method 'full' then, 'lora' now.*--no-resume"):
        finetune(other)
    assert (run / "checkpoints" / "checkpoint-2").is_dir()  # nothing was lost


def test_bad_method_and_base(tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(TrainingError, match="unknown method"):
        finetune(FinetuneConfig(tmp_path, data_dir, tmp_path / "run", method="magic"))
    with pytest.raises(Exception, match="neither a codehone model directory"):
        finetune(FinetuneConfig(tmp_path, data_dir, tmp_path / "run"))


def test_search_runs_tpe_trials_and_saves_the_best(
    tmp_path: Path, data_dir: Path, tiny_checkpoint: Callable[[str], Path]
) -> None:
    from codehone_training.search import SearchConfig, search

    out = tmp_path / "search"
    config = SearchConfig(
        base=tiny_checkpoint("gpt2"),
        data_dir=data_dir,
        out_dir=out,
        trials=2,
        trial_steps=2,
        methods=("lora", "freeze"),
        batch_size=4,
    )
    report = search(config)
    assert len(report["trials"]) == 2
    assert report["best_params"]["method"] in ("lora", "freeze")
    assert report["finetune_options"].startswith("--method ")
    saved = json.loads((out / "best.json").read_text())
    assert saved["best_val_loss"] == report["best_val_loss"]
    assert not list(out.glob("trial-*"))  # trial runs are cleaned up
    config.trials = 3  # the study is stored: a rerun adds only the missing trial
    assert len(search(config)["trials"]) == 3


def test_a_model_directory_leads_to_its_checkpoint(
    tmp_path: Path, tiny_model_dir: Path, tiny_checkpoint: Callable[[str], Path]
) -> None:
    from codehone.core.errors import CodehoneError

    ref = resolve_model(tiny_model_dir, need_checkpoint=True)
    assert ref.kind == "model_dir" and ref.checkpoint == tiny_checkpoint("gpt2").resolve()
    assert ref.fim is not None and ref.context_length == 256
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    manifest = json.loads((copy / "codehone.json").read_text())
    manifest["provenance"]["base_checkpoint"] = str(tmp_path / "gone")
    (copy / "codehone.json").write_text(json.dumps(manifest))
    assert resolve_model(copy).checkpoint is None
    with pytest.raises(CodehoneError, match="carries no PyTorch checkpoint"):
        resolve_model(copy, need_checkpoint=True)
    shutil.copytree(tiny_checkpoint("gpt2"), copy / "checkpoint")
    assert resolve_model(copy, need_checkpoint=True).checkpoint == (copy / "checkpoint").resolve()


def test_default_learning_rate_grows_for_small_models() -> None:
    from codehone_training.finetune.config import DEFAULT_LR

    def lr(method: str, parameters: int | None, given: float | None = None) -> float:
        config = FinetuneConfig(
            base=Path("b"),
            data_dir=Path("d"),
            out_dir=Path("o"),
            method=method,
            learning_rate=given,
        )
        return config.lr(parameters)

    assert lr("full", 500_000_000) == DEFAULT_LR["full"]
    assert lr("full", 50_000_000) == pytest.approx(5 * DEFAULT_LR["full"])
    assert lr("full", 1_700_000) == pytest.approx(3e-3)  # the default model's size
    assert lr("freeze", 1_700_000) > DEFAULT_LR["freeze"]
    assert lr("lora", 1_700_000) == DEFAULT_LR["lora"]  # adapters start from zero: no scaling
    assert lr("full", 1_700_000, given=1e-5) == 1e-5  # a given rate always wins
    assert lr("full", None) == DEFAULT_LR["full"]


def test_an_epoch_is_one_cutting_of_the_train_split(
    tmp_path: Path, data_dir: Path, tiny_checkpoint: Callable[[str], Path]
) -> None:
    import math

    from codehone_training.data.packing import load_packed, pack_dataset

    base = tiny_checkpoint("gpt2")
    config = _config(base, data_dir, tmp_path / "run", max_steps=None, epochs=0.5)
    config.eval_base, config.save_model = False, False
    result = finetune(config)
    packed = pack_dataset(data_dir, resolve_model(base, need_checkpoint=True), seq_len=128)
    train, _, meta = load_packed(packed)
    cuttings = meta["splits"]["train"]["cuttings"]
    assert cuttings == PrepareConfig(Path("p"), Path("o")).chunk_offsets > 1
    plan = json.loads((tmp_path / "run" / "codehone_finetune.json").read_text())["plan"]
    assert plan["steps_per_epoch"] == math.ceil(math.ceil(len(train) / cuttings) / 4)
    assert result.steps == math.ceil(plan["steps_per_epoch"] * 0.5)


def test_keep_last_saves_the_end_of_the_schedule(
    tmp_path: Path, data_dir: Path, tiny_checkpoint: Callable[[str], Path]
) -> None:
    base = tiny_checkpoint("gpt2")
    config = _config(base, data_dir, tmp_path / "run", keep="last", early_stopping_patience=0)
    config.max_steps, config.eval_steps, config.eval_base = 5, 2, False
    result = finetune(config)
    last = tmp_path / "run" / "checkpoints" / "checkpoint-5"
    saved, at_the_end = _weights(result.checkpoint), _weights(last)
    assert all(np.array_equal(saved[k], at_the_end[k]) for k in at_the_end)
    assert np.isfinite(result.metrics["best_val_loss"])  # reported beside the kept model's
    with pytest.raises(TrainingError, match="patience 0"):
        finetune(_config(base, data_dir, tmp_path / "bad", keep="last"))


def test_the_plan_fits_the_wall_clock_budget() -> None:
    from codehone_training.finetune.plan import plan_steps

    config = FinetuneConfig(
        base=Path("b"),
        data_dir=Path("d"),
        out_dir=Path("o"),
        epochs=10,
        batch_size=8,
        eval_steps=50,
        minutes=1.0,
    )
    by_epochs = plan_steps(config, train_rows=800, eval_rows=80, world_size=1, probe=None)
    assert by_epochs["max_steps"] == 1000 and by_epochs["steps_per_epoch"] == 100
    # 0.5 s a step, 0.1 s an evaluation batch (10 of them every 50 steps): 54 s minus the
    # first evaluation (1 s) afford 53 / (0.5 + 0.02) = 101 steps
    capped = plan_steps(config, train_rows=800, eval_rows=80, world_size=1, probe=(0.5, 0.1))
    assert capped["max_steps"] == 101 and "budget" in capped["reason"]
    two_gpus = plan_steps(config, train_rows=800, eval_rows=80, world_size=2, probe=None)
    assert two_gpus["steps_per_epoch"] == 50


def test_finetune_never_deletes_through_a_linked_run_dir(tmp_path: Path) -> None:
    """`codehone finetune --out LINK` (or a RUN/checkpoints link) is refused: a fresh run
    deletes RUN/checkpoints, which must not be another directory's."""
    outside = tmp_path / "outside"
    (outside / "checkpoints").mkdir(parents=True)
    (outside / "checkpoints" / "keep.bin").write_text("mine")
    run = tmp_path / "run"
    run.symlink_to(outside)
    config = FinetuneConfig(base=tmp_path / "no-base", data_dir=tmp_path / "d", out_dir=run)
    with pytest.raises(TrainingError, match="symbolic link"):
        finetune(config)
    run.unlink()
    run.mkdir()
    (run / "checkpoints").symlink_to(outside / "checkpoints")
    with pytest.raises(TrainingError, match="symbolic link"):
        finetune(config)
    assert (outside / "checkpoints" / "keep.bin").read_text() == "mine"
    (run / "checkpoints").unlink()
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "packed").symlink_to(outside)  # packing would write there
    with pytest.raises(TrainingError, match="symbolic link") as raised:
        finetune(config)
    assert "packed" in str(raised.value)
    assert sorted(p.name for p in outside.iterdir()) == ["checkpoints"]


def test_batches_are_split_to_fit_the_memory() -> None:
    from types import SimpleNamespace

    from codehone_training.finetune.plan import fit_batch_to_memory

    smollm2 = SimpleNamespace(
        num_hidden_layers=30, hidden_size=576, intermediate_size=1536, vocab_size=49152
    )
    gib = 1 << 30

    def fit(method: str, memory: int) -> tuple[int, int]:
        config = FinetuneConfig(
            base=Path("b"), data_dir=Path("d"), out_dir=Path("o"), method=method, batch_size=8
        )
        return fit_batch_to_memory(config, smollm2, 1024, memory)

    # LoRA and full fine-tuning keep every block's activations (8 rows of 1,024 tokens took
    # 14.6 GB and were killed on a 24 GB machine): micro-batches, the same 8 rows per step
    assert fit("lora", 24 * gib) == (2, 4)
    assert fit("full", 24 * gib) == (2, 4)
    assert fit("freeze", 24 * gib) == (8, 1)  # only two blocks keep theirs
    assert fit("lora", 1024 * gib) == (8, 1)
    assert fit("lora", 1) == (1, 8)


def test_a_run_in_micro_batches_trains_the_same_rows_per_step(
    tmp_path: Path,
    data_dir: Path,
    tiny_checkpoint: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from codehone_training.finetune import train

    monkeypatch.setattr(train, "device_memory_bytes", lambda: 1)  # nothing fits: rows of 1
    with caplog.at_level("INFO", logger="codehone.finetune"):
        result = finetune(_config(tiny_checkpoint("gpt2"), data_dir, tmp_path / "run"))
    assert "batches of 4 rows as 4 micro-batches of 1" in caplog.text
    assert result.metrics["val_loss"] < result.metrics["base_val_loss"]
    carried = json.loads((result.checkpoint / "codehone_finetune.json").read_text())
    assert carried["config"]["batch_size"] == 4  # what the user asked for, as run


def test_auto_precision_on_the_cpu_is_bf16_where_the_cpu_multiplies_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    from codehone_training.finetune import plan

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(plan, "cpu_has_bf16", lambda: True)
    assert plan.precision_flags("auto") == {"bf16": True, "fp16": False}
    assert plan.precision_flags("fp32") == {"bf16": False, "fp16": False}
    monkeypatch.setattr(plan, "cpu_has_bf16", lambda: False)
    assert plan.precision_flags("auto") == {"bf16": False, "fp16": False}
    assert plan.precision_flags("bf16") == {"bf16": True, "fp16": False}  # asked for: slow, works
    with pytest.raises(TrainingError, match="fp16 needs a CUDA GPU"):
        plan.precision_flags("fp16")


def test_a_bf16_run_on_the_cpu_lowers_the_loss_and_says_so(
    tmp_path: Path, data_dir: Path, tiny_checkpoint: Callable[[str], Path]
) -> None:
    config = _config(tiny_checkpoint("gpt2"), data_dir, tmp_path / "run", precision="bf16")
    result = finetune(config)
    assert result.metrics["val_loss"] < result.metrics["base_val_loss"] - 0.05
    assert "| precision | bf16 |" in (result.checkpoint / "README.md").read_text()
    weights = _weights(result.checkpoint)  # the master weights stay float32
    assert {str(w.dtype) for w in weights.values()} == {"float32"}


def test_method_auto_is_lora_for_a_base_of_100m_parameters_and_full_below(
    tmp_path: Path,
    data_dir: Path,
    tiny_checkpoint: Callable[[str], Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from codehone_training.finetune.model import checkpoint_parameters

    config = FinetuneConfig(base=Path("b"), data_dir=Path("d"), out_dir=Path("o"))
    assert config.method == "auto"
    assert config.resolved(135_000_000).method == "lora"
    assert config.resolved(1_700_000).method == "full"
    assert (
        FinetuneConfig(Path("b"), Path("d"), Path("o"), method="freeze")
        .resolved(135_000_000)
        .method
        == "freeze"
    )  # a method asked for is kept
    checkpoint = tiny_checkpoint("gpt2")
    weights = _weights(checkpoint)
    assert checkpoint_parameters(checkpoint) == sum(w.size for w in weights.values())
    with caplog.at_level("INFO", logger="codehone.finetune"):
        result = finetune(_config(checkpoint, data_dir, tmp_path / "run", method="auto"))
    assert "method auto: full for this base" in caplog.text  # a tiny model
    carried = json.loads((result.checkpoint / "codehone_finetune.json").read_text())
    assert carried["config"]["method"] == "full"
