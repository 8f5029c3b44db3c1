"""The development PKI in the SM profile: an SM2 federation root signing SM2-with-SM3.

Same layout, names, extensions, validities and serials as :mod:`certs.pki` (whose
docstring describes them); what differs:

- the root key is SM2 (``root.key``: PKCS#8 on the ``sm2`` curve) and every certificate
  and CRL it issues is signed SM2-with-SM3 (GM/T 0015), with key identifiers taken from
  SM3 (:func:`signing.sm_x509.key_identifier`);
- the seal leaf key is SM2 (digitalSignature+nonRepudiation, id-kp-documentSigning);
- beside the SM2 root the federation has a **transport root** (``transport.key``,
  ECDSA P-256, ``CN=<name> Transport Root``, signing ECDSA-with-SHA256) used only for
  the TLS 1.3 channel between nodes: OpenSSL 3 (Python's ``ssl``) cannot check SM2
  certificate signatures in a handshake (it uses an empty signer id) and speaks no
  TLCP (GB/T 38636). The transport root carries ``extKeyUsage serverAuth, clientAuth``,
  which constrains what it may certify (:func:`signing.certificates.validate_path`
  refuses a seal or directory key under it). The node's TLS leaf (P-256) is issued by
  it, the seal leaf by the SM2 root, both naming the same node id;
- ``root.pem`` holds both roots (SM2 root first) and ``crl.pem`` both CRLs (the SM2
  root's first), so a trust bundle is still ``root.pem`` + ``crl.pem`` per federation;
- ``state.json`` says ``"profile": "sm"``, which :mod:`certs.pki` dispatches on.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs._io import write_private, write_public
from certs.pki import BACKDATE, CRL_VALIDITY, DOCUMENT_SIGNING, LEAF_VALIDITY, ROOT_VALIDITY
from signing.certificates import DIRECTORY_SIGNING as DIRECTORY_SIGNING_EKU
from signing.errors import MalformedInput
from signing.keys import load_pem_chain
from signing.sm2 import Sm2PrivateKey
from signing.sm_x509 import (
    build_certificate,
    build_crl,
    key_identifier,
    sm2_public_key,
    verify_certificate,
    verify_crl,
)

__all__ = [
    "PROFILE",
    "TRANSPORT_KEY",
    "SmFederation",
    "crl_blocks",
    "crl_pem",
    "init_sm_federation",
    "issue_directory_leaf",
    "issue_sm_leaves",
    "issued_by",
    "sm_crl",
    "sm_revoked",
    "transport_crl",
]

PROFILE = "sm"
#: The transport root's private key file in the federation directory.
TRANSPORT_KEY = "transport.key"
_TLS_EKUS = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)
_CRL_BLOCK = re.compile(rb"-----BEGIN X509 CRL-----\r?\n.*?-----END X509 CRL-----", re.DOTALL)


def _ext(value: x509.ExtensionType, critical: bool) -> x509.Extension[x509.ExtensionType]:
    return x509.Extension(value.oid, critical, value)


def _key_usage(*, signature: bool, commitment: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signature,
        content_commitment=commitment,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _spki(cert: x509.Certificate) -> bytes:
    """The certificate's SubjectPublicKeyInfo DER, or b"" for an SM2 key (which
    ``cryptography`` cannot load)."""
    if sm2_public_key(cert) is not None:
        return b""
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _spki_of(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class SmFederation:
    """An SM-profile federation: its SM2 root (certificate and key) and its P-256
    transport root (certificate and key), for the TLS channel only."""

    def __init__(
        self,
        cert: x509.Certificate,
        key: Sm2PrivateKey,
        transport_cert: x509.Certificate,
        transport_key: ec.EllipticCurvePrivateKey,
    ) -> None:
        if sm2_public_key(cert) != key.public_key:
            raise MalformedInput("the SM2 root key does not match root.pem")
        if _spki(transport_cert) != _spki_of(transport_key):
            raise MalformedInput("the transport root key does not match root.pem")
        self.cert = cert
        self.key = key
        self.transport_cert = transport_cert
        self.transport_key = transport_key

    @classmethod
    def load(cls, federation: Path) -> SmFederation:
        """Load ``root.key``, ``transport.key`` and the two roots of ``root.pem``."""
        roots = load_pem_chain((federation / "root.pem").read_bytes())
        key = Sm2PrivateKey.from_pem((federation / "root.key").read_bytes())
        if not (federation / TRANSPORT_KEY).exists():
            raise MalformedInput(
                f"{federation} has no {TRANSPORT_KEY}: it was made before SM federations "
                "had a transport root; create it again with init-federation --profile sm"
            )
        transport_key = serialization.load_pem_private_key(
            (federation / TRANSPORT_KEY).read_bytes(), password=None
        )
        if not isinstance(transport_key, ec.EllipticCurvePrivateKey):
            raise MalformedInput(f"{TRANSPORT_KEY} is not an ECDSA key")
        sm2_roots = [c for c in roots if sm2_public_key(c) == key.public_key]
        transport = [c for c in roots if _spki(c) == _spki_of(transport_key)]
        if len(sm2_roots) != 1 or len(transport) != 1:
            raise MalformedInput("root.pem must hold the SM2 root and the transport root")
        return cls(sm2_roots[0], key, transport[0], transport_key)

    @property
    def roots_pem(self) -> bytes:
        """``root.pem``: the SM2 root, then the transport root."""
        return b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in (self.cert, self.transport_cert)
        )

    def _aki(self) -> x509.Extension[x509.ExtensionType]:
        aki = x509.AuthorityKeyIdentifier(key_identifier(self.key.public_key), None, None)
        return _ext(aki, False)

    def issue(
        self,
        subject: x509.Name,
        public_key: bytes,
        extensions: list[x509.Extension[x509.ExtensionType]],
        *,
        serial: int,
        now: datetime,
        not_after: datetime,
        subject_key_id: bytes,
    ) -> x509.Certificate:
        exts = [
            _ext(x509.BasicConstraints(ca=False, path_length=None), True),
            _ext(x509.SubjectKeyIdentifier(subject_key_id), False),
            self._aki(),
            *extensions,
        ]
        return build_certificate(
            issuer=self.cert.subject,
            subject=subject,
            public_key=public_key,
            serial=serial,
            not_before=now - BACKDATE,
            not_after=min(not_after, self.cert.not_valid_after_utc),
            extensions=exts,
            issuer_key=self.key,
        )


def sm_crl(
    fed: SmFederation, revoked: list[tuple[int, datetime]], number: int, now: datetime
) -> x509.CertificateRevocationList:
    """The SM2 root's CRL (``number``), signed SM2-with-SM3, valid ``CRL_VALIDITY``."""
    return build_crl(
        issuer=fed.cert.subject,
        last_update=now - BACKDATE,
        next_update=now + CRL_VALIDITY,
        revoked=revoked,
        extensions=[_ext(x509.CRLNumber(number), False), fed._aki()],
        issuer_key=fed.key,
    )


def transport_crl(
    fed: SmFederation, revoked: list[tuple[int, datetime]], number: int, now: datetime
) -> x509.CertificateRevocationList:
    """The transport root's CRL (``number``), ECDSA-with-SHA256, valid ``CRL_VALIDITY``."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(fed.transport_cert.subject)
        .last_update(now - BACKDATE)
        .next_update(now + CRL_VALIDITY)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(fed.transport_key.public_key()),
            critical=False,
        )
    )
    for serial, at in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(at).build()
        )
    return builder.sign(fed.transport_key, hashes.SHA256())


Revoked = dict[str, list[tuple[int, datetime]]]
"""Revoked (serial, date) entries per root: ``"sm2"`` and ``"transport"``."""


def crl_pem(fed: SmFederation, revoked: Revoked, number: int, now: datetime) -> bytes:
    """``crl.pem``: the SM2 root's CRL, then the transport root's, both ``number``."""
    crls = (
        sm_crl(fed, revoked["sm2"], number, now),
        transport_crl(fed, revoked["transport"], number, now),
    )
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in crls)


def _transport_root(
    name: str, serial: int, now: datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The transport root: P-256, CA for TLS leaves only (EKU serverAuth, clientAuth)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{name} Transport Root"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tongban federation"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + ROOT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signature=False, commitment=False, ca=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(_TLS_EKUS)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def init_sm_federation(
    out: Path, name: str, *, serials: tuple[int, int], now: datetime
) -> x509.Certificate:
    """Write ``root.key``, ``transport.key``, ``root.pem`` (both roots), ``crl.pem``
    (both CRLs) and ``state.json`` into the (empty, existing) directory ``out``;
    ``serials`` are the SM2 root's and the transport root's. Returns the SM2 root."""
    key = Sm2PrivateKey.generate()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{name} Root"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tongban federation"),
        ]
    )
    ski = key_identifier(key.public_key)
    cert = build_certificate(
        issuer=subject,
        subject=subject,
        public_key=key.public_key.to_der(),
        serial=serials[0],
        not_before=now - BACKDATE,
        not_after=now + ROOT_VALIDITY,
        extensions=[
            _ext(x509.BasicConstraints(ca=True, path_length=0), True),
            _ext(_key_usage(signature=False, commitment=False, ca=True), True),
            _ext(x509.SubjectKeyIdentifier(ski), False),
        ],
        issuer_key=key,
    )
    transport_key, transport_cert = _transport_root(name, serials[1], now)
    fed = SmFederation(cert, key, transport_cert, transport_key)
    write_private(out / "root.key", key.to_pem())
    write_private(
        out / TRANSPORT_KEY,
        transport_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    write_public(out / "root.pem", fed.roots_pem)
    write_public(out / "crl.pem", crl_pem(fed, {"sm2": [], "transport": []}, 1, now))
    state = {"name": name, "profile": PROFILE, "crl_number": 1, "issued": []}
    write_public(out / "state.json", json.dumps(state, indent=2).encode() + b"\n")
    return cert


def issue_sm_leaves(
    fed: SmFederation,
    subject: x509.Name,
    san: x509.GeneralName,
    serials: tuple[int, int],
    now: datetime,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, Sm2PrivateKey, x509.Certificate]:
    """A TLS leaf (P-256, issued by the transport root) and a seal leaf (SM2, issued
    SM2-with-SM3 by the SM2 root), both for ``subject`` (the same node id)."""
    tls_key = ec.generate_private_key(ec.SECP256R1())
    transport = fed.transport_cert
    tls_cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(transport.subject)
        .public_key(tls_key.public_key())
        .serial_number(serials[0])
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + LEAF_VALIDITY, transport.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(tls_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(fed.transport_key.public_key()),
            critical=False,
        )
        .add_extension(_key_usage(signature=True, commitment=False, ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(_TLS_EKUS)), critical=False)
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .sign(fed.transport_key, hashes.SHA256())
    )
    seal_key = Sm2PrivateKey.generate()
    seal_cert = fed.issue(
        subject,
        seal_key.public_key.to_der(),
        [
            _ext(_key_usage(signature=True, commitment=True, ca=False), True),
            _ext(x509.ExtendedKeyUsage([DOCUMENT_SIGNING]), False),
        ],
        serial=serials[1],
        now=now,
        not_after=now + LEAF_VALIDITY,
        subject_key_id=key_identifier(seal_key.public_key),
    )
    return tls_key, tls_cert, seal_key, seal_cert


def issue_directory_leaf(
    fed: SmFederation, subject: x509.Name, key: Sm2PrivateKey, serial: int, now: datetime
) -> x509.Certificate:
    """The federation's directory-signing certificate for the SM2 ``key``."""
    return fed.issue(
        subject,
        key.public_key.to_der(),
        [
            _ext(_key_usage(signature=True, commitment=False, ca=False), True),
            _ext(x509.ExtendedKeyUsage([DIRECTORY_SIGNING_EKU]), False),
        ],
        serial=serial,
        now=now,
        not_after=now + LEAF_VALIDITY,
        subject_key_id=key_identifier(key.public_key),
    )


def issued_by(fed: SmFederation, cert: x509.Certificate) -> str | None:
    """``"sm2"`` or ``"transport"``: which of the federation's roots issued ``cert``
    (its signature checked), or None for neither."""
    if verify_certificate(cert, fed.cert):
        return "sm2"
    if cert.issuer == fed.transport_cert.subject:
        try:
            cert.verify_directly_issued_by(fed.transport_cert)
        except (ValueError, TypeError, InvalidSignature):
            return None
        return "transport"
    return None


def crl_blocks(pem: bytes) -> list[bytes]:
    """The PEM CRL blocks of ``crl.pem``, in order."""
    return list(_CRL_BLOCK.findall(pem))


def sm_revoked(fed: SmFederation, crls_pem: bytes) -> Revoked:
    """The entries of the federation's current CRLs (``crl.pem``), each checked to be
    signed by its root."""
    found: Revoked = {}
    for block in crl_blocks(crls_pem):
        crl = x509.load_pem_x509_crl(block)
        if verify_crl(crl, fed.cert) and crl.issuer == fed.cert.subject:
            which = "sm2"
        elif crl.issuer == fed.transport_cert.subject and crl.is_signature_valid(
            fed.transport_key.public_key()
        ):
            which = "transport"
        else:
            raise MalformedInput("crl.pem holds a CRL signed by neither federation root")
        found[which] = [(e.serial_number, e.revocation_date_utc) for e in crl]
    if set(found) != {"sm2", "transport"}:
        raise MalformedInput("crl.pem must hold the SM2 root's CRL and the transport root's")
    return found
