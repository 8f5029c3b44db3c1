"""Access codes, tracking links, the lookup throttle and the applicant's view."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from casekit import HANDLING, RECEIVING, details_for, header, later

from relay.cases.errors import TrackingDenied
from relay.cases.model import CaseHeader, Event, EventKind, Office
from relay.cases.tracking import (
    CODE_ALPHABET,
    LookupThrottle,
    TokenBucketLimiter,
    check_access_code,
    hash_access_code,
    new_access_code,
    sign_tracking_link,
    verify_tracking_link,
)
from relay.cases.tracking_view import public_view
from relay.cases.workflow import Case, Command, Received, transition

NOW = datetime.now(UTC)  # the `pki` fixture's certificates are valid around the real now


def test_access_codes_are_random_well_formed_and_stored_only_as_salted_scrypt():
    rng = random.Random(7)
    codes = {new_access_code(rng.randbytes) for _ in range(2000)}
    assert len(codes) == 2000
    code = next(iter(codes))
    assert len(code) == 11
    assert code[5] == "-"
    assert set(code.replace("-", "")) <= set(CODE_ALPHABET)
    stored = hash_access_code(code, b"salt-one-16bytes")
    assert code.replace("-", "") not in stored
    assert stored != hash_access_code(code, b"salt-two-16bytes")
    assert check_access_code(code, stored)
    assert check_access_code(code.lower().replace("-", " "), stored)
    assert not check_access_code("22222-22222", stored)
    assert not check_access_code(code, "garbage")


def test_tracking_link_verifies_for_its_node_and_is_refused_when_expired_or_foreign(pki):
    signer = pki.keys[RECEIVING].seal
    token = sign_tracking_link("WC-1", signer, node_id=RECEIVING, at=NOW, ttl=timedelta(hours=1))
    assert verify_tracking_link(token, pki.bundle, node_id=RECEIVING, at=NOW) == ("WC-1", None)
    with pytest.raises(TrackingDenied) as info:
        verify_tracking_link(token, pki.bundle, node_id=RECEIVING, at=NOW + timedelta(hours=2))
    assert info.value.code == "expired-link"
    with pytest.raises(TrackingDenied) as info:
        verify_tracking_link(token, pki.bundle, node_id=HANDLING, at=NOW)
    assert info.value.code == "bad-link"
    head, payload, sig = token.split(".")
    with pytest.raises(TrackingDenied):
        verify_tracking_link(
            f"{head}.{payload[:-2]}AA.{sig}", pki.bundle, node_id=RECEIVING, at=NOW
        )


def test_token_bucket_refills_with_passed_in_time_and_bounds_its_keys():
    limiter = TokenBucketLimiter(capacity=3, rate=0.5, max_keys=2)
    assert [limiter.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a", 0.0) == pytest.approx(2.0)
    assert limiter.take("a", 2.0) == 0.0
    limiter.take("b", 2.0)
    limiter.take("c", 2.0)
    assert len(limiter._buckets) == 2


def test_guessing_codes_for_one_case_is_throttled_from_any_address():
    throttle = LookupThrottle()
    for i in range(5):
        assert throttle.admit(f"10.0.0.{i}", "WC-1", 100.0) == 0.0
        throttle.failed("WC-1", 100.0)
    assert throttle.admit("10.0.0.99", "WC-1", 100.0) > 0
    assert throttle.admit("10.0.0.99", "WC-2", 100.0) == 0.0  # other cases unaffected
    assert throttle.admit("10.0.0.99", "WC-1", 160.0) == 0.0  # one more try a minute later


def test_one_address_is_throttled_across_many_case_numbers():
    throttle = LookupThrottle()
    waits = [throttle.admit("198.51.100.7", f"WC-{i}", 0.0) for i in range(11)]
    assert waits[:10] == [0.0] * 10
    assert waits[10] > 0


def _case_in_correction() -> Case:
    r = Case(header(), Office.RECEIVING)
    r, packets = transition(
        r, Command(EventKind.SUBMIT, details_for(EventKind.SUBMIT, r)), later(0)
    )
    h = Case(CaseHeader.from_json(packets[0].content["header"]), Office.HANDLING)
    h, _ = transition(h, Received(Event.from_content(packets[0].content)), later(0))
    kind = EventKind.REQUEST_CORRECTION
    h, packets = transition(h, Command(kind, details_for(kind, h)), later(5))
    r, _ = transition(r, Received(Event.from_content(packets[0].content)), later(5))
    r, packets = transition(
        r, Command(EventKind.COMPLAIN, {"text": "why", "staff": "clerk-1"}), later(6)
    )
    return r


def test_public_view_is_chinese_by_default_and_hides_internal_fields(calendar):
    r = _case_in_correction()
    names = {RECEIVING: ("武昌区政务服务中心", "Wuchang Service Centre")}
    zh = public_view(r, lang="xx", now=later(10), calendar=calendar, office_names=names)
    en = public_view(r, lang="en", now=later(10), calendar=calendar, office_names=names)
    assert zh["lang"] == "zh"
    assert zh["state_label"] == "待补正材料"
    assert en["state_label"] == "Waiting for missing materials"
    assert zh["missing"] == ["食品安全管理制度"]
    assert [s["label"] for s in zh["steps"]][:2] == ["收件并提交办理地", "需要补正材料"]
    assert zh["steps"][0]["office"]["name"] == "武昌区政务服务中心"
    assert zh["steps"][1]["office"]["name"] == HANDLING  # no name known: the node id
    text = json.dumps([zh, en], ensure_ascii=False)
    for secret in ("internal: call Mr Li", "clerk-1", "note", "staff"):
        assert secret not in text
    assert zh["clock"] == "paused"
    assert zh["complaints"][0]["respond_by"] is not None
