"""Loading a node directory written by ``tongban pki issue-node``.

Layout: ``seal.key`` + ``seal.pem`` (the seal signer), ``tls.key`` + ``tls.pem`` (used by
the TLS stack, so only their paths are kept), ``hpke-*.key`` (every HPKE private key,
old and new during a rotation, in the order ``node.json`` lists them: current first;
see :mod:`certs.hpke_rotation`) or, in the SM profile, ``enc-sm2.key`` (the SM2
encryption key of the ``sm2-sm4gcm`` suite; ``enc-sm2-<stamp>.key`` after a
rotation), and ``node.json`` (the signed descriptor, kept as bytes for publishing).
Partners verify ``node.json`` with :func:`signing.descriptor.verify_descriptor`; a node
trusts its own directory, with one check: the TLS certificate and the seal certificate
name the same node id (in the SM profile they come from two roots, the transport root
and the SM2 root).
"""

from __future__ import annotations

import json
import logging
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from signing.encoding import b64url_decode
from signing.errors import MalformedInput
from signing.hpke import HpkePrivateKey
from signing.keys import Signer, load_pem_chain

__all__ = ["NodeKeys", "load_node_keys"]

_log = logging.getLogger("tongban.signing")


@dataclass(frozen=True)
class NodeKeys:
    """Everything a node needs from its directory to sign, open and serve TLS."""

    directory: Path
    seal: Signer
    tls_cert_path: Path
    tls_key_path: Path
    hpke_keys: tuple[HpkePrivateKey, ...]
    descriptor_bytes: bytes


def _read(path: Path, private: bool = False) -> bytes:
    try:
        data = path.read_bytes()
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise MalformedInput(f"node directory lacks {path.name} ({path})") from None
    except OSError as exc:
        raise MalformedInput(f"cannot read {path}: {exc.strerror}") from None
    if private and mode & 0o077:
        _log.warning("private key %s is readable by group or others (mode %o)", path, mode)
    return data


def load_node_keys(directory: Path) -> NodeKeys:
    """Load the node directory; raises :class:`MalformedInput` naming what is wrong."""
    directory = Path(directory)
    seal = Signer.from_pem(
        _read(directory / "seal.key", private=True), _read(directory / "seal.pem")
    )
    tls_cert, tls_key = directory / "tls.pem", directory / "tls.key"
    _same_node(load_pem_chain(_read(tls_cert))[0], seal.leaf, directory)
    _read(tls_key, private=True)
    files = sorted(directory.glob("hpke-*.key")) + sorted(directory.glob("enc-sm2*.key"))
    hpke = tuple(HpkePrivateKey.from_pem(_read(p, private=True)) for p in files)
    if not hpke:
        raise MalformedInput(f"node directory {directory} holds no hpke-*.key or enc-sm2.key")
    descriptor = _read(directory / "node.json")
    return NodeKeys(
        directory=directory,
        seal=seal,
        tls_cert_path=tls_cert,
        tls_key_path=tls_key,
        hpke_keys=_in_descriptor_order(hpke, descriptor),
        descriptor_bytes=descriptor,
    )


def _same_node(tls: x509.Certificate, seal: x509.Certificate, directory: Path) -> None:
    """The TLS identity and the seal identity are one node: equal subject CNs."""
    names = [
        [str(a.value) for a in c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        for c in (tls, seal)
    ]
    if names[0] != names[1] or len(names[0]) != 1:
        raise MalformedInput(
            f"{directory}: tls.pem names {names[0]} but seal.pem names {names[1]}; "
            "both must name this node's id"
        )


def _in_descriptor_order(
    keys: tuple[HpkePrivateKey, ...], descriptor: bytes
) -> tuple[HpkePrivateKey, ...]:
    """``keys`` in the order ``node.json`` lists them (current first, after a rotation);
    keys it no longer lists (kept to open packets sealed to them) last."""
    try:
        token = json.loads(descriptor)["descriptor"]
        listed = [k["kid"] for k in json.loads(b64url_decode(token.split(".")[1]))["hpke_keys"]]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return keys  # partners will refuse such a node.json; the node still opens
    rank = {kid: i for i, kid in enumerate(listed)}
    return tuple(sorted(keys, key=lambda k: rank.get(k.public_key().kid, len(rank))))
