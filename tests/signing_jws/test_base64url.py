"""base64url without padding (RFC 7515 §2, RFC 4648 §5), judged by Python's own
``base64`` module: every string of the alphabet whose length is not 1 mod 4 decodes to
what ``base64.urlsafe_b64decode`` gives it padded, and every other string is refused;
a string is canonical exactly when ``base64`` encodes what it decodes to back to it."""

from __future__ import annotations

import base64
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signing.encoding import b64url, b64url_decode, is_canonical_b64url
from signing.errors import MalformedInput

ALPHABET = string.ascii_letters + string.digits + "-_"


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_what_is_encoded_decodes_back_and_matches_the_standard_library(data: bytes) -> None:
    text = b64url(data)
    assert text == base64.urlsafe_b64encode(data).decode().rstrip("=")
    assert b64url_decode(text) == data


@settings(max_examples=1000)
@given(st.text(alphabet=ALPHABET, max_size=64))
def test_any_string_of_the_alphabet_decodes_as_the_standard_library_does(text: str) -> None:
    if len(text) % 4 == 1:  # no number of bytes encodes to that length
        with pytest.raises(MalformedInput):
            b64url_decode(text)
    else:
        assert b64url_decode(text) == base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@settings(max_examples=1000)
@given(
    st.text(alphabet=ALPHABET, max_size=40),
    st.sampled_from(["+", "/", "=", " ", "\n", ".", "é", "\x00", "=="]),
    st.data(),
)
def test_a_string_with_any_other_character_is_refused(text: str, bad: str, data) -> None:
    at = data.draw(st.integers(0, len(text)))
    with pytest.raises(MalformedInput):
        b64url_decode(text[:at] + bad + text[at:])


@pytest.mark.parametrize("value", [None, b"QUJD", 42])
def test_a_value_that_is_not_a_string_is_refused(value: object) -> None:
    with pytest.raises(MalformedInput):
        b64url_decode(value)  # type: ignore[arg-type]


def _canonical_by_the_standard_library(text: str) -> bool:
    if len(text) % 4 == 1 or any(c not in ALPHABET for c in text):
        return False
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return base64.urlsafe_b64encode(data).decode().rstrip("=") == text


@settings(max_examples=2000)
@given(st.text(alphabet=ALPHABET + "+/= .é", max_size=24))
def test_a_string_is_canonical_exactly_when_it_encodes_back_to_itself(text: str) -> None:
    assert is_canonical_b64url(text) is _canonical_by_the_standard_library(text)
