"""Checkpoints stamped by a real RFC 3161 TSA (``openssl ts -reply``), and a TSA outage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from audit_node_support import IDS, Federation, Pki, write_configs
from tsakit import OpenSslTsa, TsaPki, openssl_ts_verify

from relay.config import ConfigError, load_config
from relay.timestamps.store import TimestampStore
from relay.timestamps.tokens import TimestampError, TsaTrust, check_response

A, B, _ = IDS


def _with_tsa(federation: Federation, tsa: OpenSslTsa, pki: TsaPki, alert_after: str) -> None:
    for node in federation.nodes.values():
        with node.config_path.open("a", encoding="utf-8") as out:
            out.write(
                f'[timestamps]\nurl = "{tsa.url}"\ntrust = "{pki.ca}"\n'
                f'alert_after = "{alert_after}"\n'
            )


@pytest.fixture
async def stamped_pair(
    node_pki: Pki, tsa: OpenSslTsa, tsa_pki: TsaPki, tmp_path: Path
) -> AsyncIterator[Federation]:
    federation = Federation(node_pki, write_configs(node_pki, tmp_path, IDS[:2], interval="200ms"))
    _with_tsa(federation, tsa, tsa_pki, "10m")
    try:
        for node in federation.nodes.values():
            await node.start()
        yield federation
    finally:
        for node in federation.nodes.values():
            await node.stop()


async def _wait_stamped(store: TimestampStore, index: int) -> tuple[int, bytes, bytes]:
    """Wait until a stamped checkpoint covers leaf ``index`` (the task runs on its own)."""
    async with asyncio.timeout(60):
        while (stamped := store.stamped_covering(index)) is None:
            await asyncio.sleep(0.05)
    return stamped


async def test_every_checkpoint_gets_a_token_that_openssl_and_our_code_accept(
    stamped_pair: Federation, tsa_pki: TsaPki, tmp_path: Path
):
    a = stamped_pair[A]
    await a.send(B, "CASE-TS-1")
    store = TimestampStore(a.db)
    try:
        last = a.live.service.state.log.size() - 1  # the packet's leaf or a later one
        _, note, response = await _wait_stamped(store, last)
        openssl_ts_verify(response, note, tsa_pki, tmp_path / "ossl")
        stamp = check_response(response, note, TsaTrust.from_pem(tsa_pki.ca.read_bytes()))
        assert stamp.tsa == "CN=tongban test TSA"
        with pytest.raises(TimestampError, match="Mismatch"):
            check_response(response, note + b"x", TsaTrust.from_pem(tsa_pki.ca.read_bytes()))
    finally:
        store.close()


async def test_tsa_down_exchange_goes_on_alert_after_the_set_time_then_caught_up(
    node_pki: Pki, tsa: OpenSslTsa, tsa_pki: TsaPki, tmp_path: Path
):
    federation = Federation(node_pki, write_configs(node_pki, tmp_path, IDS[:2]))
    _with_tsa(federation, tsa, tsa_pki, "10m")
    a, b = federation[A], federation[B]
    try:
        await a.start()
        await b.start()
        tsa.up = False
        await a.send(B, "CASE-TS-2")  # delivered although the TSA is down
        a.live.checkpoint()
        stamper = a.live.stamper
        assert stamper is not None
        assert await stamper.catch_up() == 0
        assert "503" in stamper.last_error
        store = TimestampStore(a.db)
        try:
            (_, _, signed_at), *_ = store.unstamped()
            assert list(stamper.alerts(signed_at + timedelta(minutes=9))) == []
            (alert,) = stamper.alerts(signed_at + timedelta(minutes=11))
            assert alert.code == "tsa-unavailable"
            assert "503" in alert.detail
            assert alert.title_zh == "可信时间戳服务不可用"
            await b.send(A, "CASE-TS-3")
            a.live.checkpoint()
            assert len(store.unstamped()) == 2
            tsa.up = True
            # a TSA whose clock is off by an hour (here: the node's) stamps nothing that
            # proves a time: refused, and tried again
            clock = stamper._clock
            stamper._clock = lambda: clock() + timedelta(hours=1)
            assert await stamper.catch_up() == 0
            assert "off from this node's" in stamper.last_error
            assert len(store.unstamped()) == 2
            stamper._clock = clock
            assert await stamper.catch_up() == 2
            assert store.unstamped() == []
            assert list(stamper.alerts(signed_at + timedelta(days=1))) == []
        finally:
            store.close()
    finally:
        await a.stop()
        await b.stop()


def test_timestamps_config_is_checked(tmp_path: Path):
    path = tmp_path / "node.toml"
    base = (
        '[node]\nid = "420106"\nkey_dir = "k"\ndata_dir = "d"\ntrust_bundle = "t.pem"\n'
        "[listeners.federation]\nport = 1\n[listeners.public]\nport = 2\n"
        "[listeners.staff]\nport = 3\n"
    )
    path.write_text(base + '[timestamps]\nurl = "ftp://x"\ntrust = "tsa.pem"\n')
    with pytest.raises(ConfigError, match=r"timestamps\.url"):
        load_config(path)
    path.write_text(base + '[timestamps]\nurl = "http://127.0.0.1:9/tsa"\n')
    with pytest.raises(ConfigError, match=r"timestamps\.trust"):
        load_config(path)
    path.write_text(base + '[timestamps]\nurl = "http://127.0.0.1:9/tsa"\ntrust = "tsa.pem"\n')
    settings = load_config(path).timestamps
    assert settings is not None
    assert settings.alert_after == 3600.0
    path.write_text(base)
    assert load_config(path).timestamps is None


async def test_a_malformed_tsa_answer_is_a_timestamp_error_and_stamping_goes_on(
    stamped_pair: Federation, tsa_pki: TsaPki
):
    """The parser raised plain ValueErrors for tokens that decode but are malformed
    inside: the checkpoint task ended for good on the first (no checkpoints, stamps or
    index upkeep until a restart), and a changed token in a dossier was a traceback."""
    a = stamped_pair[A]
    await a.send(B, "CASE-TS-4")
    store = TimestampStore(a.db)
    try:
        _, note, response = await _wait_stamped(store, a.live.service.state.log.size() - 1)
        trust = TsaTrust.from_pem(tsa_pki.ca.read_bytes())
        outcomes: set[str] = set()
        for at in range(len(response)):
            for bit in (0x01, 0x80):
                changed = bytearray(response)
                changed[at] ^= bit
                try:
                    check_response(bytes(changed), note, trust)
                    outcomes.add("accepted")
                except TimestampError as exc:
                    outcomes.add("malformed" if "malformed" in str(exc) else "refused")
        assert "malformed" in outcomes  # the parser's own errors, each a TimestampError

        stamper = a.live.stamper
        assert stamper is not None
        real, failures = stamper.catch_up, [0]

        async def once_broken() -> int:
            if failures[0] == 0:
                failures[0] += 1
                raise ValueError("Malformed TimestampToken: ASN.1 parsing error")
            return await real()

        stamper.catch_up = once_broken  # type: ignore[method-assign]
        await a.send(B, "CASE-TS-5")
        await _wait_stamped(store, a.live.service.state.log.size() - 1)  # the task lived on
        assert failures == [1]
    finally:
        store.close()


async def test_the_tsa_certificates_warn_before_they_run_out(
    stamped_pair: Federation, tsa_pki: TsaPki
):
    """Nothing watched the TSA's certificates: once one ended, no token verified and
    checkpoints got no proven time, with only `tsa-unavailable` after a while, its last
    error empty."""
    from cryptography import x509

    a = stamped_pair[A]
    await a.send(B, "CASE-TS-6")
    store = TimestampStore(a.db)
    try:
        await _wait_stamped(store, a.live.service.state.log.size() - 1)
    finally:
        store.close()
    stamper = a.live.stamper
    assert stamper is not None
    signer = x509.load_pem_x509_certificate(tsa_pki.tsa_cert.read_bytes())
    end = signer.not_valid_after_utc
    assert stamper.certificate_alerts(end - timedelta(days=40)) == []
    alerts = {x.subject: x for x in stamper.alerts(end - timedelta(days=10))}
    assert set(alerts) == {"CN=tongban test TSA", "CN=tongban test TSA root"}
    assert alerts["CN=tongban test TSA"].code == "tsa-certificate-expiring"
    assert alerts["CN=tongban test TSA"].severity == "warning"
    assert alerts["CN=tongban test TSA"].title_zh == "可信时间戳服务的证书即将过期"
    [late] = [x for x in stamper.alerts(end - timedelta(days=3)) if "root" not in x.subject]
    assert late.severity == "critical"
