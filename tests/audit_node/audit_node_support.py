"""Real nodes with the audit log mounted, on 127.0.0.1 over mutual TLS (test helpers).

Nodes are in-process :class:`relay.node.Node` objects with an
:class:`relay.http.audit_node.AuditNode` extension, as ``tongban serve`` runs them. Witness
rounds are run by the tests (intervals are set to an hour) so every step is awaited.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from certs.pki import init_federation, issue_node
from relay.audit.store import append_many
from relay.config import NodeConfig, load_config
from relay.http.audit_node import AuditNode
from relay.node import Node
from relay.staff_auth import StaffRole, issue_token, load_or_create_token_key
from relay.staff_client import StaffClient
from relay.tls import client_context
from signing.certificates import TrustBundle

NOW = datetime.now(UTC).replace(microsecond=0)
IDS = ("420106", "320982", "371422")
NAMES = {"420106": "武昌区", "320982": "大丰区", "371422": "宁津县"}


@dataclass(frozen=True)
class Pki:
    bundle_path: Path
    dirs: dict[str, Path]

    @property
    def bundle(self) -> TrustBundle:
        return TrustBundle.from_pem(self.bundle_path.read_bytes())


def make_pki(base: Path) -> Pki:
    init_federation(base / "fed", "Audit", now=NOW)
    dirs = {}
    for node_id in IDS:
        issued = issue_node(
            base / "fed", node_id, NAMES[node_id], "127.0.0.1", base / node_id, now=NOW
        )
        dirs[node_id] = issued.directory
    bundle = base / "bundle.pem"
    bundle.write_bytes(
        (base / "fed" / "root.pem").read_bytes() + (base / "fed" / "crl.pem").read_bytes()
    )
    return Pki(bundle, dirs)


def free_ports(count: int) -> list[int]:
    from relay.loopback import free_ports as pick

    return pick(count)


def write_agreement(path: Path, signers: dict[str, Path]) -> Path:
    from agreements.catalog import default_catalog
    from agreements.draft import draft_from_template, reciprocal_template
    from agreements.signatures import sign_agreement
    from agreements.signed import SignedAgreement
    from signing.nodedir import load_node_keys

    template = reciprocal_template(
        list(signers),
        agreement_id="audit-node-test-2026",
        # the nodes run on the wall clock: valid from a year before now for three years
        valid_from=(datetime.now(UTC) - timedelta(days=365)).isoformat(),
        valid_until=(datetime.now(UTC) + timedelta(days=3 * 365)).isoformat(),
        title_zh="审计测试协议",
        title_en="Audit test agreement",
    )
    agreement = draft_from_template(template, default_catalog())
    signed = SignedAgreement(agreement)
    for node_dir in signers.values():
        seal = load_node_keys(node_dir).seal
        signed = signed.with_signature(sign_agreement(agreement, seal, at=NOW))
    path.write_bytes(signed.to_bytes())
    return path


@dataclass
class RunningNode:
    """One node: its configuration file, and (while running) the Node and AuditNode."""

    node_id: str
    config_path: Path
    node: Node | None = None
    audit: AuditNode | None = None

    @property
    def config(self) -> NodeConfig:
        return load_config(self.config_path)

    @property
    def db(self) -> Path:
        return self.config.data_dir / "relay.sqlite3"

    @property
    def live(self) -> AuditNode:
        assert self.audit is not None, f"node {self.node_id} is not running"
        return self.audit

    async def start(self) -> None:
        config = self.config
        self.audit = AuditNode(config)
        self.node = Node(config, extensions=[self.audit.extension], shutdown_timeout=5)
        await self.node.start()

    async def stop(self) -> None:
        if self.node is not None:
            await self.node.stop()
        self.node, self.audit = None, None

    def token(self, role: StaffRole = StaffRole.CLERK) -> str:
        key = load_or_create_token_key(self.config.staff.token_key)
        return issue_token(
            key, node_id=self.node_id, subject="test", roles=[role], now=NOW, ttl=3600
        )

    def staff(self, role: StaffRole = StaffRole.CLERK) -> StaffClient:
        return StaffClient.for_config(self.config, self.token(role))

    async def staff_request(self, pki: Pki, method: str, path: str) -> tuple[int, Any]:
        assert self.node is not None
        url = self.node.urls["staff"] + path
        headers = {"Authorization": f"Bearer {self.token()}"}
        async with (
            aiohttp.ClientSession(headers=headers) as session,
            session.request(method, url, ssl=client_context(pki.bundle)) as resp,
        ):
            return resp.status, await resp.json(content_type=None)

    async def send(self, to: str, case_id: str) -> str:
        """Send a packet to ``to`` and wait until the outbox settled it (delivered)."""
        request = {
            "to": to,
            "case_id": case_id,
            "matter": "food-business-licence",
            "action": "submit",
            "mode": "proxy_receipt",
            "content": {"note": f"{self.node_id} to {to}"},
        }
        client = self.staff()
        sent = await client.send(request, [])
        async with asyncio.timeout(30):
            while True:
                for item in (await client.get("/staff/v1/outbox"))["items"]:
                    if item["packet"]["packet_id"] == sent["packet_id"] and item["state"] not in (
                        "queued",
                        "in_flight",
                    ):
                        assert item["state"] == "delivered", item
                        return str(sent["packet_id"])
                await asyncio.sleep(0.05)  # the outbox runs on its own task


@dataclass
class Federation:
    pki: Pki
    nodes: dict[str, RunningNode] = field(default_factory=dict)

    def __getitem__(self, node_id: str) -> RunningNode:
        return self.nodes[node_id]


def base_leaves(federation: Federation | dict[str, RunningNode]) -> int:
    """Leaves each node logs at start before any traffic: one ``agreement-event`` per
    party signature of the shared agreement (every node of the federation signs it)."""
    nodes = federation.nodes if isinstance(federation, Federation) else federation
    return len(nodes)


def write_configs(
    pki: Pki, base: Path, ids: tuple[str, ...], *, interval: str = "1h"
) -> dict[str, RunningNode]:
    agreement = write_agreement(base / "agreement.json", {i: pki.dirs[i] for i in ids})
    ports = {i: free_ports(3) for i in ids}
    nodes = {}
    for node_id in ids:
        folder = base / node_id
        folder.mkdir(parents=True)
        lines = [
            "[node]",
            f'id = "{node_id}"',
            f'key_dir = "{pki.dirs[node_id]}"',
            'data_dir = "data"',
            f'trust_bundle = "{pki.bundle_path}"',
            f"[listeners.federation]\nport = {ports[node_id][0]}",
            f"[listeners.public]\nport = {ports[node_id][1]}",
            f"[listeners.staff]\nport = {ports[node_id][2]}",
            f'[agreements]\nfiles = ["{agreement}"]',
            '[outbox]\nbase_backoff = "50ms"',
            f'[audit]\ncheckpoint_interval = "{interval}"\nwitness_interval = "{interval}"',
        ]
        for other in ids:
            if other != node_id:
                lines += [
                    "[[partners]]",
                    f'id = "{other}"',
                    f'descriptor = "{pki.dirs[other] / "node.json"}"',
                    f'federation_url = "https://127.0.0.1:{ports[other][0]}"',
                ]
        path = folder / "node.toml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        nodes[node_id] = RunningNode(node_id, path)
    return nodes


def rewrite_log(
    db: Path, *, change: int | None = None, keep: int | None = None, forget: bool = True
) -> None:
    """What a dishonest operator would do to a stopped node's database: drop the
    append-only triggers, alter leaf ``change`` and/or keep only the first ``keep``
    leaves, recompute every tree hash so the log is self-consistent again, and forget
    the checkpoints the node signed before (unless ``forget`` is false)."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        for name in ("leaves_no_update", "leaves_no_delete", "nodes_no_update", "nodes_no_delete"):
            conn.execute(f"DROP TRIGGER IF EXISTS audit_{name}")
        leaves = [bytes(r[0]) for r in conn.execute("SELECT data FROM audit_leaves ORDER BY idx")]
        if change is not None:
            leaf = json.loads(leaves[change])
            leaf["at"] += 1  # back-date... or rather post-date, one second
            leaves[change] = json.dumps(leaf, separators=(",", ":"), sort_keys=True).encode()
        if keep is not None:
            leaves = leaves[:keep]
        conn.execute("BEGIN")
        conn.execute("DELETE FROM audit_leaves")
        conn.execute("DELETE FROM audit_nodes")
        if forget:
            conn.execute("DELETE FROM audit_checkpoints")
        append_many(conn, leaves)
        conn.execute("COMMIT")
    finally:
        conn.close()


def copy_data(node: RunningNode, target: Path) -> None:
    shutil.copytree(node.config.data_dir, target)


def swap_data(node: RunningNode, source: Path) -> None:
    data = node.config.data_dir
    shutil.rmtree(data)
    shutil.copytree(source, data)
