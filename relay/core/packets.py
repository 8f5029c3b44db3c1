"""The packet and receipt formats (pure: bytes, keys and time in; tokens out).

Packet (compact JWS, typ ``tongban-packet+jws``, signed by the sending node's seal)
whose payload is the canonical JSON of the routing facts::

    {v: 1, id, case, from, to, matter, action, mode,
     agreement: {id, version, digest}, seq, prev, created, expires,
     attachments: [{digest, size, media_type, name}],
     sealed: {suite, kid, ct}}

``sealed.ct`` is ``b64url(hpke_seal(inner, recipient, info=seal_info("packet",
{id, from, to})))`` and ``inner`` the ASCII bytes of a compact JWS (typ
``tongban-content+jws``, same signer) over the canonical JSON::

    {v: 1, packet_id, case, from, to, body: <business content>,
     attachments: [{digest, key, plain_digest, plain_size}]}

``key`` (b64url) is the stream key of the sealed blob ``digest``; the blob's stream is
SM4-GCM (:mod:`signing.sm_seal`) when ``sealed.suite`` is ``sm2-sm4gcm``, else Tink
AES-GCM (:mod:`signing.stream`) — :func:`relay.core.streams.stream_for`.
Digests are lowercase hex SHA-256; a packet's digest is SHA-256 of the compact JWS
ASCII bytes. Times are integers: whole seconds since the Unix epoch, UTC.

Receipts are in :mod:`relay.core.receipts`.
The normative description is ``docs/protocol.md`` section ``packets``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from relay.core.errors import MalformedPacket
from relay.core.fields import (
    digest_field,
    format_time,
    int_field,
    is_digest,
    micros_time,
    node_field,
    parse_time,
    str_field,
    time_micros,
)
from relay.core.ports import AgreementRef
from relay.core.streams import Stream, stream_for
from signing.at_rest import AtRest, seal_at_rest
from signing.certificates import Identity, Purpose, TrustBundle
from signing.encoding import (
    MAX_DEPTH,
    b64url,
    b64url_decode,
    canonical_json,
    check_ijson,
    is_canonical_b64url,
    loads_ijson,
    loads_shallow,
)
from signing.errors import MalformedInput
from signing.hpke import HpkePrivateKey, HpkePublicKey, hpke_open, hpke_seal, seal_info
from signing.jws import sign_compact, verify_compact
from signing.keys import Signer

__all__ = [
    "CONTENT_TYP",
    "PACKET_TYP",
    "AttachmentKey",
    "AttachmentRef",
    "Content",
    "MalformedPacket",
    "RoutingFacts",
    "SealedContent",
    "VerifiedPacket",
    "build_packet",
    "canonical_parts",
    "check_new_packet",
    "key_ring",
    "open_content",
    "packet_digest",
    "peek_facts",
    "require_canonical",
    "seal_content",
    "sign_packet",
    "verify_packet",
]

PACKET_TYP = "tongban-packet+jws"
CONTENT_TYP = "tongban-content+jws"
_FACT_KEYS = {
    "v", "id", "case", "from", "to", "matter", "action", "mode", "agreement", "seq",
    "prev", "created", "expires", "attachments", "sealed",
}  # fmt: skip


def packet_digest(token: str) -> str:
    """SHA-256 (lowercase hex) of the compact JWS ASCII bytes."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class AttachmentRef:
    """An attachment named in the routing facts: the sealed blob's digest and size."""

    digest: str
    size: int
    media_type: str
    name: str

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "size": self.size,
            "media_type": self.media_type,
            "name": self.name,
        }

    @classmethod
    def from_json(cls, obj: object) -> AttachmentRef:
        if not isinstance(obj, dict) or set(obj) != {"digest", "size", "media_type", "name"}:
            raise MalformedPacket("attachment entries are {digest, size, media_type, name}")
        name = obj["name"]
        if not isinstance(name, str) or len(name) > 256:
            raise MalformedPacket("attachment name must be a string")
        return cls(
            digest_field(obj, "digest"), int_field(obj, "size"), str_field(obj, "media_type"), name
        )


@dataclass(frozen=True)
class SealedContent:
    suite: str
    kid: str
    ct: bytes


@dataclass(frozen=True)
class RoutingFacts:
    """The outer payload of a packet, validated."""

    id: str
    case: str
    sender: str
    receiver: str
    matter: str
    action: str
    mode: str
    agreement: AgreementRef
    seq: int
    prev: str | None
    created: datetime
    expires: datetime
    attachments: tuple[AttachmentRef, ...]
    sealed: SealedContent

    def to_json(self) -> dict[str, Any]:
        return {
            "v": 1,
            "id": self.id,
            "case": self.case,
            "from": self.sender,
            "to": self.receiver,
            "matter": self.matter,
            "action": self.action,
            "mode": self.mode,
            "agreement": {
                "id": self.agreement.id,
                "version": self.agreement.version,
                "digest": self.agreement.digest,
            },
            "seq": self.seq,
            "prev": self.prev,
            "created": format_time(self.created),
            "expires": format_time(self.expires),
            "attachments": [a.to_json() for a in self.attachments],
            "sealed": {
                "suite": self.sealed.suite,
                "kid": self.sealed.kid,
                "ct": b64url(self.sealed.ct),
            },
        }

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled as plain values: the crypto helper's answers carry one per packet, and
        the default pickle of its datetimes and nested dataclasses cost ~10 us to write
        and ~8 us to read, against ~2 and ~4."""
        agreement, sealed = self.agreement, self.sealed
        return _unpickle_facts, (
            self.id, self.case, self.sender, self.receiver, self.matter, self.action,
            self.mode, agreement.id, agreement.version, agreement.digest, self.seq,
            self.prev, _pack_time(self.created), _pack_time(self.expires),
            tuple((a.digest, a.size, a.media_type, a.name) for a in self.attachments),
            sealed.suite, sealed.kid, sealed.ct,
        )  # fmt: skip

    @classmethod
    def from_json(cls, obj: object) -> RoutingFacts:
        if not isinstance(obj, dict) or set(obj) != _FACT_KEYS or obj.get("v") != 1:
            raise MalformedPacket("routing facts must have exactly the v1 keys")
        agreement = obj["agreement"]
        if not isinstance(agreement, dict) or set(agreement) != {"id", "version", "digest"}:
            raise MalformedPacket("agreement is {id, version, digest}")
        sealed = obj["sealed"]
        if not isinstance(sealed, dict) or set(sealed) != {"suite", "kid", "ct"}:
            raise MalformedPacket("sealed is {suite, kid, ct}")
        try:
            ct = b64url_decode(str_field(sealed, "ct", max_len=1 << 24))
        except MalformedInput as exc:
            raise MalformedPacket("sealed.ct is not base64url") from exc
        seq = int_field(obj, "seq", minimum=1)
        prev = obj["prev"]
        if (seq == 1) != (prev is None) or (prev is not None and not is_digest(prev)):
            raise MalformedPacket("prev is null exactly when seq is 1, else a digest")
        attachments = obj["attachments"]
        if not isinstance(attachments, list):
            raise MalformedPacket("attachments must be a list")
        created, expires = parse_time(obj["created"]), parse_time(obj["expires"])
        if expires <= created:
            raise MalformedPacket("expires must be after created")
        refs = tuple(AttachmentRef.from_json(a) for a in attachments)
        if len({a.digest for a in refs}) != len(refs):
            raise MalformedPacket("an attachment digest is listed twice")
        return cls(
            id=str_field(obj, "id", max_len=64),
            case=str_field(obj, "case", max_len=128),
            sender=node_field(obj, "from"),
            receiver=node_field(obj, "to"),
            matter=str_field(obj, "matter"),
            action=str_field(obj, "action"),
            mode=str_field(obj, "mode"),
            agreement=AgreementRef(
                str_field(agreement, "id"),
                int_field(agreement, "version"),
                digest_field(agreement, "digest"),
            ),
            seq=seq,
            prev=prev,
            created=created,
            expires=expires,
            attachments=refs,
            sealed=SealedContent(str_field(sealed, "suite"), str_field(sealed, "kid"), ct),
        )


def _pack_time(at: datetime) -> int | datetime:
    """A time in UTC (as routing facts hold them) as integer microseconds, any other
    datetime as itself (its time zone kept)."""
    return time_micros(at) if at.tzinfo is UTC else at


def _unpack_time(at: int | datetime) -> datetime:
    return micros_time(at) if isinstance(at, int) else at


def _unpickle_facts(
    packet_id: str, case: str, sender: str, receiver: str, matter: str, action: str,
    mode: str, agreement_id: str, version: int, agreement_digest: str, seq: int,
    prev: str | None, created: int | datetime, expires: int | datetime,
    attachments: tuple[tuple[str, int, str, str], ...], suite: str, kid: str, ct: bytes,
) -> RoutingFacts:  # fmt: skip
    """:class:`RoutingFacts` from what its ``__reduce__`` gave."""
    return RoutingFacts(
        packet_id, case, sender, receiver, matter, action, mode,
        AgreementRef(agreement_id, version, agreement_digest), seq, prev,
        _unpack_time(created), _unpack_time(expires),
        tuple(AttachmentRef(*a) for a in attachments), SealedContent(suite, kid, ct),
    )  # fmt: skip


@dataclass(frozen=True)
class AttachmentKey:
    """Inside the sealed content: how to open one attachment blob."""

    digest: str
    key: bytes
    plain_digest: str
    plain_size: int
    #: Not on the wire: follows from the suite that sealed the key (``stream_for``).
    stream: Stream = Stream.TINK_AES256GCM

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "key": b64url(self.key),
            "plain_digest": self.plain_digest,
            "plain_size": self.plain_size,
        }

    @classmethod
    def from_json(cls, obj: object) -> AttachmentKey:
        if not isinstance(obj, dict) or set(obj) != {"digest", "key", "plain_digest", "plain_size"}:
            raise MalformedPacket("attachment keys are {digest, key, plain_digest, plain_size}")
        try:
            key = b64url_decode(str_field(obj, "key"))
        except MalformedInput as exc:
            raise MalformedPacket("attachment key is not base64url") from exc
        return cls(
            digest_field(obj, "digest"),
            key,
            digest_field(obj, "plain_digest"),
            int_field(obj, "plain_size"),
        )


@dataclass(frozen=True)
class Content:
    """The opened inner content of a packet."""

    body: Mapping[str, Any]
    attachment_keys: tuple[AttachmentKey, ...]
    jws: str


def canonical_parts(token: str) -> None:
    """Refuse compact JWS whose base64url parts are not the canonical encoding (a
    flipped padding bit would otherwise leave the signature valid)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise MalformedInput("a compact JWS has three parts")
    for part in parts:
        if not is_canonical_b64url(part):
            raise MalformedInput("not canonical base64url without padding")


def require_canonical(obj: object, payload: bytes) -> None:
    """Refuse a signed payload that is not exactly the canonical JSON of what it holds."""
    try:
        canonical = canonical_json(obj)
    except MalformedInput as exc:  # e.g. floating-point numbers
        raise MalformedPacket(f"payload is not canonical JSON: {exc}") from exc
    if canonical != payload:
        raise MalformedPacket("payload is not canonical JSON")


def check_new_packet(
    case_id: str, matter: str, action: str, mode: str, body: Mapping[str, Any]
) -> None:
    """Refuse (:class:`MalformedPacket`) what :func:`build_packet` could not sign or a
    receiver would refuse as ``malformed``: routing strings of the wrong length and
    content that is not a tongban JSON value (protocol.md "Conventions"), where the body
    sits at level 2 of the content payload."""
    for name, value, limit in (
        ("case", case_id, 128), ("matter", matter, 256), ("action", action, 256),
        ("mode", mode, 256),
    ):  # fmt: skip
        if not isinstance(value, str) or not 1 <= len(value) <= limit:
            raise MalformedPacket(f"{name} must be a string of 1 to {limit} characters")
    try:
        check_ijson({"case": case_id, "matter": matter, "action": action, "mode": mode})
        check_ijson(dict(body), max_depth=MAX_DEPTH - 1)
    except MalformedInput as exc:
        raise MalformedPacket(f"content: {exc}") from None


def peek_facts(token: str) -> Mapping[str, Any] | None:
    """The unverified payload object of a packet, for naming it in a refusal; None if
    it does not even parse. Never trust anything read here."""
    try:
        obj = loads_shallow(b64url_decode(token.split(".")[1]))
    except (IndexError, ValueError, MalformedInput, AttributeError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def build_packet(
    facts_without_seal: Mapping[str, Any],
    body: Mapping[str, Any],
    attachment_keys: Sequence[AttachmentKey],
    *,
    signer: Signer,
    recipient: HpkePublicKey,
    at: datetime,
) -> tuple[str, RoutingFacts, str]:
    """Sign and seal a packet: (outer token, its facts, the inner content JWS).
    ``facts_without_seal`` is the routing-facts object without ``sealed`` (as
    :meth:`RoutingFacts.to_json` would write it)."""
    f = facts_without_seal
    inner, sealed = seal_content(
        f["id"], f["case"], f["from"], f["to"], body, attachment_keys,
        signer=signer, recipient=recipient, at=at,
    )  # fmt: skip
    token, facts = sign_packet(f, sealed, signer=signer, at=at)
    return token, facts, inner


def seal_content(
    packet_id: str,
    case_id: str,
    sender: str,
    receiver: str,
    body: Mapping[str, Any],
    attachment_keys: Sequence[AttachmentKey],
    *,
    signer: Signer,
    recipient: HpkePublicKey,
    at: datetime,
) -> tuple[str, dict[str, str]]:
    """The first half of :func:`build_packet`, which needs no sequence number: the
    inner content JWS and the ``sealed`` member of the routing facts."""
    ident = {"id": packet_id, "from": sender, "to": receiver}
    inner_payload = {
        "v": 1,
        "packet_id": packet_id,
        "case": case_id,
        "from": sender,
        "to": receiver,
        "body": dict(body),
        "attachments": [k.to_json() for k in attachment_keys],
    }
    inner = sign_compact(canonical_json(inner_payload), signer, typ=CONTENT_TYP, at=at)
    ct = hpke_seal(inner.encode("ascii"), recipient, info=seal_info("packet", ident))
    return inner, {"suite": str(recipient.suite), "kid": recipient.kid, "ct": b64url(ct)}


def seal_own_copy(inner: str, packet_id: str, key: HpkePrivateKey, kid: str) -> str:
    """A sent packet's inner JWS (from :func:`seal_content`) sealed at rest for its node
    alone under ``key`` (the node's current HPKE private key, whose kid is ``kid``):
    ``<cipher>.<kid>.<b64url>`` (:mod:`signing.at_rest`; see
    :meth:`relay.core.service.RelayNode._own_copy`)."""
    cipher = AtRest.for_key(key)
    info = seal_info("packet-copy", {"id": packet_id})
    sealed = seal_at_rest(inner.encode("ascii"), key, info=info, cipher=cipher)
    return f"{cipher.value}.{kid}.{b64url(sealed)}"


def sign_packet(
    facts_without_seal: Mapping[str, Any],
    sealed: Mapping[str, str],
    *,
    signer: Signer,
    at: datetime,
) -> tuple[str, RoutingFacts]:
    """The second half of :func:`build_packet`: the outer JWS over the routing facts
    with ``sealed`` (from :func:`seal_content` for the same id, case, from and to)."""
    obj = dict(facts_without_seal)
    obj["sealed"] = dict(sealed)
    facts = RoutingFacts.from_json(obj)
    token = sign_compact(canonical_json(facts.to_json()), signer, typ=PACKET_TYP, at=at)
    return token, facts


@dataclass(frozen=True)
class VerifiedPacket:
    token: str
    digest: str
    facts: RoutingFacts
    signer: Identity


def verify_packet(token: str, bundle: TrustBundle, *, at: datetime) -> VerifiedPacket:
    """Verify the outer signature and parse the routing facts.

    Raises :class:`signing.errors.SigningError` (signature, certificate path or
    encoding: the packet is not authentic) or :class:`MalformedPacket` (authentic but
    not a v1 packet). The caller compares ``signer.node_id`` with ``facts.sender``.
    """
    canonical_parts(token)
    verified = verify_compact(token, bundle, at=at, typ=PACKET_TYP, purpose=Purpose.SEAL)
    try:
        obj = loads_ijson(verified.payload)
    except MalformedInput as exc:
        raise MalformedPacket(f"payload is not JSON: {exc}") from exc
    facts = RoutingFacts.from_json(obj)
    require_canonical(obj, verified.payload)
    return VerifiedPacket(token, packet_digest(token), facts, verified.signer)


def key_ring(keys: Sequence[HpkePrivateKey]) -> dict[str, HpkePrivateKey]:
    """Private keys by kid (computing a hybrid key's kid rebuilds it: do it once)."""
    return {key.public_key().kid: key for key in keys}


def open_content(
    facts: RoutingFacts,
    keys: Sequence[HpkePrivateKey] | Mapping[str, HpkePrivateKey],
    bundle: TrustBundle,
    *,
    at: datetime,
) -> Content:
    """Open and verify the sealed inner content with whichever of ``keys`` has the
    packet's ``sealed.kid``. Raises :class:`SigningError` (no key, decryption or
    signature failure) or :class:`MalformedPacket` (content does not match the facts).
    """
    ident = {"id": facts.id, "from": facts.sender, "to": facts.receiver}
    ring = keys if isinstance(keys, Mapping) else key_ring(keys)
    key = ring.get(facts.sealed.kid)
    if key is None:
        raise MalformedInput("no private key with the packet's kid")
    if key.suite != facts.sealed.suite:
        raise MalformedInput("sealed.suite is not the suite of the packet's kid")
    inner = hpke_open(facts.sealed.ct, key, info=seal_info("packet", ident)).decode("ascii")
    canonical_parts(inner)
    verified = verify_compact(
        inner, bundle, at=at, typ=CONTENT_TYP, purpose=Purpose.SEAL, node_id=facts.sender
    )
    try:
        obj = loads_ijson(verified.payload)
    except MalformedInput as exc:
        raise MalformedPacket(f"content is not tongban JSON: {exc}") from exc
    require_canonical(obj, verified.payload)
    expected = {"v", "packet_id", "case", "from", "to", "body", "attachments"}
    if not isinstance(obj, dict) or set(obj) != expected or obj["v"] != 1:
        raise MalformedPacket("content must have exactly the v1 keys")
    if (obj["packet_id"], obj["case"], obj["from"], obj["to"]) != (
        facts.id, facts.case, facts.sender, facts.receiver,
    ):  # fmt: skip
        raise MalformedPacket("content does not belong to this packet")
    if not isinstance(obj["body"], dict) or not isinstance(obj["attachments"], list):
        raise MalformedPacket("content body must be an object, attachments a list")
    kind = stream_for(facts.sealed.suite)
    akeys = tuple(
        dataclasses.replace(AttachmentKey.from_json(a), stream=kind) for a in obj["attachments"]
    )
    if sorted(k.digest for k in akeys) != sorted(a.digest for a in facts.attachments):
        raise MalformedPacket("content attachment keys do not match the routing facts")
    return Content(obj["body"], akeys, inner)
