"""Bitstring Status List encoding: bit order, minimum size, GZIP + multibase framing."""

from __future__ import annotations

import base64
import gzip

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signing.errors import MalformedInput
from signing.status_list import (
    MIN_BITS,
    StatusList,
    StatusPurpose,
    reinstate,
    revoke,
    suspend,
)

REV = StatusPurpose.REVOCATION
SUS = StatusPurpose.SUSPENSION

# The example encodedList of W3C Bitstring Status List v1.0 §2.1 (an all-zero 16 KiB list).
SPEC_EXAMPLE = "uH4sIAAAAAAAAA-3BMQEAAADCoPVPbQwfoAAAAAAAAAAAAAAAAAAAAIC3AYbSVKsAQAAA"


def _independent_encoding(raw: bytes) -> str:
    """encodedList computed without our code: stdlib gzip (other level, mtime) + base64."""
    packed = gzip.compress(raw, compresslevel=1, mtime=1_700_000_000)
    return "u" + base64.urlsafe_b64encode(packed).decode().rstrip("=")


def test_minimum_list_is_16_kib_of_zero_bits() -> None:
    lst = StatusList.empty(REV)
    assert MIN_BITS == 131_072
    assert lst.size == 131_072
    assert lst.bits == bytes(16_384)
    assert lst.set_indices() == ()


def test_spec_example_decodes_to_an_empty_minimum_list() -> None:
    lst = StatusList.decode(REV, SPEC_EXAMPLE)
    assert lst.bits == bytes(16_384)


def test_index_zero_is_the_leftmost_bit_of_the_first_byte() -> None:
    lst = StatusList.empty(REV)
    for index in (0, 9, 14, 131_071):
        lst = revoke(lst, index)
    # Hand-computed: bit 0 -> 0x80 of byte 0; bits 9 and 14 -> 0x40 | 0x02 of byte 1;
    # bit 131071 -> 0x01 of the last byte.
    expected = bytearray(16_384)
    expected[0] = 0b1000_0000
    expected[1] = 0b0100_0010
    expected[16_383] = 0b0000_0001
    assert lst.bits == bytes(expected)
    assert lst.set_indices() == (0, 9, 14, 131_071)
    assert [lst.get(i) for i in (0, 1, 8, 9, 10, 14, 15, 131_070, 131_071)] == [
        True, False, False, True, False, True, False, False, True,
    ]  # fmt: skip


def test_hand_built_bitstring_decodes_with_the_same_bit_order() -> None:
    raw = bytearray(16_384)
    raw[2] = 0b0010_0000  # index 2*8 + 2 = 18
    raw[100] = 0b0000_0001  # index 100*8 + 7 = 807
    lst = StatusList.decode(SUS, _independent_encoding(bytes(raw)))
    assert lst.set_indices() == (18, 807)
    assert lst.get(18)
    assert lst.get(807)
    assert not lst.get(19)


def test_encoding_is_multibase_base64url_of_gzip() -> None:
    lst = suspend(StatusList.empty(SUS), 42)
    text = lst.encode()
    assert text.startswith("u")
    assert not set(text) & set("=+/")
    packed = base64.urlsafe_b64decode(text[1:] + "=" * (-len(text[1:]) % 4))
    assert packed[:2] == b"\x1f\x8b"  # GZIP magic, RFC 1952
    assert gzip.decompress(packed) == lst.bits
    assert lst.encode() == text  # deterministic (mtime 0)


def test_shorter_than_minimum_is_refused() -> None:
    with pytest.raises(MalformedInput):
        StatusList(REV, bytes(16_383))
    with pytest.raises(MalformedInput):
        StatusList.decode(REV, _independent_encoding(bytes(16_383)))
    with pytest.raises(MalformedInput):
        StatusList.empty(REV, MIN_BITS - 8)


def test_larger_lists_keep_their_size() -> None:
    lst = revoke(StatusList.empty(REV, MIN_BITS * 2), MIN_BITS * 2 - 1)
    again = StatusList.decode(REV, lst.encode())
    assert again.size == MIN_BITS * 2
    assert again.set_indices() == (MIN_BITS * 2 - 1,)


@pytest.mark.parametrize(
    "text",
    [
        SPEC_EXAMPLE[1:],  # no multibase prefix
        "z" + SPEC_EXAMPLE[1:],  # base58btc prefix is not what the spec uses
        "u" + base64.urlsafe_b64encode(bytes(16_384)).decode().rstrip("="),  # not GZIP
        SPEC_EXAMPLE + "A",  # broken base64url length
        "u" + SPEC_EXAMPLE[1:].replace("A", "=", 1),  # padding / bad alphabet
    ],
)
def test_malformed_encoded_lists_are_refused(text: str) -> None:
    with pytest.raises(MalformedInput):
        StatusList.decode(REV, text)


def test_trailing_data_after_the_gzip_member_is_refused() -> None:
    packed = gzip.compress(bytes(16_384), mtime=0) + b"junk"
    text = "u" + base64.urlsafe_b64encode(packed).decode().rstrip("=")
    with pytest.raises(MalformedInput):
        StatusList.decode(REV, text)


def test_decompression_bomb_is_refused() -> None:
    packed = gzip.compress(bytes(17 * 1024 * 1024), mtime=0)  # ~17 KiB compressed
    text = "u" + base64.urlsafe_b64encode(packed).decode().rstrip("=")
    with pytest.raises(MalformedInput, match="16 MiB"):
        StatusList.decode(REV, text)


@pytest.mark.parametrize("index", [-1, MIN_BITS, True])
def test_index_outside_the_list_is_refused(index: int) -> None:
    with pytest.raises(MalformedInput):
        StatusList.empty(REV).get(index)


def test_suspension_is_reversible_and_revocation_is_not() -> None:
    sus = suspend(StatusList.empty(SUS), 7)
    assert sus.get(7)
    assert not reinstate(sus, 7).get(7)
    rev = revoke(StatusList.empty(REV), 7)
    with pytest.raises(MalformedInput):
        reinstate(rev, 7)  # there is no "un-revoke"
    with pytest.raises(MalformedInput):
        suspend(rev, 8)  # wrong list for the purpose
    with pytest.raises(MalformedInput):
        revoke(sus, 8)


def test_updates_return_new_lists_and_leave_the_old_one_alone() -> None:
    empty = StatusList.empty(REV)
    one = revoke(empty, 5)
    assert not empty.get(5)
    assert one.get(5)


@settings(max_examples=40, deadline=None)
@given(st.sets(st.integers(min_value=0, max_value=MIN_BITS - 1), max_size=50))
def test_any_set_of_indices_round_trips(indices: set[int]) -> None:
    lst = StatusList.empty(SUS)
    for i in indices:
        lst = suspend(lst, i)
    again = StatusList.decode(SUS, lst.encode())
    assert again.set_indices() == tuple(sorted(indices))
    assert again == lst
