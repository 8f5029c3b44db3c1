"""Reload (all or nothing, staff alert when refused) and TLS certificate rotation while
packets flow, with the development CA and with ``openssl ca`` as an outside CA."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from federation_kit import (
    Federation,
    agreement_file,
    delivered,
    reload_over_http,
    resolved,
    running_federation,
    send,
    staff_client,
    until,
)

from certs.pki import revoke
from relay.cli import main
from relay.staff_auth import StaffRole
from signing.certificates import TrustBundle

A, B = "420106", "320982"
LAYOUT = {"Hubei": (A,), "Jiangsu": (B,)}


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Federation]:
    async with running_federation(tmp_path, LAYOUT) as fed:
        await until("both nodes resolved each other", lambda: resolved(fed, 1))
        yield fed


async def _alert_codes(fed: Federation, node: str) -> set[str]:
    alerts = await staff_client(fed.nodes[node], StaffRole.READER).get("/staff/v1/alerts")
    return {a["code"] for a in alerts["alerts"]}


async def test_a_broken_file_is_refused_whole_and_the_old_state_keeps_working(
    pair: Federation,
) -> None:
    fed = pair
    broken = fed.agreements / "broken.json"
    broken.write_bytes(b'{"format": "tongban-agreement/1", "document": ')
    status, problem = await reload_over_http(fed.nodes[A])
    assert status == 422
    assert problem["code"] == "reload-refused"
    assert problem["step"] == "agreements"
    assert "broken.json" in problem["reason"]
    assert "reload-failed" in await _alert_codes(fed, A)
    # the old agreement and partners still hold: a packet goes through
    packet = await send(fed.nodes[A], B, "AFTER-REFUSED-RELOAD")
    assert (await delivered(fed.nodes[A], packet))["state"] == "delivered"

    # a reload needs the administrator role
    status, problem = await reload_over_http(fed.nodes[A], StaffRole.CLERK)
    assert (status, problem["code"]) == (403, "forbidden")

    # a config change that needs a restart, a bundle that does not parse, a directory
    # file that is not one: each refused at its step
    config = fed.configs[A]
    text = config.read_text(encoding="utf-8")
    broken.unlink()
    config.write_text(text.replace('id = "420106"', 'id = "420111"'), encoding="utf-8")
    assert (await fed.nodes[A].reload()).step == "config"
    config.write_text(text + "[limits]\nmax_batch_size = 0\n", encoding="utf-8")
    report = await fed.nodes[A].reload()
    assert (report.step, "max_batch_size" in report.reason) == ("config", True)
    config.write_text(text, encoding="utf-8")
    own = fed.directory_file("Hubei")
    good = own.read_bytes()
    own.write_bytes(good[:-40] + b"\n")
    report = await fed.nodes[A].reload()
    assert (report.step, str(own) in report.reason) == ("directories", True)
    own.write_bytes(good)

    status, report = await reload_over_http(fed.nodes[A])
    assert (status, report["ok"], report["partners"]) == (200, True, [B])
    assert "reload-failed" not in await _alert_codes(fed, A)


async def test_a_version_one_partner_has_not_loaded_yet_waits_until_it_reloads(
    pair: Federation,
) -> None:
    """Both offices signed version 2; A's administrator loads it first. B refuses A's
    packets as agreement-unknown (retried, not rejected), both boards say who must act,
    and the packet goes once B reloads."""
    fed = pair
    signers = {n: d for p in fed.provinces.values() for n, d in p.nodes.items()}
    agreement_file(fed.agreements / "federation-v2.json", signers, version=2)
    assert (await fed.nodes[A].reload()).ok
    packet = await send(fed.nodes[A], B, "V2-FIRST-AT-A")
    client = staff_client(fed.nodes[A])

    async def refused_for_the_agreement() -> dict[str, object]:
        async with asyncio.timeout(60):
            while True:
                for item in (await client.get("/staff/v1/outbox"))["items"]:
                    if item["packet"]["packet_id"] == packet and item["reason"]:
                        return dict(item)
                await asyncio.sleep(0.05)

    item = await refused_for_the_agreement()
    assert (item["state"], item["reason"]) == ("queued", "agreement-unknown")
    assert "agreement-unknown" in await _alert_codes(fed, B)
    assert "partner-lacks-agreement" in await _alert_codes(fed, A)

    assert (await fed.nodes[B].reload()).ok
    assert (await delivered(fed.nodes[A], packet))["state"] == "delivered"
    assert "agreement-unknown" not in await _alert_codes(fed, B)
    assert "partner-lacks-agreement" not in await _alert_codes(fed, A)


async def test_a_bundle_that_does_not_parse_is_refused_by_reload(pair: Federation) -> None:
    fed = pair
    path = fed.nodes[A].config.trust_bundle
    good = path.read_bytes()
    path.write_bytes(good + b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")
    try:
        report = await fed.nodes[A].reload()
    finally:
        path.write_bytes(good)
    assert report.step == "trust-bundle"
    assert str(path) in report.reason


def _served_certificate(port: int, fed: Federation) -> x509.Certificate:
    """The certificate the federation listener on ``port`` shows a new connection."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    node_dir = fed.provinces["Jiangsu"].nodes[B]
    context.load_cert_chain(node_dir / "tls.pem", node_dir / "tls.key")
    import socket

    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


async def _pump(fed: Federation, count: int, tag: str) -> list[tuple[str, str]]:
    """Send ``count`` packets each way, a few milliseconds apart."""
    sent = []
    for i in range(count):
        sent.append((A, await send(fed.nodes[A], B, f"{tag}-A-{i}")))
        sent.append((B, await send(fed.nodes[B], A, f"{tag}-B-{i}")))
        await asyncio.sleep(0.02)  # spread the packets over the rotation
    return sent


def _install_crl(fed: Federation, crl_pem: bytes) -> None:
    """The new CRL replaces the old one of its root in both nodes' bundles."""
    crl = x509.load_pem_x509_crl(crl_pem)
    for node in fed.nodes.values():
        held = TrustBundle.from_pem(node.config.trust_bundle.read_bytes())
        kept = (*tuple(c for c in held.crls if c.issuer != crl.issuer), crl)
        node.config.trust_bundle.write_bytes(TrustBundle(held.roots, kept).to_pem())


async def test_tls_rotation_with_the_development_ca_while_packets_flow(
    pair: Federation, tmp_path: Path
) -> None:
    fed = pair
    hubei = fed.provinces["Hubei"]
    node_dir = hubei.nodes[A]
    old_pem = (node_dir / "tls.pem").read_bytes()
    pump = asyncio.create_task(_pump(fed, 15, "ROT"))

    csr, cert = tmp_path / "tls.csr", tmp_path / "tls-new.pem"
    argv = ["pki", "csr", "--node-dir", str(node_dir), "--out", str(csr)]
    assert await asyncio.to_thread(main, argv) == 0
    argv = ["pki", "sign-csr", "--federation", str(hubei.folder), "--csr", str(csr)]
    assert await asyncio.to_thread(main, [*argv, "--out", str(cert)]) == 0
    trust = str(fed.nodes[A].config.trust_bundle)
    argv = ["pki", "install", "--node-dir", str(node_dir), "--cert", str(cert), "--trust", trust]
    assert await asyncio.to_thread(main, argv) == 0
    # installed, not loaded yet: the board says so (the old one is still what peers see,
    # and its expiry, not the new file's, is what the expiry alerts watch)
    assert "certificate-not-loaded" in await _alert_codes(fed, A)
    assert (await fed.nodes[A].reload()).ok
    assert "certificate-not-loaded" not in await _alert_codes(fed, A)
    # the old certificate is revoked once the new one is in use (end of the overlap)
    crl = revoke(hubei.folder, old_pem, now=datetime.now(UTC))
    from cryptography.hazmat.primitives.serialization import Encoding

    _install_crl(fed, crl.public_bytes(Encoding.PEM))
    sent = await pump
    sent += await _pump(fed, 3, "AFTER")
    for sender, packet_id in sent:
        assert (await delivered(fed.nodes[sender], packet_id))["state"] == "delivered"
    new = x509.load_pem_x509_certificate(cert.read_bytes())
    served = await asyncio.to_thread(_served_certificate, fed.ports[A][0], fed)
    assert served.serial_number == new.serial_number


def _openssl(*args: str, cwd: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed (Debian package openssl; make system-deps)")
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


_CA_CONF = """
[ca]
default_ca = ca_section
[ca_section]
dir = .
database = index.txt
new_certs_dir = issued
serial = serial
default_md = sha256
policy = anything
copy_extensions = none
unique_subject = no
[anything]
commonName = supplied
organizationName = optional
[node_tls]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1
[v3_intermediate]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def _outside_ca(folder: Path) -> tuple[Path, Path]:
    """An outside PKI made by openssl alone: a root and an intermediate that runs
    ``openssl ca``. Returns (root.pem, intermediate.pem)."""
    folder.mkdir()
    (folder / "issued").mkdir()
    (folder / "index.txt").write_text("")
    (folder / "serial").write_text("1000\n")
    (folder / "ca.cnf").write_text(_CA_CONF)
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "root.key", cwd=folder)
    _openssl(
        "req", "-x509", "-new", "-key", "root.key", "-subj", "/CN=Outside Root/O=Provincial CA",
        "-days", "3650", "-out", "root.pem",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "int.key", cwd=folder)
    _openssl(
        "req", "-new", "-key", "int.key", "-subj", "/CN=Outside Issuing CA/O=Provincial CA",
        "-out", "int.csr", cwd=folder,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "int.csr", "-CA", "root.pem", "-CAkey", "root.key",
        "-CAcreateserial", "-days", "1825", "-extfile", "ca.cnf",
        "-extensions", "v3_intermediate", "-out", "int.pem",
        cwd=folder,
    )  # fmt: skip
    return folder / "root.pem", folder / "int.pem"


async def test_openssl_ca_as_the_outside_ca_with_the_intermediate_in_the_tls_chain(
    pair: Federation, tmp_path: Path
) -> None:
    fed = pair
    ca = tmp_path / "outside-ca"
    root, intermediate = await asyncio.to_thread(_outside_ca, ca)
    # both nodes trust the outside root from now on (a new trust bundle, then reload)
    for node in fed.nodes.values():
        path = node.config.trust_bundle
        path.write_bytes(root.read_bytes() + path.read_bytes())
        assert (await node.reload()).ok

    node_dir = fed.provinces["Hubei"].nodes[A]
    csr = tmp_path / "a.csr"
    assert main(["pki", "csr", "--node-dir", str(node_dir), "--out", str(csr)]) == 0
    leaf = ca / "a.pem"
    await asyncio.to_thread(
        _openssl,
        "ca", "-batch", "-config", "ca.cnf", "-cert", "int.pem", "-keyfile", "int.key",
        "-in", str(csr), "-out", str(leaf), "-extensions", "node_tls", "-days", "365",
        "-notext", "-preserveDN",
        cwd=ca,
    )  # fmt: skip
    chain = tmp_path / "a-chain.pem"
    chain.write_bytes(leaf.read_bytes() + intermediate.read_bytes())
    trust = str(fed.nodes[A].config.trust_bundle)
    argv = ["pki", "install", "--node-dir", str(node_dir), "--cert", str(chain), "--trust", trust]
    assert main(argv) == 0
    assert (await fed.nodes[A].reload()).ok

    sent = await _pump(fed, 3, "OUTSIDE")
    for sender, packet_id in sent:
        assert (await delivered(fed.nodes[sender], packet_id))["state"] == "delivered"
    # openssl, as an outside judge: the listener sends leaf and intermediate, and the
    # leaf verifies under the outside root through it
    b_dir = fed.provinces["Jiangsu"].nodes[B]
    shown = await asyncio.to_thread(
        subprocess.run,
        [
            "openssl", "s_client", "-connect", f"127.0.0.1:{fed.ports[A][0]}",
            "-cert", str(b_dir / "tls.pem"), "-key", str(b_dir / "tls.key"),
            "-CAfile", str(root), "-showcerts", "-verify_return_error",
        ],
        input=b"", capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    out = shown.stdout.decode()
    assert out.count("-----BEGIN CERTIFICATE-----") == 2, shown.stderr.decode()
    assert "Verify return code: 0 (ok)" in out
    assert "Outside Issuing CA" in out


async def test_after_a_reload_the_expiry_alerts_read_the_agreement_files_now_held(
    pair: Federation,
) -> None:
    fed = pair
    first = fed.agreements / "federation-v1.json"
    first.rename(fed.agreements / "federation-2026.json")  # the office renames its file
    status, report = await reload_over_http(fed.nodes[A])
    assert (status, report["agreements"]) == (200, 1)
    alerts = await staff_client(fed.nodes[A], StaffRole.READER).get("/staff/v1/alerts")
    assert [a["code"] for a in alerts["alerts"]] == []
