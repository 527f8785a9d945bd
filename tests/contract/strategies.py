"""Hypothesis strategies built from the contracts' own type hints, so every
message type (including ones added later) is generated without hand-written
strategies."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import msgspec
from hypothesis import strategies as st

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
TEXT = st.text(max_size=20)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)


def for_type(tp: Any) -> st.SearchStrategy[Any]:
    origin = get_origin(tp)
    if tp is Any:
        return JSONISH
    if tp is str:
        return TEXT
    if tp is bool:
        return st.booleans()
    if tp is int:
        return INT64
    if tp is float or (isinstance(tp, type) and issubclass(tp, float)):
        return st.floats(allow_nan=False, allow_infinity=False)
    if tp is bytes:
        return st.binary(max_size=20)
    if tp is type(None):
        return st.none()
    if origin is Literal:
        return st.sampled_from(get_args(tp))
    if origin in (Union, types.UnionType):
        return st.one_of(*(for_type(a) for a in get_args(tp)))
    if origin is list:
        return st.lists(for_type(get_args(tp)[0]), max_size=3)
    if origin is dict:
        key, value = get_args(tp)
        return st.dictionaries(for_type(key), for_type(value), max_size=3)
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]
            return st.lists(for_type(args[0]), max_size=3).map(tuple)
        return st.tuples(*(for_type(a) for a in args))
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return struct(tp)
    if isinstance(tp, typing.TypeAliasType if hasattr(typing, "TypeAliasType") else ()):  # pragma: no cover
        return for_type(tp.__value__)
    raise NotImplementedError(f"no strategy for {tp!r}")


def struct(tp: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    hints = get_type_hints(tp)
    return st.builds(tp, **{name: st.deferred(lambda h=hints[name]: for_type(h)) for name in tp.__struct_fields__})
