"""Detached file signatures: every changed byte is caught, memory stays constant."""

from __future__ import annotations

import io
import json
import os
import tracemalloc

import pytest

from signing.encoding import b64url_decode
from signing.errors import InvalidSignature
from signing.files import FILE_SIG_TYP, FileManifest, file_digest, sign_file, verify_file
from signing.jws import sign_compact

CONTENT = bytes(range(256)) * 2 + "营业执照 licence".encode()


def _sign(node, data: bytes = CONTENT) -> str:
    return sign_file(
        io.BytesIO(data),
        name="licence.pdf",
        media_type="application/pdf",
        signer=node.signer,
        at=node.now,
    )


def test_round_trip_reports_manifest_signer_and_time(node) -> None:
    token = _sign(node)
    result = verify_file(io.BytesIO(CONTENT), token, node.bundle, at=node.now, node_id="371422")
    assert result.manifest.size == len(CONTENT)
    assert result.manifest.name == "licence.pdf"
    assert result.signer.node_id == "371422"
    assert result.signed_at == node.now
    payload = json.loads(b64url_decode(token.split(".")[1]))
    assert set(payload) == {"name", "media_type", "size", "sha256"}


def test_every_changed_byte_of_the_file_is_detected(node) -> None:
    token = _sign(node)
    for i in range(len(CONTENT)):
        changed = bytearray(CONTENT)
        changed[i] ^= 0x01
        with pytest.raises(InvalidSignature):
            verify_file(io.BytesIO(bytes(changed)), token, node.bundle, at=node.now)
    for other in (CONTENT[:-1], CONTENT + b"\0", b""):
        with pytest.raises(InvalidSignature):
            verify_file(io.BytesIO(other), token, node.bundle, at=node.now)


def test_every_changed_character_of_the_signature_is_detected(node) -> None:
    token = _sign(node, b"short file")
    alphabet = "AB"
    for i, char in enumerate(token):
        replacement = alphabet[0] if char != alphabet[0] else alphabet[1]
        if char == ".":
            replacement = "A"
        bad = token[:i] + replacement + token[i + 1 :]
        with pytest.raises(InvalidSignature):
            verify_file(io.BytesIO(b"short file"), bad, node.bundle, at=node.now)


def test_a_jws_of_another_type_or_a_non_canonical_manifest_is_refused(node) -> None:
    manifest = FileManifest("a.txt", "text/plain", 1, "0" * 64).to_json()
    other_typ = sign_compact(json.dumps(manifest).encode(), node.signer, typ="x+jws", at=node.now)
    spaced = sign_compact(json.dumps(manifest).encode(), node.signer, typ=FILE_SIG_TYP, at=node.now)
    extra = sign_compact(
        json.dumps({**manifest, "x": 1}, separators=(",", ":"), sort_keys=True).encode(),
        node.signer,
        typ=FILE_SIG_TYP,
        at=node.now,
    )
    for token in (other_typ, spaced, extra):
        with pytest.raises(InvalidSignature):
            verify_file(io.BytesIO(b"a"), token, node.bundle, at=node.now)


def test_manifest_values_are_checked() -> None:
    for bad in (
        dict(name="a", media_type="text/plain", size=-1, sha256_hex="0" * 64),
        dict(name="a", media_type="text/plain", size=True, sha256_hex="0" * 64),
        dict(name="a", media_type="text/plain", size=1, sha256_hex="A" * 64),
        dict(name="a", media_type="plain", size=1, sha256_hex="0" * 64),
    ):
        with pytest.raises(ValueError, match="must be"):
            FileManifest(**bad)


class _Generated(io.RawIOBase):
    """A large stream produced on the fly, recording the read sizes asked for."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.asked: list[int] = []

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        self.asked.append(n)
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return b"\x5a" * n


def test_digest_reads_1_mib_blocks_in_constant_memory() -> None:
    size = 64 * 1024 * 1024
    stream = _Generated(size)
    tracemalloc.start()
    try:
        got_size, _ = file_digest(stream)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got_size == size
    assert set(stream.asked) == {1 << 20}
    assert peak < 4 * 1024 * 1024, peak  # 64 MiB hashed with a few MiB at most


def test_digest_matches_hashlib_on_a_real_file(tmp_path) -> None:
    import hashlib

    data = os.urandom(3 * (1 << 20) + 17)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    with path.open("rb") as fh:
        assert file_digest(fh) == (len(data), hashlib.sha256(data).hexdigest())
