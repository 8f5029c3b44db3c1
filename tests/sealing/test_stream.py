"""signing.stream: Tink AES-GCM-HKDF streaming, checked against our written spec."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sealing_stream_spec import spec_decrypt, spec_encrypt

from signing.errors import DecryptionFailed, MalformedInput
from signing.stream import (
    CIPHERTEXT_SEGMENT_SIZE,
    HEADER_SIZE,
    TAG_SIZE,
    ciphertext_size,
    decrypt_stream,
    encrypt_stream,
    new_stream_key,
)

FIRST = CIPHERTEXT_SEGMENT_SIZE - HEADER_SIZE - TAG_SIZE  # 65480 plaintext bytes
FULL = CIPHERTEXT_SEGMENT_SIZE - TAG_SIZE  # 65520 plaintext bytes
SIZES = [
    0,
    1,
    FIRST - 1,
    FIRST,
    FIRST + 1,
    FIRST + FULL - 1,
    FIRST + FULL,
    FIRST + FULL + 1,
    FIRST + 3 * FULL + 12345,
]
AAD = b"tongban test aad"


def encrypt(plaintext: bytes, key: bytes, aad: bytes = AAD) -> bytes:
    out = io.BytesIO()
    n = encrypt_stream(io.BytesIO(plaintext), out, key, aad=aad)
    assert n == len(out.getvalue())
    return out.getvalue()


def decrypt(ciphertext: bytes, key: bytes, aad: bytes = AAD) -> bytes:
    out = io.BytesIO()
    n = decrypt_stream(io.BytesIO(ciphertext), out, key, aad=aad)
    assert n == len(out.getvalue())
    return out.getvalue()


def segments(ciphertext: bytes) -> list[bytes]:
    """Split after the header: first segment is shorter by the header."""
    body = ciphertext[HEADER_SIZE:]
    parts = [body[: CIPHERTEXT_SEGMENT_SIZE - HEADER_SIZE]]
    body = body[CIPHERTEXT_SEGMENT_SIZE - HEADER_SIZE :]
    while body:
        parts.append(body[:CIPHERTEXT_SEGMENT_SIZE])
        body = body[CIPHERTEXT_SEGMENT_SIZE:]
    return parts


@pytest.fixture(scope="module")
def key() -> bytes:
    return new_stream_key()


@pytest.fixture(scope="module")
def multi(key: bytes) -> tuple[bytes, bytes]:
    """A four-segment plaintext and its ciphertext."""
    plaintext = os.urandom(FIRST + 2 * FULL + 1000)
    return plaintext, encrypt(plaintext, key)


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_and_exact_ciphertext_length(key: bytes, size: int) -> None:
    plaintext = os.urandom(size)
    ciphertext = encrypt(plaintext, key)
    assert len(ciphertext) == ciphertext_size(size)
    assert decrypt(ciphertext, key) == plaintext


@pytest.mark.parametrize("size", SIZES)
def test_independent_spec_decryptor_opens_tink_output(key: bytes, size: int) -> None:
    plaintext = os.urandom(size)
    assert spec_decrypt(encrypt(plaintext, key), key, AAD) == plaintext


@pytest.mark.parametrize("size", SIZES)
def test_tink_opens_output_of_the_independent_spec_encryptor(key: bytes, size: int) -> None:
    plaintext = os.urandom(size)
    ciphertext = spec_encrypt(plaintext, key, AAD, salt=os.urandom(32), prefix=os.urandom(7))
    assert decrypt(ciphertext, key) == plaintext


def test_header_is_length_byte_salt_and_nonce_prefix_and_fresh_each_time(key: bytes) -> None:
    a, b = encrypt(b"same", key), encrypt(b"same", key)
    assert a[0] == HEADER_SIZE == 40
    assert a[1:40] != b[1:40]
    assert a != b


def test_streams_are_not_closed(key: bytes) -> None:
    src, dst = io.BytesIO(b"x" * 10), io.BytesIO()
    encrypt_stream(src, dst, key, aad=AAD)
    assert not src.closed
    assert not dst.closed
    src2, out = io.BytesIO(dst.getvalue()), io.BytesIO()
    decrypt_stream(src2, out, key, aad=AAD)
    assert not src2.closed
    assert not out.closed


def test_stream_key_must_be_32_bytes() -> None:
    with pytest.raises(MalformedInput):
        encrypt_stream(io.BytesIO(b""), io.BytesIO(), b"k" * 16, aad=AAD)


def test_new_stream_keys_are_32_random_bytes() -> None:
    assert len(new_stream_key()) == 32
    assert new_stream_key() != new_stream_key()


def test_dropping_the_last_segment_is_detected(key: bytes, multi: tuple[bytes, bytes]) -> None:
    _, ciphertext = multi
    parts = segments(ciphertext)
    truncated = ciphertext[:HEADER_SIZE] + b"".join(parts[:-1])
    with pytest.raises(DecryptionFailed):
        decrypt(truncated, key)


@pytest.mark.parametrize("cut", [1, 17, CIPHERTEXT_SEGMENT_SIZE // 2, CIPHERTEXT_SEGMENT_SIZE + 5])
def test_cutting_mid_segment_is_detected(key: bytes, multi: tuple[bytes, bytes], cut: int) -> None:
    _, ciphertext = multi
    with pytest.raises(DecryptionFailed):
        decrypt(ciphertext[:-cut], key)


@pytest.mark.parametrize("cut", [0, 1, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + TAG_SIZE - 1])
def test_ciphertext_shorter_than_header_plus_tag_is_refused(key: bytes, cut: int) -> None:
    with pytest.raises(DecryptionFailed):
        decrypt(encrypt(b"", key)[:cut], key)


def test_reordering_two_segments_is_detected(key: bytes, multi: tuple[bytes, bytes]) -> None:
    _, ciphertext = multi
    parts = segments(ciphertext)
    assert len(parts) == 4
    assert len(parts[1]) == len(parts[2])
    parts[1], parts[2] = parts[2], parts[1]
    with pytest.raises(DecryptionFailed):
        decrypt(ciphertext[:HEADER_SIZE] + b"".join(parts), key)


def test_flipping_any_byte_of_a_small_ciphertext_is_detected(key: bytes) -> None:
    ciphertext = encrypt(b"small confidential attachment", key)
    for position in range(len(ciphertext)):
        tampered = bytearray(ciphertext)
        tampered[position] ^= 0x01
        with pytest.raises(DecryptionFailed):
            decrypt(bytes(tampered), key)


def test_flipping_bytes_in_every_segment_of_a_long_ciphertext_is_detected(
    key: bytes, multi: tuple[bytes, bytes]
) -> None:
    _, ciphertext = multi
    positions = [0, 5, 35, HEADER_SIZE, CIPHERTEXT_SEGMENT_SIZE - 1, CIPHERTEXT_SEGMENT_SIZE]
    positions += [2 * CIPHERTEXT_SEGMENT_SIZE + 7, 3 * CIPHERTEXT_SEGMENT_SIZE + 3]
    positions += [len(ciphertext) - 1]
    for position in positions:
        tampered = bytearray(ciphertext)
        tampered[position] ^= 0x80
        with pytest.raises(DecryptionFailed):
            decrypt(bytes(tampered), key)


def test_wrong_aad_is_detected(key: bytes) -> None:
    ciphertext = encrypt(b"payload", key)
    with pytest.raises(DecryptionFailed):
        decrypt(ciphertext, key, aad=AAD + b"x")
    with pytest.raises(DecryptionFailed):
        decrypt(ciphertext, key, aad=b"")


def test_wrong_key_is_detected(key: bytes, multi: tuple[bytes, bytes]) -> None:
    with pytest.raises(DecryptionFailed):
        decrypt(multi[1], new_stream_key())


@pytest.mark.parametrize("size", [100, FIRST, FIRST + FULL])
@pytest.mark.parametrize("extra", [1, 16, CIPHERTEXT_SEGMENT_SIZE])
def test_appended_bytes_are_detected(key: bytes, size: int, extra: int) -> None:
    # FIRST and FIRST + FULL end in a full-size segment: the tink-cc#20 case.
    ciphertext = encrypt(os.urandom(size), key)
    with pytest.raises(DecryptionFailed):
        decrypt(ciphertext + os.urandom(extra), key)


def test_splicing_segments_of_two_streams_under_one_key_is_detected(key: bytes) -> None:
    a = encrypt(os.urandom(FIRST + FULL + 10), key)
    b = encrypt(os.urandom(FIRST + FULL + 10), key)
    spliced = a[:CIPHERTEXT_SEGMENT_SIZE] + b[CIPHERTEXT_SEGMENT_SIZE:]
    with pytest.raises(DecryptionFailed):
        decrypt(spliced, key)


@settings(max_examples=25, deadline=None)
@given(size=st.integers(min_value=0, max_value=FIRST + 2 * FULL + 10), data=st.data())
def test_any_size_round_trips_matches_the_spec_and_any_flip_is_detected(
    size: int, data: st.DataObject
) -> None:
    key = b"\x07" * 32
    plaintext = os.urandom(size)
    ciphertext = encrypt(plaintext, key)
    assert len(ciphertext) == ciphertext_size(size)
    assert spec_decrypt(ciphertext, key, AAD) == plaintext
    assert decrypt(ciphertext, key) == plaintext
    position = data.draw(st.integers(min_value=0, max_value=len(ciphertext) - 1))
    bit = data.draw(st.integers(min_value=0, max_value=7))
    tampered = bytearray(ciphertext)
    tampered[position] ^= 1 << bit
    with pytest.raises(DecryptionFailed):
        decrypt(bytes(tampered), key)


VECTORS = json.loads((Path(__file__).parent / "vectors" / "stream_v1.json").read_text())


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: str(c["plaintext_size"]))
def test_fixed_vectors_are_reproduced_by_the_spec_and_opened_by_tink(case: dict[str, Any]) -> None:
    key, aad = bytes.fromhex(VECTORS["key"]), bytes.fromhex(VECTORS["aad"])
    plaintext = bytes((7 * i + 3) % 256 for i in range(case["plaintext_size"]))
    ciphertext = spec_encrypt(
        plaintext,
        key,
        aad,
        salt=bytes.fromhex(VECTORS["salt"]),
        prefix=bytes.fromhex(VECTORS["nonce_prefix"]),
    )
    assert len(ciphertext) == case["ciphertext_size"] == ciphertext_size(len(plaintext))
    assert hashlib.sha256(ciphertext).hexdigest() == case["ciphertext_sha256"]
    if "ciphertext" in case:
        assert ciphertext.hex() == case["ciphertext"]
    assert decrypt(ciphertext, key, aad=aad) == plaintext
