"""E-licences (电子证照): a ``vc+jwt`` credential sealed by the issuing office.

A licence is a compact JWS (``typ: vc+jwt``) whose payload is a JWT claims set in the
W3C VC-JWT style (docs/protocol.md §9)::

    iss  urn:tongban:node:<issuer node id>      sub  holder id (e.g. USCC)
    jti  licence number                          iat / nbf / exp  NumericDate
    vc   {type: [VerifiableCredential, TongbanLicence],
          credentialSubject: {n: holder name, lt: licence type (matter code), sc: scope},
          dept: {zh, en},
          credentialStatus: [BitstringStatusListEntry, ...]}

Claim names inside ``vc`` are short on purpose: the token travels in a printed QR code.

Verification (:func:`verify_licence`) is offline: the trust bundle, the issuer's status
list credentials (a mapping or a resolver) and, optionally, an entitlement callback
answering "may this office issue this licence type". It never raises for a bad licence;
it returns a :class:`~signing.licence_report.LicenceReport` that lists every check and
names the one that failed with a stable code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cryptography import x509

from signing._claims import (
    as_object,
    check_url,
    from_numeric,
    issuer_urn,
    json_object,
    node_from_urn,
    numeric,
    unverified_claims,
    x5c_chain,
)
from signing.certificates import Identity, Purpose, TrustBundle, validate_path
from signing.encoding import b64url_decode, canonical_json
from signing.errors import CertificateRejected, InvalidSignature, MalformedInput
from signing.licence_report import Check, CheckResult, Failure, LicenceReport, Outcome
from signing.status_list import VC_TYP, StatusListRejected, StatusPurpose, verify_status_list

if TYPE_CHECKING:
    from signing.keys import Signer

__all__ = [
    "Entitlement",
    "Licence",
    "StatusEntry",
    "StatusSource",
    "issue_licence",
    "parse_licence",
    "sealed_report",
    "verify_licence",
]

StatusSource = Mapping[str, str] | Callable[[str], str | None]
"""Status list credentials by URL: a mapping, or a resolver returning None if unknown."""

Entitlement = Callable[[str, str, datetime], bool]
"""``entitled(issuer_node, licence_type, issued_at)``: may the office issue this type?"""

_LICENCE_TYPE = ["VerifiableCredential", "TongbanLicence"]
_MAX_TEXT = 512
_STATUS = "credentialStatus"
_ENTRY_KEYS = ("type", "statusPurpose", "statusListIndex", "statusListCredential")


def _text(value: object, name: str, *, limit: int = _MAX_TEXT) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise MalformedInput(f"{name} must be non-empty text of at most {limit} characters")
    return value


@dataclass(frozen=True)
class StatusEntry:
    """Where a licence's revocation or suspension bit lives."""

    purpose: StatusPurpose
    index: int
    list_url: str

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or not isinstance(self.index, int) or self.index < 0:
            raise MalformedInput("statusListIndex must be a non-negative integer")
        check_url(self.list_url)

    def to_json(self) -> dict[str, str]:
        return {
            "type": "BitstringStatusListEntry",
            "statusPurpose": str(self.purpose),
            "statusListIndex": str(self.index),
            "statusListCredential": self.list_url,
        }

    @classmethod
    def from_json(cls, value: object) -> StatusEntry:
        entry = as_object(value, "credentialStatus entry", _ENTRY_KEYS)
        if entry.get("type") != "BitstringStatusListEntry":
            raise MalformedInput("credentialStatus entry type must be BitstringStatusListEntry")
        index = entry.get("statusListIndex")
        if not isinstance(index, str) or not index.isascii() or not index.isdigit():
            raise MalformedInput("statusListIndex must be a decimal string")
        if len(index) > 1 and index.startswith("0"):
            raise MalformedInput("statusListIndex must not have leading zeros")
        try:
            purpose = StatusPurpose(str(entry.get("statusPurpose")))
        except ValueError:
            raise MalformedInput("statusPurpose must be revocation or suspension") from None
        url = entry.get("statusListCredential")
        check_url(url)
        return cls(purpose=purpose, index=int(index), list_url=str(url))


@dataclass(frozen=True)
class Licence:
    """The facts a licence states. Times are whole seconds, timezone-aware."""

    issuer_node: str
    number: str
    licence_type: str
    holder_id: str
    holder_name: str
    scope: str
    department_zh: str
    department_en: str
    issued_at: datetime
    valid_from: datetime
    valid_until: datetime
    status: tuple[StatusEntry, ...] = ()

    def __post_init__(self) -> None:
        issuer_urn(self.issuer_node)
        _text(self.number, "licence number", limit=128)
        _text(self.licence_type, "licence type", limit=64)
        _text(self.holder_id, "holder id", limit=128)
        _text(self.holder_name, "holder name")
        _text(self.scope, "scope")
        _text(self.department_zh, "department (zh)")
        _text(self.department_en, "department (en)")
        for t in (self.issued_at, self.valid_from, self.valid_until):
            if t.tzinfo is None or t.microsecond:
                raise MalformedInput("licence times must be timezone-aware whole seconds")
        if self.valid_until <= self.valid_from:
            raise MalformedInput("a licence must expire after it becomes valid")
        purposes = [e.purpose for e in self.status]
        if len(set(purposes)) != len(purposes):
            raise MalformedInput("at most one credentialStatus entry per purpose")

    def status_entry(self, purpose: StatusPurpose) -> StatusEntry | None:
        return next((e for e in self.status if e.purpose is purpose), None)

    def to_claims(self) -> dict[str, Any]:
        vc: dict[str, Any] = {
            "type": list(_LICENCE_TYPE),
            "credentialSubject": {
                "n": self.holder_name,
                "lt": self.licence_type,
                "sc": self.scope,
            },
            "dept": {"zh": self.department_zh, "en": self.department_en},
        }
        if self.status:
            vc["credentialStatus"] = [e.to_json() for e in self.status]
        return {
            "iss": issuer_urn(self.issuer_node),
            "sub": self.holder_id,
            "jti": self.number,
            "iat": numeric(self.issued_at),
            "nbf": numeric(self.valid_from),
            "exp": numeric(self.valid_until),
            "vc": vc,
        }

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> Licence:
        vc = as_object(claims.get("vc"), "vc", ("type", "credentialSubject", "dept", _STATUS))
        if vc.get("type") != _LICENCE_TYPE:
            raise MalformedInput("vc.type is not [VerifiableCredential, TongbanLicence]")
        subject = as_object(vc.get("credentialSubject"), "vc.credentialSubject", ("n", "lt", "sc"))
        dept = as_object(vc.get("dept"), "vc.dept", ("zh", "en"))
        raw_status = vc.get(_STATUS, [])
        if not isinstance(raw_status, list):
            raise MalformedInput("vc.credentialStatus must be an array")
        return cls(
            issuer_node=node_from_urn(claims.get("iss")),
            number=_text(claims.get("jti"), "jti"),
            licence_type=_text(subject.get("lt"), "lt"),
            holder_id=_text(claims.get("sub"), "sub"),
            holder_name=_text(subject.get("n"), "n"),
            scope=_text(subject.get("sc"), "sc"),
            department_zh=_text(dept.get("zh"), "dept.zh"),
            department_en=_text(dept.get("en"), "dept.en"),
            issued_at=from_numeric(claims.get("iat"), "iat"),
            valid_from=from_numeric(claims.get("nbf"), "nbf"),
            valid_until=from_numeric(claims.get("exp"), "exp"),
            status=tuple(StatusEntry.from_json(e) for e in raw_status),
        )

    def to_json(self) -> dict[str, Any]:
        """A display form (ISO 8601 times) for the CLI and the public page."""
        return {
            "issuer_node": self.issuer_node,
            "number": self.number,
            "licence_type": self.licence_type,
            "holder_id": self.holder_id,
            "holder_name": self.holder_name,
            "scope": self.scope,
            "department": {"zh": self.department_zh, "en": self.department_en},
            "issued_at": self.issued_at.isoformat(),
            "valid_from": self.valid_from.isoformat(),
            "valid_until": self.valid_until.isoformat(),
            "status": [e.to_json() for e in self.status],
        }


def issue_licence(licence: Licence, signer: Signer, *, at: datetime) -> str:
    """Seal ``licence`` with the issuing office's seal; returns the compact token.

    The seal certificate must name ``licence.issuer_node``.
    """
    from signing.jws import sign_compact

    cns = signer.chain[0].subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if [str(a.value) for a in cns] != [licence.issuer_node]:
        raise MalformedInput("the seal certificate does not belong to the issuing node")
    token: str = sign_compact(canonical_json(licence.to_claims()), signer, typ=VC_TYP, at=at)
    return token


def parse_licence(token: str) -> Licence:
    """Decode a licence WITHOUT verifying it (display only; never trust the result)."""
    return Licence.from_claims(unverified_claims(token))


_STATUS_CHECK: dict[StatusPurpose, tuple[Check, Failure]] = {
    StatusPurpose.REVOCATION: (Check.REVOCATION, Failure.REVOKED),
    StatusPurpose.SUSPENSION: (Check.SUSPENSION, Failure.SUSPENDED),
}


def _status_check(
    licence: Licence,
    purpose: StatusPurpose,
    bundle: TrustBundle,
    at: datetime,
    source: StatusSource | None,
) -> CheckResult:
    check, set_failure = _STATUS_CHECK[purpose]
    entry = licence.status_entry(purpose)
    if entry is None:
        return CheckResult(check, Outcome.SKIPPED, detail=f"the licence has no {purpose} entry")
    if source is None:
        return CheckResult(check, Outcome.SKIPPED, detail="no status lists supplied")
    token = source(entry.list_url) if callable(source) else source.get(entry.list_url)
    if token is None:
        return CheckResult(
            check,
            Outcome.FAILED,
            Failure.STATUS_UNAVAILABLE,
            f"no {purpose} status list for {entry.list_url}",
        )
    try:
        credential = verify_status_list(
            token,
            bundle,
            at=at,
            issuer_node=licence.issuer_node,
            url=entry.list_url,
            purpose=purpose,
        )
        is_set = credential.status_list.get(entry.index)
    except (StatusListRejected, MalformedInput) as exc:
        reason = getattr(exc, "reason", "malformed")
        return CheckResult(
            check, Outcome.FAILED, Failure.STATUS_UNAVAILABLE, f"{purpose} list ({reason}): {exc}"
        )
    published = credential.issued_at.isoformat()
    listed = f"index {entry.index} of {entry.list_url} (published {published})"
    if is_set:
        return CheckResult(check, Outcome.FAILED, set_failure, f"set at {listed}")
    return CheckResult(check, Outcome.PASSED, detail=f"clear at {listed}")


def _early(signature: CheckResult, chain: CheckResult, why: str) -> LicenceReport:
    order = list(Check)
    rest = [CheckResult(c, Outcome.SKIPPED, detail=why) for c in order[2:]]
    return LicenceReport((signature, chain, *rest))


def _bad_seal(code: Failure, detail: str) -> CheckResult:
    return CheckResult(Check.SIGNATURE, Outcome.FAILED, code, detail)


def verify_licence(
    token: str,
    bundle: TrustBundle,
    *,
    at: datetime,
    status_lists: StatusSource | None = None,
    entitled: Entitlement | None = None,
) -> LicenceReport:
    """Check a licence offline at ``at`` and report every check (see module docstring).

    ``status_lists`` None skips the revocation and suspension checks (reported as
    skipped); a list that is missing, unverifiable, expired or not the issuer's fails
    with ``status-unavailable``. ``entitled`` None skips the entitlement check; it is
    asked about the licence's issuance time (an agreement ending later does not void
    licences issued under it).
    """
    if at.tzinfo is None:
        raise ValueError("verify_licence needs a timezone-aware time")
    try:
        claims_issuer: str | None = node_from_urn(unverified_claims(token).get("iss"))
    except MalformedInput:
        claims_issuer = None  # a mangled payload is for the signature check to refuse
    try:
        chain = x5c_chain(token)
    except MalformedInput as exc:
        skipped = CheckResult(Check.CHAIN, Outcome.SKIPPED, detail="not a licence")
        return _early(_bad_seal(Failure.MALFORMED, str(exc)), skipped, "not a licence")
    try:
        validate_path(chain, bundle, purpose=Purpose.SEAL, at=at, node_id=claims_issuer)
    except CertificateRejected as exc:
        why = "certificate path refused"
        return _early(
            CheckResult(Check.SIGNATURE, Outcome.SKIPPED, detail=why),
            CheckResult(Check.CHAIN, Outcome.FAILED, Failure.CHAIN, f"{exc.reason}: {exc}"),
            why,
        )
    chain_ok = CheckResult(Check.CHAIN, Outcome.PASSED, detail="seal certificate path valid")
    try:
        payload, signer = _verify_jws(token, bundle, at)
    except InvalidSignature:
        failed = _bad_seal(Failure.SIGNATURE, _why_unverified(token, at))
        return _early(failed, chain_ok, "signature failed")
    try:
        licence = Licence.from_claims(json_object(payload))
    except MalformedInput as exc:
        failed = _bad_seal(Failure.MALFORMED, f"signed, but not a licence: {exc}")
        return _early(failed, chain_ok, "not a licence")
    if signer.node_id != licence.issuer_node:  # unreachable unless the header lied
        failed = _bad_seal(Failure.SIGNATURE, f"sealed by {signer.node_id}, not the issuer")
        return _early(failed, chain_ok, "signature failed")
    return sealed_report(
        licence, signer, bundle, at=at, status_lists=status_lists, entitled=entitled
    )


def sealed_report(
    licence: Licence,
    signer: Identity,
    bundle: TrustBundle,
    *,
    at: datetime,
    status_lists: StatusSource | None,
    entitled: Entitlement | None,
) -> LicenceReport:
    """The report once the seal and its certificate path passed: the validity, status
    and entitlement checks (shared by the vc+jwt and the compact form)."""
    sealed = f"sealed by {signer.node_id} {signer.name}, certificate serial {signer.serial:x}"
    chain_ok = CheckResult(Check.CHAIN, Outcome.PASSED, detail="seal certificate path valid")
    results = [CheckResult(Check.SIGNATURE, Outcome.PASSED, detail=sealed), chain_ok]
    results.append(_validity_check(licence, at))
    for purpose in (StatusPurpose.REVOCATION, StatusPurpose.SUSPENSION):
        results.append(_status_check(licence, purpose, bundle, at, status_lists))
    results.append(_entitlement_check(licence, entitled))
    return LicenceReport(tuple(results), licence=licence, signer=signer)


def _why_unverified(token: str, at: datetime) -> str:
    """A hint for the one refusal a careful reader can act on: a verifier clock behind."""
    try:
        iat = json_object(b64url_decode(token.strip().split(".")[0])).get("iat")
        sealed = from_numeric(iat, "iat")
    except MalformedInput:
        sealed = None
    if sealed is not None and sealed > at + timedelta(minutes=5):
        return f"sealed at {sealed.isoformat()}, after the verification time {at.isoformat()}"
    return "the seal signature does not verify"


def _verify_jws(token: str, bundle: TrustBundle, at: datetime) -> tuple[bytes, Identity]:
    from signing.jws import verify_compact

    try:
        verified = verify_compact(token.strip(), bundle, at=at, typ=VC_TYP, purpose=Purpose.SEAL)
    except CertificateRejected:  # path checked just before; anything else is the signature
        raise InvalidSignature() from None
    return verified.payload, verified.signer


def _validity_check(licence: Licence, at: datetime) -> CheckResult:
    span = f"valid {licence.valid_from.isoformat()} to {licence.valid_until.isoformat()}"
    if at < licence.valid_from:
        return CheckResult(Check.VALIDITY, Outcome.FAILED, Failure.NOT_YET_VALID, span)
    if at >= licence.valid_until:
        return CheckResult(Check.VALIDITY, Outcome.FAILED, Failure.EXPIRED, span)
    return CheckResult(Check.VALIDITY, Outcome.PASSED, detail=span)


def _entitlement_check(licence: Licence, entitled: Entitlement | None) -> CheckResult:
    if entitled is None:
        return CheckResult(Check.ENTITLEMENT, Outcome.SKIPPED, detail="no agreement supplied")
    what = f"node {licence.issuer_node} issuing {licence.licence_type}"
    if entitled(licence.issuer_node, licence.licence_type, licence.issued_at):
        return CheckResult(Check.ENTITLEMENT, Outcome.PASSED, detail=f"{what} is entitled")
    return CheckResult(
        Check.ENTITLEMENT, Outcome.FAILED, Failure.ISSUER_NOT_ENTITLED, f"{what} is not entitled"
    )
