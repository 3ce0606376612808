"""Pretraining of the default model: corpus filters, fill-in-the-middle, training, the build.

Everything here uses hand-made corpora and tiny models so the whole file runs in seconds.
"""

from __future__ import annotations

import math
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from codehone.core import default_model
from codehone.core.errors import TrainingError
from codehone.core.fim import fim_text
from codehone.core.model_dir import FimTokens, load_model_dir
from codehone_training import fallback_model
from codehone_training.data.corpus import (
    HELDOUT_PACKAGES,
    TRAIN_PACKAGES,
    cap_files,
    collect_corpus_files,
    package_dirs,
)
from codehone_training.data.tokenizer_train import (
    EOS_TOKEN,
    FIM_MIDDLE_TOKEN,
    FIM_PREFIX_TOKEN,
    FIM_SUFFIX_TOKEN,
    train_bpe_tokenizer,
)
from codehone_training.pretrain import PretrainConfig
from codehone_training.pretrain.data import (
    TokenizedCorpus,
    apply_fim,
    eval_windows,
    fim_in_place,
    fim_tokens_of,
    hold_out_files,
    sample_windows,
    split_for_fim,
    split_line_for_fim,
    token_stream,
    tokenizer_texts,
)
from codehone_training.pretrain.model import build_model, lm_loss, middle_only_labels
from codehone_training.pretrain.train import train_loop

SOURCE = '''\
def add(a, b):
    """Return the sum of a and b."""
    return a + b


class Counter:
    def __init__(self, start=0):
        self.value = start

    def increment(self, step=1):
        self.value += step
        return self.value


def fibonacci(n):
    if n < 2:
        return n
    return fibonacci(n - 1) + fibonacci(n - 2)
'''


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _tiny_corpus(root: Path, copies: int = 6) -> Path:
    for i in range(copies):
        text = SOURCE.replace("add", f"add{i}").replace("Counter", f"Counter{i}")
        _write(root / f"mod{i}.py", text * 3)
    return root


def _tiny_config(tmp_path: Path, **overrides: object) -> PretrainConfig:
    values: dict = {
        "out_dir": tmp_path / "model",
        "corpus_dirs": [tmp_path / "corpus"],
        "n_layer": 1,
        "n_embd": 32,
        "n_head": 2,
        "context_length": 64,
        "vocab_size": 300,
        "batch_size": 8,
        "lr": 1e-2,
        "warmup_steps": 2,
        "minutes": 5.0,
        "max_steps": 4,
        "eval_samples": 8,
        "num_threads": 1,
    }
    values.update(overrides)
    return PretrainConfig(**values)


# Hand-made ids for the layout tests: prefix 1, suffix 2, middle 3 (EOS 0).
FIM = FimTokens("starcoder", FIM_PREFIX_TOKEN, FIM_SUFFIX_TOKEN, FIM_MIDDLE_TOKEN, 1, 2, 3)


@pytest.fixture(scope="module")
def tokenizer_and_ids(tmp_path_factory: pytest.TempPathFactory):
    """(tokenizer, its FIM tokens, its EOS id) of a BPE trained on SOURCE."""
    from tokenizers import Tokenizer

    out = tmp_path_factory.mktemp("tok")
    path = train_bpe_tokenizer([SOURCE] * 4, 300, out)
    tokenizer = Tokenizer.from_file(str(path))
    return tokenizer, fim_tokens_of(tokenizer), tokenizer.get_vocab()[EOS_TOKEN]


# -- corpus -----------------------------------------------------------------------------------


def test_corpus_keeps_only_small_utf8_python_files_outside_skipped_dirs(tmp_path: Path) -> None:
    root = tmp_path / "src"
    keep = [
        _write(root / "a.py", "x = 1\n"),
        _write(root / "pkg" / "b.py", "y = 2\n"),
        _write(root / "pkg" / "sub" / "c.py", "z = 3\n"),
    ]
    _write(root / "tests" / "test_a.py", "assert True\n")
    _write(root / "pkg" / "test" / "t.py", "assert True\n")
    _write(root / "__pycache__" / "a.py", "x = 1\n")
    _write(root / "site-packages" / "dep.py", "x = 1\n")
    _write(root / "idlelib" / "i.py", "x = 1\n")
    _write(root / "lib2to3" / "l.py", "x = 1\n")
    _write(root / "latin1.py", b"# caf\xe9\nx = 1\n")  # not UTF-8
    _write(root / "big.py", "x = 1\n" * 200)  # 1200 bytes, over the limit below
    _write(root / "empty.py", "")
    _write(root / "notes.txt", "not python\n")

    files = collect_corpus_files([root], max_file_bytes=1000)

    assert files == keep
    assert collect_corpus_files([root], max_file_bytes=1000) == files  # deterministic
    assert root / "big.py" in collect_corpus_files([root], max_file_bytes=10_000)


def test_corpus_extra_dirs_are_appended_once(tmp_path: Path) -> None:
    a = [_write(tmp_path / "a" / "one.py", "x = 1\n")]
    b = [_write(tmp_path / "b" / "two.py", "y = 2\n")]
    files = collect_corpus_files([tmp_path / "a"], extra_dirs=[tmp_path / "b", tmp_path / "a"])
    assert files == a + b


def test_corpus_skips_vendored_copies_generated_modules_and_held_out_packages(
    tmp_path: Path,
) -> None:
    root = tmp_path / "site"
    keep = [_write(root / "pkg" / "core.py", "x = 1\n")]
    _write(root / "pkg" / "_vendor" / "six.py", "x = 1\n")
    _write(root / "pkg" / "descriptor_pb2.py", "x = 1\n")
    _write(root / "optuna" / "study.py", "x = 1\n")
    _write(root / "pkg" / "pathspec" / "copy.py", "x = 1\n")
    assert collect_corpus_files([root]) == keep
    # a held-out package given as a root is refused, not silently trained on
    with pytest.raises(TrainingError, match="held-out"):
        collect_corpus_files([root / "optuna"])
    # ... unless the caller clears the hold-out explicitly
    assert collect_corpus_files([root / "optuna"], exclude=()) == [root / "optuna" / "study.py"]


def test_package_dirs_refuse_held_out_packages_and_skip_missing_ones(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "requests").mkdir(parents=True)
    (site / "optuna").mkdir()
    assert package_dirs(["requests", "absent", "requests"], site) == [site / "requests"]
    with pytest.raises(TrainingError, match="optuna"):
        package_dirs(["requests", "optuna"], site)
    assert not set(TRAIN_PACKAGES) & set(HELDOUT_PACKAGES)
    assert {"optuna", "pathspec"} <= set(HELDOUT_PACKAGES)


def test_a_capped_package_keeps_a_deterministic_spread_of_files(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    files = [_write(root / f"m{i:02d}.py", "x = 1\n" * 10) for i in range(40)]  # 60 B each
    kept = cap_files(files, root, 600)
    assert len(kept) == 10 and kept == sorted(kept)
    assert cap_files(files, root, 600) == kept
    assert kept != files[:10]  # not just the first files in path order
    assert cap_files(files, root, 10_000) == files
    capped = collect_corpus_files([root], max_root_bytes={root: 600})
    assert capped == kept


def test_tokenizer_texts_are_an_even_subset_under_the_limit() -> None:
    texts = [f"{i:03d}" * 10 for i in range(100)]  # 30 characters each
    assert tokenizer_texts(texts, 0) == texts
    assert tokenizer_texts(texts, 10_000) == texts
    subset = tokenizer_texts(texts, 300)
    assert sum(map(len, subset)) <= 300 and len(subset) == 10
    assert subset[0] == texts[0] and subset[-1] == texts[90]


def test_corpus_errors_are_clear(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    _write(tmp_path / "empty" / "tests" / "t.py", "x = 1\n")
    with pytest.raises(TrainingError, match="no usable source files"):
        collect_corpus_files([tmp_path / "empty"])
    with pytest.raises(TrainingError, match="does not exist"):
        collect_corpus_files([tmp_path / "missing"])


def test_default_corpus_is_the_stdlib_without_tests() -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = collect_corpus_files()
    assert len(files) > 100
    assert all(f.is_relative_to(stdlib) and f.suffix == ".py" for f in files)
    skipped = {"site-packages", "test", "tests", "idlelib", "lib2to3", "__pycache__"}
    assert not any(skipped & set(f.relative_to(stdlib).parts) for f in files)


def test_hold_out_files_holds_out_whole_files_deterministically() -> None:
    files = [Path(f"f{i}.py") for i in range(40)]
    train, val = hold_out_files(files, 0.1, seed=0)
    assert len(val) == 4 and sorted(train + val) == sorted(files)
    assert hold_out_files(files, 0.1, seed=0) == (train, val)
    assert hold_out_files(files, 0.1, seed=1) != (train, val)
    assert hold_out_files(files[:1], 0.1, seed=0) == (files[:1], [])


# -- fill-in-the-middle -----------------------------------------------------------------------


def test_fim_split_round_trips_exactly() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        prefix, middle, suffix = split_for_fim(SOURCE, rng)
        assert prefix + middle + suffix == SOURCE
        sample = fim_text(prefix, suffix, middle, FIM)  # PSM, as the server prompts
        assert sample.count(FIM_PREFIX_TOKEN) == 1
        assert sample.count(FIM_SUFFIX_TOKEN) == 1
        assert sample.count(FIM_MIDDLE_TOKEN) == 1
        # Undo the rearrangement: the PSM sample holds exactly the original text.
        rest = sample.removeprefix(FIM_PREFIX_TOKEN)
        got_prefix, rest = rest.split(FIM_SUFFIX_TOKEN)
        got_suffix, got_middle = rest.split(FIM_MIDDLE_TOKEN)
        assert got_prefix + got_middle + got_suffix == SOURCE
        assert len(sample) == len(SOURCE) + sum(
            map(len, (FIM_PREFIX_TOKEN, FIM_SUFFIX_TOKEN, FIM_MIDDLE_TOKEN))
        )


def test_line_shaped_fim_splits_look_like_the_servers_line_completions() -> None:
    rng = np.random.default_rng(0)
    multi_line = blank = 0
    for _ in range(300):
        prefix, middle, suffix = split_line_for_fim(SOURCE, rng)
        assert prefix + middle + suffix == SOURCE
        assert len(prefix) >= int(0.6 * len(SOURCE))  # a long prefix, a short suffix
        assert suffix == "" or suffix.startswith("\n")  # the middle runs to a line end
        multi_line += "\n" in middle.strip("\n")
        blank += not middle.strip()  # only at a line end before a blank line, or the end
    assert 0 < multi_line < 150  # sometimes a few lines, as after a block opener
    assert blank < 30
    assert split_line_for_fim("", rng) == ("", "", "")


def test_apply_fim_line_rate_makes_short_middles(tokenizer_and_ids) -> None:
    tokenizer, fim, eos = tokenizer_and_ids
    stream = token_stream(tokenizer, [SOURCE * 4], eos)
    windows = sample_windows(stream, 64, 65, np.random.default_rng(0))

    def mean_middle_tokens(line_rate: float) -> float:
        rng = np.random.default_rng(1)
        samples = apply_fim(windows, tokenizer, fim, eos, 1.0, rng, line_rate)
        middle = fim.middle_id
        lengths = [len(row) - row.tolist().index(middle) for row in samples if middle in row]
        return float(np.mean(lengths))

    assert mean_middle_tokens(1.0) < mean_middle_tokens(0.0) / 2


def test_fim_in_place_keeps_the_length_by_cutting_suffix_then_prefix() -> None:
    p, m, s = [10, 11, 12], [20, 21], [30, 31, 32]
    # 8 content tokens + 3 special + EOS = 12: two too many for a 10-token chunk.
    assert fim_in_place(p, m, s, FIM, 10, [0]) == [1, 10, 11, 12, 2, 30, 3, 20, 21, 0]
    # Five too many: the whole suffix and the first two prefix tokens go.
    assert fim_in_place(p, m, s, FIM, 7, [0]) == [1, 12, 2, 3, 20, 21, 0]
    assert fim_in_place(p, m, s, FIM, 10, []) == [1, 10, 11, 12, 2, 30, 31, 3, 20, 21]
    assert fim_in_place(p, m, s, FIM, 12, [0]) == [1, 10, 11, 12, 2, 30, 31, 32, 3, 20, 21, 0]
    assert fim_in_place(p, m, s, FIM, 20, [0]) is None  # cannot grow
    assert fim_in_place(p, m, s, FIM, 5, [0]) is None  # the middle never shrinks


def test_apply_fim_rearranges_each_chunk_in_place(tokenizer_and_ids) -> None:
    tokenizer, fim, eos = tokenizer_and_ids
    stream = token_stream(tokenizer, [SOURCE, SOURCE.upper()], eos)
    rng = np.random.default_rng(0)
    windows = sample_windows(stream, 32, 65, rng)
    samples = apply_fim(windows, tokenizer, fim, eos, 1.0, rng)
    assert samples.shape == windows.shape
    changed = 0
    for before, after in zip(windows, samples, strict=True):
        if (before == after).all():
            continue
        changed += 1
        row = after.tolist()
        assert fim.prefix_id in row
        for start in (i for i, t in enumerate(row) if t == fim.prefix_id):
            s = row.index(fim.suffix_id, start)
            m = row.index(fim.middle_id, s)
            end = row.index(eos, m) if eos in row[m:] else len(row)
            prefix = tokenizer.decode(row[start + 1 : s])
            suffix = tokenizer.decode(row[s + 1 : m])
            middle = tokenizer.decode(row[m + 1 : end])
            original = tokenizer.decode(before.tolist(), skip_special_tokens=True)
            # Prefix and suffix may be cut at their outer ends, never in the middle.
            assert prefix + middle + suffix in original
    assert changed > len(windows) // 2
    assert (apply_fim(windows, tokenizer, fim, eos, 0.0, rng) == windows).all()


def test_middle_only_labels_score_the_middle_and_its_eos() -> None:
    import torch

    batch = torch.tensor([[1, 10, 2, 30, 3, 20, 21, 0, 40, 41]])
    labels = middle_only_labels(batch, FIM, 0)
    assert labels.tolist() == [[-100, -100, -100, -100, -100, 20, 21, 0, -100, -100]]


# -- training ---------------------------------------------------------------------------------


def test_a_few_steps_lower_the_loss(tmp_path: Path, tokenizer_and_ids) -> None:
    import torch

    tokenizer, fim, eos = tokenizer_and_ids
    stream = token_stream(tokenizer, [SOURCE] * 8, eos)
    config = _tiny_config(tmp_path, max_steps=40, fim_rate=0.0)
    model = build_model(config, tokenizer.get_vocab_size(), eos)
    batch = torch.from_numpy(eval_windows(stream, 8, 65))
    with torch.no_grad():
        before = float(lm_loss(model, batch))
    corpus = TokenizedCorpus(tokenizer, fim, eos, stream, stream[:0])
    outcome = train_loop(model, corpus, config, block=64)
    with torch.no_grad():
        after = float(lm_loss(model, batch))
    assert outcome.steps == 40
    assert math.isfinite(after) and after < before - 1.0


def test_pretrain_builds_a_valid_model_dir_with_fim_tokens(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import tempfile

    from codehone_training.pretrain import pretrain

    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    _tiny_corpus(tmp_path / "corpus")
    model_dir = pretrain(_tiny_config(tmp_path, max_steps=3))

    loaded = load_model_dir(model_dir.root)
    manifest = loaded.manifest
    assert manifest.architecture == "gpt2"
    assert manifest.context_length == 64
    fim = manifest.special_tokens.fim
    assert fim is not None and fim.convention == "starcoder"
    assert (fim.prefix, fim.suffix, fim.middle) == (
        FIM_PREFIX_TOKEN,
        FIM_SUFFIX_TOKEN,
        FIM_MIDDLE_TOKEN,
    )
    assert manifest.provenance.steps == 3
    assert {"val_loss", "train_loss"} <= set(manifest.provenance.metrics)
    assert "files" in manifest.provenance.training_data
    assert not list((tmp_path / "tmp").glob("codehone-pretrain-*"))  # checkpoint cleaned up


def test_pretrain_can_quantize_and_embed_its_checkpoint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What `codehone pretrain --fuse --quantize-bits 8 --embed-checkpoint` ships."""
    import tempfile

    from codehone_training.base_model import resolve_model
    from codehone_training.pretrain import pretrain

    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    _tiny_corpus(tmp_path / "corpus")
    config = _tiny_config(
        tmp_path,
        max_steps=2,
        fuse=True,
        quantize_bits=8,
        embed_checkpoint=True,
        fim_in_prompts=False,
    )
    model_dir = pretrain(config)

    assert model_dir.root == (tmp_path / "model").resolve()
    provenance = model_dir.manifest.provenance
    assert provenance.optimizations == ["fused-fp32", "int8-block32", "embedding-int8"]
    assert provenance.base_checkpoint == "checkpoint"
    fim = model_dir.manifest.special_tokens.fim
    assert fim is not None and not fim.in_prompts  # FIM-trained, prompted prefix-only
    assert "never optuna" in provenance.training_data
    ref = resolve_model(model_dir.root, need_checkpoint=True)
    assert ref.checkpoint == (model_dir.root / "checkpoint").resolve()
    from safetensors import safe_open

    with safe_open(str(model_dir.root / "checkpoint" / "model.safetensors"), "pt") as f:
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} == {"torch.float16"}
    # only the final directory is left: no staging directories beside it, no temp checkpoint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "model", "tmp"]
    assert list((tmp_path / "tmp").iterdir()) == []


def test_pretrain_can_continue_a_checkpoint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`codehone pretrain --init-checkpoint DIR`: same tokenizer and shape, weights moved on,
    and the provenance says what came before."""
    import tempfile

    from safetensors.numpy import load_file

    from codehone_training.pretrain import train_checkpoint

    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    _tiny_corpus(tmp_path / "corpus")
    first = train_checkpoint(_tiny_config(tmp_path, max_steps=2), tmp_path / "first")
    second = train_checkpoint(
        _tiny_config(
            tmp_path, max_steps=2, init_checkpoint=tmp_path / "first", n_layer=3, n_embd=64
        ),
        tmp_path / "second",
    )
    assert (tmp_path / "second" / "tokenizer.json").read_bytes() == (
        tmp_path / "first" / "tokenizer.json"
    ).read_bytes()
    before = load_file(str(tmp_path / "first" / "model.safetensors"))
    after = load_file(str(tmp_path / "second" / "model.safetensors"))
    assert before.keys() == after.keys()  # the checkpoint's shape, not the options'
    assert any(not np.array_equal(before[k], after[k]) for k in before)
    assert second.training_data.startswith("trained further")
    assert "before that: pretrained from scratch" in second.training_data
    assert first.training_data.startswith("pretrained from scratch")
    with pytest.raises(TrainingError, match=r"no tokenizer\.json to continue"):
        train_checkpoint(
            _tiny_config(tmp_path, init_checkpoint=tmp_path / "corpus"), tmp_path / "third"
        )


def test_pretrain_refuses_a_foreign_out_dir_before_training(tmp_path: Path) -> None:
    """A directory that is not a model directory is never replaced, and that is known before
    the training minutes are spent."""
    from codehone.core.errors import ExportError
    from codehone_training.pretrain import pretrain

    occupied = tmp_path / "model"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="refusing to overwrite"):
        pretrain(_tiny_config(tmp_path, corpus_dirs=[tmp_path / "missing"]))
    assert (occupied / "notes.txt").read_text() == "keep me"


def test_pretrain_rejects_an_unknown_device(tmp_path: Path) -> None:
    _tiny_corpus(tmp_path / "corpus")
    with pytest.raises(TrainingError, match="device"):
        from codehone_training.pretrain import train_checkpoint

        train_checkpoint(_tiny_config(tmp_path, device="tpu"), tmp_path / "ckpt")


# -- the default model ------------------------------------------------------------------------


def test_default_model_dir_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CODEHONE_HOME", str(tmp_path / "home"))
    assert default_model.fallback_model_dir() == tmp_path / "home" / "default-model"
    monkeypatch.delenv("CODEHONE_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_model.fallback_model_dir() == tmp_path / "xdg" / "codehone" / "default-model"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert default_model.fallback_model_dir() == (
        tmp_path / "user" / ".cache" / "codehone" / "default-model"
    )


def test_ensure_default_model_builds_once_and_atomically(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_dir: Path
) -> None:
    import shutil

    import codehone_training.pretrain as pretrain_module

    monkeypatch.setattr(default_model, "shipped_model_dir", lambda: tmp_path / "none")
    monkeypatch.setenv("CODEHONE_HOME", str(tmp_path / "home"))
    target = tmp_path / "home" / "default-model"
    assert default_model.find_default_model() is None

    def failing_build(config: PretrainConfig):
        (config.out_dir / "partial").mkdir(parents=True)
        raise TrainingError("interrupted")

    monkeypatch.setattr(pretrain_module, "pretrain", failing_build)
    with pytest.raises(TrainingError):
        fallback_model.ensure_default_model()
    assert not target.exists()  # no half-written model left behind
    assert [p.name for p in target.parent.iterdir()] == [".default-model.lock"]

    builds: list[PretrainConfig] = []

    def fake_build(config: PretrainConfig):
        builds.append(config)
        shutil.copytree(tiny_model_dir, config.out_dir)
        return load_model_dir(config.out_dir)

    monkeypatch.setattr(pretrain_module, "pretrain", fake_build)
    assert fallback_model.ensure_default_model(minutes=0.5) == target
    assert load_model_dir(target).manifest.architecture == "gpt2"
    assert fallback_model.ensure_default_model() == target  # cached: no second build
    assert len(builds) == 1 and builds[0].minutes == 0.5
    assert default_model.find_default_model() == target


def test_the_fallback_build_never_replaces_a_link(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_dir: Path
) -> None:
    """A cache entry that is a link to something that is not a model is refused, not
    replaced: what it points at stays as it was."""
    import shutil

    import codehone_training.pretrain as pretrain_module
    from codehone.core.errors import CodehoneError

    monkeypatch.setattr(default_model, "shipped_model_dir", lambda: tmp_path / "none")
    monkeypatch.setenv("CODEHONE_HOME", str(tmp_path / "home"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "default-model").symlink_to(elsewhere)

    def fake_build(config: PretrainConfig):
        shutil.copytree(tiny_model_dir, config.out_dir)
        return load_model_dir(config.out_dir)

    monkeypatch.setattr(pretrain_module, "pretrain", fake_build)
    with pytest.raises(CodehoneError, match="symbolic link"):
        fallback_model.ensure_default_model()
    assert [p.name for p in elsewhere.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in (tmp_path / "home").iterdir()) == [
        ".default-model.lock",
        "default-model",
    ]


def test_a_committed_model_wins_only_if_it_validates(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_dir: Path
) -> None:
    import shutil

    committed = tmp_path / "repo" / "models" / "default"
    monkeypatch.setattr(default_model, "shipped_model_dir", lambda: committed)
    monkeypatch.setenv("CODEHONE_HOME", str(tmp_path / "home"))
    committed.mkdir(parents=True)
    assert default_model.find_default_model() is None  # no manifest: not a model
    (committed / "codehone.json").write_text("{}", encoding="utf-8")
    assert default_model.find_default_model() is None  # a manifest that does not validate
    shutil.rmtree(committed)
    shutil.copytree(tiny_model_dir, committed)
    assert fallback_model.ensure_default_model() == committed
