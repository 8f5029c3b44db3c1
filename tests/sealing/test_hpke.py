"""signing.hpke: both suites, key files, kid, info binding, pyhpke as an independent judge."""

from __future__ import annotations

import hashlib
import logging
import subprocess
from pathlib import Path

import pytest
from pyhpke import AEADId, CipherSuite, KDFId, KEMId

from signing.encoding import b64url
from signing.errors import DecryptionFailed, MalformedInput
from signing.hpke import (
    HpkePrivateKey,
    HpkePublicKey,
    HpkeSuite,
    enc_length,
    generate_hpke_key,
    hpke_open,
    hpke_seal,
    seal_info,
)

INFO = seal_info("file-key", {"recipient": "420106", "kid": "abc"})


# the HPKE suites (RFC 9180); sm2-sm4gcm shares the interface, tests/sm_profile has its own
HPKE = [s for s in HpkeSuite if s is not HpkeSuite.SM2_SM4GCM]


@pytest.fixture(scope="module", params=HPKE)
def key(request: pytest.FixtureRequest) -> HpkePrivateKey:
    return generate_hpke_key(request.param)


def pyhpke_suite() -> CipherSuite:
    return CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES256_GCM)


def test_seal_info_layout_is_prefix_purpose_nul_canonical_json() -> None:
    info = seal_info("file-key", {"z": "1", "a": "通办"})
    assert info == b'tongban/v1 file-key\x00{"a":"' + "通办".encode() + b'","z":"1"}'


@pytest.mark.parametrize("purpose", ["", "File-Key", "file key", "file\x00key", "-x"])
def test_seal_info_refuses_purposes_outside_lowercase_ascii(purpose: str) -> None:
    with pytest.raises(ValueError, match="purpose"):
        seal_info(purpose, {})


def test_round_trip_and_ciphertext_is_enc_then_aead_output(key: HpkePrivateKey) -> None:
    plaintext = b"k" * 32
    ciphertext = hpke_seal(plaintext, key.public_key(), info=INFO)
    assert len(ciphertext) == enc_length(key.suite) + len(plaintext) + 16
    assert hpke_open(ciphertext, key, info=INFO) == plaintext


def test_enc_lengths_are_32_and_1120() -> None:
    assert enc_length(HpkeSuite.X25519) == 32
    assert enc_length(HpkeSuite.MLKEM768_X25519) == 1120


def test_every_seal_uses_a_fresh_encapsulation(key: HpkePrivateKey) -> None:
    a = hpke_seal(b"same", key.public_key(), info=INFO)
    b = hpke_seal(b"same", key.public_key(), info=INFO)
    assert a[: enc_length(key.suite)] != b[: enc_length(key.suite)]


def test_wrong_info_is_refused(key: HpkePrivateKey) -> None:
    ciphertext = hpke_seal(b"secret", key.public_key(), info=INFO)
    with pytest.raises(DecryptionFailed):
        hpke_open(ciphertext, key, info=seal_info("file-key", {"recipient": "420107"}))


def test_wrong_key_of_the_same_suite_is_refused(key: HpkePrivateKey) -> None:
    ciphertext = hpke_seal(b"secret", key.public_key(), info=INFO)
    with pytest.raises(DecryptionFailed):
        hpke_open(ciphertext, generate_hpke_key(key.suite), info=INFO)


def test_tampering_with_enc_or_ciphertext_is_refused(key: HpkePrivateKey) -> None:
    ciphertext = hpke_seal(b"secret stream key", key.public_key(), info=INFO)
    n = enc_length(key.suite)
    for position in [0, n // 2, n - 1, n, len(ciphertext) - 1]:
        tampered = bytearray(ciphertext)
        tampered[position] ^= 0x04
        with pytest.raises(DecryptionFailed):
            hpke_open(bytes(tampered), key, info=INFO)


@pytest.mark.parametrize("cut", [1, 16, 17])
def test_truncated_ciphertext_is_refused(key: HpkePrivateKey, cut: int) -> None:
    ciphertext = hpke_seal(b"", key.public_key(), info=INFO)
    with pytest.raises(DecryptionFailed):
        hpke_open(ciphertext[:-cut], key, info=INFO)


def test_failure_is_opaque_and_cause_is_logged(
    key: HpkePrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    ciphertext = hpke_seal(b"secret", key.public_key(), info=INFO)
    with (
        caplog.at_level(logging.INFO, logger="tongban.signing"),
        pytest.raises(DecryptionFailed) as caught,
    ):
        hpke_open(ciphertext, key, info=b"other")
    assert str(caught.value) == "decryption failed"
    assert any("tag" in r.getMessage() for r in caplog.records)


def test_private_key_pem_round_trip(key: HpkePrivateKey) -> None:
    pem = key.to_pem()
    assert HpkePrivateKey.from_pem(pem) == key
    assert "secret" not in repr(key)  # key material never lands in logs via repr


def test_x25519_private_key_is_pkcs8_that_openssl_reads(tmp_path: Path) -> None:
    key = generate_hpke_key(HpkeSuite.X25519)
    path = tmp_path / "hpke-x25519.key"
    path.write_bytes(key.to_pem())
    der = subprocess.run(
        ["openssl", "pkey", "-in", str(path), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    assert der[-32:] == key.public_key().public_bytes


def test_hybrid_private_key_pem_holds_mlkem_seed_then_x25519_key() -> None:
    key = generate_hpke_key(HpkeSuite.MLKEM768_X25519)
    pem = key.to_pem().decode()
    assert pem.startswith("-----BEGIN TONGBAN MLKEM768X25519 PRIVATE KEY-----\n")
    assert len(key.secret) == 96
    assert len(key.public_key().public_bytes) == 1184 + 32


@pytest.mark.parametrize(
    "pem",
    [
        b"",
        b"-----BEGIN TONGBAN MLKEM768X25519 PRIVATE KEY-----\nAAAA\n"
        b"-----END TONGBAN MLKEM768X25519 PRIVATE KEY-----\n",
        b"-----BEGIN TONGBAN MLKEM768X25519 PRIVATE KEY-----\nAAAA\n",
        b"-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n",
    ],
)
def test_malformed_private_key_pem_is_refused(pem: bytes) -> None:
    with pytest.raises(MalformedInput):
        HpkePrivateKey.from_pem(pem)


def test_an_ed25519_pkcs8_key_is_not_an_hpke_key() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(MalformedInput):
        HpkePrivateKey.from_pem(pem)


def test_kid_is_truncated_sha256_of_suite_nul_public_bytes(key: HpkePrivateKey) -> None:
    public = key.public_key()
    digest = hashlib.sha256(key.suite.value.encode() + b"\x00" + public.public_bytes).digest()
    assert public.kid == b64url(digest[:16])
    assert len(public.kid) == 22


def test_public_key_json_round_trip_and_kid_mismatch_refused(key: HpkePrivateKey) -> None:
    public = key.public_key()
    obj = public.to_json()
    assert set(obj) == {"kid", "suite", "pub"}
    assert HpkePublicKey.from_json(obj) == public
    with pytest.raises(MalformedInput):
        HpkePublicKey.from_json({**obj, "kid": "A" * 22})
    with pytest.raises(MalformedInput):
        HpkePublicKey.from_json({**obj, "suite": "p256-sha256-aes128gcm"})
    with pytest.raises(MalformedInput):
        HpkePublicKey.from_json({**obj, "extra": "x"})


@pytest.mark.parametrize("suite", list(HpkeSuite))
def test_public_key_of_wrong_length_is_refused(suite: HpkeSuite) -> None:
    with pytest.raises(MalformedInput):
        HpkePublicKey(suite, b"\x01" * 33)


def test_sealing_to_a_low_order_x25519_point_is_refused() -> None:
    with pytest.raises(MalformedInput):
        hpke_seal(b"secret", HpkePublicKey(HpkeSuite.X25519, bytes(32)), info=INFO)


def test_pyhpke_opens_our_x25519_seal() -> None:
    key = generate_hpke_key(HpkeSuite.X25519)
    ciphertext = hpke_seal(b"stream key bytes", key.public_key(), info=INFO)
    suite = pyhpke_suite()
    skr = suite.kem.deserialize_private_key(key.secret)
    recipient = suite.create_recipient_context(ciphertext[:32], skr, info=INFO)
    assert recipient.open(ciphertext[32:]) == b"stream key bytes"


def test_we_open_pyhpke_x25519_seal() -> None:
    key = generate_hpke_key(HpkeSuite.X25519)
    suite = pyhpke_suite()
    pkr = suite.kem.deserialize_public_key(key.public_key().public_bytes)
    enc, sender = suite.create_sender_context(pkr, info=INFO)
    ciphertext = enc + sender.seal(b"from pyhpke")
    assert hpke_open(ciphertext, key, info=INFO) == b"from pyhpke"
    with pytest.raises(DecryptionFailed):
        hpke_open(ciphertext, key, info=INFO + b"x")


def test_key_of_one_suite_cannot_open_the_other_suite() -> None:
    x = generate_hpke_key(HpkeSuite.X25519)
    pq = generate_hpke_key(HpkeSuite.MLKEM768_X25519)
    with pytest.raises(DecryptionFailed):
        hpke_open(hpke_seal(b"s", x.public_key(), info=INFO), pq, info=INFO)
    with pytest.raises(DecryptionFailed):
        hpke_open(hpke_seal(b"s", pq.public_key(), info=INFO), x, info=INFO)


@pytest.mark.parametrize("suite", list(HpkeSuite))
def test_a_key_object_is_built_once_and_still_opens_and_refuses(suite: HpkeSuite) -> None:
    """Issue 12: expanding the ML-KEM seed cost more than the decapsulation; a private
    (and a public) key builds its key object once, and the cached object behaves as
    a fresh one: it opens what was sealed to it and nothing else."""
    key = generate_hpke_key(suite)
    public = key.public_key()
    assert key._key() is key._key()
    assert public._key() is public._key()
    for n in range(3):
        sealed = hpke_seal(b"packet %d" % n, public, info=b"i")
        assert hpke_open(sealed, key, info=b"i") == b"packet %d" % n
        with pytest.raises(DecryptionFailed):
            hpke_open(sealed, generate_hpke_key(suite), info=b"i")
