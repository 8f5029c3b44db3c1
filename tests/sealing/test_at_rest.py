"""Sealing at rest under the node's own HPKE private key (signing.at_rest, issue 12)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from signing.at_rest import AtRest, open_at_rest, seal_at_rest
from signing.errors import DecryptionFailed
from signing.hpke import HpkeSuite, generate_hpke_key, seal_info

INFO = seal_info("packet-copy", {"id": "p-1"})
TEXT = "eyJhbGciOiJFZERTQSJ9.e30.c2ln".encode("ascii")


@pytest.mark.parametrize("suite", list(HpkeSuite))
def test_round_trip_with_a_fresh_key_per_text(suite: HpkeSuite) -> None:
    key = generate_hpke_key(suite)
    first, second = seal_at_rest(TEXT, key, info=INFO), seal_at_rest(TEXT, key, info=INFO)
    assert first != second  # a fresh salt, so a fresh key, for every text
    assert open_at_rest(first, key, info=INFO) == TEXT
    assert open_at_rest(second, key, info=INFO) == TEXT
    assert len(first) == 16 + len(TEXT) + 16


def test_the_construction_is_the_documented_one() -> None:
    """Recomputed from the module docstring with cryptography's primitives."""
    key = generate_hpke_key(HpkeSuite.X25519)
    sealed = seal_at_rest(TEXT, key, info=INFO)
    root = HKDF(hashes.SHA256(), 32, salt=None, info=b"tongban/v1 at-rest root").derive(key.secret)
    derived = HKDF(
        hashes.SHA256(), 32, salt=sealed[:16], info=b"tongban/v1 at-rest " + INFO
    ).derive(root)
    assert AESGCM(derived).decrypt(bytes(12), sealed[16:], None) == TEXT


def test_another_key_another_use_or_altered_bytes_do_not_open() -> None:
    key = generate_hpke_key(HpkeSuite.MLKEM768_X25519)
    sealed = seal_at_rest(TEXT, key, info=INFO)
    with pytest.raises(DecryptionFailed):
        open_at_rest(sealed, generate_hpke_key(HpkeSuite.MLKEM768_X25519), info=INFO)
    with pytest.raises(DecryptionFailed):
        open_at_rest(sealed, key, info=seal_info("packet-copy", {"id": "p-2"}))
    for i in (0, 16, len(sealed) - 1):  # salt, ciphertext, tag
        altered = bytearray(sealed)
        altered[i] ^= 1
        with pytest.raises(DecryptionFailed):
            open_at_rest(bytes(altered), key, info=INFO)
    with pytest.raises(DecryptionFailed):
        open_at_rest(sealed[:31], key, info=INFO)


def test_an_sm_key_seals_with_sm4_gcm_as_documented() -> None:
    """``r2``: HKDF-SM3 and SM4-GCM, recomputed from the module docstring; the cipher is
    part of what opens it (an ``r2`` text does not open as ``r1`` and back)."""
    from signing.sm_seal import sm4_gcm_decrypt

    key = generate_hpke_key(HpkeSuite.SM2_SM4GCM)
    assert AtRest.for_key(key) is AtRest.SM4GCM
    assert AtRest.for_key(generate_hpke_key(HpkeSuite.X25519)) is AtRest.AES256GCM
    sealed = seal_at_rest(TEXT, key, info=INFO, cipher=AtRest.SM4GCM)
    assert len(sealed) == 16 + len(TEXT) + 16
    root = HKDF(hashes.SM3(), 32, salt=None, info=b"tongban/v1 at-rest root sm").derive(key.secret)
    derived = HKDF(hashes.SM3(), 16, salt=sealed[:16], info=b"tongban/v1 at-rest " + INFO).derive(
        root
    )
    assert sm4_gcm_decrypt(derived, bytes(12), b"", sealed[16:]) == TEXT
    assert open_at_rest(sealed, key, info=INFO, cipher=AtRest.SM4GCM) == TEXT
    with pytest.raises(DecryptionFailed):
        open_at_rest(sealed, key, info=INFO)  # as r1 (AES-256-GCM)
    older = seal_at_rest(TEXT, key, info=INFO)  # r1 under an SM key, as before r2 existed
    assert open_at_rest(older, key, info=INFO) == TEXT
    with pytest.raises(DecryptionFailed):
        open_at_rest(older, key, info=INFO, cipher=AtRest.SM4GCM)
    altered = bytearray(sealed)
    altered[20] ^= 1
    with pytest.raises(DecryptionFailed):
        open_at_rest(bytes(altered), key, info=INFO, cipher=AtRest.SM4GCM)
