"""A small multi-province PKI for the federation tests: roots, directory keys, nodes."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from certs.pki import init_federation, issue_directory_key, issue_node
from relay.config import load_config
from relay.federation.publish import publish_directory
from relay.loopback import free_ports
from relay.node import Node
from relay.staff_auth import StaffRole, issue_token, load_or_create_token_key
from relay.staff_client import StaffClient

NOW = datetime.now(UTC).replace(microsecond=0)
DEADLINE = 90.0


@dataclass
class Province:
    name: str
    folder: Path  # the federation (root) folder
    key_dir: Path  # the directory key
    nodes: dict[str, Path] = field(default_factory=dict)  # node id -> node dir


def make_province(base: Path, name: str, *, now: datetime = NOW) -> Province:
    folder = base / f"fed-{name}"
    init_federation(folder, name, now=now)
    key_dir = base / f"dirkey-{name}"
    issue_directory_key(folder, key_dir, now=now)
    return Province(name, folder, key_dir)


def add_node(
    base: Path,
    province: Province,
    node_id: str,
    *,
    endpoints: dict[str, str] | None = None,
    now: datetime = NOW,
) -> Path:
    out = base / "nodes" / node_id
    if endpoints is None:  # ports nothing listens on: no test reaches a stranger's server
        fed, pub = free_ports(2)
        endpoints = {"federation": f"https://127.0.0.1:{fed}", "public": f"http://127.0.0.1:{pub}"}
    issue_node(
        province.folder,
        node_id,
        f"办公室{node_id}",
        "127.0.0.1",
        out,
        now=now,
        name_en=f"Office {node_id}",
        endpoints=endpoints,
    )
    province.nodes[node_id] = out
    return out


def bundle_bytes(provinces: list[Province]) -> bytes:
    roots = b"".join((p.folder / "root.pem").read_bytes() for p in provinces)
    return roots + b"".join((p.folder / "crl.pem").read_bytes() for p in provinces)


def agreement_file(
    path: Path,
    signers: dict[str, Path],
    *,
    agreement_id: str = "federation-test",
    version: int = 1,
    at: datetime = NOW,
) -> Path:
    """A fully signed reciprocal agreement among ``signers`` (id -> node dir)."""
    from agreements.catalog import default_catalog
    from agreements.draft import draft_from_template, reciprocal_template
    from agreements.signatures import sign_agreement
    from agreements.signed import SignedAgreement
    from signing.nodedir import load_node_keys

    template = reciprocal_template(
        list(signers),
        agreement_id=agreement_id,
        valid_from=(at - timedelta(days=30)).isoformat(),
        valid_until=(at + timedelta(days=3 * 365)).isoformat(),
        title_zh="测试协议",
        title_en="Test agreement",
    )
    if version > 1:
        template["version"] = version
        template["supersedes"] = version - 1
    agreement = draft_from_template(template, default_catalog())
    signed = SignedAgreement(agreement)
    for node_dir in signers.values():
        signed = signed.with_signature(
            sign_agreement(agreement, load_node_keys(node_dir).seal, at=at)
        )
    path.write_bytes(signed.to_bytes())
    return path


@dataclass
class Federation:
    base: Path
    layout: dict[str, tuple[str, ...]]  # province -> node ids (the first publishes)
    provinces: dict[str, Province]
    ports: dict[str, tuple[int, int, int]]
    agreements: Path
    nodes: dict[str, Node] = field(default_factory=dict)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    configs: dict[str, Path] = field(default_factory=dict)

    def publisher(self, province: str) -> str:
        return self.layout[province][0]

    def directory_file(self, province: str) -> Path:
        return self.base / f"{province}.directory.jws"

    def sources(self) -> list[str]:
        return [f"http://127.0.0.1:{self.ports[self.publisher(p)][1]}" for p in self.layout]

    def publish(self, province: str) -> None:
        p = self.provinces[province]
        publish_directory(
            key_dir=p.key_dir,
            trust_bundle=self.base / "bundle.pem",
            federation=province,
            node_files=[d / "node.json" for d in p.nodes.values()],
            out=self.directory_file(province),
            now=NOW,
            valid_for=90 * 86400,
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
        config = load_config(self.write_config(node_id, province))
        node = Node(config, shutdown_timeout=5, clock=self.clock)
        await node.start()
        self.nodes[node_id] = node
        return node


def endpoints(ports: tuple[int, int, int]) -> dict[str, str]:
    return {
        "federation": f"https://127.0.0.1:{ports[0]}",
        "public": f"http://127.0.0.1:{ports[1]}",
    }


def staff_client(node: Node, role: StaffRole = StaffRole.CLERK) -> StaffClient:
    """A staff client with a token issued at the node's own (possibly injected) time."""
    key = load_or_create_token_key(node.config.staff.token_key)
    now = node._clock()
    token = issue_token(
        key, node_id=node.config.node_id, subject="test", roles=[role], now=now, ttl=3600
    )
    return StaffClient.for_config(node.config, token)


async def reload_over_http(
    node: Node, role: StaffRole = StaffRole.ADMINISTRATOR
) -> tuple[int, Any]:
    """``POST /staff/v1/reload`` as a staff member holding ``role``."""
    client = staff_client(node, role)
    async with (
        aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {client.token}"},
            connector=aiohttp.TCPConnector(ssl=client.ssl_context or False),
        ) as session,
        session.post(f"{client.base_url}/staff/v1/reload") as resp,
    ):
        return resp.status, await resp.json(content_type=None)


async def until(what: str, check: Callable[[], bool]) -> None:
    """Wait for ``check`` (the nodes work on their own tasks) with a generous deadline."""
    async with asyncio.timeout(DEADLINE):
        while not check():
            await asyncio.sleep(0.05)
    assert check(), what


def resolved(fed: Federation, count: int) -> bool:
    return all(
        node.federation is not None
        and len(node.federation.resolution.routes) == count
        and not node.federation.resolution.unresolved
        for node in fed.nodes.values()
    )


async def send(sender: Node, to: str, case: str) -> str:
    request = {
        "to": to,
        "case_id": case,
        "matter": "food-business-licence",
        "action": "submit",
        "mode": "proxy_receipt",
        "content": {"applicant": "张三", "case": case},
    }
    sent = await staff_client(sender).send(request, [])
    return str(sent["packet_id"])


async def delivered(sender: Node, packet_id: str) -> dict[str, object]:
    client = staff_client(sender)
    async with asyncio.timeout(DEADLINE):
        while True:
            for item in (await client.get("/staff/v1/outbox"))["items"]:
                if item["packet"]["packet_id"] == packet_id and item["state"] not in (
                    "queued",
                    "in_flight",
                ):
                    return dict(item)
            await asyncio.sleep(0.05)


@asynccontextmanager
async def running_federation(
    base: Path,
    layout: dict[str, tuple[str, ...]],
    *,
    clock: Callable[[], datetime] | None = None,
    joining: tuple[str, ...] = (),
) -> AsyncIterator[Federation]:
    """Provinces, their nodes (all started), one agreement among all, directories;
    ``joining`` node ids get their ports now too (they join later)."""
    provinces = {name: make_province(base, name) for name in layout}
    ids = [n for nodes in layout.values() for n in nodes]
    ids += [n for n in joining if n not in ids]
    pool = free_ports(3 * len(ids))  # one draw: the ports are distinct
    ports = {n: (pool[3 * i], pool[3 * i + 1], pool[3 * i + 2]) for i, n in enumerate(ids)}
    for name, nodes in layout.items():
        for node_id in nodes:
            add_node(base, provinces[name], node_id, endpoints=endpoints(ports[node_id]))
    (base / "bundle.pem").write_bytes(bundle_bytes(list(provinces.values())))
    agreements = base / "agreements"
    agreements.mkdir()
    fed = Federation(base, layout, provinces, ports, agreements)
    if clock is not None:
        fed.clock = clock
    signers = {n: d for p in provinces.values() for n, d in p.nodes.items()}
    agreement_file(agreements / "federation-v1.json", signers)
    for name in layout:
        fed.publish(name)
    try:
        for name, nodes in layout.items():
            for node_id in nodes:
                await fed.start(node_id, name)
        yield fed
    finally:
        await asyncio.gather(*(n.stop() for n in fed.nodes.values()), return_exceptions=True)
