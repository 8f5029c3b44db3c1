"""Renewing a node's TLS certificate, by the development CA or by an outside CA.

Three steps, each its own command, so an office can use a CA it already has:

1. ``tongban pki csr`` (:func:`make_csr`): a new P-256 key is created as
   ``tls.key.next`` (0600, never overwritten) and a CSR for it names the same subject and
   subjectAltName as the current ``tls.pem``;
2. the CA signs: ``tongban pki sign-csr`` for the development CA (:func:`sign_csr`), or an
   outside CA (tested with ``openssl ca``, possibly through intermediates) that issues
   a leaf with keyUsage digitalSignature and extKeyUsage serverAuth + clientAuth;
3. ``tongban pki install`` (:func:`install_certificate`): the returned file (leaf first,
   then any intermediates) must match ``tls.key.next``, name this node, and validate for
   TLS under the trust bundle now; then ``tls.pem`` (with the intermediates, sent in the
   TLS chain) and ``tls.key`` are replaced (the old pair kept as ``*.old``), and
   ``node.json`` is re-signed with the new TLS chain. A reload (SIGHUP or
   ``POST /staff/v1/reload``) puts the new certificate on the listeners without a
   restart; the old one stays valid until it expires or is revoked, so partners with
   open connections are not cut (overlap).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs._io import write_private
from certs.pki import BACKDATE, LEAF_VALIDITY, PkiError, _save_state, tls_issuer
from signing.certificates import Purpose, TrustBundle, is_node_id, validate_path
from signing.descriptor import NodeDescriptor, sign_descriptor
from signing.encoding import b64url_decode
from signing.errors import CertificateRejected, MalformedInput
from signing.keys import Signer
from signing.nodedir import load_node_keys

__all__ = ["NEXT_KEY", "install_certificate", "make_csr", "sign_csr"]

NEXT_KEY = "tls.key.next"


def _current(node_dir: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate((node_dir / "tls.pem").read_bytes())
    except (OSError, ValueError) as exc:
        raise PkiError(f"{node_dir} holds no readable tls.pem: {exc}") from None


def make_csr(node_dir: Path) -> bytes:
    """Create ``tls.key.next`` and return a PEM CSR for it (see the module docstring)."""
    current = _current(node_dir)
    if (node_dir / NEXT_KEY).exists():
        raise PkiError(
            f"{node_dir / NEXT_KEY} exists: a renewal is pending; install its certificate "
            "or delete the file first"
        )
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(current.subject)
    try:
        san = current.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        builder = builder.add_extension(san.value, critical=False)
    except x509.ExtensionNotFound:
        pass
    csr = builder.sign(key, hashes.SHA256())
    write_private(
        node_dir / NEXT_KEY,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def sign_csr(federation: Path, csr_pem: bytes, *, now: datetime) -> x509.Certificate:
    """The development CA issues a TLS leaf for a node's CSR (in the SM profile: the
    federation's transport root)."""
    root, root_key, state = tls_issuer(federation)
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise PkiError("the CSR is not a PEM certificate request") from None
    if not csr.is_signature_valid:
        raise PkiError("the CSR's signature does not verify")
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cns) != 1 or not is_node_id(str(cns[0].value)):
        raise PkiError("the CSR's subject CN is not a node id")
    public = csr.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise PkiError("a TLS key must be ECDSA P-256")
    builder = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(root.subject)
        .public_key(public)
        .serial_number(secrets.randbits(127) | 1)
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + LEAF_VALIDITY, root.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        builder = builder.add_extension(san.value, critical=False)
    except x509.ExtensionNotFound:
        pass
    cert = builder.sign(root_key, hashes.SHA256())
    issued = state.setdefault("issued", [])
    if isinstance(issued, list):
        issued.append(
            {
                "node": str(cns[0].value),
                "purpose": "tls",
                "serial": f"{cert.serial_number:x}",
                "not_after": cert.not_valid_after_utc.isoformat(),
            }
        )
    _save_state(federation, state)
    return cert


def _replace(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def install_certificate(
    node_dir: Path, chain_pem: bytes, bundle: TrustBundle, *, now: datetime
) -> x509.Certificate:
    """Install a signed certificate for ``tls.key.next`` (see the module docstring)."""
    next_key = node_dir / NEXT_KEY
    try:
        key = serialization.load_pem_private_key(next_key.read_bytes(), password=None)
    except FileNotFoundError:
        raise PkiError(f"{next_key} does not exist: run `tongban pki csr` first") from None
    except (OSError, ValueError) as exc:
        raise PkiError(f"cannot read {next_key}: {exc}") from None
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError:
        raise PkiError("the certificate file holds no PEM certificate") from None
    leaf = chain[0]
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(
        serialization.Encoding.DER, spki
    ) != key.public_key().public_bytes(serialization.Encoding.DER, spki):
        raise PkiError(f"the certificate is not for the key in {next_key}")
    node_id = str(_current(node_dir).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
    try:
        validate_path(chain, bundle, purpose=Purpose.TLS_PEER, at=now, node_id=node_id)
    except CertificateRejected as exc:
        raise PkiError(f"the certificate is not accepted for node {node_id}: {exc}") from None
    keys = load_node_keys(node_dir)
    try:  # the node's own file, read as it is (its old TLS certificate may have expired)
        token = json.loads(keys.descriptor_bytes)["descriptor"]
        descriptor = NodeDescriptor.from_json(json.loads(b64url_decode(token.split(".")[1])))
    except (ValueError, KeyError, IndexError, TypeError, MalformedInput) as exc:
        raise PkiError(f"{node_dir}/node.json cannot be read: {exc}") from None
    renewed = replace(descriptor, tls_chain=tuple(chain), issued_at=now)
    try:
        node_json = sign_descriptor(renewed, Signer(keys.seal.key, keys.seal.chain), at=now)
    except (ValueError, MalformedInput) as exc:
        raise PkiError(f"cannot re-sign node.json: {exc}") from None
    for name in ("tls.pem", "tls.key"):
        old = (node_dir / name).read_bytes()
        _replace(node_dir / f"{name}.old", old, 0o600 if name.endswith(".key") else 0o644)
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    _replace(node_dir / "tls.pem", pem, 0o644)
    os.replace(next_key, node_dir / "tls.key")
    _replace(node_dir / "node.json", node_json, 0o644)
    return leaf
