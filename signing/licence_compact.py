"""The compact e-licence form for QR codes: a CWT signed with COSE_Sign1 (docs/protocol.md §9.4).

The ``vc+jwt`` of :mod:`signing.licence` carries its seal certificate chain and spells
every claim out; in a QR code that needs version 35-39. The compact form states the
same :class:`~signing.licence.Licence` in about 230 bytes, as the EU Digital COVID
Certificate did:

- the claims are a CWT (RFC 8392) claims map in CBOR (RFC 8949): ``2`` sub, ``7`` cti
  (the licence number, UTF-8 bytes), ``6`` iat, ``5`` nbf (absent when equal to iat),
  ``4`` exp, and the private claim ``-65537`` holding a map ``1`` holder name, ``2``
  licence type, ``3`` scope, ``4``/``5`` department zh/en (absent when equal to the
  issuer's names), ``6`` status (absent: no entries; an unsigned integer: the same index
  in the issuer's revocation and suspension lists; else an array of ``[purpose, index]``
  or ``[purpose, index, url]``, purpose 1 revocation, 2 suspension, url absent when it
  is the issuer's standard list ``<public>/.well-known/tongban/status/<purpose>``);
- COSE_Sign1 (RFC 9052, tag 18) under the issuer's seal key: protected header
  ``{1: alg, 4: kid}`` (alg -8 EdDSA, -7 ES256 or, for an SM-profile seal, the
  private-use -65537 ``SM2SM3``: SM2 over SM3 with the default signer id, ``r || s``,
  since COSE registers no SM2 algorithm; bound to the key: a header naming another
  algorithm is refused), empty unprotected header, no external AAD;
- ``kid`` is the first 8 bytes of SHA-256 over the DER seal certificate; the verifier
  resolves it to an :class:`Issuer` (node id, names, public base URL, seal chain) from
  a trust list or the federation's verified node descriptors, so the chain does not
  travel in the code. The issuer named by the kid is the licence's ``iss``;
- the COSE bytes are zlib-compressed (RFC 1950) when that is shorter (first byte
  ``0x78``; raw tagged COSE starts with ``0xD2``), then written in decimal digits
  (:mod:`signing.digits`: 7 bytes to 17 digits);
- the QR code holds ``https://<issuer public host>/v#<credential>``: the fragment never
  reaches a server log, and its digits go into the code's numeric mode. (Base45 was
  tried first: its space and ``%`` need percent-escapes in a URL, which made the length
  depend on the signature's bytes and pushed one typical licence in 60 to version 13.)

Verification (:func:`verify_compact_licence`) returns the same
:class:`~signing.licence_report.LicenceReport` as the ``vc+jwt``; a kid that names no
issuer the verifier holds fails the ``chain`` check with ``unknown-issuer`` and says
which key id is missing.
"""

from __future__ import annotations

import hashlib
import io
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import cbor2
from cryptography import x509

from signing import pathcache
from signing.certificates import Purpose, TrustBundle, validate_path
from signing.digits import digits_decode, digits_encode
from signing.errors import CertificateRejected, MalformedInput, SigningError
from signing.licence import (
    Entitlement,
    Licence,
    StatusEntry,
    StatusSource,
    sealed_report,
)
from signing.licence_report import Check, CheckResult, Failure, LicenceReport, Outcome
from signing.sm2 import Sm2PrivateKey
from signing.sm_x509 import sm2_public_key
from signing.status_list import StatusPurpose

if TYPE_CHECKING:
    from signing.descriptor import NodeDescriptor
    from signing.keys import Signer

__all__ = [
    "STATUS_PATH",
    "Issuer",
    "IssuerList",
    "IssuerResolver",
    "compact_key_id",
    "credential_from_text",
    "issue_compact_licence",
    "licence_url",
    "parse_compact_licence",
    "verify_compact_licence",
]

STATUS_PATH = "/.well-known/tongban/status/"
"""Where a node publishes its status lists under its public base URL."""

KID_LENGTH = 8
LICENCE_CLAIM = -65537
_COSE_SIGN1 = 18
_ALGS = {"EdDSA": -8, "ES256": -7, "SM2SM3": -65537}  # -65537: private use (RFC 9053)
_PURPOSE_CODE = {StatusPurpose.REVOCATION: 1, StatusPurpose.SUSPENSION: 2}
_CODE_PURPOSE = {v: k for k, v in _PURPOSE_CODE.items()}
_MAX_CREDENTIAL = 4096
_MAX_COSE = 8192


def compact_key_id(cert: x509.Certificate) -> bytes:
    """The COSE ``kid`` of a seal certificate: SHA-256(DER)[:8]."""
    return hashlib.sha256(pathcache.der(cert)).digest()[:KID_LENGTH]


@dataclass(frozen=True)
class Issuer:
    """What a verifier knows about an issuing office, found by the compact kid."""

    node_id: str
    name_zh: str
    name_en: str
    public_base: str
    seal_chain: tuple[x509.Certificate, ...]

    def __post_init__(self) -> None:
        if not self.seal_chain:
            raise MalformedInput("an issuer needs its seal certificate chain")
        if not self.public_base.startswith(("https://", "http://")):
            raise MalformedInput("an issuer's public base must be an http(s) URL")

    @property
    def kid(self) -> bytes:
        return compact_key_id(self.seal_chain[0])

    def status_url(self, purpose: StatusPurpose) -> str:
        return f"{self.public_base.rstrip('/')}{STATUS_PATH}{purpose.value}"

    @classmethod
    def from_descriptor(cls, descriptor: NodeDescriptor) -> Issuer:
        return cls(
            node_id=descriptor.node_id,
            name_zh=descriptor.name_zh,
            name_en=descriptor.name_en,
            public_base=descriptor.endpoints.get("public", "https://invalid"),
            seal_chain=tuple(descriptor.seal_chain),
        )


IssuerResolver = Callable[[bytes], Issuer | None]
"""``resolve(kid)``: the issuer whose seal certificate has this compact key id, or None."""


class IssuerList:
    """A trust list of issuers by kid; also an :data:`IssuerResolver` (call it)."""

    def __init__(self, issuers: Iterable[Issuer] = ()) -> None:
        self._by_kid: dict[bytes, Issuer] = {}
        for issuer in issuers:
            self.add(issuer)

    def add(self, issuer: Issuer) -> None:
        self._by_kid[issuer.kid] = issuer

    def __call__(self, kid: bytes) -> Issuer | None:
        return self._by_kid.get(kid)

    def __len__(self) -> int:
        return len(self._by_kid)

    @classmethod
    def from_descriptors(
        cls, documents: Iterable[bytes], bundle: TrustBundle, *, at: datetime
    ) -> IssuerList:
        """From ``node.json`` documents, each verified against ``bundle`` at ``at``."""
        from signing.descriptor import verify_descriptor

        return cls(Issuer.from_descriptor(verify_descriptor(d, bundle, at=at)) for d in documents)


# -- encoding --------------------------------------------------------------------------


def _status_claim(licence: Licence, issuer: Issuer) -> object:
    entries = licence.status
    standard = all(e.list_url == issuer.status_url(e.purpose) for e in entries)
    if standard and len(entries) == 2 and entries[0].index == entries[1].index:
        return entries[0].index
    out: list[list[object]] = []
    for e in entries:
        item: list[object] = [_PURPOSE_CODE[e.purpose], e.index]
        if e.list_url != issuer.status_url(e.purpose):
            item.append(e.list_url)
        out.append(item)
    return out


def compact_claims(licence: Licence, issuer: Issuer) -> dict[int, Any]:
    """The CWT claims map of ``licence`` issued by ``issuer`` (module docstring)."""
    if licence.issuer_node != issuer.node_id:
        raise MalformedInput("the licence names another issuing node")
    body: dict[int, Any] = {1: licence.holder_name, 2: licence.licence_type, 3: licence.scope}
    if licence.department_zh != issuer.name_zh:
        body[4] = licence.department_zh
    if licence.department_en != issuer.name_en:
        body[5] = licence.department_en
    if licence.status:
        body[6] = _status_claim(licence, issuer)
    claims: dict[int, Any] = {
        2: licence.holder_id,
        7: licence.number.encode("utf-8"),
        6: int(licence.issued_at.timestamp()),
        4: int(licence.valid_until.timestamp()),
        LICENCE_CLAIM: body,
    }
    if licence.valid_from != licence.issued_at:
        claims[5] = int(licence.valid_from.timestamp())
    return claims


def issue_compact_licence(licence: Licence, signer: Signer, issuer: Issuer) -> str:
    """Seal ``licence`` in the compact form; returns the credential (decimal digits).

    ``issuer`` is the issuing office as verifiers will resolve it (its descriptor);
    its seal certificate must be the signer's."""
    import cwt

    if pathcache.der(signer.chain[0]) != pathcache.der(issuer.seal_chain[0]):
        raise MalformedInput("the signer's seal certificate is not the issuer's")
    payload = cbor2.dumps(compact_claims(licence, issuer))
    protected = {1: _ALGS[signer.algorithm], 4: issuer.kid}
    if isinstance(signer.key, Sm2PrivateKey):  # COSE libraries know no SM2: built here
        header = cbor2.dumps(protected)
        signature = signer.key.sign_raw(_sig_structure(header, payload))
        cose = cbor2.dumps(cbor2.CBORTag(_COSE_SIGN1, [header, {}, payload, signature]))
    else:
        key = cwt.COSEKey.from_pem(_private_pem(signer), alg=signer.algorithm, kid=issuer.kid)
        cose = cwt.COSE.new().encode(payload, key, protected=protected, unprotected={})
    packed = zlib.compress(cose, 9)
    return digits_encode(packed if len(packed) < len(cose) else cose)


def _cbor_whole(data: bytes) -> Any:
    """The one CBOR item ``data`` holds, and nothing after it (``cbor2.loads`` ignores
    trailing bytes: one licence would have many QR texts)."""
    stream = io.BytesIO(data)
    value = cbor2.CBORDecoder(stream).decode()
    if stream.tell() != len(data):
        raise ValueError(f"{len(data) - stream.tell()} bytes after the CBOR item")
    return value


def _sig_structure(protected: bytes, payload: bytes) -> bytes:
    """RFC 9052 §4.4 ``Sig_structure`` for COSE_Sign1 without external AAD."""
    return bytes(cbor2.dumps(["Signature1", protected, b"", payload]))


def _private_pem(signer: Signer) -> bytes:
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    key = signer.key
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise MalformedInput(f"the compact licence form has no {signer.algorithm} signature")
    return key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())


def licence_url(public_base: str, credential: str) -> str:
    """``<public base>/v#<credential>`` (digits need no escaping in a fragment)."""
    return f"{public_base.rstrip('/')}/v#{credential}"


def credential_from_text(text: str) -> str:
    """The credential in a verify URL (its fragment) or given bare."""
    text = text.strip()
    if "#" in text or text.lower().startswith(("https://", "http://")):
        fragment = urlsplit(text).fragment
        if not fragment:
            raise MalformedInput("the URL has no licence in its fragment (#…)")
        text = unquote(fragment)
    if not text or len(text) > _MAX_CREDENTIAL:
        raise MalformedInput("a compact licence is 1 to 4096 decimal digits")
    return text


# -- decoding --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sign1:
    protected: bytes
    alg: int
    kid: bytes
    payload: bytes
    signature: bytes
    raw: bytes


def _sign1(credential: str) -> _Sign1:
    data = digits_decode(credential_from_text(credential))
    if data[:1] == b"\x78":
        inflater = zlib.decompressobj()
        try:
            data = inflater.decompress(data, _MAX_COSE)
        except zlib.error as exc:
            raise MalformedInput(f"the compact licence does not inflate: {exc}") from None
        if inflater.unconsumed_tail or not inflater.eof or inflater.unused_data:
            raise MalformedInput(
                "the compact licence inflates beyond 8 KiB, is cut short or has bytes after"
            )
    try:
        obj = _cbor_whole(data)
    except (cbor2.CBORDecodeError, ValueError, RecursionError) as exc:
        raise MalformedInput(f"the compact licence is not CBOR: {exc}") from None
    if not isinstance(obj, cbor2.CBORTag) or obj.tag != _COSE_SIGN1:
        raise MalformedInput("the compact licence is not a tagged COSE_Sign1")
    value = obj.value
    if not isinstance(value, list) or len(value) != 4:
        raise MalformedInput("COSE_Sign1 is an array of four items")
    protected, unprotected, payload, signature = value
    if not all(isinstance(v, bytes) for v in (protected, payload, signature)):
        raise MalformedInput("COSE_Sign1 protected header, payload and signature are bytes")
    if unprotected != {}:
        raise MalformedInput("the compact licence has no unprotected header parameters")
    try:
        header = _cbor_whole(protected)
    except (cbor2.CBORDecodeError, ValueError, RecursionError):
        raise MalformedInput("the protected header is not CBOR") from None
    if not isinstance(header, dict) or set(header) != {1, 4}:
        raise MalformedInput("the protected header holds exactly alg (1) and kid (4)")
    alg, kid = header[1], header[4]
    if alg not in _ALGS.values() or not isinstance(kid, bytes) or len(kid) != KID_LENGTH:
        raise MalformedInput("alg must be -8, -7 or -65537 and kid 8 bytes")
    return _Sign1(protected, alg, kid, payload, signature, data)


def _map(value: object, name: str, keys: Iterable[int]) -> dict[int, Any]:
    if not isinstance(value, dict):
        raise MalformedInput(f"{name} must be a CBOR map")
    extra = set(value) - set(keys)
    if extra:
        raise MalformedInput(f"{name} has unknown keys {sorted(extra, key=str)}")
    return value


def _int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedInput(f"{name} must be a non-negative integer")
    return value


def _time(value: object, name: str) -> datetime:
    from datetime import UTC

    seconds = _int(value, name)
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise MalformedInput(f"{name} is out of range") from None


def _status_entries(value: object, issuer: Issuer) -> tuple[StatusEntry, ...]:
    if value is None:
        return ()
    if isinstance(value, int) and not isinstance(value, bool):
        index = _int(value, "status index")
        return tuple(StatusEntry(p, index, issuer.status_url(p)) for p in _PURPOSE_CODE)
    if not isinstance(value, list):
        raise MalformedInput("status must be an index or an array of entries")
    out = []
    for item in value:
        if not isinstance(item, list) or len(item) not in (2, 3):
            raise MalformedInput("a status entry is [purpose, index] or [purpose, index, url]")
        purpose = _CODE_PURPOSE.get(item[0]) if isinstance(item[0], int) else None
        if purpose is None:
            raise MalformedInput("status purpose must be 1 (revocation) or 2 (suspension)")
        url = item[2] if len(item) == 3 else issuer.status_url(purpose)
        if not isinstance(url, str):
            raise MalformedInput("a status list URL is text")
        out.append(StatusEntry(purpose, _int(item[1], "status index"), url))
    return tuple(out)


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise MalformedInput(f"{name} must be text")
    return value


def licence_from_claims(claims: object, issuer: Issuer) -> Licence:
    """The :class:`Licence` a compact claims map states (issuer from the kid)."""
    top = _map(claims, "the claims", (2, 4, 5, 6, 7, LICENCE_CLAIM))
    body = _map(top.get(LICENCE_CLAIM), "the licence claim", (1, 2, 3, 4, 5, 6))
    number = top.get(7)
    if not isinstance(number, bytes):
        raise MalformedInput("cti (7) must be the licence number as bytes")
    try:
        number_text = number.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedInput("cti (7) is not UTF-8") from None
    issued = _time(top.get(6), "iat (6)")
    return Licence(
        issuer_node=issuer.node_id,
        number=number_text,
        licence_type=_text(body.get(2), "licence type"),
        holder_id=_text(top.get(2), "sub (2)"),
        holder_name=_text(body.get(1), "holder name"),
        scope=_text(body.get(3), "scope"),
        department_zh=_text(body.get(4, issuer.name_zh), "department (zh)"),
        department_en=_text(body.get(5, issuer.name_en), "department (en)"),
        issued_at=issued,
        valid_from=_time(top[5], "nbf (5)") if 5 in top else issued,
        valid_until=_time(top.get(4), "exp (4)"),
        status=_status_entries(body.get(6), issuer),
    )


def parse_compact_licence(credential: str, issuers: IssuerResolver) -> Licence:
    """Decode a compact licence WITHOUT verifying it (display, status-list lookup)."""
    sign1 = _sign1(credential)
    issuer = issuers(sign1.kid)
    if issuer is None:
        raise MalformedInput(f"no issuer known for key id {sign1.kid.hex()}")
    try:
        claims = _cbor_whole(sign1.payload)
    except (cbor2.CBORDecodeError, ValueError, RecursionError):
        raise MalformedInput("the claims are not CBOR") from None
    return licence_from_claims(claims, issuer)


def _skipped_after(first: CheckResult, second: CheckResult, why: str) -> LicenceReport:
    rest = [CheckResult(c, Outcome.SKIPPED, detail=why) for c in list(Check)[2:]]
    return LicenceReport((first, second, *rest))


def _verify_signature(sign1: _Sign1, issuer: Issuer) -> bool:
    import cwt
    from cryptography.hazmat.primitives import serialization as ser

    alg = next(name for name, code in _ALGS.items() if code == sign1.alg)
    sm2 = sm2_public_key(issuer.seal_chain[0])
    if sm2 is not None or alg == "SM2SM3":  # the algorithm is bound to the key
        return (
            sm2 is not None
            and alg == "SM2SM3"
            and sm2.verify_raw(sign1.signature, _sig_structure(sign1.protected, sign1.payload))
        )
    public_pem = (
        issuer.seal_chain[0]
        .public_key()
        .public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
    )
    try:
        key = cwt.COSEKey.from_pem(public_pem, alg=alg, kid=sign1.kid)
    except (ValueError, cwt.CWTError):
        return False  # the header names an algorithm the issuer's key is not for
    try:
        cwt.COSE.new().decode(sign1.raw, key)
    except (cwt.CWTError, ValueError):
        return False
    return True


def verify_compact_licence(
    credential: str,
    bundle: TrustBundle,
    issuers: IssuerResolver,
    *,
    at: datetime,
    status_lists: StatusSource | None = None,
    entitled: Entitlement | None = None,
) -> LicenceReport:
    """Check a compact licence (credential text or verify URL) offline at ``at``.

    The same checks and report as :func:`signing.licence.verify_licence`; ``issuers``
    resolves the kid to the issuing office and its seal chain."""
    if at.tzinfo is None:
        raise ValueError("verify_compact_licence needs a timezone-aware time")
    try:
        sign1 = _sign1(credential)
    except MalformedInput as exc:
        bad = CheckResult(Check.SIGNATURE, Outcome.FAILED, Failure.MALFORMED, str(exc))
        skipped = CheckResult(Check.CHAIN, Outcome.SKIPPED, detail="not a licence")
        return _skipped_after(bad, skipped, "not a licence")
    issuer = issuers(sign1.kid)
    why = "issuer unknown"
    if issuer is None:
        lacking = (
            f"no issuer certificate for key id {sign1.kid.hex()}: supply the issuing "
            "office's node descriptor or trust list"
        )
        return _skipped_after(
            CheckResult(Check.SIGNATURE, Outcome.SKIPPED, detail=why),
            CheckResult(Check.CHAIN, Outcome.FAILED, Failure.UNKNOWN_ISSUER, lacking),
            why,
        )
    try:
        signer = validate_path(
            issuer.seal_chain, bundle, purpose=Purpose.SEAL, at=at, node_id=issuer.node_id
        )
    except CertificateRejected as exc:
        why = "certificate path refused"
        return _skipped_after(
            CheckResult(Check.SIGNATURE, Outcome.SKIPPED, detail=why),
            CheckResult(Check.CHAIN, Outcome.FAILED, Failure.CHAIN, f"{exc.reason}: {exc}"),
            why,
        )
    chain_ok = CheckResult(Check.CHAIN, Outcome.PASSED, detail="seal certificate path valid")
    if not _verify_signature(sign1, issuer):
        bad = CheckResult(
            Check.SIGNATURE, Outcome.FAILED, Failure.SIGNATURE, "the seal signature does not verify"
        )
        return _skipped_after(bad, chain_ok, "signature failed")
    try:
        licence = licence_from_claims(_cbor_whole(sign1.payload), issuer)
    except (MalformedInput, cbor2.CBORDecodeError, ValueError, SigningError) as exc:
        bad = CheckResult(
            Check.SIGNATURE, Outcome.FAILED, Failure.MALFORMED, f"signed, but not a licence: {exc}"
        )
        return _skipped_after(bad, chain_ok, "not a licence")
    return sealed_report(
        licence, signer, bundle, at=at, status_lists=status_lists, entitled=entitled
    )
