"""The development PKI in the SM profile: an SM2 federation root signing SM2-with-SM3.

Same layout, names, extensions, validities and serials as :mod:`certs.pki` (whose
docstring describes them); what differs:

- the root key is SM2 (``root.key``: PKCS#8 on the ``sm2`` curve) and every certificate
  and CRL it issues is signed SM2-with-SM3 (GM/T 0015), with key identifiers taken from
  SM3 (:func:`signing.sm_x509.key_identifier`);
- the seal leaf key is SM2 (digitalSignature+nonRepudiation, id-kp-documentSigning);
- the TLS leaf key stays ECDSA P-256: Python's TLS stack speaks no TLCP (GB/T 38636),
  but its certificate is signed SM2-with-SM3 by the root like every other;
- ``state.json`` says ``"profile": "sm"``, which :mod:`certs.pki` dispatches on.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs._io import write_private, write_public
from certs.pki import BACKDATE, CRL_VALIDITY, DOCUMENT_SIGNING, LEAF_VALIDITY, ROOT_VALIDITY
from signing.errors import MalformedInput
from signing.sm2 import Sm2PrivateKey
from signing.sm_x509 import (
    build_certificate,
    build_crl,
    key_identifier,
    sm2_public_key,
    verify_crl,
)

__all__ = [
    "PROFILE",
    "SmFederation",
    "init_sm_federation",
    "issue_sm_leaves",
    "sm_crl",
    "sm_revoked",
]

PROFILE = "sm"


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


class SmFederation:
    """An SM-profile federation root: its certificate and SM2 key."""

    def __init__(self, cert: x509.Certificate, key: Sm2PrivateKey) -> None:
        if sm2_public_key(cert) != key.public_key:
            raise MalformedInput("the SM2 root key does not match root.pem")
        self.cert = cert
        self.key = key

    @classmethod
    def load(cls, federation: Path) -> SmFederation:
        cert = x509.load_pem_x509_certificate((federation / "root.pem").read_bytes())
        return cls(cert, Sm2PrivateKey.from_pem((federation / "root.key").read_bytes()))

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
    """The federation CRL (``number``), signed SM2-with-SM3, valid ``CRL_VALIDITY``."""
    return build_crl(
        issuer=fed.cert.subject,
        last_update=now - BACKDATE,
        next_update=now + CRL_VALIDITY,
        revoked=revoked,
        extensions=[_ext(x509.CRLNumber(number), False), fed._aki()],
        issuer_key=fed.key,
    )


def init_sm_federation(out: Path, name: str, *, serial: int, now: datetime) -> x509.Certificate:
    """Write ``root.key``, ``root.pem``, ``crl.pem`` and ``state.json`` into the (empty,
    existing) directory ``out``."""
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
        serial=serial,
        not_before=now - BACKDATE,
        not_after=now + ROOT_VALIDITY,
        extensions=[
            _ext(x509.BasicConstraints(ca=True, path_length=0), True),
            _ext(_key_usage(signature=False, commitment=False, ca=True), True),
            _ext(x509.SubjectKeyIdentifier(ski), False),
        ],
        issuer_key=key,
    )
    write_private(out / "root.key", key.to_pem())
    write_public(out / "root.pem", cert.public_bytes(serialization.Encoding.PEM))
    crl = sm_crl(SmFederation(cert, key), [], 1, now)
    write_public(out / "crl.pem", crl.public_bytes(serialization.Encoding.PEM))
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
    """A TLS leaf (P-256 key) and a seal leaf (SM2 key), both signed by the SM2 root."""
    tls_key = ec.generate_private_key(ec.SECP256R1())
    tls_spki = tls_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    tls_cert = fed.issue(
        subject,
        tls_spki,
        [
            _ext(_key_usage(signature=True, commitment=False, ca=False), True),
            _ext(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                False,
            ),
            _ext(x509.SubjectAlternativeName([san]), False),
        ],
        serial=serials[0],
        now=now,
        not_after=now + LEAF_VALIDITY,
        subject_key_id=x509.SubjectKeyIdentifier.from_public_key(tls_key.public_key()).digest,
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


def sm_revoked(
    fed: SmFederation, crl: x509.CertificateRevocationList
) -> list[tuple[int, datetime]]:
    """The entries of the federation's current CRL (checked to be the root's)."""
    if not verify_crl(crl, fed.cert):
        raise MalformedInput("crl.pem is not signed by this federation's SM2 root")
    return [(e.serial_number, e.revocation_date_utc) for e in crl]
