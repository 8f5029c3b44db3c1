"""Staff alerts for what runs out, checked at future instants (injected clock)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time, timedelta

from cryptography import x509

from certs.pki import CRL_VALIDITY, LEAF_VALIDITY, init_federation, issue_node
from relay.alerts import AlertBoard, Severity
from relay.expiry import ExpiryWatch, expiry_alerts
from signing.certificates import TrustBundle

ISSUED = datetime.now(UTC).replace(microsecond=0)


def _setup(tmp_path):
    fed, node = tmp_path / "fed", tmp_path / "node"
    init_federation(fed, "Expiry", now=ISSUED)
    issue_node(fed, "420106", "武昌区政务服务中心", "127.0.0.1", node, now=ISSUED)
    bundle = TrustBundle.from_pem((fed / "root.pem").read_bytes() + (fed / "crl.pem").read_bytes())
    return fed, node, bundle


def _codes(alerts):
    return sorted((a.code, a.severity, a.subject) for a in alerts)


def test_nothing_stands_while_everything_is_fresh(tmp_path) -> None:
    _, node, bundle = _setup(tmp_path)
    watch = ExpiryWatch(node_id="420106", bundle=lambda: bundle, key_dir=node, agreements=())
    assert watch(ISSUED + timedelta(days=1)) == []


def test_a_crl_warns_a_week_ahead_and_is_critical_when_stale(tmp_path, caplog) -> None:
    _, node, bundle = _setup(tmp_path)
    watch = ExpiryWatch(node_id="420106", bundle=lambda: bundle, key_dir=node, agreements=())
    issuer = bundle.crls[0].issuer.rfc4514_string()
    # 01:00 of a day five to six days before the CRL runs out, whatever the hour now
    soon = datetime.combine((ISSUED + CRL_VALIDITY - timedelta(days=5)).date(), time(1), UTC)

    def logged() -> int:
        return len([r for r in caplog.records if "crl-expiring" in r.getMessage()])

    with caplog.at_level(logging.WARNING, logger="tongban.relay.expiry"):
        assert _codes(watch(soon)) == [("crl-expiring", Severity.WARNING, issuer)]
        watch(soon + timedelta(hours=22))  # the same day: logged once
        assert logged() == 1
        watch(soon + timedelta(hours=23))  # the next day: logged again
        assert logged() == 2
    stale = ISSUED + CRL_VALIDITY + timedelta(minutes=1)
    assert _codes(watch(stale)) == [("crl-stale", Severity.CRITICAL, issuer)]
    assert _codes(watch(ISSUED + CRL_VALIDITY - timedelta(days=8))) == []


def test_own_certificates_warn_a_month_ahead_and_are_critical_within_a_week(tmp_path) -> None:
    _, node, _ = _setup(tmp_path)
    tls = x509.load_pem_x509_certificate((node / "tls.pem").read_bytes())
    end = tls.not_valid_after_utc
    assert end >= ISSUED + LEAF_VALIDITY - timedelta(minutes=10)
    certs = {n: x509.load_pem_x509_certificate((node / f"{n}.pem").read_bytes())
             for n in ("tls", "seal")}  # fmt: skip

    def at(t):
        return _codes(expiry_alerts(t, crls=(), certificates=certs, agreements=(), node_id="x"))

    assert at(end - timedelta(days=31)) == []
    w, c = Severity.WARNING, Severity.CRITICAL
    assert at(end - timedelta(days=29)) == [("certificate-expiring", w, "seal"),
                                            ("certificate-expiring", w, "tls")]  # fmt: skip
    assert at(end - timedelta(days=6)) == [("certificate-expiring", c, "seal"),
                                           ("certificate-expiring", c, "tls")]  # fmt: skip


def test_a_renewed_file_clears_nothing_until_the_node_has_loaded_it(tmp_path) -> None:
    """The watch reads the certificates in use: a renewed tls.pem in the key folder once
    cleared the alert while the node went on serving the old certificate to its end."""
    fed, node, bundle = _setup(tmp_path)
    in_use = {n: x509.load_pem_x509_certificate((node / f"{n}.pem").read_bytes())
              for n in ("tls", "seal")}  # fmt: skip
    end = in_use["tls"].not_valid_after_utc
    renewed = tmp_path / "renewed"
    later = end - timedelta(days=20)
    issue_node(fed, "420106", "武昌区政务服务中心", "127.0.0.1", renewed, now=later)
    (node / "tls.pem").write_bytes((renewed / "tls.pem").read_bytes())
    roots = TrustBundle(bundle.roots, ())  # the CRL has its own test
    watch = ExpiryWatch(
        node_id="420106", bundle=lambda: roots, key_dir=node, agreements=(),
        in_use=lambda: in_use,
    )  # fmt: skip
    w = Severity.WARNING
    assert _codes(watch(end - timedelta(days=20))) == [
        ("certificate-expiring", w, "seal"),
        ("certificate-expiring", w, "tls"),
        ("certificate-not-loaded", w, "tls"),
    ]
    in_use["tls"] = x509.load_pem_x509_certificate((node / "tls.pem").read_bytes())  # loaded
    assert _codes(watch(end - timedelta(days=20))) == [("certificate-expiring", w, "seal")]


def test_an_agreement_the_node_is_party_to_warns_a_month_before_it_ends(tmp_path) -> None:
    from types import SimpleNamespace

    end = ISSUED + timedelta(days=400)
    mine = SimpleNamespace(id="a", version=2, valid_until=end, party_ids=frozenset({"420106"}))
    other = SimpleNamespace(id="b", version=1, valid_until=end, party_ids=frozenset({"320982"}))

    def at(t):
        alerts = expiry_alerts(t, crls=(), certificates={}, agreements=[mine, other],
                               node_id="420106")  # fmt: skip
        return _codes(alerts)

    assert at(end - timedelta(days=31)) == []
    assert at(end - timedelta(days=29)) == [("agreement-ending", Severity.WARNING, "a v2")]
    assert at(end) == []  # ended: the authorizer refuses it from then on


def test_the_watch_is_a_source_on_the_staff_alert_board(tmp_path) -> None:
    _, node, bundle = _setup(tmp_path)
    board = AlertBoard()
    board.add_source("expiry", ExpiryWatch(node_id="420106", bundle=lambda: bundle,
                                           key_dir=node, agreements=()))  # fmt: skip
    [alert] = board.current(ISSUED + CRL_VALIDITY + timedelta(days=1))
    assert (alert.source, alert.code) == ("expiry", "crl-stale")
    assert alert.title_zh == "吊销列表已过期"


async def test_a_running_node_checks_at_start_and_stops_when_told(tmp_path, caplog) -> None:
    import asyncio

    from relay.expiry import watch_until_stopped

    _, node, bundle = _setup(tmp_path)
    watch = ExpiryWatch(node_id="420106", bundle=lambda: bundle, key_dir=node, agreements=())
    stale = ISSUED + CRL_VALIDITY + timedelta(days=1)  # a node started a month on
    stop = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger="tongban.relay.expiry"):
        task = asyncio.create_task(watch_until_stopped(watch, lambda: stale, stop))
        async with asyncio.timeout(20):
            while not any("crl-stale" in r.getMessage() for r in caplog.records):
                await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 20)
    assert task.done()
