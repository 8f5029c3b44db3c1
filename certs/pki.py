"""The development PKI: federation roots, node certificates and CRLs.

Everything here is a function of its arguments (``now`` is passed in; randomness comes
from the OS for keys and serial numbers); the only I/O is reading and writing the
federation and node directories. Generated material is never committed.

Federation directory: ``root.pem``, ``root.key`` (0600), ``crl.pem``, ``state.json``.
Directory key (``issue_directory_key``): ``directory.key`` (0600) + ``directory.pem``, an
Ed25519 leaf ``CN=<name> Directory`` with digitalSignature and only the EKU
:data:`signing.certificates.DIRECTORY_SIGNING`, signing the federation directory.
Node directory (see ``docs/protocol.md`` § identities): ``tls.pem``, ``tls.key``,
``seal.pem``, ``seal.key``, ``hpke-x25519.key``, ``hpke-mlkem768x25519.key``,
``root.pem`` and, once signed, ``node.json``. Private keys are created with mode 0600
(``os.open(..., 0o600)``; never widened then narrowed).

Profile: root ECDSA P-256, ``CN=<name> Root, O=tongban federation``, CA with
``pathLenConstraint=0``, 10 years; TLS leaf ECDSA P-256 with serverAuth+clientAuth and a
DNS/IP SAN; seal leaf Ed25519 with digitalSignature+nonRepudiation and EKU
id-kp-documentSigning (so TLS stacks refuse it); leaves 2 years;
every ``notBefore`` is backdated 5 minutes; serials are random 128-bit (top bit clear);
the CRL is valid 30 days.

``init_federation(..., profile="sm")`` makes an SM-profile federation instead (SM2 root,
SM2 seal keys, SM2-with-SM3 signatures, and a P-256 transport root for TLS only;
:mod:`certs.sm_pki`); ``state.json`` names the profile and every later operation
(issue, revoke, renew) follows it. An SM node directory holds ``enc-sm2.key`` (the
``sm2-sm4gcm`` sealing key) instead of the two ``hpke-*.key``.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs._io import replace_public as _replace_public
from certs._io import write_private
from certs._io import write_public as _write_public
from signing.certificates import DIRECTORY_SIGNING, is_node_id
from signing.descriptor import NodeDescriptor, sign_descriptor
from signing.errors import MalformedInput
from signing.hpke import HpkePublicKey, HpkeSuite, generate_hpke_key
from signing.keys import Signer
from signing.sm2 import Sm2PrivateKey

if TYPE_CHECKING:
    from certs import sm_pki

__all__ = [
    "BACKDATE",
    "CRL_VALIDITY",
    "DOCUMENT_SIGNING",
    "LEAF_VALIDITY",
    "PROFILES",
    "ROOT_VALIDITY",
    "NodeFiles",
    "PkiError",
    "default_endpoints",
    "init_federation",
    "issue_directory_key",
    "issue_node",
    "renew_crl",
    "revoke",
    "tls_issuer",
    "write_private",
]

ROOT_VALIDITY = timedelta(days=3652)
LEAF_VALIDITY = timedelta(days=730)
CRL_VALIDITY = timedelta(days=30)
BACKDATE = timedelta(minutes=5)
#: Cryptographic profiles of a federation: ``default`` (P-256 root, Ed25519 seals) and
#: ``sm`` (SM2 root and seals, SM2-with-SM3 signatures; see :mod:`certs.sm_pki`).
PROFILES = ("default", "sm")
#: id-kp-documentSigning (RFC 9336): keeps seal certificates out of TLS stacks.
DOCUMENT_SIGNING = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")


class PkiError(Exception):
    """A PKI operation was refused (bad node code, existing directory, wrong root...)."""


@dataclass(frozen=True)
class NodeFiles:
    """Paths of a freshly issued node directory."""

    directory: Path
    tls_cert: Path
    seal_cert: Path
    tls_serial: int
    seal_serial: int


def _serial() -> int:
    return secrets.randbits(127) | 1


def _pem_key(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _empty_dir(path: Path, what: str) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise PkiError(f"{what} {path} already exists and is not empty; refusing to overwrite")
    path.mkdir(parents=True, exist_ok=True)


def _build_crl(
    root_cert: x509.Certificate,
    root_key: ec.EllipticCurvePrivateKey,
    revoked: list[x509.RevokedCertificate],
    number: int,
    now: datetime,
) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(root_cert.subject)
        .last_update(now - BACKDATE)
        .next_update(now + CRL_VALIDITY)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
            critical=False,
        )
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(root_key, hashes.SHA256())


def init_federation(
    out: Path, name: str, *, now: datetime, profile: str = "default"
) -> x509.Certificate:
    """Create a federation root, an empty CRL and the state file in ``out``.

    ``profile`` ``sm`` makes an SM2 root signing SM2-with-SM3 (:mod:`certs.sm_pki`)."""
    if not name.strip():
        raise PkiError("the federation name must not be empty")
    if profile not in PROFILES:
        raise PkiError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    _empty_dir(out, "federation directory")
    if profile == "sm":
        from certs import sm_pki

        return sm_pki.init_sm_federation(out, name, serials=(_serial(), _serial()), now=now)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{name} Root"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tongban federation"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + ROOT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private(out / "root.key", _pem_key(key))
    _write_public(out / "root.pem", _pem(cert))
    crl = _build_crl(cert, key, [], 1, now)
    _write_public(out / "crl.pem", crl.public_bytes(serialization.Encoding.PEM))
    state = {"name": name, "crl_number": 1, "issued": []}
    _write_public(out / "state.json", json.dumps(state, indent=2).encode() + b"\n")
    return cert


def _load_federation(
    federation: Path,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, dict[str, object]]:
    try:
        cert = x509.load_pem_x509_certificate((federation / "root.pem").read_bytes())
        key = serialization.load_pem_private_key(
            (federation / "root.key").read_bytes(), password=None
        )
        state = json.loads((federation / "state.json").read_text())
    except (OSError, ValueError) as exc:
        raise PkiError(f"{federation} is not a readable federation directory: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(state, dict):
        raise PkiError(f"{federation} is not a federation directory made by this tool")
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        # else CRLs and certificates signed with it would name an issuer that did not sign
        raise PkiError(f"{federation}: root.key is not the key of root.pem")
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise PkiError(f"{federation}: root.pem is not a CA certificate")
    return cert, key, state


def tls_issuer(
    federation: Path,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, dict[str, object]]:
    """The root that issues TLS leaves, its key and the state: the federation root, or
    in the SM profile its P-256 transport root (:mod:`certs.sm_pki`)."""
    if _profile(federation) == "sm":
        fed, state = _load_sm(federation)
        return fed.transport_cert, fed.transport_key, state
    return _load_federation(federation)


def _profile(federation: Path) -> str:
    """The federation's profile from ``state.json`` (``default`` when not named)."""
    try:
        state = json.loads((federation / "state.json").read_text())
    except (OSError, ValueError) as exc:
        raise PkiError(f"{federation} is not a readable federation directory: {exc}") from exc
    profile = state.get("profile", "default") if isinstance(state, dict) else None
    if profile not in PROFILES:
        raise PkiError(f"{federation} names an unknown profile {profile!r}")
    return str(profile)


def _load_sm(federation: Path) -> tuple[sm_pki.SmFederation, dict[str, object]]:
    from certs import sm_pki

    try:
        fed = sm_pki.SmFederation.load(federation)
        state = json.loads((federation / "state.json").read_text())
    except (OSError, ValueError, MalformedInput) as exc:
        raise PkiError(f"{federation} is not a readable SM federation directory: {exc}") from exc
    return fed, state


def _save_state(federation: Path, state: Mapping[str, object]) -> None:
    _replace_public(federation / "state.json", json.dumps(state, indent=2).encode() + b"\n")


def _key_usage(*, signature: bool, commitment: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signature,
        content_commitment=commitment,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf_builder(
    root: x509.Certificate,
    root_key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey,
    now: datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(root.subject)
        .public_key(public_key)
        .serial_number(_serial())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + LEAF_VALIDITY, root.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
            critical=False,
        )
    )


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not host or any(c.isspace() for c in host):
        raise PkiError(f"host {host!r} is neither an IP address nor a DNS name")
    return x509.DNSName(host)


def default_endpoints(host: str) -> dict[str, str]:
    """Endpoints a node gets when none are given: federation 8443, public 8444."""
    shown = f"[{host}]" if ":" in host else host
    return {"federation": f"https://{shown}:8443", "public": f"https://{shown}:8444"}


def _default_leaves(
    root: x509.Certificate,
    root_key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    san: x509.GeneralName,
    now: datetime,
) -> tuple[
    ec.EllipticCurvePrivateKey, x509.Certificate, ed25519.Ed25519PrivateKey, x509.Certificate
]:
    """The default profile's TLS leaf (P-256) and seal leaf (Ed25519)."""
    tls_key = ec.generate_private_key(ec.SECP256R1())
    tls_cert = (
        _leaf_builder(root, root_key, subject, tls_key.public_key(), now)
        .add_extension(_key_usage(signature=True, commitment=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    seal_key = ed25519.Ed25519PrivateKey.generate()
    seal_cert = (
        _leaf_builder(root, root_key, subject, seal_key.public_key(), now)
        .add_extension(_key_usage(signature=True, commitment=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([DOCUMENT_SIGNING]), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    return tls_key, tls_cert, seal_key, seal_cert


def issue_node(
    federation: Path,
    node: str,
    name: str,
    host: str,
    out: Path,
    *,
    now: datetime,
    name_en: str | None = None,
    endpoints: Mapping[str, str] | None = None,
) -> NodeFiles:
    """Issue TLS and seal certificates and HPKE keys for ``node`` into ``out``.

    ``node.json`` (the signed descriptor) is written too, naming ``name`` (zh),
    ``name_en`` (defaults to ``name``) and ``endpoints`` (defaults to
    :func:`default_endpoints`).
    """
    if not is_node_id(node):
        raise PkiError(
            f"node code {node!r} is not a 6-digit administrative division code (e.g. 420106)"
        )
    if not name.strip():
        raise PkiError("the office name must not be empty")
    san = _san(host)
    sm = _profile(federation) == "sm"
    if sm:
        from certs import sm_pki

        sm_fed, state = _load_sm(federation)
    else:
        root, root_key, state = _load_federation(federation)
    _empty_dir(out, "node directory")
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, node),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
        ]
    )
    seal_key: ed25519.Ed25519PrivateKey | Sm2PrivateKey
    if sm:
        tls_key, tls_cert, seal_key, seal_cert = sm_pki.issue_sm_leaves(
            sm_fed, subject, san, (_serial(), _serial()), now
        )
        root = sm_fed.cert
        seal_pem = seal_key.to_pem()
    else:
        tls_key, tls_cert, ed_key, seal_cert = _default_leaves(root, root_key, subject, san, now)
        seal_key, seal_pem = ed_key, _pem_key(ed_key)
    if sm:  # one SM2 encryption key: partners seal to it with sm2-sm4gcm
        hpke_keys = [generate_hpke_key(HpkeSuite.SM2_SM4GCM)]
        key_files = ["enc-sm2.key"]
    else:
        hpke_keys = [
            generate_hpke_key(HpkeSuite.X25519),
            generate_hpke_key(HpkeSuite.MLKEM768_X25519),
        ]
        key_files = ["hpke-x25519.key", "hpke-mlkem768x25519.key"]
    write_private(out / "tls.key", _pem_key(tls_key))
    _write_public(out / "tls.pem", _pem(tls_cert))
    write_private(out / "seal.key", seal_pem)
    _write_public(out / "seal.pem", _pem(seal_cert))
    for filename, hpke_key in zip(key_files, hpke_keys, strict=True):
        write_private(out / filename, hpke_key.to_pem())
    _write_public(out / "root.pem", sm_fed.roots_pem if sm else _pem(root))
    _write_node_json(
        out,
        node,
        (name, name_en or name),
        endpoints or default_endpoints(host),
        (tls_cert, seal_cert),
        seal_key,
        tuple(k.public_key() for k in hpke_keys),
        now,
    )
    issued = state.setdefault("issued", [])
    if isinstance(issued, list):
        for purpose, cert in (("tls", tls_cert), ("seal", seal_cert)):
            issued.append(
                {
                    "node": node,
                    "purpose": purpose,
                    "serial": f"{cert.serial_number:x}",
                    "not_after": cert.not_valid_after_utc.isoformat(),
                }
            )
    _save_state(federation, state)
    return NodeFiles(
        directory=out,
        tls_cert=out / "tls.pem",
        seal_cert=out / "seal.pem",
        tls_serial=tls_cert.serial_number,
        seal_serial=seal_cert.serial_number,
    )


def _write_node_json(
    out: Path,
    node: str,
    names: tuple[str, str],
    endpoints: Mapping[str, str],
    certs: tuple[x509.Certificate, x509.Certificate],
    seal_key: ed25519.Ed25519PrivateKey | Sm2PrivateKey,
    hpke_public: tuple[HpkePublicKey, ...],
    now: datetime,
) -> None:
    """Sign the node descriptor with the new seal key and write ``node.json``."""
    tls_cert, seal_cert = certs
    descriptor = NodeDescriptor(
        node_id=node,
        name_zh=names[0],
        name_en=names[1],
        endpoints=endpoints,
        tls_chain=(tls_cert,),
        seal_chain=(seal_cert,),
        hpke_keys=hpke_public,
        issued_at=now,
    )
    signer = Signer(key=seal_key, chain=(seal_cert,))
    _write_public(out / "node.json", sign_descriptor(descriptor, signer, at=now))


def revoke(federation: Path, cert_pem: bytes, *, now: datetime) -> x509.CertificateRevocationList:
    """Add the certificate to the federation's CRL and re-issue ``crl.pem``."""
    if _profile(federation) == "sm":
        return _sm_reissue_crl(federation, cert_pem, now)
    root, root_key, state = _load_federation(federation)
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise PkiError("the certificate to revoke is not a PEM certificate") from exc
    try:
        if cert.issuer != root.subject:
            raise ValueError("issuer name differs")
        cert.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise PkiError("the certificate was not issued by this federation's root") from exc
    try:
        old = x509.load_pem_x509_crl((federation / "crl.pem").read_bytes())
    except (OSError, ValueError) as exc:
        raise PkiError(f"cannot read the CRL of {federation}: {exc}") from exc
    revoked = list(old)
    if old.get_revoked_certificate_by_serial_number(cert.serial_number) is None:
        revoked.append(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(now)
            .build()
        )
    return _reissue_crl(federation, root, root_key, state, revoked, now)


def renew_crl(federation: Path, *, now: datetime) -> x509.CertificateRevocationList:
    """Re-issue ``crl.pem`` with the same revoked certificates and a fresh nextUpdate
    (``now + CRL_VALIDITY``), before the old one goes stale and nodes refuse it."""
    if _profile(federation) == "sm":
        return _sm_reissue_crl(federation, None, now)
    root, root_key, state = _load_federation(federation)
    try:
        old = x509.load_pem_x509_crl((federation / "crl.pem").read_bytes())
    except (OSError, ValueError) as exc:
        raise PkiError(f"cannot read the CRL of {federation}: {exc}") from exc
    return _reissue_crl(federation, root, root_key, state, list(old), now)


def _reissue_crl(
    federation: Path,
    root: x509.Certificate,
    root_key: ec.EllipticCurvePrivateKey,
    state: dict[str, object],
    revoked: list[x509.RevokedCertificate],
    now: datetime,
) -> x509.CertificateRevocationList:
    number = int(str(state.get("crl_number", 1))) + 1
    crl = _build_crl(root, root_key, revoked, number, now)
    _replace_public(federation / "crl.pem", crl.public_bytes(serialization.Encoding.PEM))
    state["crl_number"] = number
    _save_state(federation, state)
    return crl


def issue_directory_key(federation: Path, out: Path, *, now: datetime) -> x509.Certificate:
    """Create the federation's directory-signing key and certificate in ``out`` (a new
    folder, so the root key can stay offline while the directory is re-signed). In the
    SM profile the key is SM2 and the SM2 root certifies it SM2-with-SM3."""
    sm = _profile(federation) == "sm"
    if sm:
        sm_fed, state = _load_sm(federation)
        root = sm_fed.cert
    else:
        root, root_key, state = _load_federation(federation)
    _empty_dir(out, "directory key folder")
    name = str(state.get("name") or root.subject.rfc4514_string())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{name} Directory"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tongban federation"),
        ]
    )
    if sm:
        from certs import sm_pki

        sm2_key = Sm2PrivateKey.generate()
        cert = sm_pki.issue_directory_leaf(sm_fed, subject, sm2_key, _serial(), now)
        key_pem = sm2_key.to_pem()
    else:
        key = ed25519.Ed25519PrivateKey.generate()
        cert = (
            _leaf_builder(root, root_key, subject, key.public_key(), now)
            .add_extension(_key_usage(signature=True, commitment=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([DIRECTORY_SIGNING]), critical=False)
            .sign(root_key, hashes.SHA256())
        )
        key_pem = _pem_key(key)
    write_private(out / "directory.key", key_pem)
    _write_public(out / "directory.pem", _pem(cert))
    issued = state.setdefault("issued", [])
    if isinstance(issued, list):
        issued.append(
            {
                "node": "",
                "purpose": "directory",
                "serial": f"{cert.serial_number:x}",
                "not_after": cert.not_valid_after_utc.isoformat(),
            }
        )
    _save_state(federation, state)
    return cert


def _sm_reissue_crl(
    federation: Path, cert_pem: bytes | None, now: datetime
) -> x509.CertificateRevocationList:
    """:func:`revoke` (``cert_pem`` given) or :func:`renew_crl` for an SM federation:
    both CRLs (the SM2 root's and the transport root's) are re-issued with the next
    number; the certificate goes onto the CRL of the root that issued it. Returns the
    CRL that changed (the SM2 root's when renewing)."""
    from certs import sm_pki

    fed, state = _load_sm(federation)
    try:
        revoked = sm_pki.sm_revoked(fed, (federation / "crl.pem").read_bytes())
    except (OSError, ValueError, MalformedInput) as exc:
        raise PkiError(f"cannot read the CRL of {federation}: {exc}") from exc
    which = "sm2"
    if cert_pem is not None:
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError as exc:
            raise PkiError("the certificate to revoke is not a PEM certificate") from exc
        issuer = sm_pki.issued_by(fed, cert)
        if issuer is None:
            raise PkiError("the certificate was not issued by this federation's root")
        which = issuer
        if all(serial != cert.serial_number for serial, _ in revoked[which]):
            revoked[which].append((cert.serial_number, now))
    number = int(str(state.get("crl_number", 1))) + 1
    pem = sm_pki.crl_pem(fed, revoked, number, now)
    _replace_public(federation / "crl.pem", pem)
    state["crl_number"] = number
    _save_state(federation, state)
    crls = [x509.load_pem_x509_crl(b) for b in sm_pki.crl_blocks(pem)]
    return crls[0] if which == "sm2" else crls[1]
