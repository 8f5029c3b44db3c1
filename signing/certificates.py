"""Node identities: the trust bundle and certificate path validation.

A trust bundle is one or more federation root certificates (e.g. one per province)
plus, optionally, the CRLs those roots publish. A node proves who it is with a leaf
certificate (TLS or seal) issued by a root of the bundle, possibly through
intermediates. :func:`validate_path` checks, at a given instant:

1. the chain: leaf first, each certificate directly issued by the next one, the last
   one directly issued by a bundle root (a copy of the root at the end is tolerated);
2. validity at ``at`` of every certificate of the path, root included;
3. ``basicConstraints cA=TRUE`` (and ``keyCertSign`` when key usage is present) on every
   issuer, ``pathLenConstraint`` honoured, and a leaf that is not a CA; an issuer with
   an extendedKeyUsage extension certifies only those usages (the SM profile's
   transport root, EKU serverAuth+clientAuth, cannot anchor a seal or directory key);
4. key usage / extended key usage for the purpose and an Ed25519, P-256 or (SM
   profile) SM2 leaf key;
5. revocation: for every issuer that has a CRL in the bundle, the newest such CRL must
   be signed by that issuer and not be past its nextUpdate at ``at``; a listed serial
   is revoked. An issuer without a CRL in the bundle has no revocation information;
6. binding: the leaf's subject CN is a node id, and equals ``node_id`` when given.
   A directory-signing leaf (:attr:`Purpose.DIRECTORY`: EKU exactly
   :data:`DIRECTORY_SIGNING`) names its federation instead; its identity has no node id.

Signatures may be ECDSA/Ed25519 (default profile) or SM2-with-SM3 (SM profile,
:mod:`signing.sm_x509`). The signature checks of steps 1 and 5 are pure functions of
the DER bytes involved and are memoized in :mod:`signing.pathcache`; every
time-dependent check (validity, CRL freshness, the revocation lookup) and
purpose/binding runs on every call.

Failures raise :class:`~signing.errors.CertificateRejected` with a stable ``reason``
(``untrusted-root``, ``bad-chain``, ``expired``, ``not-yet-valid``, ``revoked``,
``wrong-purpose``, ``wrong-node``, ``crl-invalid``); the precise cause is logged on the
``tongban.signing`` logger.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import cached_property
from types import MappingProxyType

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from signing import pathcache, sm_x509
from signing.errors import CertificateRejected, MalformedInput

__all__ = [
    "DIRECTORY_SIGNING",
    "Identity",
    "Purpose",
    "TrustBundle",
    "is_node_id",
    "validate_path",
]

_log = logging.getLogger("tongban.signing")

_NODE_ID = re.compile(r"[0-9]{6}")
_MAX_CHAIN = 4  # leaf + up to 3 intermediates
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)
_TLS_EKUS = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)


class Purpose(StrEnum):
    """What a leaf certificate is used for."""

    TLS_PEER = "tls"
    SEAL = "seal"
    DIRECTORY = "directory"  # a federation's directory-signing key (signing.federation_directory)


#: The extended key usage of a directory-signing certificate (a UUID OID, X.667).
DIRECTORY_SIGNING = x509.ObjectIdentifier("2.25.157613478228184910049091599385324285935")


def is_node_id(text: str) -> bool:
    """True for exactly six ASCII digits other than ``000000``."""
    return isinstance(text, str) and _NODE_ID.fullmatch(text) is not None and text != "000000"


@dataclass(frozen=True)
class TrustBundle:
    """Federation roots and their CRLs."""

    roots: tuple[x509.Certificate, ...]
    crls: tuple[x509.CertificateRevocationList, ...] = ()

    def __post_init__(self) -> None:
        if not self.roots:
            raise MalformedInput("a trust bundle needs at least one root certificate")

    @classmethod
    def from_pem(cls, data: bytes) -> TrustBundle:
        """Parse concatenated ``CERTIFICATE`` and ``X509 CRL`` PEM blocks.

        Any other block type, or a block that does not parse, is refused.
        """
        roots: list[x509.Certificate] = []
        crls: list[x509.CertificateRevocationList] = []
        for match in _PEM_BLOCK.finditer(data):
            kind, block = match.group(1), match.group(0)
            try:
                if kind == b"CERTIFICATE":
                    roots.append(x509.load_pem_x509_certificate(block))
                elif kind == b"X509 CRL":
                    crls.append(x509.load_pem_x509_crl(block))
                else:
                    raise MalformedInput(f"unexpected PEM block {kind.decode()!r} in bundle")
            except ValueError as exc:
                raise MalformedInput(f"unparsable {kind.decode()} block in bundle") from exc
        return cls(roots=tuple(roots), crls=tuple(crls))

    def to_pem(self) -> bytes:
        """The bundle as PEM: roots first, then CRLs."""
        parts = [c.public_bytes(Encoding.PEM) for c in self.roots]
        parts += [c.public_bytes(Encoding.PEM) for c in self.crls]
        return b"".join(parts)

    @cached_property
    def fingerprint(self) -> bytes:
        """SHA-256 over the DER of every root and CRL: bundles with the same roots and
        CRLs have the same fingerprint (a cache key part, see ``signing.pathcache``)."""
        digest = hashlib.sha256()
        ders = [c.public_bytes(Encoding.DER) for c in self.roots]
        ders += [crl.public_bytes(Encoding.DER) for crl in self.crls]
        for der in ders:
            digest.update(len(der).to_bytes(4, "big") + der)
        return digest.digest()

    @cached_property
    def newest_crls(self) -> Mapping[x509.Name, tuple[x509.CertificateRevocationList, bytes]]:
        """Per issuer name, the CRL with the latest ``lastUpdate`` (the first one on a
        tie) and its DER; computed once per bundle, read on every validation."""
        newest: dict[x509.Name, tuple[x509.CertificateRevocationList, bytes]] = {}
        for crl in self.crls:
            held = newest.get(crl.issuer)
            if held is None or crl.last_update_utc > held[0].last_update_utc:
                newest[crl.issuer] = (crl, crl.public_bytes(Encoding.DER))
        return MappingProxyType(newest)


@dataclass(frozen=True)
class Identity:
    """A validated node identity: who signed or connected, under which certificate."""

    node_id: str
    name: str
    certificate: x509.Certificate
    purpose: Purpose

    @property
    def serial(self) -> int:
        return self.certificate.serial_number


def _reject(reason: str, message: str) -> CertificateRejected:
    _log.warning("certificate rejected (%s): %s", reason, message)
    return CertificateRejected(reason, message)


def _describe(cert: x509.Certificate) -> str:
    return f"{cert.subject.rfc4514_string()} serial {cert.serial_number:x}"


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    return pathcache.issued_by_signature(cert, issuer)  # memoized by both DERs


def _build_path(chain: Sequence[x509.Certificate], bundle: TrustBundle) -> list[x509.Certificate]:
    """Return leaf, intermediates..., root (the root taken from the bundle)."""
    certs = list(chain)
    if not certs:
        raise _reject("bad-chain", "empty certificate chain")
    if len(certs) > 1 and certs[-1] in bundle.roots:
        certs.pop()  # the sender included the root; we anchor on our own copy
    if len(certs) > _MAX_CHAIN:
        raise _reject("bad-chain", f"chain of {len(certs)} certificates is too long")
    for child, parent in itertools.pairwise(certs):
        if not _issued_by(child, parent):
            raise _reject("bad-chain", f"{_describe(child)} is not issued by {_describe(parent)}")
    top = certs[-1]
    for root in bundle.roots:
        if _issued_by(top, root):
            return [*certs, root]
    raise _reject(
        "untrusted-root",
        f"no bundle root issued {_describe(top)} (issuer {top.issuer.rfc4514_string()})",
    )


def _check_validity(path: Sequence[x509.Certificate], at: datetime) -> None:
    for cert in path:
        if at < cert.not_valid_before_utc:
            raise _reject(
                "not-yet-valid",
                f"{_describe(cert)} valid from {cert.not_valid_before_utc.isoformat()}, "
                f"checked at {at.isoformat()}",
            )
        if at > cert.not_valid_after_utc:
            raise _reject(
                "expired",
                f"{_describe(cert)} expired {cert.not_valid_after_utc.isoformat()}, "
                f"checked at {at.isoformat()}",
            )


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> object | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _check_issuers(path: Sequence[x509.Certificate]) -> None:
    leaf_bc = _extension(path[0], x509.BasicConstraints)
    if isinstance(leaf_bc, x509.BasicConstraints) and leaf_bc.ca:
        raise _reject("wrong-purpose", f"leaf {_describe(path[0])} is a CA certificate")
    for depth, issuer in enumerate(path[1:]):
        bc = _extension(issuer, x509.BasicConstraints)
        if not isinstance(bc, x509.BasicConstraints) or not bc.ca:
            raise _reject("bad-chain", f"issuer {_describe(issuer)} is not a CA")
        # ``depth`` = number of intermediates below this issuer in the path.
        if bc.path_length is not None and depth > bc.path_length:
            raise _reject("bad-chain", f"path length constraint of {_describe(issuer)}")
        ku = _extension(issuer, x509.KeyUsage)
        if isinstance(ku, x509.KeyUsage) and not ku.key_cert_sign:
            raise _reject("bad-chain", f"issuer {_describe(issuer)} lacks keyCertSign")


def _supported_leaf_key(leaf: x509.Certificate) -> bool:
    if sm_x509.sm2_public_key(leaf) is not None:
        return True  # SM profile
    try:
        key = leaf.public_key()
    except UnsupportedAlgorithm:
        return False
    return isinstance(key, ed25519.Ed25519PublicKey) or (
        isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    )


def _check_issuer_usages(path: Sequence[x509.Certificate]) -> None:
    """An issuer's extendedKeyUsage (when present, and not anyExtendedKeyUsage) bounds
    the leaf's: every leaf EKU must be among it, and a leaf without EKU is refused."""
    leaf_eku = _extension(path[0], x509.ExtendedKeyUsage)
    leaf = set(leaf_eku) if isinstance(leaf_eku, x509.ExtendedKeyUsage) else None
    for issuer in path[1:]:
        eku = _extension(issuer, x509.ExtendedKeyUsage)
        if not isinstance(eku, x509.ExtendedKeyUsage):
            continue
        allowed = set(eku)
        if ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in allowed:
            continue
        if leaf is None or not leaf <= allowed:
            raise _reject(
                "wrong-purpose",
                f"{_describe(path[0])} has a usage its issuer {_describe(issuer)} may not certify",
            )


def check_purpose(leaf: x509.Certificate, purpose: Purpose) -> None:
    """Whether ``leaf`` may be used for ``purpose`` (its key and usages, §1.2; nothing
    about its path or time): :class:`CertificateRejected` ``wrong-purpose`` if not."""
    _check_purpose(leaf, purpose)


def _check_purpose(leaf: x509.Certificate, purpose: Purpose) -> None:
    if not _supported_leaf_key(leaf):
        raise _reject("wrong-purpose", f"{_describe(leaf)} key is not Ed25519, P-256 or SM2")
    ku = _extension(leaf, x509.KeyUsage)
    eku = _extension(leaf, x509.ExtendedKeyUsage)
    ekus = set(eku) if isinstance(eku, x509.ExtendedKeyUsage) else set()
    if not isinstance(ku, x509.KeyUsage) or not ku.digital_signature:
        raise _reject("wrong-purpose", f"{_describe(leaf)} lacks keyUsage digitalSignature")
    if purpose is Purpose.TLS_PEER:
        if not all(oid in ekus for oid in _TLS_EKUS):
            raise _reject("wrong-purpose", f"{_describe(leaf)} lacks serverAuth+clientAuth EKU")
    elif purpose is Purpose.DIRECTORY:
        if ekus != {DIRECTORY_SIGNING}:
            raise _reject("wrong-purpose", f"{_describe(leaf)} is not a directory-signing key")
    else:
        if not ku.content_commitment:
            raise _reject("wrong-purpose", f"{_describe(leaf)} lacks nonRepudiation")
        forbidden = {*_TLS_EKUS, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
        if ekus & forbidden:
            raise _reject("wrong-purpose", f"{_describe(leaf)} is a TLS certificate")


def _check_revocation(path: Sequence[x509.Certificate], bundle: TrustBundle, at: datetime) -> None:
    for cert, issuer in itertools.pairwise(path):
        newest = bundle.newest_crls.get(issuer.subject)
        if newest is None:
            continue
        crl, crl_der = newest
        if not pathcache.crl_signed_by(crl, crl_der, issuer):  # memoized by both DERs
            raise _reject("crl-invalid", f"CRL of {_describe(issuer)} has a bad signature")
        if crl.next_update_utc is None or at > crl.next_update_utc:
            raise _reject(
                "crl-invalid",
                f"CRL of {_describe(issuer)} is stale (nextUpdate {crl.next_update_utc})",
            )
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is not None:
            raise _reject(
                "revoked",
                f"{_describe(cert)} revoked {entry.revocation_date_utc.isoformat()}",
            )


def _subject_attr(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]


def validate_path(
    chain: Sequence[x509.Certificate],
    bundle: TrustBundle,
    *,
    purpose: Purpose,
    at: datetime,
    node_id: str | None = None,
) -> Identity:
    """Validate ``chain`` (leaf first) against ``bundle`` at ``at`` (timezone-aware).

    Raises :class:`CertificateRejected`; returns the leaf's :class:`Identity`.
    """
    if at.tzinfo is None:
        raise ValueError("validate_path needs a timezone-aware time")
    key = (tuple(pathcache.der(c) for c in chain), bundle.fingerprint, purpose, node_id)
    known = pathcache.path_result(key, at)  # only inside the validity window it found
    if known is not None:
        return known  # type: ignore[no-any-return]
    path = _build_path(chain, bundle)
    _check_validity(path, at)
    _check_issuers(path)
    leaf = path[0]
    _check_purpose(leaf, purpose)
    _check_issuer_usages(path)
    _check_revocation(path, bundle, at)
    cns = _subject_attr(leaf, NameOID.COMMON_NAME)
    if purpose is Purpose.DIRECTORY:  # names a federation, not a node: no node id
        if node_id is not None or len(cns) != 1:
            raise _reject("wrong-node", f"{_describe(leaf)} is not a directory key")
        return Identity(node_id="", name=cns[0], certificate=leaf, purpose=purpose)
    if len(cns) != 1 or not is_node_id(cns[0]):
        raise _reject("wrong-node", f"{_describe(leaf)} does not name a node id")
    if node_id is not None and cns[0] != node_id:
        raise _reject("wrong-node", f"{_describe(leaf)} is not node {node_id}")
    names = _subject_attr(leaf, NameOID.ORGANIZATION_NAME)
    identity = Identity(
        node_id=cns[0], name=names[0] if names else "", certificate=leaf, purpose=purpose
    )
    pathcache.remember_path(key, identity, *_window(path, bundle))
    return identity


def _window(path: Sequence[x509.Certificate], bundle: TrustBundle) -> tuple[datetime, datetime]:
    """When a validation of ``path`` against ``bundle`` gives the same answer: from the
    latest ``notBefore`` to the earliest ``notAfter`` and CRL ``nextUpdate`` (every other
    check depends only on the bytes, and the CRLs are part of the cache key)."""
    valid_from = max(c.not_valid_before_utc for c in path)
    ends = [c.not_valid_after_utc for c in path]
    for issuer in path[1:]:
        newest = bundle.newest_crls.get(issuer.subject)
        if newest is not None and newest[0].next_update_utc is not None:
            ends.append(newest[0].next_update_utc)
    return valid_from, min(ends)
