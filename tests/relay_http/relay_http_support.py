"""Helpers for the relay HTTP tests: a development PKI and servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web

from certs.pki import init_federation, issue_node, revoke
from signing.certificates import TrustBundle

NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Pki:
    """Two nodes of a trusted federation, a revoked node, and a node of a foreign root."""

    root: Path
    bundle_path: Path
    a: Path  # 420106
    b: Path  # 320982
    revoked: Path  # 420981 (revoked)
    foreign: Path  # 371422 under an unknown root
    stranger: Path  # 420984: trusted root, partner of nobody

    @property
    def bundle(self) -> TrustBundle:
        return TrustBundle.from_pem(self.bundle_path.read_bytes())


def make_pki(base: Path) -> Pki:
    init_federation(base / "fed", "Yangtze", now=NOW)
    init_federation(base / "foreign-fed", "Elsewhere", now=NOW)
    a = issue_node(base / "fed", "420106", "武昌区", "127.0.0.1", base / "a", now=NOW)
    b = issue_node(base / "fed", "320982", "大丰区", "127.0.0.1", base / "b", now=NOW)
    r = issue_node(base / "fed", "420981", "应城市", "127.0.0.1", base / "r", now=NOW)
    f = issue_node(base / "foreign-fed", "371422", "宁津县", "127.0.0.1", base / "f", now=NOW)
    s = issue_node(base / "fed", "420984", "汉川市", "127.0.0.1", base / "s", now=NOW)
    revoke(base / "fed", r.tls_cert.read_bytes(), now=NOW)
    bundle = base / "bundle.pem"
    bundle.write_bytes(
        (base / "fed" / "root.pem").read_bytes() + (base / "fed" / "crl.pem").read_bytes()
    )
    return Pki(
        base / "fed", bundle, a.directory, b.directory, r.directory, f.directory, s.directory
    )


def client_ssl(pki: Pki, node_dir: Path | None) -> ssl.SSLContext:
    """A TLS 1.3 client context trusting the federation, with ``node_dir``'s certificate."""
    from relay.tls import client_context

    if node_dir is None:
        return client_context(pki.bundle)
    return client_context(pki.bundle, node_dir / "tls.pem", node_dir / "tls.key")


@asynccontextmanager
async def serve(app: web.Application, ssl_context: ssl.SSLContext | None) -> AsyncIterator[str]:
    """Run ``app`` on 127.0.0.1 (ephemeral port); yield its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    port = server.sockets[0].getsockname()[1]
    scheme = "https" if ssl_context is not None else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def write_config(
    folder: Path,
    pki: Pki,
    node_dir: Path,
    node_id: str,
    *,
    ports: tuple[int, int, int] = (0, 0, 0),
    partners: tuple[tuple[str, Path, str], ...] = (),
    extra: str = "",
) -> Path:
    """Write a ``node.toml`` for ``node_dir`` into ``folder``; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        "[node]",
        f'id = "{node_id}"',
        f'key_dir = "{node_dir}"',
        'data_dir = "data"',
        f'trust_bundle = "{pki.bundle_path}"',
        "[listeners.federation]",
        f"port = {ports[0] or 1}",
        "[listeners.public]",
        f"port = {ports[1] or 1}",
        "[listeners.staff]",
        f"port = {ports[2] or 1}",
    ]
    for pid, descriptor, url in partners:
        lines += ["[[partners]]", f'id = "{pid}"', f'descriptor = "{descriptor}"']
        lines += [f'federation_url = "{url}"']
    path = folder / "node.toml"
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


def free_ports(count: int) -> tuple[int, ...]:
    """Distinct free TCP ports on 127.0.0.1, outside the ephemeral range."""
    from relay.loopback import free_ports as pick

    return tuple(pick(count))


def write_agreement(
    path: Path,
    signers: dict[str, Path],
    *,
    at: datetime,
    crypto_profiles: list[str] | None = None,
    version: int = 1,
) -> Path:
    """A signed agreement file between the nodes of ``signers`` (id → node dir);
    ``crypto_profiles`` as the agreement's field (None: left out, any profile); a
    ``version`` above 1 supersedes the one before."""
    from agreements.catalog import default_catalog
    from agreements.draft import draft_from_template, reciprocal_template
    from agreements.signatures import sign_agreement
    from agreements.signed import SignedAgreement
    from signing.nodedir import load_node_keys

    template = reciprocal_template(
        list(signers),
        agreement_id="relay-http-test-2026",
        # the nodes run on the wall clock: valid from a year before now for three years
        valid_from=(datetime.now(UTC) - timedelta(days=365)).isoformat(),
        valid_until=(datetime.now(UTC) + timedelta(days=3 * 365)).isoformat(),
        title_zh="测试协议",
        title_en="Test agreement",
        crypto_profiles=crypto_profiles,
    )
    template.update(version=version, supersedes=version - 1 if version > 1 else None)
    agreement = draft_from_template(template, default_catalog())
    signed = SignedAgreement(agreement)
    for node_dir in signers.values():
        seal = load_node_keys(node_dir).seal
        signed = signed.with_signature(sign_agreement(agreement, seal, at=at))
    path.write_bytes(signed.to_bytes())
    return path


def schema_check(instance: object, name: str) -> None:
    """Validate ``instance`` against ``components/schemas/<name>`` of the OpenAPI document."""
    import yaml
    from openapi_schema_validator import OAS31Validator

    from relay.http.openapi import openapi_bytes

    spec = yaml.safe_load(openapi_bytes())
    schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
    OAS31Validator(schema).validate(instance)
