"""A federation of 12 nodes in 4 provinces built from directories only, a 13th joining.

Every node is a real :class:`relay.node.Node` (three listeners, outbox, directory
refresh) in this process, on loopback. No node.toml has a ``[[partners]]`` table: each
names only its key folder, its trust bundle, an agreements folder and the four
provinces' publishing nodes as directory sources. The 13th office joins by its
province re-signing its directory and the parties signing one new agreement version
(dropped into the agreements folder); the other nodes reload, their node.toml files
stay byte for byte the same. A CRL re-issued at one province's node spreads to every
node's trust bundle while packets flow, and nothing is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from federation_kit import NOW, Province, add_node, agreement_file, bundle_bytes, make_province

from certs.pki import renew_crl
from relay.config import load_config
from relay.federation.publish import publish_directory
from relay.loopback import free_ports
from relay.node import Node
from relay.staff_auth import StaffRole, issue_token, load_or_create_token_key
from relay.staff_client import StaffClient
from signing.certificates import TrustBundle

PROVINCES = {
    "Hubei": ("420106", "420111", "420981"),
    "Jiangsu": ("320982", "320102", "320583"),
    "Shandong": ("371422", "370102", "370211"),
    "Henan": ("410102", "410105", "411302"),
}
NEWCOMER = "420115"  # 江夏区, joins Hubei
DEADLINE = 90.0


@dataclass
class Federation:
    base: Path
    provinces: dict[str, Province]
    ports: dict[str, tuple[int, int, int]]
    agreements: Path
    nodes: dict[str, Node] = field(default_factory=dict)
    configs: dict[str, Path] = field(default_factory=dict)

    def publisher(self, province: str) -> str:
        return PROVINCES[province][0]

    def directory_file(self, province: str) -> Path:
        return self.base / f"{province}.directory.jws"

    def sources(self) -> list[str]:
        return [f"http://127.0.0.1:{self.ports[self.publisher(p)][1]}" for p in PROVINCES]

    def publish(self, province: str) -> None:
        p = self.provinces[province]
        publish_directory(
            key_dir=p.key_dir,
            trust_bundle=self.base / "bundle.pem",
            federation=province,
            node_files=[d / "node.json" for d in p.nodes.values()],
            out=self.directory_file(province),
            now=NOW,
            valid_for=7 * 86400,
        )

    def write_config(self, node_id: str, province: str) -> Path:
        folder = self.base / "run" / node_id
        folder.mkdir(parents=True)
        shutil.copy(self.base / "bundle.pem", folder / "bundle.pem")  # the node updates it
        fed, pub, staff = self.ports[node_id]
        own = (
            f'own = "{self.directory_file(province)}"\n'
            if node_id == self.publisher(province)
            else ""
        )
        sources = ", ".join(f'"{s}"' for s in self.sources())
        text = (
            f'[node]\nid = "{node_id}"\nkey_dir = "{self.provinces[province].nodes[node_id]}"\n'
            'data_dir = "data"\ntrust_bundle = "bundle.pem"\n'
            f"[listeners.federation]\nport = {fed}\n"
            f"[listeners.public]\nport = {pub}\ntls = false\n"
            f"[listeners.staff]\nport = {staff}\n"
            f'[agreements]\nfolder = "{self.agreements}"\n'
            '[outbox]\nbase_backoff = "50ms"\nmax_backoff = "1s"\n'
            f'[directory]\n{own}sources = [{sources}]\nrefresh = "200ms"\n'
        )
        path = folder / "node.toml"
        path.write_text(text, encoding="utf-8")
        self.configs[node_id] = path
        return path

    async def start(self, node_id: str, province: str) -> Node:
        node = Node(load_config(self.write_config(node_id, province)), shutdown_timeout=5)
        await node.start()
        self.nodes[node_id] = node
        return node


def _endpoints(ports: tuple[int, int, int]) -> dict[str, str]:
    return {
        "federation": f"https://127.0.0.1:{ports[0]}",
        "public": f"http://127.0.0.1:{ports[1]}",
    }


def _client(node: Node, role: StaffRole = StaffRole.CLERK) -> StaffClient:
    key = load_or_create_token_key(node.config.staff.token_key)
    token = issue_token(
        key, node_id=node.config.node_id, subject="test", roles=[role], now=NOW, ttl=3600
    )
    return StaffClient.for_config(node.config, token)


async def reload_over_http(
    node: Node, role: StaffRole = StaffRole.ADMINISTRATOR
) -> tuple[int, Any]:
    """``POST /staff/v1/reload`` as a staff member holding ``role``."""
    client = _client(node, role)
    async with (
        aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {client.token}"},
            connector=aiohttp.TCPConnector(ssl=client.ssl_context or False),
        ) as session,
        session.post(f"{client.base_url}/staff/v1/reload") as resp,
    ):
        return resp.status, await resp.json(content_type=None)


async def _until(what: str, check: Callable[[], bool]) -> None:
    """Wait for ``check`` (the nodes work on their own tasks) with a generous deadline."""
    async with asyncio.timeout(DEADLINE):
        while not check():
            await asyncio.sleep(0.05)
    assert check(), what


def _resolved(fed: Federation, count: int) -> bool:
    return all(
        node.federation is not None
        and len(node.federation.resolution.routes) == count
        and not node.federation.resolution.unresolved
        for node in fed.nodes.values()
    )


async def _send(sender: Node, to: str, case: str) -> str:
    request = {
        "to": to,
        "case_id": case,
        "matter": "food-business-licence",
        "action": "submit",
        "mode": "proxy_receipt",
        "content": {"applicant": "张三", "case": case},
    }
    sent = await _client(sender).send(request, [])
    return str(sent["packet_id"])


async def _delivered(sender: Node, packet_id: str) -> dict[str, object]:
    client = _client(sender)
    async with asyncio.timeout(DEADLINE):
        while True:
            for item in (await client.get("/staff/v1/outbox"))["items"]:
                if item["packet"]["packet_id"] == packet_id and item["state"] not in (
                    "queued",
                    "in_flight",
                ):
                    return dict(item)
            await asyncio.sleep(0.05)


@pytest.fixture
async def federation(tmp_path: Path) -> AsyncIterator[Federation]:
    provinces = {name: make_province(tmp_path, name) for name in PROVINCES}
    ids = [n for nodes in PROVINCES.values() for n in nodes] + [NEWCOMER]
    ports = dict(zip(ids, (tuple(free_ports(3)) for _ in ids), strict=True))
    for name, nodes in PROVINCES.items():
        for node_id in nodes:
            add_node(tmp_path, provinces[name], node_id, endpoints=_endpoints(ports[node_id]))
    (tmp_path / "bundle.pem").write_bytes(bundle_bytes(list(provinces.values())))
    agreements = tmp_path / "agreements"
    agreements.mkdir()
    fed = Federation(tmp_path, provinces, ports, agreements)  # type: ignore[arg-type]
    signers = {n: d for p in provinces.values() for n, d in p.nodes.items()}
    agreement_file(agreements / "federation-v1.json", signers)
    for name in PROVINCES:
        fed.publish(name)
    try:
        for name, nodes in PROVINCES.items():
            for node_id in nodes:
                await fed.start(node_id, name)
        yield fed
    finally:
        await asyncio.gather(*(n.stop() for n in fed.nodes.values()), return_exceptions=True)


async def test_a_federation_from_directories_only_and_an_office_that_joins(
    federation: Federation,
) -> None:
    fed = federation
    await _until("every node resolved its 11 partners", lambda: _resolved(fed, 11))
    ids = sorted(fed.nodes)
    ring = [(ids[i], ids[(i + 1) % len(ids)]) for i in range(len(ids))]
    sent = [await _send(fed.nodes[a], b, f"RING-{a}-{b}") for a, b in ring]
    for (a, _), packet_id in zip(ring, sent, strict=True):
        assert (await _delivered(fed.nodes[a], packet_id))["state"] == "delivered"

    # the 13th office: its province re-signs the directory, all parties sign version 2
    before = {n: hashlib.sha256(p.read_bytes()).hexdigest() for n, p in fed.configs.items()}
    hubei = fed.provinces["Hubei"]
    add_node(fed.base, hubei, NEWCOMER, endpoints=_endpoints(fed.ports[NEWCOMER]))
    fed.publish("Hubei")
    signers = {n: d for p in fed.provinces.values() for n, d in p.nodes.items()}
    agreement_file(fed.agreements / "federation-v2.json", signers, version=2)
    status, report = await reload_over_http(fed.nodes["420106"])
    assert (status, report["ok"]) == (200, True), report
    for node_id, node in fed.nodes.items():
        if node_id != "420106":
            assert (await node.reload()).ok, node_id
    await fed.start(NEWCOMER, "Hubei")
    await _until("every node resolved its 12 partners", lambda: _resolved(fed, 12))

    sent_new = await _send(fed.nodes[NEWCOMER], "371422", "JOIN-1")
    sent_old = await _send(fed.nodes["320982"], NEWCOMER, "JOIN-2")
    assert (await _delivered(fed.nodes[NEWCOMER], sent_new))["state"] == "delivered"
    assert (await _delivered(fed.nodes["320982"], sent_old))["state"] == "delivered"
    after = {n: hashlib.sha256(fed.configs[n].read_bytes()).hexdigest() for n in before}
    assert after == before
    for node in fed.nodes.values():  # nothing stands on the boards
        assert node.federation is not None
        assert node.federation.alerts(datetime.now(UTC)) == []


async def test_a_reissued_crl_spreads_to_every_node_while_packets_flow(
    federation: Federation,
) -> None:
    fed = federation
    await _until("every node resolved its 11 partners", lambda: _resolved(fed, 11))
    hubei = fed.provinces["Hubei"]
    old_crl = x509.load_pem_x509_crl((hubei.folder / "crl.pem").read_bytes())
    fresh = renew_crl(hubei.folder, now=NOW + timedelta(minutes=1))  # `tongban pki crl`
    assert fresh.last_update_utc > old_crl.last_update_utc
    # the province installs it at its publishing node only; its bundle file is replaced
    publisher = fed.nodes["420106"]
    bundle_path = publisher.config.trust_bundle
    held = TrustBundle.from_pem(bundle_path.read_bytes())
    replaced = [c for c in held.crls if c.issuer != fresh.issuer] + [fresh]
    bundle_path.write_bytes(TrustBundle(held.roots, tuple(replaced)).to_pem())

    ids = sorted(fed.nodes)
    sent = []
    for round_ in range(3):  # packets keep flowing while the CRL spreads
        for a, b in zip(ids, ids[1:] + ids[:1], strict=True):
            sent.append((a, await _send(fed.nodes[a], b, f"CRL-{round_}-{a}")))

    def spread() -> bool:
        for node in fed.nodes.values():
            crls = TrustBundle.from_pem(node.config.trust_bundle.read_bytes()).crls
            if fresh not in crls:
                return False
        return True

    await _until("the fresh CRL reached every trust bundle", spread)
    for a, packet_id in sent:
        assert (await _delivered(fed.nodes[a], packet_id))["state"] == "delivered"
