"""What runs out, on an injected clock: a CRL warns 7 days before its nextUpdate and the
warning clears once a re-issued CRL has spread; a directory source that stays down, a
directory past its expiry and a partner no directory lists raise staff alerts while
the node keeps working on its cache."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from federation_kit import (
    NOW,
    Federation,
    add_node,
    agreement_file,
    bundle_bytes,
    delivered,
    make_province,
    resolved,
    running_federation,
    send,
    staff_client,
    until,
)

from agreements.signed import SignedAgreement
from certs.pki import CRL_VALIDITY, renew_crl
from relay.config import DirectorySettings
from relay.federation.publish import publish_directory
from relay.federation.service import FederationService
from relay.loopback import free_ports
from relay.staff_auth import StaffRole
from relay.tls import BundleSource
from signing.certificates import TrustBundle

A, B = "420106", "320982"


class Clock:
    """The wall clock moved by ``offset`` (the test moves it)."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


async def _crl_alerts(fed: Federation, node: str) -> dict[str, str]:
    alerts = await staff_client(fed.nodes[node], StaffRole.READER).get("/staff/v1/alerts")
    return {a["subject"]: a["code"] for a in alerts["alerts"] if a["code"].startswith("crl-")}


async def test_a_crl_warns_seven_days_ahead_and_the_warning_clears_once_renewed(
    tmp_path: Path,
) -> None:
    # the CRLs were issued at NOW, valid 30 days: 8 days left, then 6
    clock = Clock(CRL_VALIDITY - timedelta(days=8) + (NOW - datetime.now(UTC)))
    async with running_federation(tmp_path, {"Hubei": (A,), "Jiangsu": (B,)}, clock=clock) as fed:
        await until("both nodes resolved each other", lambda: resolved(fed, 1))
        assert await _crl_alerts(fed, B) == {}
        clock.offset += timedelta(days=2)
        hubei_root = "O=tongban federation,CN=Hubei Root"
        jiangsu_root = "O=tongban federation,CN=Jiangsu Root"
        expected = {hubei_root: "crl-expiring", jiangsu_root: "crl-expiring"}
        assert await _crl_alerts(fed, B) == expected

        # `tongban pki crl` for Hubei, installed at Hubei's node only: B fetches it
        fresh = renew_crl(fed.provinces["Hubei"].folder, now=clock())
        bundle = fed.nodes[A].config.trust_bundle
        held = TrustBundle.from_pem(bundle.read_bytes())
        crls = (*(c for c in held.crls if c.issuer != fresh.issuer), fresh)
        bundle.write_bytes(TrustBundle(held.roots, crls).to_pem())

        def arrived() -> bool:
            b_bundle = TrustBundle.from_pem(fed.nodes[B].config.trust_bundle.read_bytes())
            return fresh in b_bundle.crls

        await until("the renewed CRL reached B", arrived)
        assert await _crl_alerts(fed, B) == {jiangsu_root: "crl-expiring"}
        packet = await send(fed.nodes[B], A, "AFTER-CRL")
        assert (await delivered(fed.nodes[B], packet))["state"] == "delivered"


async def test_directory_alerts_while_the_node_works_on_its_cache(tmp_path: Path) -> None:
    hubei, jiangsu = make_province(tmp_path, "Hubei"), make_province(tmp_path, "Jiangsu")
    a = add_node(tmp_path, hubei, A)
    b = add_node(tmp_path, hubei, "420981")
    c = add_node(tmp_path, jiangsu, B)
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(bundle_bytes([hubei, jiangsu]))
    own = tmp_path / "hubei.directory.jws"
    published = publish_directory(
        key_dir=hubei.key_dir,
        trust_bundle=bundle,
        federation="Hubei",
        node_files=[a / "node.json", b / "node.json"],
        out=own,
        now=NOW,
        valid_for=86400,
    )
    path = agreement_file(tmp_path / "ag.json", {A: a, "420981": b, B: c})
    trust = TrustBundle.from_pem(bundle.read_bytes())
    lifecycle = SignedAgreement.from_bytes(path.read_bytes()).evaluate(trust, at=NOW).lifecycle
    cache = tmp_path / "cache"
    clock = Clock(NOW - datetime.now(UTC))

    def service(settings: DirectorySettings) -> FederationService:
        return FederationService(
            node_id=A,
            settings=settings,
            bundle=BundleSource(bundle),
            clock=clock,
            lifecycles=lambda: [lifecycle],
            overrides={},
            on_routes=lambda resolution: None,
        )

    # first start: the directory file is there, and is cached
    first = service(DirectorySettings(cache=cache, own=own))
    first.start()
    assert set(first.resolution.routes) == {"420981"}
    # later starts: no own file, the only source is down; the cache carries the node
    (port,) = free_ports(1)
    down = DirectorySettings(cache=cache, sources=(f"http://127.0.0.1:{port}",))
    node = service(down)
    node.start()
    try:
        assert await node.refresh() == 0
    finally:
        await node.close()
    assert set(node.resolution.routes) == {"420981"}
    codes = {a.code: a for a in node.alerts(clock())}
    assert set(codes) == {"partner-unresolved"}  # 320982: no Jiangsu directory held
    assert codes["partner-unresolved"].subject == B
    assert codes["partner-unresolved"].to_json()["peer"] == B  # the console names it
    later = clock() + timedelta(seconds=down.validity + 1)
    assert {a.code for a in node.alerts(later)} == {"directory-unreachable", "partner-unresolved"}
    assert str(port) in node.alerts(later)[0].detail
    past = published.directory.expires_at + timedelta(seconds=1)
    expired = [a for a in node.alerts(past) if a.code == "directory-expired"]
    assert [a.subject for a in expired] == ["Hubei"]
    assert expired[0].severity.value == "critical"
    # the node's document still serves the cached directory and the bundle's CRLs
    document = node.document()
    assert document["directories"] == [published.token]
    crl = x509.load_pem_x509_crl(document["crls"][0].encode())
    assert crl.public_bytes(Encoding.PEM) in bundle.read_bytes()


async def test_partners_follow_the_agreements_as_they_begin_and_end(tmp_path: Path) -> None:
    hubei = make_province(tmp_path, "Hubei")
    a, b = add_node(tmp_path, hubei, A), add_node(tmp_path, hubei, "420981")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(bundle_bytes([hubei]))
    own = tmp_path / "hubei.directory.jws"
    publish_directory(
        key_dir=hubei.key_dir,
        trust_bundle=bundle,
        federation="Hubei",
        node_files=[a / "node.json", b / "node.json"],
        out=own,
        now=NOW,
        valid_for=10 * 365 * 86400,
    )
    path = agreement_file(tmp_path / "ag.json", {A: a, "420981": b})
    trust = TrustBundle.from_pem(bundle.read_bytes())
    lifecycle = SignedAgreement.from_bytes(path.read_bytes()).evaluate(trust, at=NOW).lifecycle
    clock = Clock(NOW - datetime.now(UTC))
    seen: list[set[str]] = []
    service = FederationService(
        node_id=A,
        settings=DirectorySettings(cache=tmp_path / "cache", own=own),
        bundle=BundleSource(bundle),
        clock=clock,
        lifecycles=lambda: [lifecycle],
        overrides={},
        on_routes=lambda resolution: seen.append(set(resolution.routes)),
    )
    service.start()
    try:
        await service.refresh()  # nothing changed: not resolved again
        assert seen == [{"420981"}]
        clock.offset = lifecycle.agreement.valid_until - datetime.now(UTC) + timedelta(seconds=1)
        await service.refresh()  # the agreement ended: no partner left
        assert seen == [{"420981"}, set()]
    finally:
        await service.close()
