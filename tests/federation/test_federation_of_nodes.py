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

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from federation_kit import (
    NOW,
    Federation,
    add_node,
    agreement_file,
    delivered,
    endpoints,
    reload_over_http,
    resolved,
    running_federation,
    send,
    until,
)

from certs.pki import renew_crl
from signing.certificates import TrustBundle

PROVINCES = {
    "Hubei": ("420106", "420111", "420981"),
    "Jiangsu": ("320982", "320102", "320583"),
    "Shandong": ("371422", "370102", "370211"),
    "Henan": ("410102", "410105", "411302"),
}
NEWCOMER = "420115"  # 江夏区, joins Hubei


@pytest.fixture
async def federation(tmp_path: Path) -> AsyncIterator[Federation]:
    async with running_federation(tmp_path, PROVINCES, joining=(NEWCOMER,)) as fed:
        yield fed


async def test_a_federation_from_directories_only_and_an_office_that_joins(
    federation: Federation,
) -> None:
    fed = federation
    await until("every node resolved its 11 partners", lambda: resolved(fed, 11))
    ids = sorted(fed.nodes)
    ring = [(ids[i], ids[(i + 1) % len(ids)]) for i in range(len(ids))]
    sent = [await send(fed.nodes[a], b, f"RING-{a}-{b}") for a, b in ring]
    for (a, _), packet_id in zip(ring, sent, strict=True):
        assert (await delivered(fed.nodes[a], packet_id))["state"] == "delivered"

    # the 13th office: its province re-signs the directory, all parties sign version 2
    before = {n: hashlib.sha256(p.read_bytes()).hexdigest() for n, p in fed.configs.items()}
    hubei = fed.provinces["Hubei"]
    add_node(fed.base, hubei, NEWCOMER, endpoints=endpoints(fed.ports[NEWCOMER]))
    fed.publish("Hubei")
    signers = {n: d for p in fed.provinces.values() for n, d in p.nodes.items()}
    agreement_file(fed.agreements / "federation-v2.json", signers, version=2)
    status, report = await reload_over_http(fed.nodes["420106"])
    assert (status, report["ok"]) == (200, True), report
    for node_id, node in fed.nodes.items():
        if node_id != "420106":
            assert (await node.reload()).ok, node_id
    await fed.start(NEWCOMER, "Hubei")
    await until("every node resolved its 12 partners", lambda: resolved(fed, 12))

    sent_new = await send(fed.nodes[NEWCOMER], "371422", "JOIN-1")
    sent_old = await send(fed.nodes["320982"], NEWCOMER, "JOIN-2")
    assert (await delivered(fed.nodes[NEWCOMER], sent_new))["state"] == "delivered"
    assert (await delivered(fed.nodes["320982"], sent_old))["state"] == "delivered"
    after = {n: hashlib.sha256(fed.configs[n].read_bytes()).hexdigest() for n in before}
    assert after == before
    for node in fed.nodes.values():  # nothing stands on the boards
        assert node.federation is not None
        assert node.federation.alerts(datetime.now(UTC)) == []


async def test_a_reissued_crl_spreads_to_every_node_while_packets_flow(
    federation: Federation,
) -> None:
    fed = federation
    await until("every node resolved its 11 partners", lambda: resolved(fed, 11))
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
            sent.append((a, await send(fed.nodes[a], b, f"CRL-{round_}-{a}")))

    def spread() -> bool:
        for node in fed.nodes.values():
            crls = TrustBundle.from_pem(node.config.trust_bundle.read_bytes()).crls
            if fresh not in crls:
                return False
        return True

    await until("the fresh CRL reached every trust bundle", spread)
    for a, packet_id in sent:
        assert (await delivered(fed.nodes[a], packet_id))["state"] == "delivered"
