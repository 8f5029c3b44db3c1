"""Loading a node directory written by ``tongban pki issue-node``.

Layout: ``seal.key`` + ``seal.pem`` (the seal signer), ``tls.key`` + ``tls.pem`` (used by
the TLS stack, so only their paths are kept), ``hpke-*.key`` (every HPKE private key,
old and new during a rotation, in the order ``node.json`` lists them: current first;
see :mod:`certs.hpke_rotation`) and ``node.json`` (the signed descriptor, kept as bytes
for publishing). Nothing is verified here: a node trusts its
own directory; partners verify ``node.json`` with :func:`signing.descriptor.verify_descriptor`.
"""

from __future__ import annotations

import json
import logging
import stat
from dataclasses import dataclass
from pathlib import Path

from signing.encoding import b64url_decode
from signing.errors import MalformedInput
from signing.hpke import HpkePrivateKey
from signing.keys import Signer

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
    _read(tls_cert)
    _read(tls_key, private=True)
    hpke = tuple(
        HpkePrivateKey.from_pem(_read(p, private=True))
        for p in sorted(directory.glob("hpke-*.key"))
    )
    if not hpke:
        raise MalformedInput(f"node directory {directory} holds no hpke-*.key")
    descriptor = _read(directory / "node.json")
    return NodeKeys(
        directory=directory,
        seal=seal,
        tls_cert_path=tls_cert,
        tls_key_path=tls_key,
        hpke_keys=_in_descriptor_order(hpke, descriptor),
        descriptor_bytes=descriptor,
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
