"""signing.segments: resumable sealing writes exactly Tink's stream (the fixed vectors),
whatever the pieces, and continues from a boundary with nothing but the header; with the
SM4-GCM cipher it writes the §4.4 stream that signing.sm_seal opens (and Tink refuses)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sealing_stream_spec import spec_decrypt

from signing import sm_seal
from signing.errors import DecryptionFailed, MalformedInput
from signing.segments import (
    FIRST_SEGMENT,
    SEGMENT,
    SegmentCipher,
    SegmentSealer,
    ciphertext_offset,
    open_sealed_prefix,
    open_tail,
    seal_tail,
    segment_boundary,
)
from signing.stream import ciphertext_size, decrypt_stream, new_stream_key

VECTORS = json.loads((Path(__file__).parent / "vectors" / "stream_v1.json").read_text())
AAD = b"tongban test aad"


def tink_open(ciphertext: bytes, key: bytes, aad: bytes = AAD) -> bytes:
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(ciphertext), out, key, aad=aad)
    return out.getvalue()


def sm_open(ciphertext: bytes, key: bytes, aad: bytes = AAD) -> bytes:
    out = io.BytesIO()
    sm_seal.decrypt_stream(io.BytesIO(ciphertext), out, key, aad)
    return out.getvalue()


def seal_in_pieces(sealer: SegmentSealer, plaintext: bytes, rng: random.Random, most: int) -> bytes:
    out = [sealer.header] if sealer.sealed == 0 else []
    out += sealer.feed(b"")
    pos = 0
    while pos < len(plaintext):
        n = rng.randint(1, most)
        out += sealer.feed(plaintext[pos : pos + n])
        pos += n
    return b"".join(out)


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: str(c["plaintext_size"]))
@pytest.mark.parametrize("most", [1 << 30, 70_000, 4096, 1000])
def test_the_fixed_vectors_come_out_whatever_the_pieces(case: dict[str, Any], most: int) -> None:
    size = case["plaintext_size"]
    if most == 1000 and size > 70_000:
        most = 9_999  # keep the small-piece run short on the three-segment vector
    header = bytes([40]) + bytes.fromhex(VECTORS["salt"]) + bytes.fromhex(VECTORS["nonce_prefix"])
    key, aad = bytes.fromhex(VECTORS["key"]), bytes.fromhex(VECTORS["aad"])
    plaintext = bytes((7 * i + 3) % 256 for i in range(size))
    sealer = SegmentSealer(key, header, aad=aad, size=size)
    ciphertext = seal_in_pieces(sealer, plaintext, random.Random(size ^ most), most)
    assert sealer.done
    assert len(ciphertext) == case["ciphertext_size"] == ciphertext_size(size)
    assert hashlib.sha256(ciphertext).hexdigest() == case["ciphertext_sha256"]
    assert tink_open(ciphertext, key, aad) == plaintext


@pytest.mark.parametrize("cipher", list(SegmentCipher))
@pytest.mark.parametrize(
    "size",
    [1, FIRST_SEGMENT, FIRST_SEGMENT + 1, FIRST_SEGMENT + SEGMENT, FIRST_SEGMENT + 3 * SEGMENT + 5],
)
def test_a_stream_stopped_at_any_boundary_continues_from_its_header(
    size: int, cipher: SegmentCipher
) -> None:
    key, plaintext = new_stream_key(), os.urandom(size)
    stops = {0, 1, FIRST_SEGMENT - 1, FIRST_SEGMENT, size // 2, size - 1}
    for stop in sorted(s for s in stops if s < size):  # at ``size`` the stream is complete
        first = SegmentSealer.start(key, aad=AAD, size=size, cipher=cipher)
        head = first.header + b"".join(first.feed(plaintext[:stop]))
        segments, boundary = segment_boundary(stop)
        assert first.sealed == boundary
        assert len(head) == ciphertext_offset(segments)
        kept = b"".join(
            open_sealed_prefix(io.BytesIO(head), key, aad=AAD, segments=segments, cipher=cipher)
        )
        assert kept == plaintext[:boundary]
        again = SegmentSealer.resume(
            key, first.header, aad=AAD, size=size, offset=boundary, cipher=cipher
        )
        whole = head + b"".join(again.feed(plaintext[boundary:]))
        assert again.done
        if cipher is SegmentCipher.AES256GCM:
            assert tink_open(whole, key) == plaintext
            assert spec_decrypt(whole, key, AAD) == plaintext
        else:
            assert sm_open(whole, key) == plaintext


@pytest.mark.parametrize("size", [0, 10, FIRST_SEGMENT, FIRST_SEGMENT + 2 * SEGMENT + 7])
def test_the_sm4_cipher_writes_the_sm4_gcm_stream_and_tink_refuses_it(size: int) -> None:
    """Fed in uneven pieces, the SM4-GCM sealer writes what signing.sm_seal's stream
    reader opens, as long as sm_seal's own writer makes for the size; the Tink reader
    and an SM4 reader with the wrong key or associated data refuse it."""
    key, plaintext = new_stream_key(), os.urandom(size)
    sealer = SegmentSealer.start(key, aad=AAD, size=size, cipher=SegmentCipher.SM4GCM)
    ciphertext = seal_in_pieces(sealer, plaintext, random.Random(size), 50_000)
    assert sealer.done
    assert sm_open(ciphertext, key) == plaintext
    reference = io.BytesIO()
    sm_seal.encrypt_stream(io.BytesIO(plaintext), reference, key, AAD)
    assert len(ciphertext) == len(reference.getvalue()) == ciphertext_size(size)
    with pytest.raises(DecryptionFailed):
        tink_open(ciphertext, key)
    for other_key, aad in ((new_stream_key(), AAD), (key, b"another use")):
        with pytest.raises(DecryptionFailed):
            sm_open(ciphertext, other_key, aad)


def test_misuse_is_refused() -> None:
    key = new_stream_key()
    sealer = SegmentSealer.start(key, aad=AAD, size=10)
    with pytest.raises(MalformedInput):
        sealer.feed(b"x" * 11)
    with pytest.raises(MalformedInput):
        SegmentSealer.resume(key, sealer.header, aad=AAD, size=10**6, offset=100)
    with pytest.raises(MalformedInput):
        SegmentSealer.start(b"short", aad=AAD, size=10)


def test_a_sealed_prefix_that_was_changed_does_not_open() -> None:
    key, plaintext = new_stream_key(), os.urandom(FIRST_SEGMENT + SEGMENT)
    sealer = SegmentSealer.start(key, aad=AAD, size=len(plaintext))
    whole = sealer.header + b"".join(sealer.feed(plaintext))
    assert (
        b"".join(open_sealed_prefix(io.BytesIO(whole), key, aad=AAD, segments=1))
        == (plaintext[:FIRST_SEGMENT])
    )
    changed = bytearray(whole)
    changed[100] ^= 1
    with pytest.raises(DecryptionFailed):
        list(open_sealed_prefix(io.BytesIO(bytes(changed)), key, aad=AAD, segments=1))
    with pytest.raises(DecryptionFailed):  # the last segment does not pass as a non-last one
        list(open_sealed_prefix(io.BytesIO(whole), key, aad=AAD, segments=2))


@pytest.mark.parametrize("cipher", list(SegmentCipher))
def test_a_kept_tail_opens_only_for_its_key_header_start_and_cipher(
    cipher: SegmentCipher,
) -> None:
    key = new_stream_key()
    header = SegmentSealer.start(key, aad=AAD, size=10).header
    other = SegmentSealer.start(key, aad=AAD, size=10).header
    kept = seal_tail(key, header, 65_480, b"tail bytes", cipher=cipher)
    assert open_tail(key, header, 65_480, kept, cipher=cipher) == b"tail bytes"
    for args in ((key, header, 0), (key, other, 65_480), (new_stream_key(), header, 65_480)):
        with pytest.raises(DecryptionFailed):
            open_tail(*args, kept, cipher=cipher)
    with pytest.raises(DecryptionFailed):
        open_tail(key, header, 65_480, kept[:5], cipher=cipher)
    [wrong] = set(SegmentCipher) - {cipher}
    with pytest.raises(DecryptionFailed):
        open_tail(key, header, 65_480, kept, cipher=wrong)


def test_the_sm4_tail_is_sm4_gcm_under_an_hkdf_sm3_key() -> None:
    """An SM node keeps no AES ciphertext: the tail is SM4-GCM under
    HKDF-SM3(stream key, salt of the header, "tongban/v1 upload tail"), 16 bytes."""
    key = new_stream_key()
    header = SegmentSealer.start(key, aad=AAD, size=10, cipher=SegmentCipher.SM4GCM).header
    kept = seal_tail(key, header, 0, b"tail bytes", cipher=SegmentCipher.SM4GCM)
    tail_key = HKDF(hashes.SM3(), 16, salt=header[1:33], info=b"tongban/v1 upload tail").derive(key)
    assert sm_seal.sm4_gcm_decrypt(tail_key, kept[:12], bytes(8), kept[12:]) == b"tail bytes"
