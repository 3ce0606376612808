"""What ``load_model_dir`` needs of an ONNX file, read without reading its weights.

The graph's inputs and outputs (name, element type, dimensions) and its initializers' names,
dimensions and external-data locations are read straight from the protobuf wire format of the
memory-mapped file; every other field, the weights above all, is skipped by its length.

``onnx.load`` would parse the whole file instead, weights included: a copy of them in memory,
and, worse for the language server, Python's global interpreter lock held for the whole parse
(measured: 0.37 s in which no other thread ran for a 256 MB graph; a 2 GB graph holds it for
seconds). This reader is plain Python, so a model loading on a background thread leaves the
event loop running, and it touches only the few kilobytes that describe the graph.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# Field numbers (onnx/onnx.proto3).
_MODEL_GRAPH = 7
_GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT = 5, 11, 12
_VALUE_NAME, _VALUE_TYPE = 1, 2
_TYPE_TENSOR = 1
_TENSOR_TYPE_ELEM, _TENSOR_TYPE_SHAPE = 1, 2
_SHAPE_DIM = 1
_DIM_VALUE, _DIM_PARAM = 1, 2
_TENSOR_DIMS, _TENSOR_NAME, _TENSOR_EXTERNAL = 1, 8, 13
_ENTRY_KEY, _ENTRY_VALUE = 1, 2

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class OnnxFormatError(ValueError):
    """The bytes are not a well-formed ONNX protobuf."""


@dataclass(frozen=True)
class GraphValue:
    """A graph input or output: ``dims`` holds a number where the graph fixes the dimension,
    else None (a named or unknown dimension)."""

    name: str
    elem_type: int
    dims: tuple[int | None, ...]


@dataclass(frozen=True)
class Initializer:
    name: str
    dims: tuple[int, ...]
    external_locations: tuple[str, ...] = ()


@dataclass
class GraphSummary:
    inputs: dict[str, GraphValue] = field(default_factory=dict)
    outputs: dict[str, GraphValue] = field(default_factory=dict)
    initializers: list[Initializer] = field(default_factory=list)


def _varint(buf: memoryview | bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise OnnxFormatError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview | bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value or offset, end) for each field of a message: a varint's
    value, or a length-delimited field's start offset (its end is the fourth item)."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(buf, pos, end)
            yield number, wire, value, pos
        elif wire == _LENGTH:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise OnnxFormatError("a field runs past the end of its message")
            yield number, wire, pos, pos + length
            pos += length
        elif wire in (_FIXED64, _FIXED32):
            pos += 8 if wire == _FIXED64 else 4
            if pos > end:
                raise OnnxFormatError("truncated fixed-size field")
        else:
            raise OnnxFormatError(f"unsupported wire type {wire}")


def _text(buf: memoryview | bytes, start: int, end: int) -> str:
    try:
        return bytes(buf[start:end]).decode("utf-8")
    except UnicodeDecodeError:
        raise OnnxFormatError("a name is not UTF-8") from None


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _value_info(buf: memoryview | bytes, start: int, end: int) -> GraphValue:
    name, elem_type, dims = "", 0, []
    for number, wire, at, stop in _fields(buf, start, end):
        if number == _VALUE_NAME and wire == _LENGTH:
            name = _text(buf, at, stop)
        elif number == _VALUE_TYPE and wire == _LENGTH:
            for t_number, t_wire, t_at, t_stop in _fields(buf, at, stop):
                if t_number != _TYPE_TENSOR or t_wire != _LENGTH:
                    continue
                for s_number, s_wire, s_at, s_stop in _fields(buf, t_at, t_stop):
                    if s_number == _TENSOR_TYPE_ELEM and s_wire == _VARINT:
                        elem_type = s_at
                    elif s_number == _TENSOR_TYPE_SHAPE and s_wire == _LENGTH:
                        dims = _shape(buf, s_at, s_stop)
    return GraphValue(name, elem_type, tuple(dims))


def _shape(buf: memoryview | bytes, start: int, end: int) -> list[int | None]:
    dims: list[int | None] = []
    for number, wire, at, stop in _fields(buf, start, end):
        if number != _SHAPE_DIM or wire != _LENGTH:
            continue
        value: int | None = None
        for d_number, d_wire, d_at, _ in _fields(buf, at, stop):
            if d_number == _DIM_VALUE and d_wire == _VARINT:
                value = _signed(d_at)
        dims.append(value)
    return dims


def _initializer(buf: memoryview | bytes, start: int, end: int) -> Initializer:
    name, dims, locations = "", [], []
    for number, wire, at, stop in _fields(buf, start, end):
        if number == _TENSOR_DIMS and wire == _VARINT:
            dims.append(_signed(at))
        elif number == _TENSOR_DIMS and wire == _LENGTH:  # packed
            pos = at
            while pos < stop:
                value, pos = _varint(buf, pos, stop)
                dims.append(_signed(value))
        elif number == _TENSOR_NAME and wire == _LENGTH:
            name = _text(buf, at, stop)
        elif number == _TENSOR_EXTERNAL and wire == _LENGTH:
            key = value_text = ""
            for e_number, e_wire, e_at, e_stop in _fields(buf, at, stop):
                if e_number == _ENTRY_KEY and e_wire == _LENGTH:
                    key = _text(buf, e_at, e_stop)
                elif e_number == _ENTRY_VALUE and e_wire == _LENGTH:
                    value_text = _text(buf, e_at, e_stop)
            if key == "location":
                locations.append(value_text)
    return Initializer(name, tuple(dims), tuple(locations))


def summarize(buf: memoryview | bytes) -> GraphSummary:
    """The summary of a serialized ModelProto (raises OnnxFormatError)."""
    summary = GraphSummary()
    graphs = [
        (at, stop)
        for number, wire, at, stop in _fields(buf, 0, len(buf))
        if number == _MODEL_GRAPH and wire == _LENGTH
    ]
    for start, end in graphs:  # a message field given twice is merged, as protobuf does
        for number, wire, at, stop in _fields(buf, start, end):
            if wire != _LENGTH:
                continue
            if number == _GRAPH_INPUT:
                value = _value_info(buf, at, stop)
                summary.inputs[value.name] = value
            elif number == _GRAPH_OUTPUT:
                value = _value_info(buf, at, stop)
                summary.outputs[value.name] = value
            elif number == _GRAPH_INITIALIZER:
                summary.initializers.append(_initializer(buf, at, stop))
    return summary


def read_summary(path: Path) -> GraphSummary:
    """The summary of the ONNX file at ``path``, memory-mapped (raises OSError or
    OnnxFormatError)."""
    with open(path, "rb") as handle:
        if handle.seek(0, 2) == 0:
            return GraphSummary()  # an empty message: a model with an empty graph
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                return summarize(view)
            finally:
                view.release()
