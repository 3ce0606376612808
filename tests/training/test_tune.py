"""codehone tune: the whole loop, and the .codehone.toml it writes only for a winner."""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from test_prepare import make_project

from codehone.cli import main
from codehone_training import tune as tune_module
from codehone_training.tune import (
    TuneConfig,
    beats,
    format_summary,
    tune,
    write_project_config,
)


def test_write_project_config_fresh_and_in_place(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    (project / ".codehone" / "model").mkdir(parents=True)
    path = write_project_config(project, project / ".codehone" / "model")
    assert path.read_text() == '[model]\npath = ".codehone/model"\n'
    assert tomllib.loads(path.read_text()) == {"model": {"path": ".codehone/model"}}

    path.write_text('# mine\n[model]\npath = "old"\n\n[completion]\nmax_new_tokens = 32\n')
    outside = tmp_path / 'elsewhere "x"'
    outside.mkdir()
    write_project_config(project, outside)
    parsed = tomllib.loads(path.read_text())
    assert parsed == {
        "model": {"path": str(outside.resolve())},
        "completion": {"max_new_tokens": 32},
    }
    assert path.read_text().startswith("# mine\n")
    assert [p.name for p in project.iterdir() if p.name.startswith(".codehone.toml")] == [
        ".codehone.toml"
    ]


def test_beats_is_exact_match_then_edit_similarity() -> None:
    def r(em: float, es: float) -> dict:
        return {"line_completion": {"exact_match": em, "edit_similarity": es}}

    assert beats(r(10, 50), r(20, 40))
    assert not beats(r(20, 40), r(10, 90))
    assert beats(r(10, 40), r(10, 41))
    assert not beats(r(10, 40), r(10, 40))


def test_tune_end_to_end(
    tmp_path: Path, tiny_checkpoint: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path / "proj")
    # the tiny random model's scores are noise: force the verdict (tested on its own above)
    monkeypatch.setattr(tune_module, "beats", lambda base, tuned: True)
    report = tune(
        TuneConfig(
            project_dir=project,
            base=tiny_checkpoint("gpt2"),
            max_steps=2,
            seq_len=64,
            batch_size=4,
            line_samples=4,
            bpb_max_tokens=500,
            learning_rate=1e-3,
        )
    )
    work = project / ".codehone"
    assert (work / "model" / "codehone.json").is_file()
    assert json.loads((work / "report.json").read_text())["beats_base"] is True
    assert "line exact match" in report["message"]
    config = project / ".codehone.toml"
    assert tomllib.loads(config.read_text()) == {"model": {"path": ".codehone/model"}}
    assert report["config_written"] == str(config)
    assert report["comparison"][0]["metric"] == "line exact match"
    manifest = json.loads((work / "model" / "codehone.json").read_text())
    assert manifest["provenance"]["steps"] == 2
    assert report["base_eval"]["kind"] == "checkpoint"
    assert report["model_eval"]["kind"] == "model_dir"
    dataset = json.loads((work / "data" / "dataset.json").read_text())
    epochs = TuneConfig(project_dir=project).epochs
    assert dataset["config"]["chunk_offsets"] == math.ceil(epochs)  # a cutting per epoch
    run = json.loads((work / "run" / "codehone_finetune.json").read_text())
    assert run["config"]["early_stopping_patience"] == 0  # the schedule runs to its end
    summary = format_summary(report)
    assert "line exact match" in summary and "line BLEU" in summary and "->" in summary
    assert "training: 2 steps in " in summary and "the whole loop" in summary
    assert f"{config}: written" in summary
    assert str(work / "report.json") in summary


def test_a_prefix_only_fused_base_gives_a_prefix_only_fused_model(
    tmp_path: Path,
    tiny_checkpoint: Callable[[str], Path],
    fused_model: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A base served prefix-only (fim.in_prompts false, like the default model) is tuned on
    plain-continuation data and its tuned model is served the same way, as a fused graph."""
    import shutil

    from codehone.core.model_dir import load_model_dir, with_fim_in_prompts, write_manifest

    base = tmp_path / "base"
    shutil.copytree(fused_model("gpt2"), base)
    shutil.copytree(tiny_checkpoint("gpt2"), base / "checkpoint")
    manifest = load_model_dir(base).manifest
    assert manifest.special_tokens.fim is not None and manifest.kv.shared_buffer
    write_manifest(base, with_fim_in_prompts(manifest, False))
    project = make_project(tmp_path / "proj")
    monkeypatch.setattr(tune_module, "beats", lambda base, tuned: True)
    tune(
        TuneConfig(
            project_dir=project,
            base=base,
            max_steps=2,
            seq_len=64,
            batch_size=4,
            line_samples=4,
            bpb_max_tokens=500,
        )
    )
    work = project / ".codehone"
    dataset = json.loads((work / "data" / "dataset.json").read_text())
    assert dataset["config"]["fim_rate"] == 0.0
    tuned = load_model_dir(work / "model").manifest
    assert tuned.special_tokens.fim is not None
    assert tuned.special_tokens.fim.in_prompts is False
    assert tuned.kv.shared_buffer
    assert not (work / "model.fused").exists()


def test_a_loser_leaves_the_project_config_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decision step with the heavy steps stubbed out."""
    from types import SimpleNamespace

    from codehone_training import finetune
    from codehone_training.evaluation import evaluate
    from codehone_training.export import checkpoint as export

    project = make_project(tmp_path / "proj")
    (project / ".codehone.toml").write_text('[model]\npath = "previous"\n')
    base = tmp_path / "base"
    monkeypatch.setattr(
        "codehone_training.base_model.resolve_model",
        lambda path, need_checkpoint=False: SimpleNamespace(
            path=Path(path), checkpoint=Path(path), model_dir=None, fim=None
        ),
    )
    monkeypatch.setattr(
        "codehone_training.data.prepare.prepare",
        lambda config, model: {
            "files": 3,
            "bytes": 300,
            "languages": {"python": 3},
            "splits": {n: {"files": 1, "bytes": 100} for n in ("train", "validation", "test")},
            "skipped": {},
        },
    )
    monkeypatch.setattr(
        finetune,
        "finetune",
        lambda config: SimpleNamespace(checkpoint=tmp_path / "ck", metrics={}, steps=1),
    )
    monkeypatch.setattr(
        export, "export_checkpoint", lambda *a, **k: SimpleNamespace(root=tmp_path / "model")
    )
    scores = {str(base): (30.0, 1.5), str(tmp_path / "model"): (25.0, 1.4)}

    def fake_evaluate(path: Path, config: object) -> dict:
        em, bpb = scores[str(path)]
        return {
            "model": str(path),
            "line_completion": {"exact_match": em, "edit_similarity": 50.0},
            "bits_per_byte": {"bits_per_byte": bpb},
        }

    monkeypatch.setattr(evaluate, "evaluate", fake_evaluate)
    report = tune(TuneConfig(project_dir=project, base=base))
    assert report["beats_base"] is False
    assert report["exact_match_delta"] == -5.0
    assert report["bits_per_byte_delta"] == pytest.approx(-0.1)
    assert "does not beat" in report["message"] and "-5.0 points" in report["message"]
    assert (project / ".codehone.toml").read_text() == '[model]\npath = "previous"\n'
    summary = format_summary(report).splitlines()
    assert "    line exact match          30.0% ->    25.0%  (-5.0)" in summary
    assert "    bits per byte             1.500 ->    1.400  (-0.100)" in summary
    assert any(".codehone.toml: not written: the tuned model does not beat" in s for s in summary)
    assert not any("BLEU" in line for line in summary)  # not measured: not shown


def test_cli_tune_prints_the_summary_and_writes_the_json_on_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    report = {
        "project": str(tmp_path),
        "base": "base",
        "model": "tuned",
        "config_written": None,
        "comparison": [
            {"metric": "line exact match", "base": 10.0, "model": 12.5, "delta": 2.5},
            {"metric": "line BLEU", "base": 20.0, "model": 30.0, "delta": 10.0},
        ],
        "finetune": {"steps": 40, "train_seconds": 300.0},
        "seconds": 420.0,
    }
    monkeypatch.setattr(tune_module, "tune", lambda config: report)
    assert main(["tune", str(tmp_path), "--json", str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    assert printed == format_summary(report) + "\n"  # the summary only, no JSON
    assert "training: 40 steps in 5.0 min (the whole loop 7.0 min)" in printed
    assert json.loads((tmp_path / "r.json").read_text()) == report
    # a --json whose folder does not exist is refused before any work
    monkeypatch.setattr(tune_module, "tune", lambda config: pytest.fail("it ran"))
    assert main(["tune", str(tmp_path), "--json", str(tmp_path / "no" / "r.json")]) == 2
    assert "its folder does not exist" in capsys.readouterr().err


def test_cli_prepare_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = make_project(tmp_path / "proj")
    out = tmp_path / "data"
    assert main(["prepare", str(project), "--out", str(out), "--languages", "python"]) == 0
    printed = capsys.readouterr().out
    assert "files:" in printed and "splits:" in printed and "python" in printed
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["prepare", str(empty), "--out", str(tmp_path / "d2")]) == 2
    assert "empty" in capsys.readouterr().err
    assert not (tmp_path / "d2").exists()


def test_the_work_dir_ignores_generated_files_but_not_check_cases(tmp_path: Path) -> None:
    """`git check-ignore` agrees: data and models are ignored, checks.toml is not."""
    import shutil
    import subprocess

    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    from codehone_training.tune import ignore_generated_files

    subprocess.run([git, "init", "-q", str(tmp_path)], check=True)
    work = tmp_path / ".codehone"
    ignore_generated_files(work)
    (work / "checks.toml").write_text("")
    (work / "model").mkdir()
    (work / "model" / "model.onnx").write_text("")
    ignored = subprocess.run(
        [
            git,
            "-C",
            str(tmp_path),
            "check-ignore",
            ".codehone/model/model.onnx",
            ".codehone/checks.toml",
        ],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert ignored == [".codehone/model/model.onnx"]


@pytest.mark.parametrize(
    "entry", ["run", "report.json", ".gitignore", "model", "data", "run/checkpoints"]
)
def test_tune_refuses_work_entries_that_are_links(tmp_path: Path, entry: str) -> None:
    """A link in .codehone (here to a folder or file outside the project) is refused before
    anything is written, and what it points at is left as it was."""
    from codehone.core.errors import TrainingError

    project = make_project(tmp_path / "proj")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("mine")
    (outside / "checkpoints").mkdir()
    (outside / "checkpoints" / "keep.bin").write_text("mine too")
    work = project / ".codehone"
    (work / entry).parent.mkdir(parents=True)
    target = outside / "precious.txt" if "." in entry else outside
    (work / entry).symlink_to(target)
    with pytest.raises(TrainingError, match="symbolic link") as raised:
        tune(TuneConfig(project_dir=project, base=tmp_path / "no-base"))
    assert str(work / entry) in str(raised.value)
    assert (outside / "precious.txt").read_text() == "mine"
    assert (outside / "checkpoints" / "keep.bin").read_text() == "mine too"
    top = entry.split("/")[0]
    assert sorted(p.name for p in work.iterdir()) == [top]  # not even .gitignore written


def test_tune_refuses_a_project_config_that_is_a_link(tmp_path: Path) -> None:
    """tune rewrites .codehone.toml keeping its content: a link there would copy the file it
    points at into the project (and tune would write where it points): refused up front."""
    from codehone.core.errors import TrainingError

    project = make_project(tmp_path / "proj")
    secret = tmp_path / "secret.toml"
    secret.write_text("token = 'hunter2'\n")
    (project / ".codehone.toml").symlink_to(secret)
    with pytest.raises(TrainingError, match="symbolic link"):
        tune(TuneConfig(project_dir=project, base=tmp_path / "no-base"))
    assert not (project / ".codehone").exists()
    with pytest.raises(TrainingError, match="symbolic link"):
        write_project_config(project, project / ".codehone" / "model")
    assert secret.read_text() == "token = 'hunter2'\n"
    assert (project / ".codehone.toml").is_symlink()


def test_tune_failing_before_training_leaves_no_work_dir(tmp_path: Path) -> None:
    """Bad input (here a base that does not exist) found after tune created .codehone: what
    it created goes again; what was there before (the user's check cases) stays."""
    from codehone.core.errors import CodehoneError

    project = make_project(tmp_path / "proj")
    with pytest.raises(CodehoneError):
        tune(TuneConfig(project_dir=project, base=tmp_path / "no-base"))
    assert not (project / ".codehone").exists()

    (project / ".codehone").mkdir()
    (project / ".codehone" / "checks.toml").write_text("# mine\n")
    with pytest.raises(CodehoneError):
        tune(TuneConfig(project_dir=project, base=tmp_path / "no-base"))
    assert [p.name for p in (project / ".codehone").iterdir()] == ["checks.toml"]


def test_tune_without_source_files_leaves_no_work_dir(
    tmp_path: Path, tiny_checkpoint: Callable[[str], Path]
) -> None:
    from codehone.core.errors import TrainingError

    project = tmp_path / "proj"
    project.mkdir()
    (project / "notes.txt").write_text("no code here\n")
    with pytest.raises(TrainingError, match="no usable source files"):
        tune(TuneConfig(project_dir=project, base=tiny_checkpoint("gpt2")))
    assert sorted(p.name for p in project.iterdir()) == ["notes.txt"]


def test_tune_refuses_a_work_dir_that_is_a_link(tmp_path: Path) -> None:
    from codehone.core.errors import TrainingError

    project = make_project(tmp_path / "proj")
    (tmp_path / "elsewhere").mkdir()
    (project / ".codehone").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(TrainingError, match="symbolic link"):
        tune(TuneConfig(project_dir=project, base=tmp_path / "no-base"))
    assert list((tmp_path / "elsewhere").iterdir()) == []
