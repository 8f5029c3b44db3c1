"""C2SP signed notes, tlog checkpoints and ``cosignature/v1`` (pure).

- Signed note (https://c2sp.org/signed-note): UTF-8 text ending in ``\\n``, a blank
  line, then signature lines ``— <key name> <base64(4-byte key id || signature)>\\n``.
  Note keys have key id ``SHA-256(name || 0x0A || type || public key)[:4]``; the types
  (Ed25519, and SM2 for the SM profile) are in :mod:`relay.audit.note_types`.
- Checkpoint (https://c2sp.org/tlog-checkpoint): a note whose text is the origin line,
  the decimal tree size and the standard-base64 root hash, each ending in ``\\n``.
  tongban's origin is ``tongban.node/<node id>`` and the log key's name is the origin.
  An SM-profile log (SM2 log key) hashes with SM3 and says so in one extension line,
  ``hash sm3``; a default-profile checkpoint (Ed25519, SHA-256) has no extension line.
  A checkpoint whose hash is not its log key's is refused.
- Cosignature (https://c2sp.org/tlog-cosignature, type ``0x04``, or its SM2 twin): the
  signature is ``u64 timestamp (big-endian) || signature`` over
  ``"cosignature/v1\\ntime <timestamp>\\n" || checkpoint text``, by the witness's own
  key type, whatever the origin's.

Verification follows the spec: signatures from unknown keys are ignored, a known key
whose signature fails rejects the whole note, and at least the origin's signature must
verify. Keys, names and times are arguments; nothing here reads a clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from relay.audit import note_types
from relay.audit.errors import CheckpointError
from relay.audit.merkle import SHA256_TREE, SM3_TREE, TreeHash
from relay.audit.note_types import KeyType, NotePrivateKey, NotePublicKey
from signing.sm2 import Sm2PrivateKey
from signing.sm_x509 import sm2_public_key

__all__ = [
    "ORIGIN_PREFIX",
    "SM3_LINE",
    "Checkpoint",
    "Cosignature",
    "KeyType",
    "NoteKey",
    "NoteSignature",
    "SealKey",
    "SignedCheckpoint",
    "SignedNote",
    "cosign",
    "log_tree_hash",
    "node_id_of_origin",
    "open_checkpoint",
    "origin_for",
    "sign_checkpoint",
    "sign_note",
]

ORIGIN_PREFIX = "tongban.node/"
MAX_NOTE_BYTES = 64 * 1024
MAX_SIGNATURES = 100
_DASH = "— "  # U+2014 EM DASH, U+0020
_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")
_NODE_ID = re.compile(r"[0-9]{6}")
_COSIGNATURE_HEADER = b"cosignature/v1\n"
#: The extension line of an SM-profile checkpoint: its tree hashes with SM3.
SM3_LINE = "hash sm3"


class _HoldsKey(Protocol):
    @property
    def key(self) -> object: ...


SealKey = Ed25519PrivateKey | Sm2PrivateKey | _HoldsKey
"""An Ed25519 or SM2 private key, or an object with one in ``.key`` (``Signer``)."""


def _private_key(key: SealKey) -> NotePrivateKey:
    inner = key if isinstance(key, NotePrivateKey) else key.key
    if not isinstance(inner, NotePrivateKey):
        raise CheckpointError("checkpoints and cosignatures need an Ed25519 or SM2 seal key")
    return inner


def _public_key(key: NotePrivateKey) -> NotePublicKey:
    return key.public_key if isinstance(key, Sm2PrivateKey) else key.public_key()


def log_tree_hash(key: SealKey) -> TreeHash:
    """The tree hash of a log whose log key is ``key``: SHA-256, or SM3 for SM2."""
    return KeyType.ED25519.for_key(_private_key(key)).tree_hash


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name) or not name.isprintable():
        raise CheckpointError(f"invalid note key name {name!r}")


def _b64decode(text: str, what: str) -> bytes:
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise CheckpointError(f"{what} is not standard base64") from exc
    if base64.b64encode(data).decode() != text:
        raise CheckpointError(f"{what} is not canonical base64")
    return data


def origin_for(node_id: str) -> str:
    """The checkpoint origin (and log key name) of a node: ``tongban.node/<node id>``."""
    if not _NODE_ID.fullmatch(node_id) or node_id == "000000":
        raise CheckpointError(f"{node_id!r} is not a node id")
    return ORIGIN_PREFIX + node_id


def node_id_of_origin(origin: str) -> str:
    """The node id named by a tongban origin; :class:`CheckpointError` otherwise."""
    node_id = origin.removeprefix(ORIGIN_PREFIX)
    if node_id == origin or origin_for(node_id) != origin:
        raise CheckpointError(f"{origin!r} is not a tongban origin")
    return node_id


@dataclass(frozen=True)
class NoteKey:
    """A verifier key: (name, signature type, Ed25519 or SM2 public key).

    The constructors taking a private key or a certificate read ``key_type`` as a role
    (log key or cosigner) and give the type of that role for the key's algorithm: an
    SM2 seal key asked for as ``ED25519`` is an ``SM2_SM3`` note key."""

    name: str
    public_key: NotePublicKey
    key_type: KeyType = KeyType.ED25519

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.key_type.for_key(self.public_key) is not self.key_type:
            raise CheckpointError(f"a {self.key_type.name} note key needs a matching public key")

    @property
    def _material(self) -> bytes:
        return self.key_type.value + note_types.public_bytes(self.public_key)

    @property
    def key_id(self) -> bytes:
        return hashlib.sha256(self.name.encode() + b"\n" + self._material).digest()[:4]

    @property
    def tree_hash(self) -> TreeHash:
        """The tree hash of the log this (log) key signs for."""
        return self.key_type.tree_hash

    def vkey(self) -> str:
        """The verifier-key text ``name+hex(key id)+base64(type || public key)``."""
        material = base64.b64encode(self._material).decode()
        return f"{self.name}+{self.key_id.hex()}+{material}"

    @classmethod
    def from_vkey(cls, text: str) -> NoteKey:
        name, _, rest = text.partition("+")
        key_id_hex, _, material = rest.partition("+")
        kind, raw = KeyType.split(_b64decode(material, "verifier key"))
        key = cls(name, note_types.public_key_from_bytes(kind, raw), kind)
        if key.key_id.hex() != key_id_hex:
            raise CheckpointError("verifier key id does not match its key")
        return key

    @classmethod
    def for_private_key(
        cls, name: str, key: SealKey, key_type: KeyType = KeyType.ED25519
    ) -> NoteKey:
        public = _public_key(_private_key(key))
        return cls(name, public, key_type.for_key(public))

    @classmethod
    def from_certificate(
        cls, name: str, cert: x509.Certificate, key_type: KeyType = KeyType.ED25519
    ) -> NoteKey:
        public_key: object = sm2_public_key(cert)
        if public_key is None:
            try:
                public_key = cert.public_key()
            except UnsupportedAlgorithm:
                raise CheckpointError("the certificate holds no Ed25519 or SM2 key") from None
        if not isinstance(public_key, NotePublicKey):
            raise CheckpointError("the certificate holds no Ed25519 or SM2 key")
        return cls(name, public_key, key_type.for_key(public_key))


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, 4-byte key id and the signature bytes after it."""

    name: str
    key_id: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_name(self.name)
        if len(self.key_id) != 4 or not self.signature:
            raise CheckpointError("a note signature needs a 4-byte key id and a signature")

    def line(self) -> str:
        return f"{_DASH}{self.name} {base64.b64encode(self.key_id + self.signature).decode()}\n"


def _check_text(text: bytes) -> str:
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError("a note must be UTF-8") from exc
    if any(ord(c) < 0x20 and c != "\n" for c in decoded):
        raise CheckpointError("a note must not contain control characters")
    return decoded


@dataclass(frozen=True)
class SignedNote:
    """A note text and its signature lines, syntactically valid, not yet verified."""

    text: bytes
    signatures: tuple[NoteSignature, ...]

    def __post_init__(self) -> None:
        decoded = _check_text(self.text)
        if not decoded.endswith("\n"):
            raise CheckpointError("note text must end with a newline")
        if len(self.signatures) > MAX_SIGNATURES:
            raise CheckpointError("too many signatures on a note")

    def to_bytes(self) -> bytes:
        if not self.signatures:
            raise CheckpointError("a signed note needs at least one signature")
        return self.text + b"\n" + "".join(s.line() for s in self.signatures).encode()

    def with_signatures(self, *extra: NoteSignature) -> SignedNote:
        """This note with ``extra`` appended (a signature already present is kept once)."""
        merged = list(self.signatures)
        merged.extend(s for s in extra if s not in merged)
        return SignedNote(self.text, tuple(merged))

    @classmethod
    def parse(cls, data: bytes) -> SignedNote:
        if len(data) > MAX_NOTE_BYTES:
            raise CheckpointError("note too large")
        decoded = _check_text(data)
        split = decoded.rfind("\n\n")
        if split < 0 or not decoded.endswith("\n"):
            raise CheckpointError("malformed note: no signature block")
        text, block = decoded[: split + 1], decoded[split + 2 :]
        signatures = []
        for line in block[:-1].split("\n"):
            if not line.startswith(_DASH):
                raise CheckpointError("malformed signature line")
            name, sep, b64 = line[len(_DASH) :].partition(" ")
            if not sep:
                raise CheckpointError("malformed signature line")
            raw = _b64decode(b64, "note signature")
            if len(raw) < 5:
                raise CheckpointError("note signature too short")
            signatures.append(NoteSignature(name, raw[:4], raw[4:]))
        return cls(text.encode(), tuple(signatures))


def sign_note(text: bytes, name: str, key: SealKey) -> NoteSignature:
    """A log-key signature line (Ed25519 or SM2) by ``key`` under ``name`` over ``text``."""
    private = _private_key(key)
    note_key = NoteKey.for_private_key(name, private)
    return NoteSignature(name, note_key.key_id, note_types.sign(private, text))


def _cosigned_message(text: bytes, timestamp: int) -> bytes:
    return _COSIGNATURE_HEADER + b"time %d\n" % timestamp + text


def cosign(checkpoint_text: bytes, name: str, key: SealKey, *, at: int) -> NoteSignature:
    """A ``cosignature/v1`` line (Ed25519 or SM2, by ``key``'s type) over a checkpoint
    text at POSIX time ``at``."""
    if not 0 <= at < 2**63:
        raise CheckpointError("cosignature timestamp out of range")
    private = _private_key(key)
    note_key = NoteKey.for_private_key(name, private, KeyType.COSIGNATURE_V1)
    signature = note_types.sign(private, _cosigned_message(checkpoint_text, at))
    return NoteSignature(name, note_key.key_id, at.to_bytes(8, "big") + signature)


@dataclass(frozen=True)
class Checkpoint:
    """A tlog checkpoint body: origin, tree size, root hash, optional extension lines.

    The tree hash is SHA-256 unless the extension lines are exactly (:data:`SM3_LINE`,).
    """

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin or self.origin == "cosignature/v1":
            raise CheckpointError("invalid checkpoint origin")
        if not 0 <= self.size < 2**63:
            raise CheckpointError("checkpoint size out of range")
        if len(self.root_hash) != 32:
            raise CheckpointError("checkpoint root hash must be 32 bytes")
        if any(not line or "\n" in line for line in self.extensions):
            raise CheckpointError("checkpoint extension lines must be non-empty lines")
        hash_lines = [line for line in self.extensions if line.startswith("hash ")]
        if hash_lines and self.extensions != (SM3_LINE,):
            raise CheckpointError(f"the only tree hash line is {SM3_LINE!r}, alone")
        if self.size == 0 and self.root_hash != self.tree_hash.empty:
            raise CheckpointError(f"an empty tree's root hash is {self.tree_hash.name} of nothing")

    @classmethod
    def for_tree(cls, origin: str, size: int, root_hash: bytes, tree_hash: TreeHash) -> Checkpoint:
        """The checkpoint of a tree hashed with ``tree_hash`` (SM3 adds its line)."""
        if tree_hash not in (SHA256_TREE, SM3_TREE):
            raise CheckpointError(f"no checkpoint form for tree hash {tree_hash.name}")
        return cls(origin, size, root_hash, (SM3_LINE,) if tree_hash is SM3_TREE else ())

    @property
    def tree_hash(self) -> TreeHash:
        return SM3_TREE if self.extensions == (SM3_LINE,) else SHA256_TREE

    def text(self) -> bytes:
        """The note text: each line ending in ``\\n``."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode()]
        return "".join(line + "\n" for line in [*lines, *self.extensions]).encode()

    @classmethod
    def parse(cls, text: bytes) -> Checkpoint:
        decoded = _check_text(text)
        if not decoded.endswith("\n"):
            raise CheckpointError("checkpoint text must end with a newline")
        lines = decoded[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError("a checkpoint has at least three lines")
        origin, size, root, *extensions = lines
        if not _SIZE.fullmatch(size):
            raise CheckpointError("checkpoint size is not a canonical decimal")
        return cls(origin, int(size), _b64decode(root, "root hash"), tuple(extensions))


@dataclass(frozen=True)
class Cosignature:
    """A verified cosignature: who cosigned and when (POSIX seconds)."""

    key: NoteKey
    timestamp: int


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint whose origin signature verified, with any verified cosignatures."""

    checkpoint: Checkpoint
    note: SignedNote
    cosignatures: tuple[Cosignature, ...] = ()

    def to_bytes(self) -> bytes:
        return self.note.to_bytes()


def _verify(key: NoteKey, sig: NoteSignature, text: bytes) -> int | None:
    """Verify one known-key signature; return the cosignature time (or None)."""
    message, signature, timestamp = text, sig.signature, None
    if key.key_type.cosigner:
        if len(signature) != 72:
            raise CheckpointError(f"malformed cosignature by {key.name}")
        timestamp = int.from_bytes(signature[:8], "big")
        if timestamp >= 2**63:
            raise CheckpointError(f"cosignature by {key.name} has an invalid timestamp")
        message, signature = _cosigned_message(text, timestamp), signature[8:]
    if not note_types.verify(key.public_key, signature, message):
        raise CheckpointError(f"signature by known key {key.name} does not verify")
    return timestamp


def sign_checkpoint(checkpoint: Checkpoint, key: SealKey) -> SignedCheckpoint:
    """Sign ``checkpoint`` with the log key named after its origin."""
    text = checkpoint.text()
    note = SignedNote(text, (sign_note(text, checkpoint.origin, key),))
    return SignedCheckpoint(checkpoint, note)


def open_checkpoint(
    data: bytes | SignedNote,
    origin_key: NoteKey,
    cosigners: Sequence[NoteKey] = (),
) -> SignedCheckpoint:
    """Parse and verify a checkpoint note.

    ``origin_key`` must be a log key (Ed25519 or SM2) named after the checkpoint's
    origin, the checkpoint's tree hash must be that key's (SHA-256 or SM3) and its
    signature must verify. Signatures by ``cosigners`` (``cosignature/v1`` keys of
    either algorithm) are verified and returned; any other signature is ignored. A
    failing known-key signature rejects the note.
    """
    note = data if isinstance(data, SignedNote) else SignedNote.parse(data)
    if origin_key.key_type.cosigner:
        raise CheckpointError("the origin key must be a log key, not a cosigner key")
    if any(not k.key_type.cosigner for k in cosigners):
        raise CheckpointError("cosigner keys must be cosignature/v1 keys")
    checkpoint = Checkpoint.parse(note.text)
    if checkpoint.origin != origin_key.name:
        raise CheckpointError(f"checkpoint origin {checkpoint.origin!r} is not the key's name")
    if checkpoint.tree_hash is not origin_key.tree_hash:
        raise CheckpointError(
            f"checkpoint hashes with {checkpoint.tree_hash.name}, its log key with "
            f"{origin_key.tree_hash.name}"
        )
    known = {(k.name, k.key_id): k for k in (origin_key, *cosigners)}
    origin_ok = False
    cosignatures: list[Cosignature] = []
    seen: set[tuple[str, bytes]] = set()
    for sig in note.signatures:
        ident = (sig.name, sig.key_id)
        key = known.get(ident)
        if key is None:
            continue
        timestamp = _verify(key, sig, note.text)  # every line of a known key: one that
        if ident in seen:  # fails rejects the note, a repeat included (signed-note)
            continue
        seen.add(ident)
        if key is origin_key:
            origin_ok = True
        elif timestamp is not None:
            cosignatures.append(Cosignature(key, timestamp))
    if not origin_ok:
        raise CheckpointError(f"checkpoint is not signed by {origin_key.name}")
    return SignedCheckpoint(checkpoint, note, tuple(cosignatures))
