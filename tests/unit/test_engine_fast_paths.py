"""The engine's fast paths keep greedy output token-identical to PyTorch and to the plain path:
the fused graph (shared KV buffer, GroupQueryAttention, arg-max inside), prefix reuse,
prompt-lookup speculation, the static decode step CUDA graphs use, the last-logits rewrite of
exported graphs, and weight-only quantization (which runs, and stays close)."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from engines import PROMPT, engine, recompute_greedy

from codehone.core.engine.protocol import StopConditions
from codehone.core.engine.speculation import prompt_lookup_draft
from codehone.core.errors import ModelDirError
from codehone.core.model_dir import MANIFEST_NAME, load_model_dir
from codehone.core.providers import choose_provider

FUSED_FAMILIES = ["gpt2", "qwen2", "llama"]
# Repetitive, like code: prompt lookup finds drafts in it.
REPEATING = [5, 6, 7, 8, 9, 10, 11, 5, 6, 7, 8, 9, 10, 11, 5, 6, 7]
CPU = choose_provider("cpu")


def torch_greedy(checkpoint: Path, prompt: list[int], n: int) -> list[int]:
    """The PyTorch reference: greedy decoding with transformers, no EOS."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    ids = list(prompt)
    past = None
    with torch.no_grad():
        step = ids
        for _ in range(n):
            out = model(input_ids=torch.tensor([step]), past_key_values=past, use_cache=True)
            past = out.past_key_values
            step = [int(out.logits[0, -1].argmax())]
            ids += step
    return ids[len(prompt) :]


@pytest.mark.parametrize("family", FUSED_FAMILIES)
def test_fused_graph_greedy_equals_pytorch_and_export(
    family: str, tiny_model: Callable[[str], Path], fused_model: Callable[[str], Path]
):
    reference = torch_greedy(tiny_model(family).parent / f"{family}-checkpoint", PROMPT, 24)
    fused = engine(fused_model(family))
    assert fused.shared_kv and fused.fused_decode
    assert fused.generate(PROMPT, StopConditions(max_new_tokens=24)).token_ids == reference
    exported = engine(tiny_model(family))
    assert exported.generate(PROMPT, StopConditions(max_new_tokens=24)).token_ids == reference
    assert recompute_greedy(fused, PROMPT, 6) == reference[:6]


@pytest.mark.parametrize("family", ["gpt2", "qwen2"])
def test_fused_logits_match_export(
    family: str, tiny_model: Callable[[str], Path], fused_model: Callable[[str], Path]
):
    fused, exported = engine(fused_model(family)), engine(tiny_model(family))
    fused_all, fused_cache = fused.forward(PROMPT, fused.empty_cache(), all_logits=True)
    export_all, export_cache = exported.forward(PROMPT, exported.empty_cache(), all_logits=True)
    assert fused_all.shape == export_all.shape == (len(PROMPT), fused.manifest.vocab_size)
    np.testing.assert_allclose(fused_all, export_all, atol=1e-4)
    fused_step, _ = fused.forward([5, 6], fused_cache)  # two tokens after a cache
    export_step, _ = exported.forward([5, 6], export_cache)
    np.testing.assert_allclose(fused_step, export_step, atol=1e-4)


def _requests(first: list[int], generated: list[int]) -> list[list[int]]:
    """A typing session: accept part of a completion, edit the end, start elsewhere, repeat."""
    return [
        first,
        [*first, *generated[:5]],  # the user accepted five tokens
        [*first[:-3], 77, 78],  # edited the last three tokens
        [*first[:-3], 77, 78, 79],  # typed one more
        [3, 1, 4, 1, 5, 9, 2, 6],  # another file
        [3, 1, 4, 1, 5, 9, 2, 6],  # the same request again
        [3],  # a single token
    ]


@pytest.mark.parametrize("kind", ["exported-gpt2", "fused-gpt2", "fused-qwen2"])
def test_prefix_reuse_is_token_identical(
    kind: str, tiny_model: Callable[[str], Path], fused_model: Callable[[str], Path]
):
    graph, family = kind.split("-")
    model = tiny_model(family) if graph == "exported" else fused_model(family)
    reusing, cold = engine(model), engine(model, reuse_prefix=False)
    stop = StopConditions(max_new_tokens=12)
    first = cold.generate(PROMPT, stop).token_ids
    reused_total = prefilled_total = 0
    for prompt in _requests(PROMPT, first):
        warm = reusing.generate(prompt, stop)
        assert warm.token_ids == cold.generate(prompt, stop).token_ids, prompt
        reused_total += warm.reused_tokens
        prefilled_total += len(prompt) - warm.reused_tokens
        assert warm.reused_tokens < len(prompt)  # at least one token is always fed
    stats = reusing.prefix_stats
    assert stats.requests == 7
    assert (stats.reused_tokens, stats.prefilled_tokens) == (reused_total, prefilled_total)
    # accepted (all 18 but the last), edit (10), one more (12), other file (0), repeat (7),
    # single token (0: there is always one token to feed)
    assert stats.reused_tokens == 17 + 10 + 12 + 7
    assert cold.prefix_stats.reused_tokens == 0


@pytest.mark.parametrize("family", ["gpt2", "qwen2"])
def test_speculation_is_exact_greedy(family: str, fused_model: Callable[[str], Path]):
    plain, speculating = engine(fused_model(family)), engine(fused_model(family), draft_tokens=4)
    for prompt in (PROMPT, REPEATING):
        expected = plain.generate(prompt, StopConditions(max_new_tokens=40))
        result = speculating.generate(prompt, StopConditions(max_new_tokens=40))
        assert result.token_ids == expected.token_ids
        assert result.steps + result.accepted_tokens == expected.steps
    stats = speculating.speculation_stats
    assert stats.drafted_tokens > 0 and 0 < stats.accepted_tokens <= stats.drafted_tokens


def test_cpu_serving_speculates_and_keeps_the_greedy_tokens(fused_model: Callable[[str], Path]):
    """`codehone serve` on the CPU drafts by prompt lookup (measured to win on real code):
    its engine gives exactly the tokens of plain greedy decoding, in fewer model calls."""
    from codehone.core.engine.speculation import SERVING_DRAFT_TOKENS, serving_draft_tokens
    from codehone.core.providers import CUDA_PROVIDER, ProviderChoice
    from codehone.lsp.models.service import ModelService

    assert serving_draft_tokens(ProviderChoice(CUDA_PROVIDER, "test")) == 0  # not measured
    service = ModelService.load(load_model_dir(fused_model("llama")), "cpu")
    try:
        served = service.engine
        assert served.draft_tokens == SERVING_DRAFT_TOKENS > 0
        plain = engine(fused_model("llama"), draft_tokens=0)
        for prompt in (PROMPT, REPEATING, [*REPEATING, *PROMPT, *REPEATING]):
            expected = plain.generate(prompt, StopConditions(max_new_tokens=32))
            result = served.generate(prompt, StopConditions(max_new_tokens=32))
            assert result.token_ids == expected.token_ids, prompt
        assert served.speculation_stats.accepted_tokens > 0
    finally:
        service.close()


def test_speculation_keeps_every_stop_condition(fused_model: Callable[[str], Path]):
    model = fused_model("gpt2")
    plain, spec = engine(model), engine(model, draft_tokens=4)

    def both(prompt: list[int], **conditions: object) -> tuple[list[int], str]:
        outcomes = [
            e.generate(prompt, StopConditions(**conditions))  # type: ignore[arg-type]
            for e in (plain, spec)
        ]
        assert outcomes[0].token_ids == outcomes[1].token_ids
        assert outcomes[0].stop_reason == outcomes[1].stop_reason
        return outcomes[1].token_ids, outcomes[1].stop_reason

    free, _ = both(REPEATING, max_new_tokens=30)
    stop_id = free[9]
    ids, reason = both(REPEATING, max_new_tokens=30, stop_token_ids=frozenset({stop_id}))
    assert reason == "eos" and ids == free[: free.index(stop_id)]
    ids, reason = both(REPEATING, max_new_tokens=30, stop_rule=lambda g: len(g) == 7)
    assert reason == "stop_rule" and len(ids) == 7
    ids, reason = both(REPEATING, max_new_tokens=11)
    assert reason == "max_tokens" and len(ids) == 11
    context = model_context = spec.manifest.context_length
    ids, reason = both([*REPEATING * (model_context // len(REPEATING))][: context - 3])
    assert reason == "context_full" and len(ids) == 4

    cancel = threading.Event()

    def cancel_after_six(ids: list[int]) -> bool:
        if len(ids) == 6:
            cancel.set()
        return False

    result = spec.generate(
        REPEATING, StopConditions(max_new_tokens=30, cancel=cancel, stop_rule=cancel_after_six)
    )
    assert result.stop_reason == "cancelled" and result.token_ids == free[:6]


def test_static_decode_step_as_captured_by_cuda_graphs(fused_model: Callable[[str], Path]):
    """A CUDA graph replays the decode step with total_sequence_length fixed at the buffer's
    length (GroupQueryAttention then reads the real length from seqlens_k): same tokens."""
    from codehone.core.engine.fused_step import FusedDecodeStep

    model = fused_model("qwen2")
    expected = engine(model).generate(PROMPT, StopConditions(max_new_tokens=20)).token_ids
    static = engine(model)
    static.generate(PROMPT[:2], StopConditions(max_new_tokens=1))  # allocates the buffers
    assert static._buffers is not None
    static._decode_step = FusedDecodeStep(
        static.session, static.manifest, "cpu", static._buffers, cuda_graph=False, static_total=True
    )
    assert static.generate(PROMPT, StopConditions(max_new_tokens=20)).token_ids == expected


@pytest.mark.parametrize("family", ["gpt_bigcode", "codegen"])
def test_last_logits_rewrite_of_exported_graphs(
    family: str, tiny_model: Callable[[str], Path], tmp_path: Path
):
    from codehone_training.export.optimize import OptimizeError, fuse, last_logits

    with pytest.raises(OptimizeError, match="supports"):
        fuse(tiny_model(family), tmp_path / "fused", verify=False)
    rewritten = engine(last_logits(tiny_model(family), tmp_path / "last").root)
    original = engine(tiny_model(family))
    assert rewritten.manifest.io.next_tokens == "next_tokens"
    stop = StopConditions(max_new_tokens=16)
    for prompt in (PROMPT, [*PROMPT, 9, 9]):  # the second one reuses the first's prefix
        assert (
            rewritten.generate(prompt, stop).token_ids == original.generate(prompt, stop).token_ids
        )
    logits, _ = rewritten.forward(PROMPT, rewritten.empty_cache(), all_logits=True)
    reference, _ = original.forward(PROMPT, original.empty_cache(), all_logits=True)
    np.testing.assert_allclose(logits, reference, atol=1e-5)


@pytest.mark.parametrize(
    ("family", "bits", "scheme", "step"),
    [
        ("gpt2", 8, "block", "int8-block32"),
        ("gpt2", 4, "block", "int4-block32"),
        ("gpt2", 8, "channel", "int8-channel"),
        ("llama", 8, "channel", "int8-channel"),
        ("gpt2", 8, "token", "int8-token"),
        ("llama", 8, "token", "int8-token"),
    ],
)
def test_weight_quantization(
    family: str,
    bits: int,
    scheme: str,
    step: str,
    fused_model: Callable[[str], Path],
    tmp_path: Path,
):
    import onnx

    from codehone_training.export.optimize import quantize

    quantized_dir = quantize(fused_model(family), tmp_path / step, bits=bits, scheme=scheme)
    assert quantized_dir.manifest.provenance.optimizations[-2:] == [step, f"embedding-int{bits}"]
    ops = {
        n.op_type
        for n in onnx.load(str(quantized_dir.model_path), load_external_data=False).graph.node
    }
    assert "MatMul" not in ops
    if scheme == "channel":  # int8 products after the norms and attention; block int8 elsewhere
        assert {"DynamicQuantizeMatMul", "MatMulNBits"} <= ops
    if scheme == "token":  # int8 products per token; the output projection block int8
        assert {"MatMulIntegerToFloat", "QuantizeLinear", "MatMulNBits"} <= ops
    quantized, original = engine(quantized_dir.root), engine(fused_model(family))
    q_logits, _ = quantized.forward(PROMPT, quantized.empty_cache(), all_logits=True)
    o_logits, _ = original.forward(PROMPT, original.empty_cache(), all_logits=True)
    # Close, not equal: the top-1 choice agrees on most positions.
    agreement = float(np.mean(q_logits.argmax(-1) == o_logits.argmax(-1)))
    assert agreement >= (0.7 if bits == 8 else 0.5)
    assert len(quantized.generate(PROMPT, StopConditions(max_new_tokens=8)).token_ids) == 8


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_the_embedding_table_is_quantized_and_shared_when_tied(
    family: str, fused_model: Callable[[str], Path], tmp_path: Path
):
    import onnx

    from codehone_training.export.optimize import quantize

    quantized_dir = quantize(fused_model(family), tmp_path / family, bits=8)
    assert "embedding-int8" in quantized_dir.manifest.provenance.optimizations
    graph = onnx.load(str(quantized_dir.model_path), load_external_data=False).graph
    gathers = [n for n in graph.node if n.op_type == "GatherBlockQuantized"]
    assert len(gathers) == 1 and gathers[0].input[1] == "input_ids"
    # no float32 table of the vocabulary's rows is left in the graph
    table = [quantized_dir.manifest.vocab_size, 64]  # the tiny models' [vocabulary, hidden]
    assert not [t.name for t in graph.initializer if t.data_type == 1 and list(t.dims) == table]
    projections = {n.input[1] for n in graph.node if n.op_type == "MatMulNBits"}
    # gpt2 ties its output projection to the embedding: one packed tensor serves both; the
    # tiny llama does not tie them: its table is packed on its own
    assert (gathers[0].input[0] in projections) == (family == "gpt2")
    rows, original = engine(quantized_dir.root), engine(fused_model(family))
    stop = StopConditions(max_new_tokens=8)
    assert len(rows.generate(PROMPT, stop).token_ids) == 8
    q_logits, _ = rows.forward(PROMPT, rows.empty_cache(), all_logits=True)
    o_logits, _ = original.forward(PROMPT, original.empty_cache(), all_logits=True)
    assert float(np.mean(q_logits.argmax(-1) == o_logits.argmax(-1))) >= 0.7


def test_per_channel_int8_keeps_each_column_within_half_a_step() -> None:
    from codehone_training.export.quantize import per_channel_int8

    rng = np.random.default_rng(0)
    weight = rng.normal(size=(64, 16)).astype(np.float32) * np.geomspace(1e-3, 10, 16)
    weight[:, 3] = 0.0  # an all-zero column gets a usable scale
    q, scale = per_channel_int8(weight)
    assert q.dtype == np.int8 and scale.shape == (16,) and np.all(scale > 0)
    assert np.all(np.abs(q.astype(np.float32) * scale - weight) <= scale / 2 + 1e-7)
    assert np.abs(q).max() == 127


def test_the_channel_scheme_is_int8_only(fused_model: Callable[[str], Path], tmp_path: Path):
    from codehone.core.errors import ExportError
    from codehone_training.export.finish import FinishSteps
    from codehone_training.export.optimize import OptimizeError, quantize

    with pytest.raises(OptimizeError, match="int8 only"):
        quantize(fused_model("gpt2"), tmp_path / "x", bits=4, scheme="channel")
    with pytest.raises(OptimizeError, match="token scheme is int8 only"):
        quantize(fused_model("gpt2"), tmp_path / "x", bits=4, scheme="token")
    with pytest.raises(OptimizeError, match="one of block, channel"):
        quantize(fused_model("gpt2"), tmp_path / "x", bits=8, scheme="rows")
    assert not (tmp_path / "x").exists()
    with pytest.raises(ExportError, match="int8 only"):
        FinishSteps(quantize_bits=4, quantize_scheme="channel")
    with pytest.raises(ExportError, match="token quantization scheme is int8 only"):
        FinishSteps(quantize_bits=4, quantize_scheme="token")
    with pytest.raises(ExportError, match="quantize_scheme"):
        FinishSteps(quantize_bits=8, quantize_scheme="rows")
    assert FinishSteps(quantize_bits=8, quantize_scheme="channel").after_export


def test_prompt_lookup_draft():
    text = np.array([1, 2, 3, 4, 5, 9, 2, 3, 4, 7, 2, 3, 0, 0])
    assert prompt_lookup_draft(text, 12, 3) == [4, 7, 2]  # latest match of [2, 3]
    assert prompt_lookup_draft(text, 9, 2) == [5, 9]  # [2, 3, 4] matched first
    assert prompt_lookup_draft(text, 6, 4) == []  # [5, 9] never occurred before
    assert prompt_lookup_draft(text, 12, 0) == []


def test_manifest_checks_the_shared_buffer_fields(
    fused_model: Callable[[str], Path], tmp_path: Path
):
    copy = tmp_path / "model"
    shutil.copytree(fused_model("gpt2"), copy)
    manifest = json.loads((copy / MANIFEST_NAME).read_text())
    assert manifest["kv"]["shared_buffer"] is True
    manifest["io"]["seqlens_k"] = None
    (copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ModelDirError, match="shared_buffer needs"):
        load_model_dir(copy)
