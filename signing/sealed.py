"""Sealed files: a file encrypted for one node, openable with any of its HPKE keys.

Layout (normative text in ``docs/protocol.md``, section ``sealing``)::

    "TBSEAL" | 0x01 | BE32 header-JSON length | header JSON (canonical) | stream

The header names the recipient node and carries, for each recipient HPKE key, the
random 32-byte stream key sealed with HPKE under
``info = seal_info("file-key", {"kid", "recipient", "suite"})``. The stream is
:mod:`signing.stream` with ``aad`` = every header byte (magic through JSON), so the
header cannot be changed, reordered or swapped without the content failing to open.
A file sealed only to ``sm2-sm4gcm`` keys (an SM-profile recipient) uses the SM4-GCM
stream of :mod:`signing.sm_seal` instead; the header's ``stream`` names which.

Both directions run in constant memory. :func:`open_file` writes plaintext to ``dst``
as segments authenticate, so on :class:`DecryptionFailed` ``dst`` may hold a prefix of
the plaintext: callers write to a temporary file and keep it only when ``open_file``
returns (``tongban open`` writes a temporary file in the target directory and renames
it into place on success).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from signing import sm_seal
from signing.certificates import is_node_id
from signing.encoding import b64url, b64url_decode, canonical_json
from signing.errors import DecryptionFailed, MalformedInput
from signing.hpke import HpkePrivateKey, HpkePublicKey, HpkeSuite, hpke_open, hpke_seal, seal_info
from signing.stream import decrypt_stream, encrypt_stream, new_stream_key

__all__ = ["MAGIC", "RecipientEntry", "SealedHeader", "open_file", "read_header", "seal_file"]

_log = logging.getLogger("tongban.signing")

MAGIC = b"TBSEAL\x01"
_PREFIX_LEN = len(MAGIC) + 4
_MAX_HEADER_JSON = 64 * 1024
_MAX_RECIPIENT_KEYS = 16
_STREAM_NAME = "tink-aes256gcm-hkdf-sha256-64k"
_SM_STREAM_NAME = "sm4gcm-hkdf-sm3-64k"  # every key sm2-sm4gcm (protocol.md §4.3)
_FILE_KEY_PURPOSE = "file-key"


def file_key_info(recipient_node: str, kid: str, suite: HpkeSuite) -> bytes:
    """The HPKE ``info`` under which a sealed file's stream key is sealed to ``kid``."""
    return seal_info(
        _FILE_KEY_PURPOSE, {"kid": kid, "recipient": recipient_node, "suite": suite.value}
    )


@dataclass(frozen=True)
class RecipientEntry:
    """The stream key sealed to one recipient HPKE key."""

    kid: str
    suite: HpkeSuite
    enc_key: bytes = field(repr=False)

    def to_json(self) -> dict[str, str]:
        return {"kid": self.kid, "suite": self.suite.value, "enc_key": b64url(self.enc_key)}


@dataclass(frozen=True)
class SealedHeader:
    """A parsed sealed-file header; ``raw`` is its exact bytes (the stream's ``aad``)."""

    recipient_node: str
    entries: tuple[RecipientEntry, ...]
    raw: bytes = field(repr=False)

    @property
    def sm_stream(self) -> bool:
        """True when the content is the SM4-GCM stream (every key ``sm2-sm4gcm``)."""
        return all(e.suite is HpkeSuite.SM2_SM4GCM for e in self.entries)

    @classmethod
    def build(cls, recipient_node: str, entries: Sequence[RecipientEntry]) -> SealedHeader:
        sm = all(e.suite is HpkeSuite.SM2_SM4GCM for e in entries)
        body = canonical_json(
            {
                "v": 1,
                "recipient": recipient_node,
                "stream": _SM_STREAM_NAME if sm else _STREAM_NAME,
                "keys": [entry.to_json() for entry in entries],
            }
        )
        return cls.parse(MAGIC + len(body).to_bytes(4, "big") + body)

    @classmethod
    def parse(cls, raw: bytes) -> SealedHeader:
        """Validate header bytes (prefix and JSON); anything off is :class:`MalformedInput`."""
        if raw[: len(MAGIC)] != MAGIC:
            raise MalformedInput("not a tongban sealed file (bad magic or version)")
        length = int.from_bytes(raw[len(MAGIC) : _PREFIX_LEN], "big")
        if len(raw) != _PREFIX_LEN + length or length > _MAX_HEADER_JSON:
            raise MalformedInput("sealed-file header length is wrong")
        body = raw[_PREFIX_LEN:]
        try:
            obj = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MalformedInput("sealed-file header is not JSON") from exc
        if not isinstance(obj, dict) or set(obj) != {"v", "recipient", "stream", "keys"}:
            raise MalformedInput("sealed-file header has the wrong members")
        if canonical_json(obj) != body:
            raise MalformedInput("sealed-file header is not canonical JSON")
        if obj["v"] != 1 or obj["stream"] not in (_STREAM_NAME, _SM_STREAM_NAME):
            raise MalformedInput("sealed-file header names an unknown version or stream")
        recipient = obj["recipient"]
        if not isinstance(recipient, str) or not is_node_id(recipient):
            raise MalformedInput("sealed-file recipient is not a node id")
        keys = obj["keys"]
        if not isinstance(keys, list) or not 1 <= len(keys) <= _MAX_RECIPIENT_KEYS:
            raise MalformedInput(f"a sealed file names 1 to {_MAX_RECIPIENT_KEYS} keys")
        entries = tuple(_entry(item) for item in keys)
        if len({entry.kid for entry in entries}) != len(entries):
            raise MalformedInput("a sealed file names a key twice")
        sm = all(e.suite is HpkeSuite.SM2_SM4GCM for e in entries)
        if obj["stream"] != (_SM_STREAM_NAME if sm else _STREAM_NAME):
            raise MalformedInput("sealed-file stream does not match its keys")
        return cls(recipient, entries, raw)


def _entry(item: Any) -> RecipientEntry:
    if not isinstance(item, dict) or set(item) != {"kid", "suite", "enc_key"}:
        raise MalformedInput('a sealed-file key entry is {"kid", "suite", "enc_key"}')
    if not all(isinstance(value, str) for value in item.values()):
        raise MalformedInput("sealed-file key entry members are strings")
    try:
        suite = HpkeSuite(item["suite"])
    except ValueError:
        raise MalformedInput(f"unknown HPKE suite {item['suite']!r}") from None
    return RecipientEntry(item["kid"], suite, b64url_decode(item["enc_key"]))


def read_header(src: BinaryIO) -> SealedHeader:
    """Read and validate the header, leaving ``src`` at the first stream byte."""
    prefix = src.read(_PREFIX_LEN)
    if len(prefix) != _PREFIX_LEN or prefix[: len(MAGIC)] != MAGIC:
        raise MalformedInput("not a tongban sealed file (bad magic or version)")
    length = int.from_bytes(prefix[len(MAGIC) :], "big")
    if length > _MAX_HEADER_JSON:
        raise MalformedInput("sealed-file header is too long")
    body = src.read(length)
    if len(body) != length:
        raise MalformedInput("sealed-file header is truncated")
    return SealedHeader.parse(prefix + body)


def seal_file(
    src: BinaryIO, dst: BinaryIO, recipients: Sequence[HpkePublicKey], *, recipient_node: str
) -> SealedHeader:
    """Encrypt ``src`` into ``dst`` for ``recipient_node``, openable by any of ``recipients``.

    Pass every HPKE key of the node's descriptor (both suites) so that the node can
    open with whichever it holds, or only the keys of one suite to require it.
    """
    if not is_node_id(recipient_node):
        raise MalformedInput("recipient is not a node id")
    if not recipients:
        raise MalformedInput("a sealed file needs at least one recipient key")
    stream_key = new_stream_key()
    entries = [
        RecipientEntry(
            key.kid,
            key.suite,
            hpke_seal(stream_key, key, info=file_key_info(recipient_node, key.kid, key.suite)),
        )
        for key in recipients
    ]
    header = SealedHeader.build(recipient_node, entries)
    dst.write(header.raw)
    if header.sm_stream:
        sm_seal.encrypt_stream(src, dst, stream_key, header.raw)
    else:
        encrypt_stream(src, dst, stream_key, aad=header.raw)
    return header


def open_file(src: BinaryIO, dst: BinaryIO, keys: Sequence[HpkePrivateKey]) -> SealedHeader:
    """Decrypt a sealed file from ``src`` into ``dst`` with whichever of ``keys`` matches.

    Raises :class:`DecryptionFailed` (opaque; cause logged) when no key matches, a key
    does not open its entry, the header is malformed, or the stream fails. See the
    module docstring about partial output.
    """
    try:
        header = read_header(src)
    except MalformedInput as exc:
        _log.info("sealed file refused: %s", exc)
        raise DecryptionFailed from None
    by_kid = {key.public_key().kid: key for key in keys}
    for entry in header.entries:
        key = by_kid.get(entry.kid)
        if key is None or key.suite is not entry.suite:
            continue
        info = file_key_info(header.recipient_node, entry.kid, entry.suite)
        try:
            stream_key = hpke_open(entry.enc_key, key, info=info)
        except DecryptionFailed:
            continue
        if len(stream_key) != 32:
            _log.info("sealed file refused: stream key of %d bytes", len(stream_key))
            continue
        if header.sm_stream:
            sm_seal.decrypt_stream(src, dst, stream_key, header.raw)
        else:
            decrypt_stream(src, dst, stream_key, aad=header.raw)
        return header
    _log.info("sealed file refused: none of %d keys opens an entry for %s", len(keys), header)
    raise DecryptionFailed
