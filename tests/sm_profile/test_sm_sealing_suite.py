"""The SM profile's sealing suite ``sm2-sm4gcm`` as it goes on the wire (protocol.md
§4.4): key form, OpenSSL opening our SM2 ciphertext, sealed files in the SM4-GCM
stream, and a packet whose ``sealed.suite`` lies about its key refused."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from signing import sm_seal
from signing.errors import DecryptionFailed, MalformedInput
from signing.hpke import (
    HpkePrivateKey,
    HpkePublicKey,
    HpkeSuite,
    generate_hpke_key,
    hpke_open,
    hpke_seal,
)
from signing.sealed import SealedHeader, open_file, read_header, seal_file
from signing.sealed import file_key_info as _file_key_info

SM = HpkeSuite.SM2_SM4GCM


@pytest.fixture(scope="module")
def key() -> HpkePrivateKey:
    return generate_hpke_key(SM)


def test_public_key_is_the_uncompressed_point_and_round_trips(key: HpkePrivateKey) -> None:
    public = key.public_key()
    assert len(public.public_bytes) == 65
    assert public.public_bytes[0] == 4
    assert HpkePublicKey.from_json(public.to_json()) == public
    assert HpkePrivateKey.from_pem(key.to_pem()) == key
    with pytest.raises(MalformedInput):
        HpkePublicKey(SM, b"\x02" + public.public_bytes[1:])  # not uncompressed
    with pytest.raises(MalformedInput):
        HpkePublicKey(SM, public.public_bytes[:-1] + bytes([public.public_bytes[-1] ^ 1]))


def test_openssl_opens_the_sm2_part_and_the_rest_is_sm4_gcm(
    key: HpkePrivateKey, tmp_path: Path
) -> None:
    """An implementation we did not write (OpenSSL's SM2 decryption, GM/T 0009 DER)
    recovers the SM4 key from our sealed message; SM4-GCM with ``info`` as AAD and a
    zero nonce then gives the plaintext."""
    info = b"tongban/v1 packet\x00{}"
    sealed = hpke_seal(b"packet content", key.public_key(), info=info)
    n = int.from_bytes(sealed[:2], "big")
    (tmp_path / "key.pem").write_bytes(key.to_pem())
    (tmp_path / "c1c3c2.der").write_bytes(sealed[2 : 2 + n])
    result = subprocess.run(
        ["openssl", "pkeyutl", "-decrypt", "-inkey", "key.pem", "-in", "c1c3c2.der"],
        capture_output=True, timeout=30, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    sm4_key = result.stdout
    assert len(sm4_key) == 16
    body, tag = sealed[2 + n : -16], sealed[-16:]
    dec = Cipher(algorithms.SM4(sm4_key), modes.GCM(bytes(12), tag)).decryptor()
    dec.authenticate_additional_data(info)
    assert dec.update(body) + dec.finalize() == b"packet content"
    with pytest.raises(DecryptionFailed):
        hpke_open(sealed, key, info=b"another use")


def test_a_file_sealed_to_an_sm_node_is_an_sm4_gcm_stream(key: HpkePrivateKey) -> None:
    plain = bytes(range(256)) * 700  # three segments
    out = io.BytesIO()
    header = seal_file(io.BytesIO(plain), out, [key.public_key()], recipient_node="450102")
    assert header.sm_stream
    assert b'"stream":"sm4gcm-hkdf-sm3-64k"' in header.raw
    sealed = out.getvalue()
    # independently of open_file: the stream key opens with sm2, the rest is sm_seal's
    [entry] = header.entries
    info = _file_key_info("450102", entry.kid, SM)
    stream_key = sm_seal.sm2_open(key._sm2(), entry.enc_key, info)
    clear = io.BytesIO()
    sm_seal.decrypt_stream(io.BytesIO(sealed[len(header.raw) :]), clear, stream_key, header.raw)
    assert clear.getvalue() == plain
    opened = io.BytesIO()
    open_file(io.BytesIO(sealed), opened, [key])
    assert opened.getvalue() == plain
    # mixed recipients keep the Tink stream (a default key must be able to open it)
    other = generate_hpke_key(HpkeSuite.X25519)
    mixed = seal_file(
        io.BytesIO(plain), io.BytesIO(), [key.public_key(), other.public_key()],
        recipient_node="450102",
    )  # fmt: skip
    assert not mixed.sm_stream


def test_a_header_whose_stream_does_not_match_its_keys_is_refused(key: HpkePrivateKey) -> None:
    out = io.BytesIO()
    header = seal_file(io.BytesIO(b"x"), out, [key.public_key()], recipient_node="450102")
    forged = header.raw.replace(b"sm4gcm-hkdf-sm3-64k", b"tink-aes256gcm-hkdf-sha256-64k")
    body = forged[11:]
    forged = forged[:7] + len(body).to_bytes(4, "big") + body
    with pytest.raises(MalformedInput, match="does not match"):
        SealedHeader.parse(forged)
    with pytest.raises(MalformedInput):
        read_header(io.BytesIO(forged))


def test_transcoding_a_blob_between_the_streams_writes_no_plaintext_and_refuses_damage(
    tmp_path: Path,
) -> None:
    """relay.core.streams.transcode_file: Tink stream -> SM4-GCM stream and back, three
    segments and more; a damaged source raises and leaves nothing to publish."""
    import hashlib
    import os

    from relay.core.streams import Stream, decrypt, encrypt, transcode_file

    plain = os.urandom(200_000)
    aad = b"tongban/v1 attachment " + hashlib.sha256(plain).hexdigest().encode()
    k1, k2 = os.urandom(32), os.urandom(32)
    src = tmp_path / "tink.blob"
    with src.open("wb") as out:
        encrypt(Stream.TINK_AES256GCM, io.BytesIO(plain), out, k1, aad)
    sm = tmp_path / "sm4.blob"
    digest, size = transcode_file(
        src, sm, (k1, k2), aad=aad, kinds=(Stream.TINK_AES256GCM, Stream.SM4GCM)
    )
    assert (digest, size) == (hashlib.sha256(sm.read_bytes()).hexdigest(), sm.stat().st_size)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sm4.blob", "tink.blob"]
    clear = io.BytesIO()
    with sm.open("rb") as fin:
        sm_seal.decrypt_stream(fin, clear, k2, aad)  # the SM4 module itself opens it
    assert clear.getvalue() == plain
    back = tmp_path / "back.blob"
    transcode_file(sm, back, (k2, k1), aad=aad, kinds=(Stream.SM4GCM, Stream.TINK_AES256GCM))
    clear = io.BytesIO()
    with back.open("rb") as fin:
        decrypt(Stream.TINK_AES256GCM, fin, clear, k1, aad)
    assert clear.getvalue() == plain

    damaged = bytearray(src.read_bytes())
    damaged[100_000] ^= 1  # inside the second segment
    src.write_bytes(bytes(damaged))
    with pytest.raises(DecryptionFailed):
        transcode_file(
            src, tmp_path / "out.blob", (k1, k2), aad=aad,
            kinds=(Stream.TINK_AES256GCM, Stream.SM4GCM),
        )  # fmt: skip
    assert not (tmp_path / "out.blob").exists()
