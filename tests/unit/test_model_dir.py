"""load_model_dir: every way a model directory can be wrong raises ModelDirError naming it."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from codehone.core.errors import CodehoneError, ModelDirError
from codehone.core.model_dir import (
    FIM_CONVENTIONS,
    FORMAT_VERSION,
    MANIFEST_NAME,
    FimTokens,
    Manifest,
    detect_fim_tokens,
    load_model_dir,
    manifest_to_json,
    write_manifest,
)

# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def model_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A private, mutable copy of the verified tiny gpt2 model directory."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


def read_raw(model: Path) -> dict[str, Any]:
    return json.loads((model / MANIFEST_NAME).read_text(encoding="utf-8"))


def write_raw(model: Path, raw: Any) -> None:
    (model / MANIFEST_NAME).write_text(json.dumps(raw), encoding="utf-8")


def edit_manifest(model: Path, change: Callable[[dict[str, Any]], None]) -> None:
    raw = read_raw(model)
    change(raw)
    write_raw(model, raw)


def load_error(model: Path, check_graph: bool = True) -> str:
    with pytest.raises(ModelDirError) as info:
        load_model_dir(model, check_graph=check_graph)
    message = str(info.value)
    assert "\n" not in message, "a ModelDirError is one line"
    return message


# -- the valid directory ---------------------------------------------------------------------


def test_valid_copy_loads(model_copy: Path) -> None:
    model = load_model_dir(model_copy)
    assert model.root == model_copy.resolve()
    assert model.model_path == model_copy.resolve() / "model.onnx"
    assert model.tokenizer_path == model_copy.resolve() / "tokenizer.json"
    manifest = model.manifest
    assert manifest.format_version == FORMAT_VERSION
    assert manifest.architecture == "gpt2"
    assert manifest.context_length > 0
    assert manifest.kv.num_layers >= 1
    assert manifest.kv.dtype == "float32"
    assert manifest.special_tokens.eos_token_ids
    assert manifest.kv.past_names()[:2] == ["past_key_values.0.key", "past_key_values.0.value"]
    assert manifest.kv.present_names()[:2] == ["present.0.key", "present.0.value"]
    assert len(manifest.kv.past_names()) == 2 * manifest.kv.num_layers


def test_accepts_str_path_and_skipping_the_graph_check(model_copy: Path) -> None:
    assert load_model_dir(str(model_copy), check_graph=False).root == model_copy.resolve()


def test_directory_reached_through_a_symlink_loads(model_copy: Path, tmp_path: Path) -> None:
    link = tmp_path / "link-to-model"
    link.symlink_to(model_copy, target_is_directory=True)
    model = load_model_dir(link)
    assert model.root == model_copy.resolve()
    assert model.model_path.is_relative_to(model_copy.resolve())


def test_model_dir_error_is_a_codehone_error() -> None:
    assert issubclass(ModelDirError, CodehoneError)


# -- the directory itself --------------------------------------------------------------------


def test_path_that_does_not_exist(tmp_path: Path) -> None:
    message = load_error(tmp_path / "nowhere")
    assert "does not exist" in message
    assert "nowhere" in message


def test_path_that_is_a_file(tmp_path: Path) -> None:
    file = tmp_path / "model.onnx"
    file.write_bytes(b"")
    message = load_error(file)
    assert "not a directory" in message


def test_empty_directory_has_no_manifest(tmp_path: Path) -> None:
    message = load_error(tmp_path)
    assert MANIFEST_NAME in message
    assert "missing" in message


# -- the manifest ----------------------------------------------------------------------------


def test_missing_manifest(model_copy: Path) -> None:
    (model_copy / MANIFEST_NAME).unlink()
    message = load_error(model_copy)
    assert MANIFEST_NAME in message
    assert "missing" in message


def test_malformed_json(model_copy: Path) -> None:
    (model_copy / MANIFEST_NAME).write_text('{"format_version": 1, ', encoding="utf-8")
    assert "not valid JSON" in load_error(model_copy)


def test_manifest_that_is_not_utf8(model_copy: Path) -> None:
    (model_copy / MANIFEST_NAME).write_bytes(b'{"format_version": 1, "x": "\xff\xfe"}')
    assert "not valid JSON" in load_error(model_copy)


@pytest.mark.parametrize("raw", [[1, 2], "gpt2", 1, None])
def test_json_that_is_not_an_object(model_copy: Path, raw: Any) -> None:
    write_raw(model_copy, raw)
    assert "expected a JSON object" in load_error(model_copy)


@pytest.mark.parametrize(("version", "shown"), [(2, "2"), (0, "0"), ("1", "'1'"), (None, "None")])
def test_unknown_format_version(model_copy: Path, version: Any, shown: str) -> None:
    if version is None:
        edit_manifest(model_copy, lambda raw: raw.pop("format_version"))
    else:
        edit_manifest(model_copy, lambda raw: raw.__setitem__("format_version", version))
    message = load_error(model_copy)
    assert f"unknown format_version {shown}" in message


def _drop_kv_num_layers(raw: dict[str, Any]) -> None:
    del raw["kv"]["num_layers"]


def _drop_architecture(raw: dict[str, Any]) -> None:
    del raw["architecture"]


def _drop_special_tokens(raw: dict[str, Any]) -> None:
    del raw["special_tokens"]


def _context_length_text(raw: dict[str, Any]) -> None:
    raw["context_length"] = "lots"


def _kv_not_an_object(raw: dict[str, Any]) -> None:
    raw["kv"] = 5


def _eos_not_numbers(raw: dict[str, Any]) -> None:
    raw["special_tokens"]["eos_token_ids"] = ["eos"]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (_drop_kv_num_layers, "kv.num_layers"),
        (_drop_architecture, "architecture"),
        (_drop_special_tokens, "special_tokens"),
        (_context_length_text, "context_length"),
        (_kv_not_an_object, "kv"),
        (_eos_not_numbers, "eos_token_ids"),
    ],
)
def test_malformed_manifest(
    model_copy: Path, change: Callable[[dict[str, Any]], None], needle: str
) -> None:
    edit_manifest(model_copy, change)
    message = load_error(model_copy)
    assert "malformed manifest" in message
    assert needle in message


def test_missing_required_key_is_named_as_missing(model_copy: Path) -> None:
    edit_manifest(model_copy, _drop_kv_num_layers)
    message = load_error(model_copy)
    assert "required field missing" in message


def _format_version_true(raw: dict[str, Any]) -> None:
    raw["format_version"] = True


def _context_length_fraction(raw: dict[str, Any]) -> None:
    raw["context_length"] = 256.75


def _eos_ids_a_string(raw: dict[str, Any]) -> None:
    raw["special_tokens"]["eos_token_ids"] = "0"


@pytest.mark.parametrize(
    "change", [_format_version_true, _context_length_fraction, _eos_ids_a_string]
)
def test_wrong_json_types_are_rejected_not_coerced(
    model_copy: Path, change: Callable[[dict[str, Any]], None]
) -> None:
    edit_manifest(model_copy, change)
    load_error(model_copy)


def test_unsupported_architecture(model_copy: Path) -> None:
    edit_manifest(model_copy, lambda raw: raw.__setitem__("architecture", "mamba"))
    message = load_error(model_copy)
    assert "'mamba'" in message
    assert "architecture" in message


def test_unknown_kv_dtype(model_copy: Path) -> None:
    edit_manifest(model_copy, lambda raw: raw["kv"].__setitem__("dtype", "bfloat16"))
    message = load_error(model_copy)
    assert "kv.dtype" in message
    assert "'bfloat16'" in message


@pytest.mark.parametrize(
    ("section", "key", "shown"),
    [
        (None, "context_length", "context_length"),
        (None, "vocab_size", "vocab_size"),
        ("kv", "num_layers", "kv.num_layers"),
        ("kv", "num_kv_heads", "kv.num_kv_heads"),
        ("kv", "head_size", "kv.head_size"),
    ],
)
def test_sizes_must_be_positive(
    model_copy: Path, section: str | None, key: str, shown: str
) -> None:
    def change(raw: dict[str, Any]) -> None:
        (raw[section] if section else raw)[key] = 0

    edit_manifest(model_copy, change)
    message = load_error(model_copy, check_graph=False)
    assert f"{shown} must be positive" in message


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(raw: dict[str, Any]) -> None:
        *parents, key = path.split(".")
        for name in parents:
            raw = raw[name]
        raw[key] = value

    return change


@pytest.mark.parametrize(
    ("path", "value", "shown"),
    [
        ("context_length", 10**12, "context_length 1,000,000,000,000 is outside 2..1,048,576"),
        ("context_length", 2**31, "context_length 2,147,483,648 is outside"),
        ("context_length", 1, "context_length 1 is outside"),
        ("vocab_size", 10**12, "vocab_size 1,000,000,000,000 is outside 2.."),
        ("vocab_size", 1, "vocab_size 1 is outside 2.."),
        ("kv.num_layers", 10**9, "kv.num_layers 1,000,000,000 is outside 1..1,024"),
        ("kv.num_kv_heads", 10**6, "kv.num_kv_heads 1,000,000 is outside"),
        ("kv.head_size", 10**6, "kv.head_size 1,000,000 is outside"),
    ],
)
def test_sizes_out_of_range_are_refused(
    model_copy: Path, path: str, value: int, shown: str
) -> None:
    """Numbers that pass the type checks and would fail every completion (a KV buffer of 10^12
    positions, 2 * 10^9 graph input names to compare) are refused on load."""
    edit_manifest(model_copy, _set(path, value))
    assert shown in load_error(model_copy, check_graph=False)


@pytest.mark.parametrize(
    ("path", "value", "shown"),
    [
        ("special_tokens.eos_token_ids", [0, 512], "eos_token_ids[1] 512 is not a token id"),
        ("special_tokens.eos_token_ids", [-1], "eos_token_ids[0] -1 is not a token id"),
        ("special_tokens.bos_token_id", 10**6, "bos_token_id 1,000,000 is not a token id"),
        ("special_tokens.fim.prefix_id", 10**6, "fim.prefix_id 1,000,000 is not a token id"),
        ("special_tokens.fim.middle_id", 512, "fim.middle_id 512 is not a token id"),
    ],
)
def test_special_token_ids_past_the_vocabulary_are_refused(
    model_copy: Path, path: str, value: Any, shown: str
) -> None:
    edit_manifest(model_copy, _set(path, value))
    message = load_error(model_copy, check_graph=False)
    assert shown in message and "vocab_size 512" in message


def test_sizes_the_graph_contradicts_are_refused(model_copy: Path) -> None:
    """The tiny gpt2 graph has 256 positions (wpe) and 512 logits per position."""
    edit_manifest(model_copy, _set("context_length", 512))
    load_model_dir(model_copy, check_graph=False)  # in range: only the graph says otherwise
    assert "the graph takes at most 256 positions (transformer.wpe.weight)" in load_error(
        model_copy
    )
    edit_manifest(model_copy, _set("context_length", 256))
    edit_manifest(model_copy, _set("vocab_size", 1024))
    message = load_error(model_copy)
    assert "output logits has 512 entries per position" in message
    assert "vocab_size is 1,024" in message


def test_a_fused_graph_says_its_context(fused_model: Callable[[str], Path], tmp_path: Path) -> None:
    copy = Path(shutil.copytree(fused_model("qwen2"), tmp_path / "fused"))
    edit_manifest(copy, _set("context_length", 4096))
    assert "at most 256 positions (cos_cache)" in load_error(copy)


def test_a_huge_manifest_is_refused_before_it_is_read(model_copy: Path) -> None:
    raw = read_raw(model_copy)
    raw["provenance"]["training_data"] = "x" * (1 << 20)
    write_raw(model_copy, raw)
    assert "a manifest is at most 1,048,576" in load_error(model_copy, check_graph=False)


def test_empty_eos_token_ids(model_copy: Path) -> None:
    edit_manifest(model_copy, lambda raw: raw["special_tokens"].__setitem__("eos_token_ids", []))
    message = load_error(model_copy)
    assert "eos_token_ids is empty" in message


# -- the files the manifest names ------------------------------------------------------------


def test_missing_model_file(model_copy: Path) -> None:
    (model_copy / "model.onnx").unlink()
    message = load_error(model_copy, check_graph=False)
    assert "model file" in message
    assert "'model.onnx'" in message
    assert "missing" in message


def test_missing_tokenizer_file(model_copy: Path) -> None:
    (model_copy / "tokenizer.json").unlink()
    message = load_error(model_copy)
    assert "tokenizer file" in message
    assert "'tokenizer.json'" in message
    assert "missing" in message


def test_model_file_that_is_a_directory_is_missing(model_copy: Path) -> None:
    (model_copy / "model.onnx").unlink()
    (model_copy / "model.onnx").mkdir()
    assert "missing" in load_error(model_copy)


@pytest.mark.parametrize(
    ("key", "what"), [("model_file", "model file"), ("tokenizer_file", "tokenizer file")]
)
def test_relative_escape_is_refused(model_copy: Path, key: str, what: str) -> None:
    # The escaped-to file exists, so only the escape itself can be the complaint.
    shutil.copy(model_copy / "model.onnx", model_copy.parent / "elsewhere.onnx")
    edit_manifest(model_copy, lambda raw: raw.__setitem__(key, "../elsewhere.onnx"))
    message = load_error(model_copy)
    assert what in message
    assert "resolves outside the model directory" in message


@pytest.mark.parametrize(
    ("key", "what"), [("model_file", "model file"), ("tokenizer_file", "tokenizer file")]
)
def test_absolute_path_is_refused(model_copy: Path, key: str, what: str) -> None:
    target = str(model_copy / ("model.onnx" if key == "model_file" else "tokenizer.json"))
    edit_manifest(model_copy, lambda raw: raw.__setitem__(key, target))
    message = load_error(model_copy)
    assert what in message
    assert "must be a relative file name" in message


def test_empty_file_name_is_refused(model_copy: Path) -> None:
    edit_manifest(model_copy, lambda raw: raw.__setitem__("model_file", ""))
    assert "must be a relative file name" in load_error(model_copy)


def test_nested_relative_path_inside_the_directory_is_accepted(model_copy: Path) -> None:
    (model_copy / "onnx").mkdir()
    (model_copy / "model.onnx").rename(model_copy / "onnx" / "model.onnx")
    edit_manifest(model_copy, lambda raw: raw.__setitem__("model_file", "onnx/../onnx/model.onnx"))
    model = load_model_dir(model_copy)
    assert model.model_path == model_copy.resolve() / "onnx" / "model.onnx"


def test_symlink_escaping_the_directory_is_refused(model_copy: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (model_copy / "model.onnx").rename(outside / "model.onnx")
    (model_copy / "model.onnx").symlink_to(outside / "model.onnx")
    assert (model_copy / "model.onnx").is_file()  # the link works: only the escape is wrong
    message = load_error(model_copy)
    assert "model file" in message
    assert "resolves outside the model directory" in message


def test_relative_symlink_escaping_the_directory_is_refused(
    model_copy: Path, tmp_path: Path
) -> None:
    (model_copy / "tokenizer.json").rename(tmp_path / "tokenizer.json")
    (model_copy / "tokenizer.json").symlink_to(Path("..") / "tokenizer.json")
    assert (model_copy / "tokenizer.json").is_file()
    message = load_error(model_copy)
    assert "tokenizer file" in message
    assert "resolves outside the model directory" in message


def test_manifest_symlink_escaping_the_directory_is_refused(
    model_copy: Path, tmp_path: Path
) -> None:
    (model_copy / MANIFEST_NAME).rename(tmp_path / MANIFEST_NAME)
    (model_copy / MANIFEST_NAME).symlink_to(tmp_path / MANIFEST_NAME)
    message = load_error(model_copy)
    assert "manifest" in message
    assert "resolves outside the model directory" in message


def test_symlink_to_a_file_inside_the_directory_is_accepted(model_copy: Path) -> None:
    (model_copy / "model.onnx").rename(model_copy / "weights-v2.onnx")
    (model_copy / "model.onnx").symlink_to("weights-v2.onnx")
    model = load_model_dir(model_copy)
    assert model.model_path == model_copy.resolve() / "weights-v2.onnx"


def test_dangling_symlink_is_missing(model_copy: Path) -> None:
    (model_copy / "model.onnx").unlink()
    (model_copy / "model.onnx").symlink_to("no-such-file.onnx")
    assert "missing" in load_error(model_copy)


# -- the graph against the manifest ----------------------------------------------------------


def test_more_layers_than_the_graph_has(model_copy: Path) -> None:
    layers = read_raw(model_copy)["kv"]["num_layers"]
    edit_manifest(model_copy, lambda raw: raw["kv"].__setitem__("num_layers", layers + 1))
    message = load_error(model_copy)
    assert "graph does not match the manifest" in message
    assert "inputs missing from the graph" in message
    assert f"past_key_values.{layers}.key" in message
    assert "outputs missing from the graph" in message
    assert f"present.{layers}.key" in message


def test_fewer_layers_than_the_graph_has(model_copy: Path) -> None:
    layers = read_raw(model_copy)["kv"]["num_layers"]
    edit_manifest(model_copy, lambda raw: raw["kv"].__setitem__("num_layers", layers - 1))
    message = load_error(model_copy)
    assert "graph inputs the manifest does not name" in message
    assert f"past_key_values.{layers - 1}.key" in message


def test_position_ids_name_the_graph_lacks(model_copy: Path) -> None:
    edit_manifest(model_copy, lambda raw: raw["io"].__setitem__("position_ids", "pos_ids"))
    message = load_error(model_copy)
    assert "inputs missing from the graph" in message
    assert "pos_ids" in message


def test_graph_input_the_manifest_does_not_name(model_copy: Path) -> None:
    assert read_raw(model_copy)["io"]["position_ids"] == "position_ids"  # the gpt2 graph has it
    edit_manifest(model_copy, lambda raw: raw["io"].__setitem__("position_ids", None))
    message = load_error(model_copy)
    assert "graph inputs the manifest does not name" in message
    assert "position_ids" in message


def test_logits_name_the_graph_lacks(model_copy: Path) -> None:
    edit_manifest(model_copy, lambda raw: raw["io"].__setitem__("logits", "scores"))
    message = load_error(model_copy)
    assert "outputs missing from the graph" in message
    assert "scores" in message


def test_present_name_template_the_graph_lacks(model_copy: Path) -> None:
    edit_manifest(model_copy, lambda raw: raw["kv"].__setitem__("present_key", "cache.{layer}.k"))
    message = load_error(model_copy)
    assert "outputs missing from the graph" in message
    assert "cache.0.k" in message


def test_kv_dtype_float16_against_a_float32_graph(model_copy: Path) -> None:
    edit_manifest(model_copy, lambda raw: raw["kv"].__setitem__("dtype", "float16"))
    message = load_error(model_copy)
    assert "past_key_values.0.key" in message
    assert "element type" in message
    assert "float16" in message


def test_wrong_num_kv_heads(model_copy: Path) -> None:
    heads = read_raw(model_copy)["kv"]["num_kv_heads"]
    edit_manifest(model_copy, lambda raw: raw["kv"].__setitem__("num_kv_heads", heads + 1))
    message = load_error(model_copy)
    assert "past_key_values.0.key" in message
    assert "shape" in message
    assert f"[batch, {heads + 1}, past," in message


def test_wrong_head_size(model_copy: Path) -> None:
    size = read_raw(model_copy)["kv"]["head_size"]
    edit_manifest(model_copy, lambda raw: raw["kv"].__setitem__("head_size", size * 2))
    message = load_error(model_copy)
    assert "shape" in message
    assert f"past, {size * 2}]" in message


@pytest.mark.parametrize("content", [b"this is not an onnx model\n", b"\x00\x01\x02garbage\xff"])
def test_model_file_that_is_not_onnx(model_copy: Path, content: bytes) -> None:
    (model_copy / "model.onnx").write_bytes(content)
    message = load_error(model_copy)
    assert "not a readable ONNX model" in message
    # Without the graph check the bytes are never read: the directory loads.
    assert load_model_dir(model_copy, check_graph=False).model_path.name == "model.onnx"


def test_empty_model_file_has_none_of_the_inputs(model_copy: Path) -> None:
    (model_copy / "model.onnx").write_bytes(b"")
    message = load_error(model_copy)
    assert "graph does not match the manifest" in message
    assert "input_ids" in message


def _write_graph_with_external_data(path: Path, location: str) -> None:
    import onnx
    from onnx import TensorProto, helper

    tensor = TensorProto()
    tensor.name = "weight"
    tensor.data_type = TensorProto.FLOAT
    tensor.dims.extend([4])
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key = "location"
    entry.value = location
    graph = helper.make_graph(
        [helper.make_node("Identity", ["weight"], ["logits"])],
        "external",
        inputs=[],
        outputs=[helper.make_tensor_value_info("logits", TensorProto.FLOAT, [4])],
        initializer=[tensor],
    )
    onnx.save(helper.make_model(graph), str(path))


def test_external_data_escaping_the_directory_is_refused(model_copy: Path) -> None:
    (model_copy.parent / "weights.bin").write_bytes(b"\x00" * 16)
    _write_graph_with_external_data(model_copy / "model.onnx", "../weights.bin")
    message = load_error(model_copy)
    assert "external data file" in message
    assert "resolves outside the model directory" in message


def test_missing_external_data_file(model_copy: Path) -> None:
    _write_graph_with_external_data(model_copy / "model.onnx", "weights.bin")
    message = load_error(model_copy)
    assert "external data file 'weights.bin' is missing" in message


# -- fill-in-the-middle tokens ---------------------------------------------------------------


@pytest.mark.parametrize("convention", sorted(FIM_CONVENTIONS))
def test_detect_fim_tokens_for_each_convention(convention: str) -> None:
    prefix, suffix, middle = FIM_CONVENTIONS[convention]
    vocab = {"def": 0, "x": 1, prefix: 100, suffix: 101, middle: 102, "<|endoftext|>": 3}
    assert detect_fim_tokens(vocab) == FimTokens(convention, prefix, suffix, middle, 100, 101, 102)


def test_detect_codellama_tokens_without_the_sentencepiece_marker() -> None:
    vocab = {"<PRE>": 32007, "<SUF>": 32008, "<MID>": 32009, "▁": 29871}
    assert detect_fim_tokens(vocab) == FimTokens(
        "codellama", "<PRE>", "<SUF>", "<MID>", 32007, 32008, 32009
    )


@pytest.mark.parametrize(
    "vocab",
    [
        {},
        {"def": 0, "return": 1, "<|endoftext|>": 2},
        {"<fim_prefix>": 1, "<fim_suffix>": 2},  # the middle token is missing
        {"<fim_prefix>": 1, "<|fim_suffix|>": 2, "<|fim_middle|>": 3},  # two conventions mixed
        {"<PRE>": 1, "▁<SUF>": 2, "<MID>": 3},  # codellama with and without the marker mixed
    ],
)
def test_detect_fim_tokens_none_without_a_full_convention(vocab: dict[str, int]) -> None:
    assert detect_fim_tokens(vocab) is None


def test_tiny_model_manifest_names_its_tokenizers_fim_ids(tiny_model_dir: Path) -> None:
    from tokenizers import Tokenizer

    manifest = load_model_dir(tiny_model_dir).manifest
    vocab = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json")).get_vocab(True)
    assert manifest.special_tokens.fim == detect_fim_tokens(vocab)
    assert manifest.special_tokens.fim is not None
    assert manifest.special_tokens.fim.convention == "starcoder"


# -- writing the manifest --------------------------------------------------------------------


def test_manifest_round_trip_through_json(model_copy: Path) -> None:
    original = load_model_dir(model_copy).manifest
    changed = dataclasses.replace(
        original,
        provenance=dataclasses.replace(
            original.provenance, metrics={"loss": 1.25}, training_data="corpus ✓ 中文"
        ),
    )
    (model_copy / MANIFEST_NAME).write_text(manifest_to_json(changed), encoding="utf-8")
    assert load_model_dir(model_copy).manifest == changed


def test_write_manifest_replaces_atomically_and_round_trips(model_copy: Path) -> None:
    original = load_model_dir(model_copy).manifest
    path = write_manifest(model_copy, original)
    assert path == model_copy / MANIFEST_NAME
    assert not list(model_copy.glob("*.tmp"))
    reloaded = load_model_dir(model_copy).manifest
    assert reloaded == original
    assert isinstance(reloaded, Manifest)
    assert json.loads(manifest_to_json(reloaded)) == json.loads(path.read_text(encoding="utf-8"))


def test_manifest_json_ignores_unknown_keys(model_copy: Path) -> None:
    original = load_model_dir(model_copy).manifest
    edit_manifest(model_copy, lambda raw: raw.__setitem__("future_field", {"x": 1}))
    assert load_model_dir(model_copy).manifest == original


def test_model_dir_loading_does_not_write(model_copy: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in model_copy.iterdir()}
    load_model_dir(model_copy)
    assert {p.name: p.stat().st_mtime_ns for p in model_copy.iterdir()} == before


def test_fim_in_prompts_defaults_to_true_and_round_trips(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Older manifests have no `in_prompts`; a manifest may turn FIM prompts off."""
    import json
    import shutil

    from codehone.core.model_dir import load_model_dir

    model = load_model_dir(tiny_model_dir)
    fim = model.manifest.special_tokens.fim
    assert fim is not None and fim.in_prompts
    copy = tmp_path / "m"
    shutil.copytree(tiny_model_dir, copy)
    data = json.loads((copy / "codehone.json").read_text())
    data["special_tokens"]["fim"].pop("in_prompts", None)
    (copy / "codehone.json").write_text(json.dumps(data))
    assert load_model_dir(copy).manifest.special_tokens.fim.in_prompts
    data["special_tokens"]["fim"]["in_prompts"] = False
    (copy / "codehone.json").write_text(json.dumps(data))
    assert not load_model_dir(copy).manifest.special_tokens.fim.in_prompts
    data["special_tokens"]["fim"]["in_prompts"] = "no"
    (copy / "codehone.json").write_text(json.dumps(data))
    with pytest.raises(ModelDirError):
        load_model_dir(copy)


def test_the_graph_check_never_parses_the_weights(
    model_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """onnx.load parses every weight while holding the interpreter lock (a model loading on
    the server's background thread would freeze its event loop): the check reads only the
    graph's description (codehone.core.onnx_summary)."""
    import onnx

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("onnx.load parses the whole file")

    monkeypatch.setattr(onnx, "load", refuse)
    monkeypatch.setattr(onnx, "load_model", refuse)
    assert load_model_dir(model_copy).manifest.vocab_size == 512
