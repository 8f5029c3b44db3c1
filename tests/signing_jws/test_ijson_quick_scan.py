"""Issue 12: ``check_ijson`` and ``canonical_json`` settle the common case with a quick
pass and leave anything unusual to the full check, which names the path. Whatever the
value, they must decide exactly as the full check does and give the same bytes."""

from __future__ import annotations

import enum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signing.encoding import (
    MAX_DEPTH,
    MAX_SAFE_INTEGER,
    _check_with_paths,
    _serialize,
    canonical_json,
    check_ijson,
)
from signing.errors import MalformedInput


class Colour(enum.StrEnum):
    RED = "red"


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.just(MAX_SAFE_INTEGER),
    st.just(MAX_SAFE_INTEGER + 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),  # lone surrogates included
    st.just("\ud800"),
    st.just(Colour.RED),
    st.just(b"bytes"),
)
KEYS = st.one_of(st.text(max_size=5), st.just("\udfff"), st.integers(0, 3), st.just(Colour.RED))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(KEYS, inner, max_size=4),
    ),
    max_leaves=20,
)


def full_check(value: Any, max_depth: int = MAX_DEPTH) -> str | None:
    try:
        _check_with_paths(value, max_depth)
    except MalformedInput as exc:
        return str(exc)
    return None


def quick_check(value: Any, max_depth: int = MAX_DEPTH) -> str | None:
    try:
        check_ijson(value, max_depth=max_depth)
    except MalformedInput as exc:
        return str(exc)
    return None


@settings(max_examples=400, deadline=None)
@given(VALUES, st.integers(min_value=1, max_value=4))
def test_the_quick_pass_decides_as_the_full_check(value: Any, depth: int) -> None:
    assert quick_check(value) == full_check(value)
    assert quick_check(value, depth) == full_check(value, depth)


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_canonical_bytes_are_unchanged(value: Any) -> None:
    if full_check(value) is not None:
        with pytest.raises(MalformedInput):
            canonical_json(value)
        return
    reference = _serialize(value).encode()  # the JCS serializer, float or not
    assert canonical_json(value) == reference


def test_nesting_at_the_limit_passes_and_one_deeper_is_refused_with_its_path() -> None:
    value: Any = 1
    for _ in range(MAX_DEPTH):
        value = [value]
    check_ijson(value)
    with pytest.raises(MalformedInput, match="nested deeper than 32 levels"):
        check_ijson([value])
