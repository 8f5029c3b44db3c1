"""Shared helpers of the relay core tests (a uniquely named module: the test
directories share one import namespace, so nothing is imported from ``conftest``): a
generated development PKI, nodes on real SQLite files or real PostgreSQL schemas, a
fake clock, a fake agreement, the FakeNetwork, hand-built packets and small async
helpers."""

from __future__ import annotations

import hashlib
import random
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from certs.pki import init_federation, issue_node
from relay.audit.checkpoint import log_tree_hash
from relay.core.directory import Directory
from relay.core.fakes import FakeNetwork
from relay.core.fields import format_time
from relay.core.outbox import OutboxPolicy
from relay.core.packets import AttachmentKey, build_packet
from relay.core.ports import AgreementRef, AuthorizationDecision, AuthorizationRequest
from relay.core.service import RelayNode
from relay.core.sqlite_store import SqliteStore, SqlStore
from signing.certificates import TrustBundle
from signing.nodedir import NodeKeys, load_node_keys

WUCHANG, DAFENG, NINGJIN, OUTSIDER = "420106", "320982", "371422", "420981"
START = datetime(2026, 11, 28, 1, 0, 0, tzinfo=UTC)
AGREEMENT = AgreementRef("agr-hubei-jiangsu-shandong", 3, "a" * 64)
MATTER, ACTION, MODE = "food-business-licence", "submit", "proxy_receipt"


@dataclass(frozen=True)
class Pki:
    bundle: TrustBundle
    keys: dict[str, NodeKeys]
    descriptors: dict[str, bytes]  # node.json of every node
    rogue_keys: NodeKeys  # a node certificate from a root nobody trusts
    federation_dir: Path  # root.pem, root.key, crl.pem of the trusted federation

    def current_bundle(self) -> TrustBundle:
        """The bundle with the federation's crl.pem as it is on disk now."""
        fed = self.federation_dir
        return TrustBundle.from_pem(
            (fed / "root.pem").read_bytes() + (fed / "crl.pem").read_bytes()
        )


def make_pki(base: Path) -> Pki:
    """A federation with four nodes (three parties and an outsider) and a rogue one."""
    then = START - timedelta(days=1)
    fed = base / "federation"
    init_federation(fed, "Test", now=then)
    keys = {}
    for node in (WUCHANG, DAFENG, NINGJIN, OUTSIDER):
        issue_node(
            fed, node, f"office {node}", "127.0.0.1", base / node, now=START - timedelta(days=1)
        )
        keys[node] = load_node_keys(base / node)
    rogue_fed = base / "rogue"
    init_federation(rogue_fed, "Rogue", now=then)
    issue_node(
        rogue_fed,
        DAFENG,
        "fake dafeng",
        "127.0.0.1",
        base / "rogue-node",
        now=START - timedelta(days=1),
    )
    bundle = TrustBundle.from_pem((fed / "root.pem").read_bytes() + (fed / "crl.pem").read_bytes())
    descriptors = {node: k.descriptor_bytes for node, k in keys.items()}
    return Pki(bundle, keys, descriptors, load_node_keys(base / "rogue-node"), fed)


def mixed_pki(base: Path, *, more_sm: tuple[str, ...] = ()) -> Pki:
    """Hubei in the default profile (WUCHANG) and Jiangsu in the SM profile (DAFENG, and
    the nodes ``more_sm``), each its own federation, one trust bundle; the rogue slot
    holds Wuchang's keys."""
    then = START - timedelta(days=1)
    init_federation(base / "hubei", "Hubei", now=then)
    init_federation(base / "jiangsu", "Jiangsu", now=then, profile="sm")
    issue_node(base / "hubei", WUCHANG, "武昌区政务服务中心", "127.0.0.1", base / WUCHANG, now=then)
    issue_node(base / "jiangsu", DAFENG, "大丰区行政审批局", "127.0.0.1", base / DAFENG, now=then)
    for node in more_sm:
        issue_node(base / "jiangsu", node, f"office {node}", "127.0.0.1", base / node, now=then)
    bundle = TrustBundle.from_pem(
        b"".join(
            (base / fed / name).read_bytes()
            for fed in ("hubei", "jiangsu")
            for name in ("root.pem", "crl.pem")
        )
    )
    keys = {node: load_node_keys(base / node) for node in (WUCHANG, DAFENG, *more_sm)}
    descriptors = {node: k.descriptor_bytes for node, k in keys.items()}
    return Pki(bundle, keys, descriptors, keys[WUCHANG], base / "jiangsu")


class FakeClock:
    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@dataclass
class FakeAgreement:
    """Grants (sender, receiver, matter, action) under AGREEMENT to parties only."""

    parties: set[str] = field(default_factory=lambda: {WUCHANG, DAFENG, NINGJIN})
    denied_actions: set[str] = field(default_factory=set)
    calls: list[AuthorizationRequest] = field(default_factory=list)

    def __call__(self, request: AuthorizationRequest, at: datetime) -> AuthorizationDecision:
        self.calls.append(request)
        if request.agreement is not None and request.agreement != AGREEMENT:
            return AuthorizationDecision(False, "unknown-agreement")
        if request.sender not in self.parties or request.receiver not in self.parties:
            return AuthorizationDecision(False, "not-a-party")
        if request.matter != MATTER:
            return AuthorizationDecision(False, "matter-not-granted")
        if request.action in self.denied_actions:
            return AuthorizationDecision(False, "action-not-granted")
        return AuthorizationDecision(True, None, AGREEMENT)


@dataclass
class Federation:
    """Nodes on one FakeNetwork sharing a clock and an agreement."""

    pki: Pki
    root: Path
    clock: FakeClock
    agreement: FakeAgreement
    network: FakeNetwork
    policy: OutboxPolicy
    nodes: dict[str, RelayNode] = field(default_factory=dict)
    stores: dict[str, SqlStore] = field(default_factory=dict)
    open_store: Callable[[str], SqlStore] | None = None
    """Opens a node's store (again, after a restart); None: SQLite under ``root``."""

    def directory(self, *, without: str | None = None) -> Directory:
        d = Directory(self.pki.bundle)
        d.add_all((v for k, v in self.pki.descriptors.items() if k != without), at=self.clock())
        return d

    def start(
        self,
        node_id: str,
        *,
        keys: NodeKeys | None = None,
        directory: Directory | None = None,
        bundle: Callable[[], TrustBundle] | None = None,
        crypto_helper: bool = False,
    ) -> RelayNode:
        """(Re)start a node on its store (closing a previous instance); with
        ``crypto_helper`` it examines and seals packets in a helper process (stop it with
        ``await node.aclose()``)."""
        if node_id in self.stores:
            self.stores[node_id].close()
        keys = keys or self.pki.keys[node_id]
        # the log hashes as the node's seal says (SM3 for an SM2 seal), as tongban serve does
        store = (
            SqliteStore(self.root / node_id, tree_hash=log_tree_hash(keys.seal))
            if self.open_store is None
            else self.open_store(node_id)
        )
        node = RelayNode(
            node_id=node_id,
            keys=keys,
            bundle=bundle or self.pki.bundle,
            directory=directory or self.directory(),
            authorizer=self.agreement,
            store=store,
            link=self.network.link(node_id),
            clock=self.clock,
            rng=random.Random(hash(node_id) & 0xFFFF),
            policy=self.policy,
            crypto_helper=crypto_helper,
            seal_inline_up_to=0,  # with a helper, every seal goes there (tests count them)
        )
        self.stores[node_id] = store
        self.nodes[node_id] = node
        self.network.attach(node)
        return node

    def close(self) -> None:
        for store in self.stores.values():
            store.close()


SendPacket = Callable[..., object]


async def send(fed: Federation, sender: str, to: str, case: str, n: int = 1) -> list[str]:
    ids = []
    for i in range(n):
        summary = await fed.nodes[sender].create_packet(
            to=to,
            case_id=case,
            matter=MATTER,
            action=ACTION,
            mode=MODE,
            content={"step": i, "applicant": "张三"},
        )
        ids.append(summary.packet_id)
    return ids


async def drain(fed: Federation, *senders: str, max_passes: int = 500) -> None:
    """Run outbox passes (advancing the fake clock past every backoff) until idle."""
    for _ in range(max_passes):
        if not any(fed.stores[s].open_rows() for s in senders):
            return
        for s in senders:
            await fed.nodes[s].deliver_once()
        fed.clock.advance(seconds=fed.policy.max_delay.total_seconds())
    raise AssertionError("outbox did not drain")


def pg_schema_url(database: str, name: str) -> str:
    """A URL of ``database`` whose tables live in the (new) schema ``name``."""
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{name}"'.encode())
    return f"{database}?options=-csearch_path%3D{name}"


async def chunks_of(data: bytes, size: int = 65_536) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def stage(node: RelayNode, data: bytes, name: str = "营业执照.pdf") -> str:
    """Stage ``data`` at ``node`` as a staff upload in one call; its plaintext digest."""
    digest = hashlib.sha256(data).hexdigest()
    info = await node.write_attachment(
        digest, len(data), 0, chunks_of(data), media_type="application/pdf", name=name
    )
    assert info is not None
    return digest


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in stream])


def undo_outbox_bodies(conn: Any) -> None:
    """Undo step 3 of the ``relay`` schema in place, on either backend (for tests of
    databases written before it): the packets' bodies back in ``outbox`` columns
    (added at the end of the row), ``outbox_bodies`` dropped. The caller sets the
    component's version."""
    for column in ("token", "own_copy"):
        conn.execute(f"ALTER TABLE outbox ADD COLUMN {column} TEXT NOT NULL DEFAULT ''")
        conn.execute(
            f"UPDATE outbox SET {column} = (SELECT b.{column} FROM outbox_bodies b"
            " WHERE b.ord = outbox.ord)"
        )
    conn.execute("DROP TABLE outbox_bodies")


def inbox_ids(fed: Federation, node: str) -> list[str]:
    return [i.summary.packet_id for i in fed.nodes[node].list_inbox()]


def audit_size(fed: Federation, node: str) -> int:
    row: Any = fed.stores[node].connection.execute("SELECT COUNT(*) FROM audit_leaves").fetchone()
    return int(row[0])


def facts(
    fed: Federation, sender: str, to: str, *, seq: int = 1, prev: str | None = None, **over: Any
) -> dict[str, Any]:
    at = fed.clock()
    obj: dict[str, Any] = {
        "v": 1,
        "id": str(uuid.uuid4()),
        "case": "case-forged",
        "from": sender,
        "to": to,
        "matter": MATTER,
        "action": ACTION,
        "mode": MODE,
        "agreement": {"id": AGREEMENT.id, "version": AGREEMENT.version, "digest": AGREEMENT.digest},
        "seq": seq,
        "prev": prev,
        "created": format_time(at),
        "expires": format_time(at + timedelta(days=1)),
        "attachments": [],
    }
    obj.update(over)
    return obj


def forge(
    fed: Federation,
    signer: NodeKeys,
    to: str,
    obj: dict[str, Any],
    *,
    body: dict[str, Any] | None = None,
    keys: list[AttachmentKey] | None = None,
) -> str:
    recipient = fed.pki.keys[to].hpke_keys[0].public_key()
    token, _, _ = build_packet(
        obj, body or {"forged": True}, keys or [], signer=signer.seal, recipient=recipient,
        at=fed.clock(),
    )  # fmt: skip
    return token


def heads(fed: Federation) -> tuple[set[tuple[str, str, int]], set[tuple[str, str, int]]]:
    """(the outbox_heads rows, the heads the outbox implies: per destination and case
    its open packet of the lowest seq)."""
    conn = sqlite3.connect(fed.root / WUCHANG / "relay.sqlite3")
    try:
        kept = set(conn.execute("SELECT peer, case_id, ord FROM outbox_heads"))
        implied = set(
            conn.execute(
                "SELECT peer, case_id, ord FROM outbox o WHERE state IN ('queued', 'in_flight')"
                " AND seq = (SELECT MIN(seq) FROM outbox p WHERE p.peer = o.peer"
                " AND p.case_id = o.case_id AND p.state IN ('queued', 'in_flight'))"
            )
        )
        return kept, implied
    finally:
        conn.close()
