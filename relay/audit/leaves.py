"""Audit leaf formats: what each leaf of a node's log says (pure).

A leaf is the canonical JSON (:func:`signing.encoding.canonical_json`) of one object::

    {"v": 1, "kind": KIND, "node": "<6-digit id of the logging node>",
     "at": <integer Unix seconds when the node logged it>, KIND-SPECIFIC FIELDS}

========================  ===============================================================
kind                      kind-specific fields
========================  ===============================================================
``packet-sent``,          ``packet``: {digest, id, case, from, to, matter, action,
``packet-received``       agreement_id, agreement_version, agreement_digest, seq, prev,
                          created}  (copied from the packet's routing facts)
``receipt``               ``receipt``: {digest, direction, packet_id, packet_digest, from,
                          to, status, reason, log_index}
``agreement-event``       ``agreement``: {id, version, document_sha256, event, party,
                          event_digest}
``licence-event``         ``licence``: {id, case, event, credential_digest, status_index}
``survey-report``         ``survey``: {id, case, surveyor, requested_by, report_digest,
                          manifest_digest}
``retention-purge``       ``purge``: {case, agreement_id, retention_years, content_digest,
                          packets, attachments}
========================  ===============================================================

Digests are lowercase hex SHA-256 of the exact signed bytes the leaf stands for (the
packet's, receipt's or event's compact JWS, the licence credential, the report), so a
leaf plus the artefact proves the artefact was logged. Leaves carry identifiers and
digests only, never personal data: checkpoints and proof bundles are shown to others.
Decoding is strict: unknown or missing keys, wrong types and non-canonical bytes are
refused with :class:`~relay.audit.errors.AuditError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any, ClassVar

from relay.audit.errors import AuditError
from signing.encoding import canonical_json
from signing.errors import MalformedInput

__all__ = [
    "AgreementEventLeaf",
    "AuditLeaf",
    "Direction",
    "LeafKind",
    "LicenceEvent",
    "LicenceEventLeaf",
    "PacketLeaf",
    "ReceiptLeaf",
    "RetentionPurgeLeaf",
    "SurveyReportLeaf",
    "decode_leaf",
    "encode_leaf",
]

LEAF_VERSION = 1
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NODE = re.compile(r"[0-9]{6}")


class LeafKind(StrEnum):
    PACKET_SENT = "packet-sent"
    PACKET_RECEIVED = "packet-received"
    RECEIPT = "receipt"
    AGREEMENT_EVENT = "agreement-event"
    LICENCE_EVENT = "licence-event"
    SURVEY_REPORT = "survey-report"
    RETENTION_PURGE = "retention-purge"


class Direction(StrEnum):
    SENT = "sent"  # we issued the receipt (we received the packet)
    RECEIVED = "received"  # a partner's receipt for a packet we sent


class LicenceEvent(StrEnum):
    ISSUED = "issued"
    SUSPENDED = "suspended"
    REINSTATED = "reinstated"
    REVOKED = "revoked"


def _fail(path: str, what: str) -> AuditError:
    return AuditError(f"leaf {path}: {what}")


def _check_as(value: object, kind: str, optional: bool, path: str) -> None:
    """Check ``value`` against a ``SPEC`` entry split in two: ``kind`` (``int``, ``hex``,
    ``node``, ``str`` or an enum name of :data:`_ENUMS`) and ``optional`` (its ``?``:
    None is allowed)."""
    if value is None and optional:
        return
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise _fail(path, "must be a non-negative integer")
    elif kind == "hex":
        if not isinstance(value, str) or not _HEX64.fullmatch(value):
            raise _fail(path, "must be a lowercase hex SHA-256")
    elif kind == "node":
        if not isinstance(value, str) or not _NODE.fullmatch(value) or value == "000000":
            raise _fail(path, "must be a 6-digit node id")
    elif kind == "str":
        if not isinstance(value, str) or not value or len(value) > 256:
            raise _fail(path, "must be a non-empty string of at most 256 characters")
    else:  # an enum class name registered in _ENUMS
        allowed = _ENUMS[kind]
        if not isinstance(value, Hashable) or value not in allowed:
            raise _fail(path, f"must be one of {', '.join(sorted(allowed))}")


_ENUMS: dict[str, frozenset[str]] = {
    "direction": frozenset(Direction),
    "status": frozenset({"accepted", "rejected"}),
    "licence_event": frozenset(LicenceEvent),
}

_JSON_NAMES = {"from_node": "from", "to_node": "to"}


_Layout = tuple[tuple[str, str, str, bool], ...]
_LAYOUTS: dict[type[_Body], _Layout] = {}


def _layout(cls: type[_Body]) -> _Layout:
    """Per field of a body class: its name, JSON name, spec kind and whether it is
    optional (computed once per class: a leaf is made for every packet and receipt)."""
    layout = _LAYOUTS.get(cls)
    if layout is None:
        spec = cls.SPEC
        layout = _LAYOUTS[cls] = tuple(
            (f.name, _JSON_NAMES.get(f.name, f.name), spec[f.name].rstrip("?"),
             spec[f.name].endswith("?"))
            for f in fields(cls)  # type: ignore[arg-type]  # every body class is a dataclass
        )  # fmt: skip
    return layout


class _Body:
    """A kind-specific part: a frozen dataclass whose fields are checked by ``SPEC``."""

    KEY: ClassVar[str]
    SPEC: ClassVar[Mapping[str, str]]

    def __post_init__(self) -> None:
        for name, _, kind, optional in _layout(type(self)):
            value = getattr(self, name)
            if isinstance(value, Mapping):
                raise _fail(f"{self.KEY}/{name}", "nested objects are flattened")
            _check_as(value, kind, optional, f"{self.KEY}/{name}")

    def to_json(self) -> dict[str, Any]:
        return {json_name: getattr(self, name) for name, json_name, _, _ in _layout(type(self))}

    @staticmethod
    def _json_name(name: str) -> str:
        return _JSON_NAMES.get(name, name)

    @classmethod
    def from_json(cls, obj: object) -> _Body:
        if not isinstance(obj, dict):
            raise _fail(cls.KEY, "must be an object")
        names = {cls._json_name(f.name): f.name for f in fields(cls)}  # type: ignore[arg-type]
        if set(obj) != set(names):
            raise _fail(cls.KEY, f"must have exactly the keys {', '.join(sorted(names))}")
        return cls(**{names[k]: v for k, v in obj.items()})


@dataclass(frozen=True)
class PacketLeaf(_Body):
    """A packet's digest and routing facts (as signed in the packet's outer JWS)."""

    KEY: ClassVar[str] = "packet"
    SPEC: ClassVar[Mapping[str, str]] = {
        "digest": "hex", "id": "str", "case": "str", "from_node": "node", "to_node": "node",
        "matter": "str", "action": "str", "agreement_id": "str", "agreement_version": "int",
        "agreement_digest": "hex", "seq": "int", "prev": "hex?", "created": "int",
    }  # fmt: skip

    digest: str
    id: str
    case: str
    from_node: str
    to_node: str
    matter: str
    action: str
    agreement_id: str
    agreement_version: int
    agreement_digest: str
    seq: int
    prev: str | None
    created: int

    @classmethod
    def from_facts(cls, digest: str, facts: Mapping[str, Any]) -> PacketLeaf:
        """From a packet's digest and its routing facts (the outer JWS payload object)."""
        agreement = facts.get("agreement")
        if not isinstance(agreement, Mapping):
            raise _fail("packet/agreement", "routing facts carry no agreement object")
        try:
            return cls(
                digest=digest, id=facts["id"], case=facts["case"], from_node=facts["from"],
                to_node=facts["to"], matter=facts["matter"], action=facts["action"],
                agreement_id=agreement["id"], agreement_version=agreement["version"],
                agreement_digest=agreement["digest"], seq=facts["seq"], prev=facts["prev"],
                created=facts["created"],
            )  # fmt: skip
        except KeyError as exc:
            raise _fail(f"packet/{exc.args[0]}", "missing from the routing facts") from None


@dataclass(frozen=True)
class ReceiptLeaf(_Body):
    KEY: ClassVar[str] = "receipt"
    SPEC: ClassVar[Mapping[str, str]] = {
        "digest": "hex", "direction": "direction", "packet_id": "str", "packet_digest": "hex",
        "from_node": "node", "to_node": "node", "status": "status", "reason": "str?",
        "log_index": "int?",
    }  # fmt: skip

    digest: str
    direction: str
    packet_id: str
    packet_digest: str
    from_node: str
    to_node: str
    status: str
    reason: str | None
    log_index: int | None

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.status == "rejected") != (self.reason is not None):
            raise _fail("receipt/reason", "is given exactly when the packet was rejected")


@dataclass(frozen=True)
class AgreementEventLeaf(_Body):
    KEY: ClassVar[str] = "agreement"
    SPEC: ClassVar[Mapping[str, str]] = {
        "id": "str", "version": "int", "document_sha256": "hex", "event": "str",
        "party": "node", "event_digest": "hex",
    }  # fmt: skip

    id: str
    version: int
    document_sha256: str
    event: str
    party: str
    event_digest: str


@dataclass(frozen=True)
class LicenceEventLeaf(_Body):
    KEY: ClassVar[str] = "licence"
    SPEC: ClassVar[Mapping[str, str]] = {
        "id": "str", "case": "str?", "event": "licence_event", "credential_digest": "hex",
        "status_index": "int?",
    }  # fmt: skip

    id: str
    case: str | None
    event: str
    credential_digest: str
    status_index: int | None


@dataclass(frozen=True)
class SurveyReportLeaf(_Body):
    KEY: ClassVar[str] = "survey"
    SPEC: ClassVar[Mapping[str, str]] = {
        "id": "str", "case": "str", "surveyor": "node", "requested_by": "node",
        "report_digest": "hex", "manifest_digest": "hex?",
    }  # fmt: skip

    id: str
    case: str
    surveyor: str
    requested_by: str
    report_digest: str
    manifest_digest: str | None


@dataclass(frozen=True)
class RetentionPurgeLeaf(_Body):
    """A case's content and attachments purged after the agreement's retention period
    (``content_digest``: SHA-256 of the canonical JSON of the case copy before)."""

    KEY: ClassVar[str] = "purge"
    SPEC: ClassVar[Mapping[str, str]] = {
        "case": "str", "agreement_id": "str", "retention_years": "int",
        "content_digest": "hex", "packets": "int", "attachments": "int",
    }  # fmt: skip

    case: str
    agreement_id: str
    retention_years: int
    content_digest: str
    packets: int
    attachments: int


Body = (
    PacketLeaf
    | ReceiptLeaf
    | AgreementEventLeaf
    | LicenceEventLeaf
    | SurveyReportLeaf
    | RetentionPurgeLeaf
)

_BODY_OF_KIND: dict[LeafKind, type[_Body]] = {
    LeafKind.PACKET_SENT: PacketLeaf,
    LeafKind.PACKET_RECEIVED: PacketLeaf,
    LeafKind.RECEIPT: ReceiptLeaf,
    LeafKind.AGREEMENT_EVENT: AgreementEventLeaf,
    LeafKind.LICENCE_EVENT: LicenceEventLeaf,
    LeafKind.SURVEY_REPORT: SurveyReportLeaf,
    LeafKind.RETENTION_PURGE: RetentionPurgeLeaf,
}


@dataclass(frozen=True)
class AuditLeaf:
    """One leaf: what happened (``body``), its ``kind``, who logged it and when."""

    kind: LeafKind
    node: str
    at: int
    body: Body

    def __post_init__(self) -> None:
        _check_as(self.node, "node", False, "node")
        _check_as(self.at, "int", False, "at")
        if not isinstance(self.body, _BODY_OF_KIND[self.kind]):
            raise _fail("kind", f"{self.kind} does not carry a {type(self.body).__name__}")

    def to_json(self) -> dict[str, Any]:
        return {
            "v": LEAF_VERSION,
            "kind": self.kind.value,
            "node": self.node,
            "at": self.at,
            self.body.KEY: self.body.to_json(),
        }


def encode_leaf(leaf: AuditLeaf) -> bytes:
    """The leaf's bytes as appended to the log."""
    return canonical_json(leaf.to_json())


def decode_leaf(data: bytes) -> AuditLeaf:
    """Parse leaf bytes strictly; they must be exactly the canonical encoding."""
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise AuditError("leaf is not UTF-8 JSON") from exc
    if not isinstance(obj, dict) or obj.get("v") != LEAF_VERSION:
        raise _fail("v", f"must be {LEAF_VERSION}")
    try:
        kind = LeafKind(str(obj.get("kind")))
    except ValueError:
        raise _fail("kind", f"must be one of {', '.join(LeafKind)}") from None
    body_type = _BODY_OF_KIND[kind]
    if set(obj) != {"v", "kind", "node", "at", body_type.KEY}:
        raise _fail("/", f"must have exactly v, kind, node, at and {body_type.KEY}")
    body = body_type.from_json(obj[body_type.KEY])
    leaf = AuditLeaf(kind, obj["node"], obj["at"], body)  # type: ignore[arg-type]
    try:
        canonical = encode_leaf(leaf)
    except MalformedInput as exc:  # pragma: no cover - the checks above are stricter
        raise AuditError(str(exc)) from exc
    if canonical != data:
        raise AuditError("leaf bytes are not in canonical form")
    return leaf
