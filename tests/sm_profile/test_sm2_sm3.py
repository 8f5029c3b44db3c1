"""SM2 signatures and SM3 hashes (signing.sm2): the standards' examples, and OpenSSL 3,
an implementation we did not write, as the judge in both directions."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from signing.errors import MalformedInput
from signing.sm2 import (
    DEFAULT_SIGNER_ID,
    Sm2PrivateKey,
    Sm2PublicKey,
    der_to_raw,
    raw_to_der,
    sm3,
)

OPENSSL = "openssl"

# GB/T 32905-2016 Annex A: examples 1 and 2.
SM3_ABC = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
SM3_ABCD16 = "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"

# GB/T 32918.2-2016 Annex A: the signature example on the recommended curve
# (message "message digest", ID_A = 1234567812345678).
ANNEX_D = "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8"
ANNEX_X = "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
ANNEX_Y = "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
ANNEX_R = "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
ANNEX_S = "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
ANNEX_MESSAGE = b"message digest"


def _openssl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OPENSSL, *args], capture_output=True, text=True, timeout=30, check=False, cwd=cwd
    )


def test_sm3_matches_the_gbt32905_examples() -> None:
    assert sm3(b"abc").hex() == SM3_ABC
    assert sm3(b"abcd" * 16).hex() == SM3_ABCD16


def test_openssl_dgst_sm3_agrees(tmp_path: Path) -> None:
    data = bytes(range(256)) * 7
    (tmp_path / "m").write_bytes(data)
    result = _openssl("dgst", "-sm3", "-r", "m", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == sm3(data).hex()


def test_annex_signature_verifies_and_tampering_fails() -> None:
    public = Sm2PublicKey(bytes.fromhex(ANNEX_X + ANNEX_Y))
    raw = bytes.fromhex(ANNEX_R + ANNEX_S)
    assert public.verify_raw(raw, ANNEX_MESSAGE)
    assert public.verify(raw_to_der(raw), ANNEX_MESSAGE)
    assert not public.verify_raw(raw, ANNEX_MESSAGE + b".")
    assert not public.verify_raw(raw, ANNEX_MESSAGE, signer_id=b"ALICE123@YAHOO.COM")
    flipped = raw[:-1] + bytes([raw[-1] ^ 1])
    assert not public.verify_raw(flipped, ANNEX_MESSAGE)


def test_annex_key_pair_is_consistent_per_openssl(tmp_path: Path) -> None:
    """OpenSSL derives the annex public point from the annex secret alone (a PKCS#8
    without the public key), and our signatures with the pair verify under it."""
    alg_id = "301306072a8648ce3d020106082a811ccf5501822d"
    secret_only = bytes.fromhex("3041020100" + alg_id + "0427302502010104" + "20" + ANNEX_D)
    (tmp_path / "k.der").write_bytes(secret_only)
    result = subprocess.run(
        [OPENSSL, "pkey", "-inform", "DER", "-in", "k.der", "-pubout", "-outform", "DER"],
        capture_output=True, timeout=30, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    public = Sm2PublicKey(bytes.fromhex(ANNEX_X + ANNEX_Y))
    assert result.stdout == public.to_der()
    key = Sm2PrivateKey(bytes.fromhex(ANNEX_D), public)
    assert public.verify(key.sign(ANNEX_MESSAGE), ANNEX_MESSAGE)


def test_a_key_that_does_not_match_its_public_point_is_refused() -> None:
    other = Sm2PrivateKey.generate()
    with pytest.raises(MalformedInput, match="does not match"):
        Sm2PrivateKey(bytes.fromhex(ANNEX_D), other.public_key)


def test_openssl_verifies_our_signatures(tmp_path: Path) -> None:
    key = Sm2PrivateKey.generate()
    message = b"eyJhbGciOiJTTTJTTTMifQ.eyJ0ZXN0Ijp0cnVlfQ"  # a JWS-like signing input
    (tmp_path / "pub.pem").write_bytes(key.public_key.to_pem())
    (tmp_path / "m").write_bytes(message)
    (tmp_path / "sig").write_bytes(key.sign(message))
    distid = f"distid:{DEFAULT_SIGNER_ID.decode()}"
    pkeyutl = _openssl(
        "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-digest", "sm3",
        "-in", "m", "-sigfile", "sig", "-pkeyopt", distid, cwd=tmp_path,
    )  # fmt: skip
    assert pkeyutl.returncode == 0, pkeyutl.stderr + pkeyutl.stdout
    assert "Signature Verified Successfully" in pkeyutl.stdout
    dgst = _openssl(
        "dgst", "-sm3", "-verify", "pub.pem", "-signature", "sig", "-sigopt", distid, "m",
        cwd=tmp_path,
    )  # fmt: skip
    assert dgst.returncode == 0, dgst.stderr + dgst.stdout
    assert "Verified OK" in dgst.stdout
    (tmp_path / "m").write_bytes(message + b"x")
    tampered = _openssl(
        "dgst", "-sm3", "-verify", "pub.pem", "-signature", "sig", "-sigopt", distid, "m",
        cwd=tmp_path,
    )  # fmt: skip
    assert tampered.returncode != 0


def test_we_verify_openssl_signatures_and_load_its_keys(tmp_path: Path) -> None:
    assert _openssl("genpkey", "-algorithm", "SM2", "-out", "k.pem", cwd=tmp_path).returncode == 0
    assert (
        _openssl("pkey", "-in", "k.pem", "-pubout", "-out", "p.pem", cwd=tmp_path).returncode == 0
    )
    message = bytes(range(200))
    (tmp_path / "m").write_bytes(message)
    signed = _openssl(
        "pkeyutl", "-sign", "-inkey", "k.pem", "-rawin", "-digest", "sm3", "-in", "m",
        "-out", "sig", "-pkeyopt", f"distid:{DEFAULT_SIGNER_ID.decode()}", cwd=tmp_path,
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    signature = (tmp_path / "sig").read_bytes()
    public = Sm2PublicKey.from_pem((tmp_path / "p.pem").read_bytes())
    assert public.verify(signature, message)
    assert public.verify_raw(der_to_raw(signature), message)
    assert not public.verify(signature, message[:-1])
    key = Sm2PrivateKey.from_pem((tmp_path / "k.pem").read_bytes())
    assert key.public_key == public
    assert public.verify(key.sign(message), message)


def test_key_encodings_round_trip() -> None:
    key = Sm2PrivateKey.generate()
    assert Sm2PrivateKey.from_pem(key.to_pem()) == key
    assert Sm2PublicKey.from_der(key.public_key.to_der()) == key.public_key
    assert key.secret.hex() not in repr(key)


def _bad_public_keys() -> dict[str, bytes]:
    good = Sm2PrivateKey.generate().public_key.to_der()
    p256 = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200") + b"\x04" * 65
    return {
        "empty": b"",
        "empty sequence": b"\x30\x00",
        "P-256 curve": p256,
        "truncated": good[:-1],
        "trailing byte": good + b"\x00",
    }


@pytest.mark.parametrize(
    "case", ["empty", "empty sequence", "P-256 curve", "truncated", "trailing byte"]
)
def test_malformed_public_keys_are_refused(case: str) -> None:
    with pytest.raises(MalformedInput):
        Sm2PublicKey.from_der(_bad_public_keys()[case])


def test_point_off_the_curve_is_refused() -> None:
    with pytest.raises(MalformedInput, match="curve"):
        Sm2PublicKey(bytes.fromhex(ANNEX_X) + bytes(32))


def test_non_canonical_and_out_of_range_signatures_do_not_verify() -> None:
    public = Sm2PublicKey(bytes.fromhex(ANNEX_X + ANNEX_Y))
    raw = bytes.fromhex(ANNEX_R + ANNEX_S)
    der = raw_to_der(raw)
    assert not public.verify(der + b"\x00", ANNEX_MESSAGE)
    assert not public.verify_raw(raw[:63], ANNEX_MESSAGE)
    assert not public.verify_raw(bytes(32) + raw[32:], ANNEX_MESSAGE)  # r = 0
    n = bytes.fromhex("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123")
    assert not public.verify_raw(raw[:32] + n, ANNEX_MESSAGE)  # s = n
