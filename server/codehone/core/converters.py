"""A strict cattrs converter: JSON values must already have the declared type.

cattrs' default converter coerces (``true`` -> 1, ``256.75`` -> 256, ``"0"`` -> [0]); for a
manifest or a user option that hides mistakes, so codehone rejects them instead.
"""

from __future__ import annotations

from typing import Any

import cattrs


def _strict_int(value: Any, _: type) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _strict_float(value: Any, _: type) -> float:
    if type(value) not in (int, float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _strict_str(value: Any, _: type) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _strict_bool(value: Any, _: type) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def strict_converter(forbid_extra_keys: bool = False) -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=forbid_extra_keys)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(float, _strict_float)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(bool, _strict_bool)
    converter.register_structure_hook_func(
        lambda t: getattr(t, "__origin__", None) is list,
        lambda v, t: _strict_list(converter, v, t),
    )
    return converter


def _strict_list(converter: cattrs.Converter, value: Any, list_type: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {value!r}")
    (item_type,) = list_type.__args__
    return [converter.structure(item, item_type) for item in value]
