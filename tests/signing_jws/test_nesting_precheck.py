"""Text nested deeper than ``MAX_DEPTH`` is refused before the JSON parser sees it: the
standard parser recurses once per level and stops only at the interpreter's recursion
limit, where a garbage collection that starts runs finalizers with no stack left (a
CI run failed on the error such a finalizer raised, which pytest could not even
report). The check must agree with the parse on the depth of every JSON value."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signing.encoding import MAX_DEPTH, loads_ijson, loads_shallow, nested_deeper_than
from signing.errors import MalformedInput


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def test_deep_text_is_refused_without_parsing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def parse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the parser was given text nested 5,000 deep")

    monkeypatch.setattr(json, "loads", parse)
    with pytest.raises(MalformedInput, match=f"nested deeper than {MAX_DEPTH} levels"):
        loads_ijson(_nested(5000).encode())


def test_the_parsers_of_outside_text_refuse_it_before_parsing_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from relay.core.packets import peek_facts
    from signing.encoding import b64url

    def parse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the parser was given text nested 5,000 deep")

    monkeypatch.setattr(json, "loads", parse)
    deep = _nested(5000).encode()
    with pytest.raises(ValueError, match="nested deeper"):
        loads_shallow(deep)
    assert peek_facts(f"e30.{b64url(deep)}.c2ln") is None  # a descriptor, a header: the same


def test_the_limit_itself_is_accepted_and_one_more_level_is_not() -> None:
    assert loads_ijson(_nested(MAX_DEPTH))["a"] is not None
    with pytest.raises(MalformedInput, match="nested deeper"):
        loads_ijson(_nested(MAX_DEPTH + 1))


def test_brackets_inside_strings_do_not_nest() -> None:
    text = json.dumps({"note": "[" * 200 + '\\"{' * 50, "list": [[]] * 100})
    assert not nested_deeper_than(text, MAX_DEPTH)
    assert loads_ijson(text)["list"] == [[]] * 100


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab'),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=60,
)


@settings(max_examples=300, deadline=None)
@given(JSON, st.integers(min_value=0, max_value=8))
def test_the_check_agrees_with_the_depth_of_the_parsed_value(value: Any, limit: int) -> None:
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False, indent=1)):
        assert nested_deeper_than(text, limit) == (_depth(value) > limit)
        assert nested_deeper_than(text.encode(), limit) == (_depth(value) > limit)
