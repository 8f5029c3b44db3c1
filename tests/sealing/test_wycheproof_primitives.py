"""Wycheproof vectors for the primitives under sealing.

- X25519 through the key types ``signing.hpke`` builds (and through ``hpke_seal``:
  a recipient key whose shared secret would be all-zero is refused);
- AES-GCM through ``AESGCM`` and HKDF-SHA256 through ``HKDF``, the calls the
  independent stream decryptor (``sealing_stream_spec``) that pins our wire format uses.

A valid case must give the expected output; an invalid case must be refused; an
acceptable case may go either way but, when accepted, must give the expected output.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from signing.errors import MalformedInput
from signing.hpke import HpkePublicKey, HpkeSuite, hpke_seal

# ../shared beside the checkout (as in CI), whatever folder the checkout is in
VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "wycheproof"


def cases(name: str) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    data = json.loads((VECTORS / name).read_text())
    for group in data["testGroups"]:
        for test in group["tests"]:
            yield group, test


def test_vector_files_are_present_and_counted() -> None:
    for name, count in [
        ("x25519_test.json", 518),
        ("aes_gcm_test.json", 316),
        ("hkdf_sha256_test.json", 86),
    ]:
        assert sum(1 for _ in cases(name)) == count


def test_x25519_wycheproof() -> None:
    checked = refused = 0
    for _, test in cases("x25519_test.json"):
        private = x25519.X25519PrivateKey.from_private_bytes(bytes.fromhex(test["private"]))
        public = x25519.X25519PublicKey.from_public_bytes(bytes.fromhex(test["public"]))
        try:
            shared = private.exchange(public)
        except ValueError:
            assert test["result"] != "valid", test["tcId"]
            refused += 1
            continue
        assert shared.hex() == test["shared"], test["tcId"]
        checked += 1
    assert checked >= 480
    assert refused >= 1  # the all-zero shared secrets


def test_hpke_seal_refuses_every_wycheproof_zero_shared_secret_public_key() -> None:
    refused = 0
    for _, test in cases("x25519_test.json"):
        if "ZeroSharedSecret" not in test["flags"]:
            continue
        key = HpkePublicKey(HpkeSuite.X25519, bytes.fromhex(test["public"]))
        with pytest.raises(MalformedInput):
            hpke_seal(b"stream key", key, info=b"")
        refused += 1
    assert refused == 31


def _aes_gcm_applicable(group: dict[str, Any]) -> bool:
    # AESGCM takes 8..128-byte nonces and 128-bit tags; other sizes are not ours.
    return 64 <= group["ivSize"] <= 1024 and group["tagSize"] == 128


def test_aes_gcm_wycheproof() -> None:
    ours = 0
    for group, test in cases("aes_gcm_test.json"):
        if not _aes_gcm_applicable(group):
            continue
        key, iv = bytes.fromhex(test["key"]), bytes.fromhex(test["iv"])
        aad, msg = bytes.fromhex(test["aad"]), bytes.fromhex(test["msg"])
        sealed = bytes.fromhex(test["ct"] + test["tag"])
        aes = AESGCM(key)
        try:
            opened = aes.decrypt(iv, sealed, aad)
        except InvalidTag:
            assert test["result"] != "valid", test["tcId"]
            continue
        assert test["result"] != "invalid", test["tcId"]
        assert opened == msg, test["tcId"]
        assert aes.encrypt(iv, msg, aad) == sealed, test["tcId"]
        if group["keySize"] == 256 and group["ivSize"] == 96:
            ours += 1
    assert ours >= 20  # the AES-256 / 96-bit nonce / 128-bit tag cases the stream uses


def test_aes_gcm_invalid_cases_are_all_refused() -> None:
    invalid = 0
    for group, test in cases("aes_gcm_test.json"):
        if not _aes_gcm_applicable(group) or test["result"] != "invalid":
            continue
        with pytest.raises(InvalidTag):
            AESGCM(bytes.fromhex(test["key"])).decrypt(
                bytes.fromhex(test["iv"]),
                bytes.fromhex(test["ct"] + test["tag"]),
                bytes.fromhex(test["aad"]),
            )
        invalid += 1
    assert invalid > 50


def _hkdf(test: dict[str, Any]) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=test["size"],
        salt=bytes.fromhex(test["salt"]) or None,
        info=bytes.fromhex(test["info"]),
    ).derive(bytes.fromhex(test["ikm"]))


def test_hkdf_sha256_wycheproof() -> None:
    valid = invalid = 0
    for _, test in cases("hkdf_sha256_test.json"):
        if test["result"] == "invalid":  # output longer than 255 hash blocks
            with pytest.raises(ValueError, match="larger than"):
                _hkdf(test)
            invalid += 1
            continue
        assert _hkdf(test).hex() == test["okm"], test["tcId"]
        valid += 1
    assert valid == 83
    assert invalid == 3
