"""What a federation's directories need from people, said ahead and never dropped
silently: a directory about to run out, one that no longer verifies (its key expired),
and fresher CRLs the node cannot keep. Instants are injected, derived from now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agreements.lifecycle import State
from certs.pki import init_federation, issue_directory_key, issue_node, renew_crl
from relay.config import DirectorySettings
from relay.federation import service as service_module
from relay.federation.publish import publish_directory
from relay.federation.service import DirectoryError, FederationService
from relay.tls import BundleSource

T0 = datetime.now(UTC).replace(microsecond=0)
A, B = "420106", "420981"


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


class _Live:
    """A live agreement between A and B (what the partner resolution asks of one)."""

    class agreement:
        party_ids = frozenset({A, B})

    def state_at(self, at: datetime) -> State:
        return State.ACTIVE


def _province(base: Path, *, key_issued: datetime) -> tuple[Path, Any, Path]:
    fed = base / "fed"
    init_federation(fed, "Hubei", now=key_issued)
    key = issue_directory_key(fed, base / "dirkey", now=key_issued)
    for node, port in ((A, 18001), (B, 18003)):
        endpoints = {
            "federation": f"https://127.0.0.1:{port}",
            "public": f"http://127.0.0.1:{port + 1}",
        }
        issue_node(
            fed, node, f"office {node}", "127.0.0.1", base / node, now=T0, endpoints=endpoints
        )
    bundle = base / "bundle.pem"
    bundle.write_bytes((fed / "root.pem").read_bytes() + (fed / "crl.pem").read_bytes())
    return fed, key, bundle


def _publish(base: Path, bundle: Path, now: datetime, days: int) -> Any:
    return publish_directory(
        key_dir=base / "dirkey", trust_bundle=bundle, federation="Hubei",
        node_files=[base / A / "node.json", base / B / "node.json"],
        out=base / "hubei.directory.jws", now=now, valid_for=days * 86400,
    )  # fmt: skip


def _service(base: Path, bundle: Path, clock: Clock, own: Path | None) -> FederationService:
    return FederationService(
        node_id=A, settings=DirectorySettings(cache=base / "cache", own=own),
        bundle=BundleSource(bundle), clock=clock, lifecycles=lambda: [_Live()], overrides={},
        on_routes=lambda resolution: None,
    )  # fmt: skip


def _codes(service: FederationService, at: datetime) -> set[str]:
    return {a.code for a in service.alerts(at)}


def test_a_directory_warns_a_seventh_of_its_validity_before_it_runs_out(tmp_path: Path) -> None:
    _, _, bundle = _province(tmp_path, key_issued=T0)
    end = _publish(tmp_path, bundle, T0, 7).directory.expires_at
    node = _service(tmp_path, bundle, Clock(T0), tmp_path / "hubei.directory.jws")
    node.start()
    node.last_success = end  # its sources answer: only the copy's own end matters
    assert "directory-expiring" not in _codes(node, end - timedelta(days=1, minutes=1))
    assert "directory-expiring" in _codes(node, end - timedelta(hours=23))
    assert _codes(node, end) >= {"directory-expired"}
    assert "directory-expiring" not in _codes(node, end)


def test_a_directory_whose_key_ran_out_is_dropped_with_an_alert_and_the_node_starts(
    tmp_path: Path,
) -> None:
    """Its key's end dropped the directory at the next reload or start with nothing on
    the board but partner-unresolved, and the province's publishing node could not
    start at all."""
    fed, key, bundle = _province(tmp_path, key_issued=T0 - timedelta(days=700))
    key_end = key.not_valid_after_utc
    renew_crl(fed, now=key_end - timedelta(days=1))  # the CRL stays fresh throughout
    bundle.write_bytes((fed / "root.pem").read_bytes() + (fed / "crl.pem").read_bytes())
    _publish(tmp_path, bundle, key_end - timedelta(days=1), 7)  # valid 6 days past the key
    own = tmp_path / "hubei.directory.jws"
    clock = Clock(key_end - timedelta(days=1))
    publisher = _service(tmp_path, bundle, clock, own)
    publisher.start()
    assert B in publisher.resolution.routes
    clock.at = key_end + timedelta(days=1)
    # a reload (prepare, then install) and a start: neither refused, both say why
    settings = publisher.settings
    publisher.install(
        settings, publisher.prepare(settings, publisher._bundle.current(), at=clock()), {}
    )
    restarted = _service(tmp_path, bundle, clock, own)
    restarted.start()
    for node in (publisher, restarted):
        assert node.resolution.routes == {}
        [dropped] = [a for a in node.alerts(clock()) if a.code == "directory-dropped"]
        assert (dropped.severity.value, dropped.subject) == ("critical", "Hubei")
        assert "tongban pki sign-directory" in dropped.detail
    # a file that never was a valid directory is still refused (an operator's mistake)
    own.write_bytes(own.read_bytes()[:-40] + b"\n")
    with pytest.raises(DirectoryError):
        _service(tmp_path, bundle, clock, own).start()


def test_fresher_crls_the_node_cannot_write_are_on_the_board_until_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fed, _, bundle = _province(tmp_path, key_issued=T0)
    clock = Clock(T0 + timedelta(days=25))
    node = _service(tmp_path, bundle, clock, None)
    node.start()
    node.last_success = clock()
    fresh = renew_crl(fed, now=clock())
    write = service_module.write_atomically

    def refused(path: Path, data: bytes) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(service_module, "write_atomically", refused)
    node._take_crls([fresh], clock())
    [alert] = [a for a in node.alerts(clock()) if a.code == "trust-bundle-unwritable"]
    assert "writable" in alert.detail
    monkeypatch.setattr(service_module, "write_atomically", write)
    node._take_crls([fresh], clock())
    assert "trust-bundle-unwritable" not in _codes(node, clock())


async def test_a_source_answering_something_else_is_no_answer(tmp_path: Path) -> None:
    """protocol.md §1.7: a reply not of the document's form is ignored. Counting ``{}`` as
    an answer kept directory-unreachable away for good from a misconfigured source."""
    from aiohttp import web

    async def wrong(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/.well-known/tongban/directory", wrong)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    _, _, bundle = _province(tmp_path, key_issued=T0)
    node = FederationService(
        node_id=A,
        settings=DirectorySettings(cache=tmp_path / "cache", sources=(f"http://127.0.0.1:{port}",)),
        bundle=BundleSource(bundle), clock=Clock(T0), lifecycles=lambda: [_Live()],
        overrides={}, on_routes=lambda resolution: None,
    )  # fmt: skip
    try:
        node.start()
        assert await node.refresh() == 0
        assert node.last_success is None
        assert "not a directory document" in next(iter(node.failures.values()))
    finally:
        await node.close()
        await runner.cleanup()


def test_a_cached_copy_under_a_root_no_longer_trusted_is_left_out_without_an_alert(
    tmp_path: Path,
) -> None:
    """Its advice (sign again) would not apply, and it would stand on every start."""
    _, _, bundle = _province(tmp_path, key_issued=T0)
    _publish(tmp_path, bundle, T0, 7)
    _service(tmp_path, bundle, Clock(T0), tmp_path / "hubei.directory.jws").start()  # cached
    other = tmp_path / "other"
    init_federation(other, "Other", now=T0)
    bundle.write_bytes((other / "root.pem").read_bytes() + (other / "crl.pem").read_bytes())
    node = _service(tmp_path, bundle, Clock(T0), None)
    node.start()
    assert len(node.directories) == 0
    assert "directory-dropped" not in _codes(node, T0)


def test_a_cached_copy_whose_key_was_revoked_is_dropped_with_an_alert(tmp_path: Path) -> None:
    """Checked again at its issuing time with the CRLs, a revoked key failed then too,
    and the copy went without a word."""
    from certs.pki import revoke

    fed, key, bundle = _province(tmp_path, key_issued=T0)
    _publish(tmp_path, bundle, T0, 7)
    _service(tmp_path, bundle, Clock(T0), tmp_path / "hubei.directory.jws").start()  # cached
    from cryptography.hazmat.primitives.serialization import Encoding

    revoke(fed, key.public_bytes(Encoding.PEM), now=T0 + timedelta(hours=1))
    bundle.write_bytes((fed / "root.pem").read_bytes() + (fed / "crl.pem").read_bytes())
    node = _service(tmp_path, bundle, Clock(T0 + timedelta(hours=2)), None)
    node.start()
    assert len(node.directories) == 0
    [alert] = [a for a in node.alerts(T0 + timedelta(hours=2)) if a.code == "directory-dropped"]
    assert alert.subject == "Hubei"
