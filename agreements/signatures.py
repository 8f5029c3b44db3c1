"""Party signatures over the agreement document, and signed lifecycle events.

Every party signs the exact document bytes (:meth:`Agreement.document_bytes`) with its
seal key: a detached compact JWS (RFC 7515 Appendix F) with ``typ``
``tongban-agreement+jws``, made and checked by :mod:`signing.jws`. A signature counts
for party ``P`` only when:

- ``P`` is a party of the agreement (a non-party's signature is refused);
- the JWS verifies over the document bytes (a signature over other bytes is refused);
- the signer's seal certificate path validates, for purpose ``seal`` and node id ``P``,
  at the signing time (the JWS ``iat``), and is not revoked in the bundle's CRLs;
- the signing time is not after the verification time ``at`` (when one is given).

:func:`signing_status` collects who signed (and when), whose signature was refused and
who is missing; it never raises for a bad signature, so partial signing is visible.

Lifecycle events travel as attached compact JWS with ``typ``
``tongban-agreement-event+jws`` signed by the acting party (:func:`sign_event`,
:func:`verify_event`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType

from cryptography.x509.oid import NameOID

from agreements.errors import AgreementError, SignatureRefused
from agreements.events import Event, parse_event
from agreements.model import Agreement
from signing.certificates import Purpose, TrustBundle
from signing.encoding import b64url_decode
from signing.errors import SigningError
from signing.jws import sign_compact, verify_compact
from signing.keys import Signer

__all__ = [
    "AGREEMENT_TYP",
    "EVENT_TYP",
    "PartySignature",
    "SigningStatus",
    "sign_agreement",
    "sign_event",
    "signer_node_id",
    "signing_status",
    "verify_event",
    "verify_party_signature",
]

AGREEMENT_TYP = "tongban-agreement+jws"
EVENT_TYP = "tongban-agreement-event+jws"


@dataclass(frozen=True, slots=True)
class PartySignature:
    """One entry of a signed-agreement file: the claimed party and its detached JWS."""

    party: str
    jws: str


@dataclass(frozen=True)
class SigningStatus:
    agreement: Agreement
    signed: Mapping[str, datetime]  # party -> signing time, for verified signatures
    refused: Mapping[str, str]  # claimed party -> why its signature was refused

    @property
    def missing(self) -> frozenset[str]:
        return self.agreement.party_ids - self.signed.keys()

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def completed_at(self) -> datetime | None:
        """When the last party signed, once every party has."""
        return max(self.signed.values()) if self.complete and self.signed else None


def signer_node_id(signer: Signer) -> str:
    """The node id (subject CN) of the signer's leaf certificate."""
    names = signer.leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _signed_at(token: str, party: str | None) -> datetime:
    """The ``iat`` of a compact JWS, read only to choose the validation instant."""
    try:
        header = json.loads(b64url_decode(token.split(".", 1)[0]))
        iat = header["iat"]
        if isinstance(iat, bool) or not isinstance(iat, int) or iat < 0:
            raise ValueError(iat)
        return datetime.fromtimestamp(iat, UTC)
    except (SigningError, ValueError, KeyError, TypeError, OverflowError, OSError):
        raise SignatureRefused(party, "not a compact JWS with an iat header") from None


def sign_agreement(agreement: Agreement, signer: Signer, *, at: datetime) -> PartySignature:
    """Sign the document bytes as the party named by the signer's seal certificate.

    A party may sign an agreement whose ``crypto_profiles`` exclude its own profile
    (the decision then refuses every packet of that party under it, §6.6 step 9);
    ``tongban agreement sign`` warns about it."""
    party = signer_node_id(signer)
    if party not in agreement.party_ids:
        raise SignatureRefused(party, f"{party} is not a party of {agreement.id}")
    token = sign_compact(
        agreement.document_bytes(), signer, typ=AGREEMENT_TYP, at=at, detached=True
    )
    return PartySignature(party, token)


def verify_party_signature(
    agreement: Agreement,
    signature: PartySignature,
    bundle: TrustBundle,
    *,
    at: datetime | None = None,
) -> datetime:
    """Return the signing time of a valid party signature; raise :class:`SignatureRefused`."""
    party = signature.party
    if party not in agreement.party_ids:
        raise SignatureRefused(party, f"{party} is not a party of {agreement.id}")
    signed_at = _signed_at(signature.jws, party)
    if at is not None and signed_at > at:
        raise SignatureRefused(party, f"{party} signed after {at.isoformat()}")
    try:
        verified = verify_compact(
            signature.jws,
            bundle,
            at=signed_at,
            typ=AGREEMENT_TYP,
            purpose=Purpose.SEAL,
            node_id=party,
            detached_payload=agreement.document_bytes(),
        )
    except SigningError:
        raise SignatureRefused(party, f"the signature of {party} does not verify") from None
    return verified.signed_at


def signing_status(
    agreement: Agreement,
    signatures: Iterable[PartySignature],
    bundle: TrustBundle,
    *,
    at: datetime | None = None,
) -> SigningStatus:
    """Verify every signature; collect signed, refused and (by difference) missing parties.

    When a party appears more than once, its earliest valid signature counts.
    """
    signed: dict[str, datetime] = {}
    refused: dict[str, str] = {}
    for sig in signatures:
        try:
            when = verify_party_signature(agreement, sig, bundle, at=at)
        except AgreementError as exc:
            refused.setdefault(sig.party, str(exc))
            continue
        if sig.party not in signed or when < signed[sig.party]:
            signed[sig.party] = when
    for party in signed:
        refused.pop(party, None)
    return SigningStatus(agreement, MappingProxyType(signed), MappingProxyType(refused))


def sign_event(event: Event, signer: Signer, *, at: datetime) -> str:
    """Sign a lifecycle event as its acting party."""
    if signer_node_id(signer) != event.party:
        raise SignatureRefused(event.party, "an event is signed by its acting party")
    return sign_compact(event.payload(), signer, typ=EVENT_TYP, at=at)


def verify_event(token: str, agreement: Agreement, bundle: TrustBundle) -> Event:
    """Verify a signed event for ``agreement``; raise :class:`SignatureRefused`."""
    signed_at = _signed_at(token, None)
    try:
        verified = verify_compact(token, bundle, at=signed_at, typ=EVENT_TYP, purpose=Purpose.SEAL)
    except SigningError:
        raise SignatureRefused(None, "the event signature does not verify") from None
    event = parse_event(verified.payload)
    if verified.signer.node_id != event.party:
        raise SignatureRefused(event.party, "the event is not signed by its acting party")
    if event.party not in agreement.party_ids:
        raise SignatureRefused(event.party, f"{event.party} is not a party")
    if (event.agreement_id, event.version) != agreement.ref:
        raise SignatureRefused(event.party, "the event is for another agreement")
    if event.at < verified.signed_at:
        raise SignatureRefused(event.party, "an event cannot take effect before it was signed")
    return event
