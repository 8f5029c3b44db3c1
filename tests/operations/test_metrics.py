"""Issue 14: ``GET /metrics`` on the staff listener of real ``tongban serve`` processes,
checked by the real ``promtool check metrics`` (Debian ``prometheus``) and read back;
``/readyz`` of the same node with its expiry detail."""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from chaoskit import A, B, Pki, make_federation, send_backlog, wait_drained, wait_for
from media_support import make_plan
from opskit import LoggedProc, staff_get, staff_request, token, tool
from prometheus_client.parser import text_string_to_metric_families

from relay.staff_auth import StaffRole
from remote_survey.reportjson import plan_to_json

DAY = 86400


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: dict, name: str, **labels: str) -> float | None:  # type: ignore[type-arg]
    return samples.get((name, frozenset(labels.items())))


def _promtool(text: str) -> None:
    run = subprocess.run(
        [tool("promtool", "prometheus"), "check", "metrics"],
        input=text, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, f"promtool check metrics: {run.stdout}{run.stderr}\n{text}"


async def test_metrics_count_packets_backlog_and_latency_and_pass_promtool(
    ops_pki: Pki, tmp_path: Path
) -> None:
    helper = "[helper]\nenabled = true\nseal_inline_up_to = 0\n"  # every seal in the helper
    federation = make_federation(ops_pki, tmp_path, extra=helper)
    node_a, node_b = LoggedProc(federation.config_a), LoggedProc(federation.config_b)
    await node_a.start()
    try:
        status, _ = await staff_get(federation.config_a, "/metrics", None)
        assert status == 401  # the office's figures need a staff token
        reader = token(federation.config_a, StaffRole.READER)
        sent = await send_backlog(federation.config_a, cases=3, per_case=2)

        async def failures_seen() -> dict | None:  # type: ignore[type-arg]
            _, text = await staff_get(federation.config_a, "/metrics", reader)
            found = _samples(text)
            down = _value(found, "tongban_delivery_failures_total", partner=B, reason="unavailable")
            return found if down else None

        waiting = await wait_for(failures_seen, "a failed delivery to the absent partner")
        assert _value(waiting, "tongban_outbox_packets", partner=B) == len(sent)
        age = _value(waiting, "tongban_outbox_oldest_age_seconds", partner=B)
        assert age is not None
        assert age >= 0

        clerk = token(federation.config_a, StaffRole.CLERK)
        plan = json.dumps(plan_to_json(make_plan(datetime.now(UTC), session_id="sv-metrics")))
        status, said = await staff_request(
            federation.config_a, "POST", "/staff/v1/surveys", clerk, body=plan
        )
        assert status == 201, said
        await node_b.start()
        await wait_drained(federation.config_a, len(sent))
        reader_b = token(federation.config_b, StaffRole.READER)

        async def looked_at_its_loop() -> bool:
            # B looks every 0.25 s from its start; on a quick host the drain ends sooner
            _, text = await staff_get(federation.config_b, "/metrics", reader_b)
            looks = _value(_samples(text), "tongban_event_loop_lag_seconds_count")
            return looks is not None and looks >= 1

        await wait_for(looked_at_its_loop, "B's first look at its event loop")
        status, text_a = await staff_get(federation.config_a, "/metrics", reader)
        assert status == 200
        status, text_b = await staff_get(federation.config_b, "/metrics", reader_b)
        assert status == 200
        _promtool(text_a)
        _promtool(text_b)

        at_a, at_b = _samples(text_a), _samples(text_b)
        accepted = {"status": "accepted", "reason": "none"}
        assert _value(at_a, "tongban_packets_sent_total", partner=B, **accepted) == len(sent)
        assert _value(at_b, "tongban_packets_received_total", partner=A, **accepted) == len(sent)
        assert _value(at_a, "tongban_delivery_latency_seconds_count", partner=B) == len(sent)
        assert _value(at_a, "tongban_outbox_packets", partner=B) is None  # drained
        for name in ("tls", "seal"):
            left = _value(at_a, "tongban_certificate_remaining_seconds", certificate=name)
            assert left is not None
            assert left > 30 * DAY
        crl_left = [v for (n, _), v in at_a.items() if n == "tongban_crl_remaining_seconds"]
        assert crl_left
        assert all(0 < v <= 366 * DAY for v in crl_left)
        leaves = _value(at_b, "tongban_audit_log_leaves")
        assert leaves is not None
        assert leaves >= len(sent)
        assert _value(at_a, "tongban_survey_sessions", state="scheduled") == 1
        # each node's crypto helper sealed (A) and examined (B) everything, no fallback
        for at in (at_a, at_b):
            assert _value(at, "tongban_crypto_helper_running") == 1
            assert _value(at, "tongban_crypto_helper_starts_total") == 1
        assert _value(at_a, "tongban_crypto_helper_requests_total", kind="seal",
                      outcome="helper") == len(sent)  # fmt: skip
        # the helper signed each ahead too; each kept or signed again by the node
        presigned = [
            _value(at_a, "tongban_crypto_helper_presigned_total", outcome=outcome)
            for outcome in ("kept", "signed_again")
        ]
        assert None not in presigned
        assert sum(v for v in presigned if v is not None) == len(sent)
        examined = _value(at_b, "tongban_crypto_helper_requests_total", kind="examine",
                          outcome="helper")  # fmt: skip
        assert examined is not None
        assert examined >= 1
        for at in (at_a, at_b):
            for kind in ("seal", "examine"):
                fallback = {"kind": kind, "outcome": "fallback"}
                assert _value(at, "tongban_crypto_helper_requests_total", **fallback) == 0
        # each serve process froze what it held once started; its collections are counted
        for at in (at_a, at_b):
            frozen = _value(at, "tongban_gc_frozen_objects")
            assert frozen is not None
            assert frozen > 10_000
            young = _value(at, "tongban_gc_pause_seconds_count", generation="0")
            assert young is not None
            assert young >= 1
            # and trims its heap after bursts (relay.heaptrim): counted from its start
            trims = _value(at, "tongban_heap_trims_total")
            assert trims is not None
            assert trims >= 0
            assert _value(at, "tongban_heap_trimmed_bytes_total") is not None
            # and how late its event loop ran (relay.looplag): looked at since it started
            looks = _value(at, "tongban_event_loop_lag_seconds_count")
            assert looks is not None
            assert looks >= 1
        colours = {dict(labels)["colour"] for n, labels in at_a if n == "tongban_cases"}
        assert colours == {"green", "yellow", "red", "grey"}
        url = f"http://127.0.0.1:{federation.public_port_a}/readyz"
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            assert resp.status == 200
            ready = await resp.json()
        assert ready["checks"] == {"storage": True, "outbox": True}
        assert [c["state"] for c in ready["expiry"]["crls"]] == ["ok"] * len(crl_left)
        names = {c["name"]: c["state"] for c in ready["expiry"]["certificates"]}
        assert names == {"tls": "ok", "seal": "ok"}
    finally:
        await asyncio.gather(node_a.stop(), node_b.stop())
