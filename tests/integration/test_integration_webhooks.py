"""Webhooks: every listed event reaches the office's platform (examples/platform.py)
exactly once despite the platform being down for a while and answers lost on the way,
each signature checked by joserfc; a dead target is parked with an alert. The tests with
two offices run with their tables on SQLite and again on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import example_platform as example  # examples/platform.py (loaded by conftest)
import integkit
import pytest
from aiohttp import web
from casekit import HANDLING, RECEIVING
from casekit_offices import Pki, free_port, serve
from dbkit import Database
from integkit import FOOD, WiredOffices, target
from joserfc.errors import BadSignatureError
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agreements.calendar import default_calendar
from relay.alerts import ALERTS
from relay.cases.desk import CaseDesk
from relay.cases.model import EventKind
from relay.cases.terms import load_terms
from relay.core.errors import NotAuthorized
from relay.core.model import OutboxState
from relay.http.licence_status import LicenceStatus
from relay.integration.events import EventType
from signing.licence import Licence, StatusEntry, issue_licence
from signing.status_list import StatusPurpose

K = EventKind
FOOD_FORM: dict[str, Any] = {
    "applicant-identity": {
        "name": "江城餐饮",
        "id_type": "resident-id",
        "id_number": "420106199001011234",
    },
    "case-materials": [{"material": "食品经营许可申请书"}, {"material": "营业执照"}],
}
STATUS = "https://127.0.0.1:9/.well-known/tongban/status"


async def _until(predicate: Any, what: str, timeout: float = 60.0, tick: Any = None) -> None:
    """Wait for ``predicate``; ``tick`` (if given) runs between looks (time passing)."""

    async def poll() -> None:
        while not predicate():
            if tick is not None:
                tick()
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def _key(pki: Pki, node: str) -> Any:
    return example.seal_key((pki.keys[node].directory / "seal.pem").read_bytes())


async def test_every_event_reaches_the_platform_once_despite_downtime(
    data_pki: Pki, tmp_path: Path, clock, database: Database
):
    platform = example.Platform(
        example.seal_key((data_pki.keys[RECEIVING].directory / "seal.pem").read_bytes())
    )
    platform_h = example.Platform(
        example.seal_key((data_pki.keys[HANDLING].directory / "seal.pem").read_bytes())
    )
    platform.down = platform_h.down = True
    async with serve(platform.app()) as url_r, serve(platform_h.app()) as url_h:
        w = integkit.wired_offices(
            data_pki, tmp_path, clock,
            webhooks={RECEIVING: [target(f"{url_r}/webhooks")],
                      HANDLING: [target(f"{url_h}/webhooks")]},
            database=database,
        )  # fmt: skip
        stop = asyncio.Event()
        tasks = [asyncio.create_task(i.dispatcher.run(stop)) for i in (w.r, w.h)]
        try:
            await _run_case(w)
            await _until(lambda: platform.unavailable >= 3 and platform_h.unavailable >= 3,
                         "attempts while the platforms are down",
                         tick=lambda: clock.advance(seconds=1))  # fmt: skip
            platform.down = platform_h.down = False
            platform.lose_answers = 2  # two events taken, their answers lost
            clock.advance(minutes=10)  # the backoff has passed
            for i in (w.r, w.h):
                i.dispatcher.wake()
            expected = {n: i.store.events() for n, i in ((RECEIVING, w.r), (HANDLING, w.h))}
            await _until(
                lambda: (
                    len(platform.events) == len(expected[RECEIVING])
                    and len(platform_h.events) == len(expected[HANDLING])
                ),
                "every event at the platforms",
                tick=lambda: clock.advance(seconds=1),
            )
            await _until(lambda: platform.repeats == 2, "the two repeats after lost answers",
                         tick=lambda: clock.advance(seconds=1))  # fmt: skip
            status = w.r.store.delivery_status() + w.h.store.delivery_status()
            await _until(lambda: all(s["pending"] == 0 for s in (
                w.r.store.delivery_status() + w.h.store.delivery_status())), "settled",
                tick=lambda: clock.advance(seconds=1))  # fmt: skip
            assert all(s["parked"] == 0 for s in status)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            w.close()
    for p, node in ((platform, RECEIVING), (platform_h, HANDLING)):
        assert p.refused == 0  # every signature verified (joserfc, in the platform)
        assert list(p.events.values()) == expected[node]  # each once, in outbox order
    assert platform_h.repeats == 0
    types = {e["type"] for e in expected[RECEIVING] + expected[HANDLING]}
    assert types == {t.value for t in EventType} - {"step-taken-back"}  # a test of its own
    r_types = [e["type"] for e in expected[RECEIVING]]
    assert r_types.count("sla-yellow") == r_types.count("sla-red") == 1
    assert "applicant-identity" not in json.dumps(expected, ensure_ascii=False)


def _wired(data_pki: Pki, tmp_path: Path, clock: Any, database: Database) -> WiredOffices:
    """Two offices, the receiving one with a webhook target that is never reached."""
    return integkit.wired_offices(
        data_pki, tmp_path, clock, webhooks={RECEIVING: [target("http://127.0.0.1:9/h")]},
        database=database,
    )  # fmt: skip


async def _opened(w: WiredOffices) -> str:
    """A food licence case opened at the receiving office and delivered; its id."""
    opened = await w.office(RECEIVING).desk.open_case(
        matter=FOOD, mode="proxy_receipt", handling=HANDLING, application=FOOD_FORM
    )
    await w.deliver()
    return opened.record.case.header.case_id


async def _forged_step(relay: Any, case_id: str, at: Any, **kw: Any) -> Any:
    """A ``conclude`` the receiving office may not take, sent as it stands: the handling
    office refuses it (``rejected``)."""
    forged = {
        "format": "tongban-case-event/1", "case": case_id, "event": "conclude",
        "origin": "receiving", "seq": 9, "seen": 0, "at": int(at.timestamp()),
        "details": {},
    }  # fmt: skip
    return await relay.create_packet(
        to=HANDLING, case_id=case_id, matter=FOOD, action="status-update",
        mode="proxy_receipt", content=forged, **kw,
    )  # fmt: skip


async def _run_case(w: WiredOffices) -> None:
    """One food business licence case through every event type, the platforms down."""
    r, h, clock = w.office(RECEIVING), w.office(HANDLING), w.clock
    opened = await r.desk.open_case(
        matter=FOOD, mode="proxy_receipt", handling=HANDLING, application=FOOD_FORM
    )
    case_id = opened.record.case.header.case_id
    await w.deliver()
    await h.desk.act(case_id, K.ACCEPT, {})
    await w.deliver()
    for days in (10, 5):  # 8 of 10 working days used: yellow; then 11: red
        clock.advance(days=days)
        for i in (w.r, w.h):
            i.scan()
            i.scan()  # a second look makes nothing new
    await h.desk.act(case_id, K.REQUEST_SURVEY, {"surveyor": "receiving"})
    await w.deliver()
    await r.desk.act(case_id, K.SURVEY_REPORT, {"outcome": "pass", "report": "现场符合"})
    await w.deliver()
    await h.desk.act(case_id, K.DECIDE, {"decision": "approve"})
    now = clock()
    licence = Licence(
        issuer_node=HANDLING, number="JY-320982-0001", licence_type=FOOD,
        holder_id="420106199001011234", holder_name="江城餐饮", scope="热食类食品制售",
        department_zh="大丰区行政审批局", department_en="Dafeng Approval Bureau",
        issued_at=now, valid_from=now, valid_until=now + timedelta(days=1825),
        status=tuple(StatusEntry(p, 3, f"{STATUS}/{p.value}") for p in StatusPurpose),
    )  # fmt: skip
    token = issue_licence(licence, w.offices.pki.keys[HANDLING].seal, at=now)
    await h.desk.act(case_id, K.ISSUE_LICENCE, {"licence": token, "licence_number": licence.number})
    await w.deliver()
    await r.desk.act(case_id, K.COMPLAIN, {"text": "领证要跑两趟"})
    await w.deliver()
    status = LicenceStatus(
        node_id=HANDLING, desk=h.desk, store=h.cases, signer=w.offices.pki.keys[HANDLING].seal,
        status_dir=h.verifier.status_dir, clock=clock,
    )  # fmt: skip
    status.change(licence.number, StatusPurpose.REVOCATION, True)
    await _forged_step(r.relay, case_id, clock())
    await w.deliver()
    assert r.relay.list_outbox(state=OutboxState.REJECTED)
    assert w.r.scan() == 1  # step-refused
    assert w.r.scan() == 0
    # a step set aside before the partner took it (here: it expired on the way)
    await _forged_step(r.relay, case_id, clock(), expires_in=timedelta(seconds=1))
    clock.advance(seconds=2)
    await w.deliver()
    assert r.relay.list_outbox(state=OutboxState.DEAD)
    assert w.r.scan() == 1  # step-undelivered
    assert w.r.scan() == 0


def _gauges(integration: Any, now: Any) -> dict[tuple[str, str], float]:
    """The webhook gauges as Prometheus exposes them, read back from the text."""

    class Source:
        def collect(self) -> Any:
            return integration.webhook_gauges(now)

    registry = CollectorRegistry()
    registry.register(Source())  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    return {
        (s.labels["target"], s.labels["state"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "tongban_webhook_deliveries"
    }


async def test_a_dead_target_is_parked_with_an_alert_and_retried_on_request(
    data_pki: Pki, tmp_path: Path, clock, database: Database
):
    dead = f"http://127.0.0.1:{free_port()}/webhooks"  # nothing listens there
    w = integkit.wired_offices(
        data_pki, tmp_path, clock, webhooks={RECEIVING: [target(dead, max_attempts=3)]},
        database=database,
    )  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(w.r.dispatcher.run(stop))
    try:
        r = w.office(RECEIVING)
        opened = await r.desk.open_case(
            matter=FOOD, mode="proxy_receipt", handling=HANDLING, application=FOOD_FORM
        )
        w.r.dispatcher.wake()
        app = w.staff(RECEIVING)

        def state() -> dict[str, Any]:
            [row] = w.r.store.delivery_status()
            return row

        # each failure waits out its backoff on the injected clock, which time moves on
        await _until(lambda: state()["parked"] == 1, "the delivery parked",
                     tick=lambda: clock.advance(seconds=30))  # fmt: skip
        [row] = state()["troubled"]
        assert row["attempts"] == 3
        assert "ClientConnectorError" in row["error"] or "Connect" in row["error"]
        assert row["event"] == f"{RECEIVING}:case-created:{opened.record.case.header.case_id}"
        assert (row["type"], row["case"]) == ("case-created", opened.record.case.header.case_id)
        codes = {a.code for a in app[ALERTS].current(clock())}
        assert {"webhook-parked", "webhook-failing"} <= codes
        assert _gauges(w.r, clock()) == {(dead, "pending"): 0, (dead, "delivered"): 0,
                                         (dead, "parked"): 1}  # fmt: skip
        headers = {"Authorization": f"Bearer {r.staff_token(clock)}"}
        async with serve(app) as base, aiohttp.ClientSession(headers=headers) as http:
            url = f"{base}/staff/v1/integration/webhooks/retry"
            async with http.post(url, json={"target": dead}) as resp:
                assert (await resp.json())["retried"] == 1
        assert state()["parked"] == 0
        assert _gauges(w.r, clock())[dead, "pending"] == 1
        assert "webhook-parked" not in {a.code for a in app[ALERTS].current(clock())}
    finally:
        stop.set()
        await task
        w.close()


async def test_a_tampered_body_fails_the_independent_check(data_pki: Pki):
    from relay.integration.webhooks import sign_body

    seal = data_pki.keys[RECEIVING].seal
    key = example.seal_key((data_pki.keys[RECEIVING].directory / "seal.pem").read_bytes())
    body = b'{"id":"420106:case-created:C-1","type":"case-created"}'
    from datetime import UTC, datetime

    signature = sign_body(body, seal, event_id="420106:case-created:C-1", at=datetime.now(UTC))
    header = example.verify_signature(signature, body, key)
    assert header["tongban_event"] == "420106:case-created:C-1"
    other = example.seal_key((data_pki.keys[HANDLING].directory / "seal.pem").read_bytes())
    for tampered, k in ((body.replace(b"C-1", b"C-2"), key), (body, other)):
        with pytest.raises(BadSignatureError):
            example.verify_signature(signature, tampered, k)


class _RefusingRelay:
    """A relay core that refuses to queue anything (as when the agreement was withdrawn
    between the desk's check and the queueing)."""

    async def create_packet(self, **_: Any) -> Any:
        raise NotAuthorized("not-a-party")

    def list_inbox(self, *, case_id: str | None = None) -> list[Any]:
        return []

    def read_packet(self, packet_id: str) -> Any:
        raise NotAuthorized("not-a-party")


def _desk_over(relay: Any, office: Any, data_pki: Pki, clock: Any) -> CaseDesk:
    """The receiving office's desk on its case store, over the stand-in ``relay``."""
    return CaseDesk(
        node_id=RECEIVING, relay=relay, store=office.cases,
        terms=load_terms([data_pki.agreement], data_pki.bundle, at=clock()),
        calendar=default_calendar(), signer=data_pki.keys[RECEIVING].seal,
        bundle=lambda: data_pki.bundle, clock=clock, office_names={},
    )  # fmt: skip


async def test_a_step_taken_back_takes_its_event_back(
    data_pki: Pki, tmp_path: Path, clock, database: Database
):
    """The relay refuses to queue our step: the desk takes the stored step back, and the
    event the step made goes with it."""
    w = _wired(data_pki, tmp_path, clock, database)
    try:
        r = w.office(RECEIVING)
        case_id = await _opened(w)
        await w.office(HANDLING).desk.act(case_id, K.ACCEPT, {})
        await w.deliver()
        before = [e["id"] for e in w.r.store.events()]
        refusing = _desk_over(_RefusingRelay(), r, data_pki, clock)
        with pytest.raises(NotAuthorized):
            await refusing.act(case_id, K.COMPLAIN, {"text": "领证要跑两趟"})
        assert r.desk.get(case_id).case.events[-1].kind is not K.COMPLAIN
        assert [e["id"] for e in w.r.store.events()] == before
        [row] = w.r.store.delivery_status()
        assert row["pending"] == len(before)
    finally:
        w.close()


async def test_a_step_taken_back_after_its_event_went_out_is_announced_and_not_reused(
    data_pki: Pki, tmp_path: Path, clock, database: Database
):
    """The platform had the event of a step the relay then refused to send: it hears the
    step was taken back, and the step taken next under the same number is an event of
    its own (the same id was kept for both, and the platform dropped the second as a
    repeat)."""
    w = _wired(data_pki, tmp_path, clock, database)
    url = "http://127.0.0.1:9/h"
    try:
        r = w.office(RECEIVING)
        case_id = await _opened(w)
        await w.office(HANDLING).desk.act(case_id, K.ACCEPT, {})
        await w.deliver()

        def complaints() -> list[str]:
            return [e["id"] for e in w.r.store.events() if e["type"] == "complaint-received"]

        class _SentThenRefused(_RefusingRelay):
            async def create_packet(self, **_: Any) -> Any:
                for event_id in complaints():  # as if the dispatcher had just sent it
                    w.r.store.delivered(event_id, url, clock())
                raise NotAuthorized("not-a-party")

        refusing = _desk_over(_SentThenRefused(), r, data_pki, clock)
        with pytest.raises(NotAuthorized):
            await refusing.act(case_id, K.COMPLAIN, {"text": "领证要跑两趟"})
        [first] = complaints()
        back = [e for e in w.r.store.events() if e["type"] == "step-taken-back"]
        assert [(e["id"], e["data"]) for e in back] == [
            (f"{RECEIVING}:step-taken-back:{first}", {"event": first})
        ]
        clock.advance(seconds=5)
        await r.desk.act(case_id, K.COMPLAIN, {"text": "领证要跑三趟"})
        again = [i for i in complaints() if i != first]
        assert len(again) == 1  # its own id, though the same step number
        assert again[0].rsplit(":", 1)[0] == first.rsplit(":", 1)[0]
    finally:
        w.close()


async def test_a_refusal_makes_its_event_once_though_the_scan_stops_before_noticing_it(
    data_pki: Pki, tmp_path: Path, clock, database: Database
):
    """The scan reads only the refusals it has not noticed; stopped between making a
    refusal's event and noticing it, the next scan reads it again and makes nothing new,
    and once noticed no scan reads it any more."""
    w = _wired(data_pki, tmp_path, clock, database)
    try:
        r = w.office(RECEIVING)
        case_id = await _opened(w)
        refused = await _forged_step(r.relay, case_id, clock())
        await w.deliver()
        [unnoticed] = r.relay.unnoticed_refusals(10)
        assert unnoticed.summary.packet_id == refused.packet_id
        assert unnoticed.state is OutboxState.REJECTED

        def stopped(packet_ids: Any) -> None:
            raise RuntimeError("stopped before noticing")

        r.relay.notice_refusals = stopped
        with pytest.raises(RuntimeError):
            w.r.scan()
        del r.relay.notice_refusals
        refusal_events = [e for e in w.r.store.events() if e["type"] == "step-refused"]
        assert [e["data"]["packet"] for e in refusal_events] == [refused.packet_id]
        assert r.relay.unnoticed_refusals(10) != []  # read again by the next scan
        assert w.r.scan() == 0  # its event exists: nothing new
        assert r.relay.unnoticed_refusals(10) == []
        reads: list[int] = []
        looked = r.relay.unnoticed_refusals
        r.relay.unnoticed_refusals = lambda limit: reads.append(len(got := looked(limit))) or got
        assert w.r.scan() == 0
        assert reads == [0]  # one look, at nothing
    finally:
        w.close()


async def test_a_case_that_turns_red_and_ends_between_two_scans_has_its_red_event(
    data_pki: Pki, tmp_path: Path, clock, database: Database
):
    """The scan judges the cases in progress only; a case that turned red since the last
    scan and was rejected before the next one gets its red event from the change that
    settled it, in that change's transaction, on both offices, once."""
    w = _wired(data_pki, tmp_path, clock, database)
    try:
        r, h = w.office(RECEIVING), w.office(HANDLING)
        case_id = await _opened(w)

        def sla(integration: Any) -> list[str]:
            return [e["type"] for e in integration.store.events() if e["type"].startswith("sla")]

        clock.advance(days=10)  # yellow
        for i in (w.r, w.h):
            i.scan()
        assert sla(w.r) == sla(w.h) == ["sla-yellow"]
        clock.advance(days=5)  # red, and no scan before the case ends
        await h.desk.act(case_id, K.REJECT, {"reason": "材料不全"})
        await w.deliver()
        assert r.desk.get(case_id).case.state is h.desk.get(case_id).case.state
        assert sla(w.r) == sla(w.h) == ["sla-yellow", "sla-red"]
        clock.advance(days=1)
        for i in (w.r, w.h):
            assert i.scan() == 0  # nothing new: the case is settled, its events made
        assert sla(w.r) == sla(w.h) == ["sla-yellow", "sla-red"]
    finally:
        w.close()


async def test_an_event_the_platform_refuses_for_good_is_parked_and_holds_nothing_back(
    data_pki: Pki, tmp_path: Path, clock
):
    """A 422 parks that event at once: retrying it (12 times over about half an hour by
    default) held every later event of the target behind it. A target whose CA file
    cannot be read waits with an alert; the other targets go on."""
    seen: list[tuple[str, int]] = []

    async def platform(request: web.Request) -> web.Response:
        status = 200 if seen else 422  # the first event is one it can never take
        seen.append((request.headers["Tongban-Event-Id"], status))
        return web.json_response({}, status=status)

    app = web.Application()
    app.router.add_post("/webhooks", platform)
    async with serve(app) as base:
        url = f"{base}/webhooks"
        broken = target(f"https://127.0.0.1:{free_port()}/x", ca=tmp_path / "missing.pem")
        w = integkit.wired_offices(
            data_pki, tmp_path, clock,
            webhooks={RECEIVING: [target(url, base_backoff=600.0, max_backoff=600.0), broken]},
        )  # fmt: skip
        stop = asyncio.Event()
        task = asyncio.create_task(w.r.dispatcher.run(stop))
        try:
            r = w.office(RECEIVING)
            await r.desk.open_case(
                matter=FOOD, mode="proxy_receipt", handling=HANDLING, application=FOOD_FORM
            )
            w.r.dispatcher.wake()
            await _until(lambda: len(seen) >= 1, "the platform refused the first event")
            second = await r.desk.open_case(
                matter=FOOD, mode="proxy_receipt", handling=HANDLING, application=FOOD_FORM
            )
            w.r.dispatcher.wake()
            wanted = f"{RECEIVING}:case-created:{second.record.case.header.case_id}"
            # no clock advanced: a retry of the refused event would wait 10 minutes first
            await _until(lambda: (wanted, 200) in seen, "the next event delivered")
            troubled = {row["target"]: row for row in w.r.store.delivery_status() if row["parked"]}
            [parked] = troubled[url]["troubled"]
            assert (parked["attempts"], parked["error"]) == (1, "HTTP 422")
            codes = {(a.code, a.subject) for a in w.r.dispatcher.alerts(clock())}
            assert ("webhook-parked", url) in codes
            assert ("webhook-failing", broken.url) in codes  # its CA file is missing
            assert ("webhook-failing", url) not in codes  # the platform itself answers
        finally:
            stop.set()
            await task
            w.close()


async def test_a_platform_that_says_when_to_come_back_is_asked_then_and_not_before(
    data_pki: Pki, tmp_path: Path, clock
):
    """A 503's ``Retry-After`` is honoured up to ``max_backoff``; one of 10**20 seconds
    ended the dispatcher, and every target with it."""
    answers = [("99999999999999999999", 503), ("", 200)]
    seen: list[int] = []

    async def platform(request: web.Request) -> web.Response:
        wait, status = answers[min(len(seen), 1)]
        seen.append(status)
        return web.json_response({}, status=status, headers={"Retry-After": wait} if wait else {})

    app = web.Application()
    app.router.add_post("/webhooks", platform)
    async with serve(app) as base:
        url = f"{base}/webhooks"
        w = integkit.wired_offices(
            data_pki, tmp_path, clock,
            webhooks={RECEIVING: [target(url, base_backoff=1.0, max_backoff=60.0)]},
        )  # fmt: skip
        stop = asyncio.Event()
        task = asyncio.create_task(w.r.dispatcher.run(stop))
        try:
            await w.office(RECEIVING).desk.open_case(
                matter=FOOD, mode="proxy_receipt", handling=HANDLING, application=FOOD_FORM
            )
            w.r.dispatcher.wake()
            await _until(lambda: seen == [503], "the platform asked to come back later")
            clock.advance(seconds=59)  # the backoff is the most max_backoff allows ...
            w.r.dispatcher.wake()
            await asyncio.sleep(0.3)
            assert seen == [503]
            assert not task.done()
            clock.advance(seconds=12)  # ... and no more (±20 % jitter)
            await _until(lambda: seen == [503, 200], "the event delivered",
                         tick=w.r.dispatcher.wake)  # fmt: skip
        finally:
            stop.set()
            await task
            w.close()


def test_a_retry_after_of_any_length_is_read_within_bounds() -> None:
    """``int`` refuses more than 4,300 digits: such a header ended the dispatcher."""
    from relay.integration.webhooks import _retry_after

    assert _retry_after("9" * 5000) == timedelta(days=7)
    assert _retry_after("99999999999999999999") == timedelta(days=7)
    assert _retry_after("120") == timedelta(seconds=120)
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == timedelta(0)
    assert _retry_after("²") == timedelta(0)
