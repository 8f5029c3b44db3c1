"""The node descriptor (``node.json``): who a node is and how to reach and seal to it.

``node.json`` is the JSON object ``{"descriptor": "<compact JWS>"}``. The JWS has
``typ`` ``tongban-node+jws``, is signed by the node's seal key (``x5c`` = the seal chain)
and its payload is the canonical JSON of::

    {"id": "420106",
     "names": {"zh": "武昌区政务服务中心", "en": "Wuchang District Service Centre"},
     "endpoints": {"federation": "https://...", "public": "https://..."},
     "tls_chain": ["<std base64 DER>", ...], "seal_chain": ["<std base64 DER>", ...],
     "hpke_keys": [{"kid": ..., "suite": ..., "pub": ...}, ...],
     "issued_at": 1764300000}

Verification: the JWS verifies with the seal chain it carries, which must be exactly
``seal_chain``; both chains validate against the bundle for their purpose and for the
descriptor's ``id``; the JWS signer's node id equals ``id``. Several HPKE keys may be
listed (rotation: old and new during the overlap), in the order the node prefers them.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from types import MappingProxyType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from signing._claims import from_numeric
from signing.certificates import Purpose, TrustBundle, is_node_id, validate_path
from signing.encoding import canonical_json, loads_shallow
from signing.errors import InvalidSignature, MalformedInput
from signing.hpke import HpkePublicKey, HpkeSuite
from signing.jws import MAX_CLOCK_SKEW, sign_compact, verify_compact
from signing.keys import Signer
from signing.profiles import Profile, certificate_profile

__all__ = ["NODE_TYP", "NodeDescriptor", "sign_descriptor", "verify_descriptor"]

_log = logging.getLogger("tongban.signing")

NODE_TYP = "tongban-node+jws"
_PAYLOAD_KEYS = frozenset(
    {"id", "names", "endpoints", "tls_chain", "seal_chain", "hpke_keys", "issued_at"}
)
_REQUIRED_ENDPOINTS = ("federation", "public")


def _b64_der(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(Encoding.DER)).decode("ascii")


def _parse_chain(value: object) -> tuple[x509.Certificate, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= 5:
        raise MalformedInput("a chain is a list of 1 to 5 certificates")
    certs = []
    for item in value:
        if not isinstance(item, str):
            raise MalformedInput("a chain entry is a base64 string")
        try:
            certs.append(x509.load_der_x509_certificate(base64.b64decode(item, validate=True)))
        except (binascii.Error, ValueError) as exc:
            raise MalformedInput(f"unparsable certificate in chain: {exc}") from None
    return tuple(certs)


@dataclass(frozen=True)
class NodeDescriptor:
    """A node's published identity, endpoints, certificate chains and HPKE keys."""

    node_id: str
    name_zh: str
    name_en: str
    endpoints: Mapping[str, str]
    tls_chain: tuple[x509.Certificate, ...]
    seal_chain: tuple[x509.Certificate, ...]
    hpke_keys: tuple[HpkePublicKey, ...]
    issued_at: datetime

    def __post_init__(self) -> None:
        if not is_node_id(self.node_id):
            raise MalformedInput(f"{self.node_id!r} is not a node id")
        if not all(isinstance(n, str) and n.strip() for n in (self.name_zh, self.name_en)):
            raise MalformedInput("both names must be non-empty strings")
        endpoints = dict(self.endpoints)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in endpoints.items()):
            raise MalformedInput("endpoints map names to URLs (strings)")
        missing = [k for k in _REQUIRED_ENDPOINTS if k not in endpoints]
        if missing:
            raise MalformedInput(f"endpoints lack {missing}")
        object.__setattr__(self, "endpoints", MappingProxyType(endpoints))
        object.__setattr__(self, "tls_chain", tuple(self.tls_chain))
        object.__setattr__(self, "seal_chain", tuple(self.seal_chain))
        object.__setattr__(self, "hpke_keys", tuple(self.hpke_keys))
        if not self.tls_chain or not self.seal_chain:
            raise MalformedInput("a descriptor needs its TLS and seal chains")
        if not self.hpke_keys or not all(isinstance(k, HpkePublicKey) for k in self.hpke_keys):
            raise MalformedInput("a descriptor lists at least one HPKE public key")
        if len({k.kid for k in self.hpke_keys}) != len(self.hpke_keys):
            raise MalformedInput("HPKE keys are listed twice")
        if self.issued_at.tzinfo is None:
            raise MalformedInput("issued_at must be timezone-aware")

    def keys_for(self, suite: HpkeSuite) -> tuple[HpkePublicKey, ...]:
        """The listed HPKE keys of ``suite``, in the node's order of preference."""
        return tuple(k for k in self.hpke_keys if k.suite is suite)

    def hpke_key(self, kid: str) -> HpkePublicKey | None:
        return next((k for k in self.hpke_keys if k.kid == kid), None)

    @cached_property
    def profile(self) -> Profile:
        """The node's cryptographic profile, as its seal certificate's key type says
        (:mod:`signing.profiles`); worked out once per descriptor (its certificate does
        not change; every new packet to the node asks)."""
        return certificate_profile(self.seal_chain[0])

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.node_id,
            "names": {"zh": self.name_zh, "en": self.name_en},
            "endpoints": dict(self.endpoints),
            "tls_chain": [_b64_der(c) for c in self.tls_chain],
            "seal_chain": [_b64_der(c) for c in self.seal_chain],
            "hpke_keys": [k.to_json() for k in self.hpke_keys],
            "issued_at": int(self.issued_at.timestamp()),
        }

    @classmethod
    def from_json(cls, obj: object) -> NodeDescriptor:
        if not isinstance(obj, dict) or set(obj) != _PAYLOAD_KEYS:
            raise MalformedInput(f"descriptor members must be exactly {sorted(_PAYLOAD_KEYS)}")
        names = obj["names"]
        if not isinstance(names, dict) or set(names) != {"zh", "en"}:
            raise MalformedInput('names is {"zh", "en"}')
        endpoints = obj["endpoints"]
        if not isinstance(endpoints, dict):
            raise MalformedInput("endpoints is an object")
        keys = obj["hpke_keys"]
        if not isinstance(keys, list):
            raise MalformedInput("hpke_keys is a list")
        issued = obj["issued_at"]
        if not isinstance(issued, int) or isinstance(issued, bool) or issued < 0:
            raise MalformedInput("issued_at is a non-negative integer")
        if not isinstance(obj["id"], str):
            raise MalformedInput("id is a string")
        return cls(
            node_id=obj["id"],
            name_zh=names["zh"],
            name_en=names["en"],
            endpoints=endpoints,
            tls_chain=_parse_chain(obj["tls_chain"]),
            seal_chain=_parse_chain(obj["seal_chain"]),
            hpke_keys=tuple(HpkePublicKey.from_json(k) for k in keys),
            issued_at=from_numeric(issued, "issued_at"),
        )


def sign_descriptor(descriptor: NodeDescriptor, signer: Signer, *, at: datetime) -> bytes:
    """Sign ``descriptor`` with the node's seal; returns the ``node.json`` bytes."""
    if signer.chain != descriptor.seal_chain:
        raise ValueError("the signer's chain must be the descriptor's seal chain")
    token = sign_compact(canonical_json(descriptor.to_json()), signer, typ=NODE_TYP, at=at)
    return canonical_json({"descriptor": token}) + b"\n"


def _fail(cause: str) -> InvalidSignature:
    _log.warning("node descriptor refused: %s", cause)
    return InvalidSignature()


def verify_descriptor(data: bytes, bundle: TrustBundle, *, at: datetime) -> NodeDescriptor:
    """Verify ``node.json`` bytes; raises InvalidSignature, or CertificateRejected when
    the TLS chain fails path validation."""
    try:
        outer = loads_shallow(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _fail(f"node.json is not JSON: {exc}") from None
    if not isinstance(outer, dict) or set(outer) != {"descriptor"}:
        raise _fail('node.json must be {"descriptor": <JWS>}')
    token = outer["descriptor"]
    if not isinstance(token, str):
        raise _fail("descriptor is not a string")
    verified = verify_compact(token, bundle, at=at, typ=NODE_TYP, purpose=Purpose.SEAL)
    try:
        obj = loads_shallow(verified.payload.decode("utf-8"))
        if canonical_json(obj) != verified.payload:
            raise MalformedInput("payload is not canonical JSON")
        descriptor = NodeDescriptor.from_json(obj)
    except (ValueError, UnicodeDecodeError, RecursionError, MalformedInput) as exc:
        raise _fail(f"bad descriptor payload: {exc}") from None
    x5c = verified.header.get("x5c")
    if not isinstance(x5c, tuple) or list(x5c) != obj["seal_chain"]:
        raise _fail("the JWS x5c is not the descriptor's seal chain")
    if verified.signer.node_id != descriptor.node_id:
        raise _fail(f"signed by {verified.signer.node_id}, describes {descriptor.node_id}")
    if descriptor.issued_at > at + MAX_CLOCK_SKEW:
        raise _fail("issued_at is in the future")
    validate_path(
        descriptor.seal_chain, bundle, purpose=Purpose.SEAL, at=at, node_id=descriptor.node_id
    )
    validate_path(
        descriptor.tls_chain, bundle, purpose=Purpose.TLS_PEER, at=at, node_id=descriptor.node_id
    )
    return descriptor
