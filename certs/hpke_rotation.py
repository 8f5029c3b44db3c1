"""HPKE key rotation of a node directory, with an overlap (``tongban pki rotate-hpke``,
``tongban pki retire-hpke``).

A rotation, at instant ``at``, for every HPKE suite the node's descriptor lists:

1. a new private key is written as ``hpke-<suite>-<YYYYMMDDhhmmss>.key`` (mode 0600;
   ``enc-sm2-<YYYYMMDDhhmmss>.key`` for an SM node's ``sm2-sm4gcm`` key);
2. ``node.json`` is signed again (seal key, ``issued_at = at``) listing the new keys
   first, then the keys it listed before: senders seal to the first key of the
   strongest suite (docs/protocol.md §6), so new packets go to the new keys;
3. the old keys' retirement instant (``at + overlap``) is recorded in
   ``hpke-retire.json`` (``{"<kid>": "<ISO 8601>"}``).

Until retirement the node holds both private keys (:func:`signing.nodedir.load_node_keys`
loads every ``hpke-*.key``, current first), so packets sealed to the old key, queued at
partners while the rotation spreads, are still opened. :func:`retire_due` (run after
the overlap) drops the keys whose instant has passed from ``node.json`` and deletes
their private files; a packet sealed to a retired key is refused (``malformed``: no key opens it).

The overlap must cover the time partners need to take the new descriptor (the
province re-publishes its directory; partners refresh every minute) plus the longest
time a packet may wait in a partner's outbox (its time to live, 7 days by default).
The node takes new keys at its next start (keys are read when the core is built).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from certs._io import replace_public, write_private
from signing.descriptor import NodeDescriptor, sign_descriptor
from signing.encoding import b64url_decode
from signing.errors import MalformedInput
from signing.hpke import HpkePrivateKey, HpkeSuite, generate_hpke_key
from signing.nodedir import load_node_keys

__all__ = ["RETIRE_FILE", "read_descriptor", "retire_due", "rotate_hpke"]

RETIRE_FILE = "hpke-retire.json"


def read_descriptor(node_dir: Path) -> NodeDescriptor:
    """The node's own descriptor from ``node.json`` (not verified: the node trusts its
    own folder; partners verify)."""
    try:
        token = json.loads((node_dir / "node.json").read_bytes())["descriptor"]
        payload = json.loads(b64url_decode(token.split(".")[1]))
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise MalformedInput(f"{node_dir / 'node.json'}: not a node descriptor: {exc}") from None
    return NodeDescriptor.from_json(payload)


def _schedule(node_dir: Path) -> dict[str, str]:
    path = node_dir / RETIRE_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_bytes())
    except ValueError as exc:
        raise MalformedInput(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise MalformedInput(f'{path}: must be {{"<kid>": "<ISO 8601 instant>"}}')
    return dict(data)


def _write_schedule(node_dir: Path, schedule: dict[str, str]) -> None:
    replace_public(node_dir / RETIRE_FILE, json.dumps(schedule, indent=2).encode() + b"\n")


def _sign(node_dir: Path, descriptor: NodeDescriptor, at: datetime) -> None:
    keys = load_node_keys(node_dir)
    replace_public(node_dir / "node.json", sign_descriptor(descriptor, keys.seal, at=at))


def rotate_hpke(node_dir: Path, *, at: datetime, overlap: timedelta) -> tuple[str, ...]:
    """Rotate (see the module docstring); returns the new kids."""
    if overlap <= timedelta(0):
        raise MalformedInput("the overlap must be positive")
    node_dir = Path(node_dir)
    descriptor = read_descriptor(node_dir)
    schedule = _schedule(node_dir)
    suites: list[HpkeSuite] = []
    for key in descriptor.hpke_keys:
        if key.suite not in suites:
            suites.append(key.suite)
    stamp = at.strftime("%Y%m%d%H%M%S")
    fresh: list[HpkePrivateKey] = []
    for suite in suites:
        prefix = "enc-sm2" if suite is HpkeSuite.SM2_SM4GCM else f"hpke-{suite.value.split('-')[0]}"
        path = node_dir / f"{prefix}-{stamp}.key"
        if path.exists():
            raise MalformedInput(f"{path} exists already (one rotation per second)")
        private = generate_hpke_key(suite)
        write_private(path, private.to_pem())
        fresh.append(private)
    new_public = tuple(k.public_key() for k in fresh)
    retire = (at + overlap).isoformat()
    for old in descriptor.hpke_keys:
        schedule.setdefault(old.kid, retire)
    _write_schedule(node_dir, schedule)
    _sign(
        node_dir, replace(descriptor, hpke_keys=new_public + descriptor.hpke_keys, issued_at=at), at
    )
    return tuple(k.kid for k in new_public)


def retire_due(node_dir: Path, *, at: datetime) -> tuple[str, ...]:
    """Drop the keys whose retirement instant is at or before ``at`` from ``node.json``
    and delete their private key files; returns their kids."""
    node_dir = Path(node_dir)
    descriptor = read_descriptor(node_dir)  # first: a folder that is no node's says so
    schedule = _schedule(node_dir)
    due = {kid for kid, when in schedule.items() if datetime.fromisoformat(when) <= at}
    if not due:
        return ()
    kept = tuple(k for k in descriptor.hpke_keys if k.kid not in due)
    if not kept:
        raise MalformedInput("retiring these keys would leave the descriptor without a key")
    _sign(node_dir, replace(descriptor, hpke_keys=kept, issued_at=at), at)
    for path in sorted(node_dir.glob("hpke-*.key")) + sorted(node_dir.glob("enc-sm2*.key")):
        if HpkePrivateKey.from_pem(path.read_bytes()).public_key().kid in due:
            os.unlink(path)
    _write_schedule(node_dir, {k: v for k, v in schedule.items() if k not in due})
    return tuple(sorted(due))
