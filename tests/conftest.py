"""Shared fixtures: tiny random-weight models of each family, built once per test session.

Nothing can be downloaded here, so each model gets a tokenizer trained on this repository's
own Python files and random weights; building and exporting one takes a few seconds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from codehone.core.model_dir import ModelDir
    from codehone.core.tokenizer import TextTokenizer

REPO = Path(__file__).resolve().parent.parent

# Models codehone builds per user (the packaged model, the fallback) go to a folder of this test
# session, never the developer's own cache: a `codehone setup` run there must not change what
# the tests' servers pick as the default model. Set here, so servers the tests start inherit it.
os.environ["CODEHONE_HOME"] = TEST_HOME = tempfile.mkdtemp(prefix="codehone-test-home-")


@pytest.fixture(scope="session", autouse=True)
def _remove_test_home() -> Iterator[None]:
    yield
    shutil.rmtree(TEST_HOME, ignore_errors=True)


def tokenizer_texts() -> list[str]:
    """A fixed corpus (a few standard-library modules), so adding files to this repository
    never changes the tiny models the tests build."""
    import sysconfig

    from codehone_training.data.tokenizer_train import iter_file_texts

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    names = [
        "textwrap.py",
        "json/decoder.py",
        "json/encoder.py",
        "shlex.py",
        "fnmatch.py",
        "string.py",
        "bisect.py",
        "heapq.py",
        "glob.py",
        "calendar.py",
    ]
    return list(iter_file_texts(stdlib / name for name in names))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """tiny_model(family) -> a verified model directory of a tiny random model (cached)."""
    from codehone_training.export.checkpoint import export_checkpoint
    from codehone_training.random_models import TINY, build_random_checkpoint

    root = tmp_path_factory.mktemp("tiny-models")
    built: dict[str, Path] = {}
    texts = tokenizer_texts()

    def build(family: str) -> Path:
        if family not in built:
            checkpoint = build_random_checkpoint(TINY[family], root / f"{family}-checkpoint", texts)
            export_checkpoint(checkpoint, root / family)
            built[family] = root / family
        return built[family]

    return build


@pytest.fixture(scope="session")
def fused_model(
    tiny_model: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Path]:
    """fused_model(family) -> the tiny model rebuilt as codehone's fused graph (cached)."""
    from codehone_training.export.optimize import fuse

    root = tmp_path_factory.mktemp("fused")
    built: dict[str, Path] = {}

    def build(family: str) -> Path:
        if family not in built:
            exported = tiny_model(family)
            checkpoint = exported.parent / f"{family}-checkpoint"
            fuse(exported, root / family, checkpoint=checkpoint, verify=False)
            built[family] = root / family
        return built[family]

    return build


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_model: Callable[[str], Path]) -> Callable[[str], Path]:
    """tiny_checkpoint(family) -> the Hugging Face checkpoint the tiny model was exported from."""

    def get(family: str) -> Path:
        return tiny_model(family).parent / f"{family}-checkpoint"

    return get


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_model: Callable[[str], Path]) -> Path:
    """A tiny gpt2 model directory (what most tests need)."""
    return tiny_model("gpt2")


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> ModelDir:
    """The tiny gpt2 model directory, loaded."""
    from codehone.core.model_dir import load_model_dir

    return load_model_dir(tiny_model_dir)


@pytest.fixture(scope="module")
def tokenizer(model: ModelDir) -> TextTokenizer:
    """The tiny gpt2 model's tokenizer."""
    from codehone.core.tokenizer import TextTokenizer

    return TextTokenizer(model.tokenizer_path)
