"""The federation directory: a province's signed list of its member nodes.

A directory file (``<federation>.directory.jws``) holds one compact JWS and a newline.
The JWS has ``typ`` ``tongban-directory+jws`` and is signed by the federation's
directory key (``x5c`` = its chain; the leaf has the EKU
:data:`signing.certificates.DIRECTORY_SIGNING` and is issued under a bundle root,
:attr:`signing.certificates.Purpose.DIRECTORY`). Its payload is the canonical JSON of::

    {"federation": "Hubei",
     "serial": 7,                       # grows with every publication
     "issued_at": 1764300000, "expires_at": 1764904800,
     "nodes": [{"id": "420106",
                "names": {"zh": "...", "en": "..."},
                "federation_url": "https://...", "public_url": "https://...",
                "descriptor": "<the node's descriptor JWS, as in node.json>",
                "limits": {"max_body_bytes": 1048576, "max_batch_size": 100}}, ...]}

Verification (:func:`verify_directory`, at an instant): the JWS and its chain as any
tongban JWS (:func:`signing.jws.verify_compact`), the payload canonical and complete,
``issued_at`` not in the future, ``expires_at`` after ``issued_at``, node ids unique.
Then each entry on its own: its descriptor verifies (:func:`verify_descriptor`), names
the entry's id and URLs, and is certified under the *same root* as the directory key
(a province lists only its own nodes). An entry that fails is left out and reported in
:attr:`VerifiedDirectory.refused`; a document that fails raises ``InvalidSignature``.
Whether a directory has run out (``expires_at``) is the caller's decision: a node keeps
using its last good copy and alerts (``relay.federation``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from signing import pathcache
from signing._claims import from_numeric
from signing.certificates import Purpose, TrustBundle, is_node_id
from signing.descriptor import NodeDescriptor, verify_descriptor
from signing.encoding import b64url, b64url_decode, canonical_json, loads_shallow
from signing.errors import CertificateRejected, InvalidSignature, MalformedInput
from signing.jws import MAX_CLOCK_SKEW, sign_compact, verify_compact
from signing.keys import Signer

__all__ = [
    "DIRECTORY_TYP",
    "DirectoryEntry",
    "EntryLimits",
    "FederationDirectory",
    "VerifiedDirectory",
    "root_id",
    "sign_directory",
    "verify_directory",
]

_log = logging.getLogger("tongban.signing")

DIRECTORY_TYP = "tongban-directory+jws"
_KEYS = frozenset({"federation", "serial", "issued_at", "expires_at", "nodes"})
_ENTRY_KEYS = frozenset({"id", "names", "federation_url", "public_url", "descriptor", "limits"})
_LIMIT_KEYS = frozenset({"max_body_bytes", "max_batch_size"})


def root_id(root: x509.Certificate) -> str:
    """A root's stable name in directories and caches: b64url(SHA-256(DER))."""
    return b64url(root.fingerprint(hashes.SHA256()))


def _int(obj: Mapping[str, Any], key: str, low: int = 0) -> int:
    value = obj[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise MalformedInput(f"{key} must be an integer >= {low}")
    return value


def _text(obj: Mapping[str, Any], key: str) -> str:
    value = obj[key]
    if not isinstance(value, str) or not value.strip():
        raise MalformedInput(f"{key} must be a non-empty string")
    return value


@dataclass(frozen=True)
class EntryLimits:
    """What a node accepts from a partner: the largest request body and batch."""

    max_body_bytes: int
    max_batch_size: int

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1024 or self.max_batch_size < 1:
            raise MalformedInput("limits: max_body_bytes >= 1024, max_batch_size >= 1")


@dataclass(frozen=True)
class DirectoryEntry:
    """One member node as its federation lists it."""

    node_id: str
    name_zh: str
    name_en: str
    federation_url: str
    public_url: str
    descriptor_token: str  # the JWS of the node's node.json
    limits: EntryLimits

    def __post_init__(self) -> None:
        if not is_node_id(self.node_id):
            raise MalformedInput(f"{self.node_id!r} is not a node id")
        for url in (self.federation_url, self.public_url):
            if not url.startswith(("https://", "http://")):
                raise MalformedInput(f"{url!r} is not an http(s) URL")

    @property
    def node_json(self) -> bytes:
        """The entry's descriptor as ``node.json`` bytes."""
        return canonical_json({"descriptor": self.descriptor_token}) + b"\n"

    @classmethod
    def from_node_json(cls, data: bytes, limits: EntryLimits) -> DirectoryEntry:
        """An entry for a node's own ``node.json`` (names and URLs read from it, unverified:
        the publisher checks the result with :func:`verify_directory`)."""
        try:
            token = loads_shallow(data)["descriptor"]
            payload = loads_shallow(_b64url_payload(token))
            descriptor = NodeDescriptor.from_json(payload)
        except (ValueError, KeyError, TypeError) as exc:
            raise MalformedInput(f"not a node.json: {exc}") from None
        return cls(
            node_id=descriptor.node_id,
            name_zh=descriptor.name_zh,
            name_en=descriptor.name_en,
            federation_url=descriptor.endpoints["federation"],
            public_url=descriptor.endpoints["public"],
            descriptor_token=token,
            limits=limits,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.node_id,
            "names": {"zh": self.name_zh, "en": self.name_en},
            "federation_url": self.federation_url,
            "public_url": self.public_url,
            "descriptor": self.descriptor_token,
            "limits": {
                "max_body_bytes": self.limits.max_body_bytes,
                "max_batch_size": self.limits.max_batch_size,
            },
        }

    @classmethod
    def from_json(cls, obj: object) -> DirectoryEntry:
        if not isinstance(obj, dict) or set(obj) != _ENTRY_KEYS:
            raise MalformedInput(f"a node entry has exactly {sorted(_ENTRY_KEYS)}")
        names, limits = obj["names"], obj["limits"]
        if not isinstance(names, dict) or set(names) != {"zh", "en"}:
            raise MalformedInput('names is {"zh", "en"}')
        if not isinstance(limits, dict) or set(limits) != _LIMIT_KEYS:
            raise MalformedInput(f"limits has exactly {sorted(_LIMIT_KEYS)}")
        return cls(
            node_id=_text(obj, "id"),
            name_zh=_text(names, "zh"),
            name_en=_text(names, "en"),
            federation_url=_text(obj, "federation_url"),
            public_url=_text(obj, "public_url"),
            descriptor_token=_text(obj, "descriptor"),
            limits=EntryLimits(_int(limits, "max_body_bytes"), _int(limits, "max_batch_size")),
        )


def _b64url_payload(token: str) -> bytes:
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWS")
    return b64url_decode(parts[1])


@dataclass(frozen=True)
class FederationDirectory:
    """The directory document (unsigned form)."""

    federation: str
    serial: int
    issued_at: datetime
    expires_at: datetime
    entries: tuple[DirectoryEntry, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", tuple(self.entries))
        if not self.federation.strip():
            raise MalformedInput("the federation name must not be empty")
        if self.issued_at.tzinfo is None or self.expires_at.tzinfo is None:
            raise MalformedInput("issued_at and expires_at must be timezone-aware")
        if self.expires_at <= self.issued_at:
            raise MalformedInput("expires_at must be after issued_at")
        ids = [e.node_id for e in self.entries]
        if len(set(ids)) != len(ids):
            raise MalformedInput("a node is listed twice")

    def to_json(self) -> dict[str, Any]:
        return {
            "federation": self.federation,
            "serial": self.serial,
            "issued_at": int(self.issued_at.timestamp()),
            "expires_at": int(self.expires_at.timestamp()),
            "nodes": [e.to_json() for e in self.entries],
        }

    @classmethod
    def from_json(cls, obj: object) -> FederationDirectory:
        if not isinstance(obj, dict) or set(obj) != _KEYS:
            raise MalformedInput(f"a directory has exactly {sorted(_KEYS)}")
        nodes = obj["nodes"]
        if not isinstance(nodes, list):
            raise MalformedInput("nodes is a list")
        return cls(
            federation=_text(obj, "federation"),
            serial=_int(obj, "serial"),
            issued_at=from_numeric(_int(obj, "issued_at"), "issued_at"),
            expires_at=from_numeric(_int(obj, "expires_at"), "expires_at"),
            entries=tuple(DirectoryEntry.from_json(n) for n in nodes),
        )


@dataclass(frozen=True)
class VerifiedDirectory:
    """A directory whose signature verified, with the entries that verified on their own."""

    directory: FederationDirectory
    token: str
    root: x509.Certificate
    entries: Mapping[str, DirectoryEntry]
    descriptors: Mapping[str, NodeDescriptor]
    refused: Mapping[str, str] = field(default_factory=dict)
    signer: x509.Certificate | None = None
    """The directory-signing certificate the copy verified with (its expiry is watched)."""

    @property
    def root_id(self) -> str:
        return root_id(self.root)

    @property
    def file_bytes(self) -> bytes:
        return self.token.encode("ascii") + b"\n"

    def newer_than(self, other: VerifiedDirectory) -> bool:
        """Whether this copy supersedes ``other`` (same root; higher serial, or the same
        serial issued later)."""
        mine, theirs = self.directory, other.directory
        return (mine.serial, mine.issued_at) > (theirs.serial, theirs.issued_at)


def sign_directory(directory: FederationDirectory, signer: Signer, *, at: datetime) -> bytes:
    """Sign ``directory`` with the federation's directory key; returns the file bytes."""
    token = sign_compact(canonical_json(directory.to_json()), signer, typ=DIRECTORY_TYP, at=at)
    return token.encode("ascii") + b"\n"


def _fail(cause: str) -> InvalidSignature:
    _log.warning("federation directory refused: %s", cause)
    return InvalidSignature()


def _root_of(chain: Iterable[x509.Certificate], bundle: TrustBundle) -> x509.Certificate:
    top = list(chain)[-1]
    for root in bundle.roots:
        if top == root or pathcache.issued_by_signature(top, root):  # SM2-with-SM3 too
            return root
    raise CertificateRejected("untrusted-root", "no bundle root issued the chain")


def verify_directory(data: bytes | str, bundle: TrustBundle, *, at: datetime) -> VerifiedDirectory:
    """Verify a directory file at ``at``; raises :class:`InvalidSignature` for the document,
    leaves failing entries out (see the module docstring)."""
    text = data.decode("ascii", "replace") if isinstance(data, bytes) else data
    token = text.strip()
    verified = verify_compact(token, bundle, at=at, typ=DIRECTORY_TYP, purpose=Purpose.DIRECTORY)
    try:
        obj = loads_shallow(verified.payload.decode("utf-8"))
        if canonical_json(obj) != verified.payload:
            raise MalformedInput("payload is not canonical JSON")
        directory = FederationDirectory.from_json(obj)
    except (ValueError, UnicodeDecodeError, RecursionError, MalformedInput) as exc:
        raise _fail(f"bad directory payload: {exc}") from None
    if directory.issued_at > at + MAX_CLOCK_SKEW:
        raise _fail("issued_at is in the future")
    root = _root_of([verified.signer.certificate], bundle)
    entries: dict[str, DirectoryEntry] = {}
    descriptors: dict[str, NodeDescriptor] = {}
    refused: dict[str, str] = {}
    for entry in directory.entries:
        try:
            descriptor = verify_descriptor(entry.node_json, bundle, at=at)
            if descriptor.node_id != entry.node_id:
                raise MalformedInput(f"the descriptor is node {descriptor.node_id}")
            if (
                descriptor.endpoints["federation"] != entry.federation_url
                or descriptor.endpoints["public"] != entry.public_url
            ):
                raise MalformedInput("the URLs differ from the node's descriptor")
            if _root_of(descriptor.seal_chain, bundle) != root:
                raise MalformedInput("the node is certified under another federation's root")
        except (InvalidSignature, CertificateRejected, MalformedInput) as exc:
            why = str(exc) or type(exc).__name__
            _log.warning(
                "directory %s: entry %s left out: %s", directory.federation, entry.node_id, why
            )
            refused[entry.node_id] = why
            continue
        entries[entry.node_id] = entry
        descriptors[entry.node_id] = descriptor
    return VerifiedDirectory(
        directory=directory,
        token=token,
        root=root,
        entries=MappingProxyType(entries),
        descriptors=MappingProxyType(descriptors),
        refused=MappingProxyType(refused),
        signer=verified.signer.certificate,
    )
