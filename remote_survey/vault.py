"""Survey media encrypted at rest on the surveying node.

Segments and snapshots are evidence about a person's premises; on the surveying node
they are kept encrypted under the node's survey media key (``survey-media.key`` in the
node directory, 32 random bytes as hex, mode 0600, created on first use). The evidence
chain names, sizes and hashes the *plaintext*, so a report verifies the same before and
after the media travel (the relay core seals attachments itself); whoever verifies the
surveying node's own folder gives the key (``tongban survey verify --media-key``).

File format (streamed, constant memory): ``MAGIC`` (16 bytes), an 8-byte random nonce
prefix, then records ``<4-byte big-endian length><AES-256-GCM ciphertext>`` of at most
1 MiB of plaintext each. Record ``i`` uses the nonce ``prefix || i`` (4 bytes, big
endian) and the associated data ``<file name> 0x00 <0x01 if last else 0x00>``, so a
record moved, a file renamed, cut short or extended fails to open.
"""

from __future__ import annotations

import os
import secrets
import stat
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from relay.durable import sync_folder
from remote_survey.errors import SurveyError
from signing.keyfile import create_whole

__all__ = [
    "MAGIC",
    "MEDIA_KEY_FILE",
    "MediaVault",
    "VaultError",
    "load_or_create_media_key",
    "read_media_key",
]

MAGIC = b"tongban-media-1\n"
MEDIA_KEY_FILE = "survey-media.key"
_CHUNK = 1 << 20
_LENGTH = struct.Struct(">I")


class VaultError(SurveyError):
    """A sealed media file that cannot be opened (altered, cut short, not sealed)."""


def load_or_create_media_key(path: Path) -> bytes:
    """The 32-byte media key at ``path``, created (0600) when missing, whole or not at
    all: several workers of a node start at once, and one must never read the file
    another is still writing (:func:`signing.keyfile.create_whole`)."""
    if not path.exists():
        key = secrets.token_bytes(32)
        if create_whole(path, (key.hex() + "\n").encode("ascii")):
            return key
    return _read_media_key(path)


def _read_media_key(path: Path) -> bytes:
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SurveyError(f"{path} can be read by others; chmod 600 it")
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise SurveyError(f"{path} is not a hex survey media key") from None
    if len(key) != 32:
        raise SurveyError(f"{path} does not hold a 32-byte key")
    return key


def read_media_key(path: Path) -> bytes:
    """The existing media key at ``path`` (for verifying a sealed folder)."""
    try:
        return _read_media_key(path)
    except OSError as exc:
        raise SurveyError(f"cannot read the media key {path}: {exc.strerror}") from None


class MediaVault:
    """Seals media files under one key and opens them again as plaintext chunks."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the media key is 32 bytes")
        self._aead = AESGCM(key)

    def _records(self, name: str, chunks: Iterable[bytes]) -> Iterator[bytes]:
        prefix = secrets.token_bytes(8)
        yield MAGIC + prefix
        index, pending = 0, b""
        started = False
        for chunk in chunks:
            if started:
                yield self._record(prefix, index, name, pending, last=False)
                index += 1
            pending, started = chunk, True
        yield self._record(prefix, index, name, pending, last=True)

    def _record(self, prefix: bytes, index: int, name: str, data: bytes, *, last: bool) -> bytes:
        nonce = prefix + struct.pack(">I", index)
        sealed = self._aead.encrypt(nonce, data, _aad(name, last))
        return _LENGTH.pack(len(sealed)) + sealed

    def seal_chunks(self, chunks: Iterable[bytes], target: Path) -> None:
        """Write ``chunks`` sealed to ``target`` (its name is bound in), durably."""
        tmp = target.with_name(f".{target.name}.sealing")
        with tmp.open("wb") as f:
            for record in self._records(target.name, chunks):
                f.write(record)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        sync_folder(target.parent)  # the chain names it next: the name must last too

    def seal_file(self, plain: Path, target: Path) -> None:
        """Seal the file ``plain`` as ``target`` and remove ``plain``."""
        with plain.open("rb") as f:
            self.seal_chunks(iter(lambda: f.read(_CHUNK), b""), target)
        plain.unlink()

    def open_chunks(self, path: Path) -> Iterator[bytes]:
        """The plaintext of the sealed file ``path``, chunk by chunk (raises VaultError)."""
        name = path.name
        with path.open("rb") as f:
            head = f.read(len(MAGIC) + 8)
            if len(head) != len(MAGIC) + 8 or not head.startswith(MAGIC):
                raise VaultError(f"{name} is not a sealed media file")
            prefix, index = head[len(MAGIC) :], 0
            while True:
                size = f.read(_LENGTH.size)
                if len(size) != _LENGTH.size:
                    raise VaultError(f"{name} is cut short")
                sealed = f.read(_LENGTH.unpack(size)[0])
                nonce = prefix + struct.pack(">I", index)
                last = not f.peek(1)  # nothing after this record
                try:
                    yield self._aead.decrypt(nonce, sealed, _aad(name, last))
                except InvalidTag:
                    raise VaultError(f"{name} was altered or cut short") from None
                if last:
                    return
                index += 1


def _aad(name: str, last: bool) -> bytes:
    return name.encode("utf-8") + b"\x00" + (b"\x01" if last else b"\x00")
