"""Issue 14: what ``/readyz`` shows of what runs out (relay.expiry.expiry_detail and
ExpiryWatch.detail), at injected instants, and the same figures as metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from certs.pki import CRL_VALIDITY, LEAF_VALIDITY, init_federation, issue_node
from relay.expiry import ExpiryWatch
from relay.metrics import expiry_gauges
from signing.certificates import TrustBundle

ISSUED = datetime.now(UTC).replace(microsecond=0)


def _watch(tmp_path):
    fed, node = tmp_path / "fed", tmp_path / "node"
    init_federation(fed, "Expiry", now=ISSUED)
    issue_node(fed, "420106", "武昌区政务服务中心", "127.0.0.1", node, now=ISSUED)
    bundle = TrustBundle.from_pem((fed / "root.pem").read_bytes() + (fed / "crl.pem").read_bytes())
    watch = ExpiryWatch(node_id="420106", bundle=lambda: bundle, key_dir=node, agreements=())
    return watch, bundle, node


def _states(detail):
    return [c["state"] for c in detail["crls"]], {
        c["name"]: c["state"] for c in detail["certificates"]
    }


def test_the_detail_says_ok_expiring_and_expired_with_days_left(tmp_path) -> None:
    watch, _, _ = _watch(tmp_path)
    fresh = watch.detail(ISSUED + timedelta(days=1))
    assert _states(fresh) == (["ok"], {"seal": "ok", "tls": "ok"})
    days = fresh["crls"][0]["days_left"]
    assert abs(days - (CRL_VALIDITY.days - 1)) < 0.1
    soon = watch.detail(ISSUED + CRL_VALIDITY - timedelta(days=6))
    assert _states(soon)[0] == ["expiring"]  # the same 7 days as the alert
    stale = watch.detail(ISSUED + CRL_VALIDITY + timedelta(hours=1))
    assert _states(stale)[0] == ["expired"]
    assert stale["crls"][0]["days_left"] < 0
    late = watch.detail(ISSUED + LEAF_VALIDITY - timedelta(days=20))
    assert _states(late)[1] == {"seal": "expiring", "tls": "expiring"}


def test_the_metrics_give_the_same_instants_in_seconds(tmp_path) -> None:
    watch, bundle, node = _watch(tmp_path)
    at = ISSUED + timedelta(days=3)
    families = {f.name: f for f in expiry_gauges(lambda: bundle, node)(at)}
    crl = families["tongban_crl_remaining_seconds"].samples[0].value
    detail = watch.detail(at)
    assert abs(crl / 86400 - detail["crls"][0]["days_left"]) < 0.01
    certs = {
        s.labels["certificate"]: s.value
        for s in families["tongban_certificate_remaining_seconds"].samples
    }
    assert set(certs) == {"tls", "seal"}
    assert abs(certs["tls"] / 86400 - detail["certificates"][1]["days_left"]) < 0.01
