"""Revoking a licence through the staff route publishes it and logs a licence-event."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from casekit import HANDLING
from casekit_offices import Offices, serve

from relay.audit.leaves import LeafKind, LicenceEventLeaf, decode_leaf
from relay.audit.merkle import leaf_hash, verify_inclusion
from relay.audit.store import AuditStore
from relay.cases.desk import CaseDesk
from relay.cases.model import EventKind
from relay.cases.sqlite_store import SqliteCaseStore
from relay.http.licence_status import (
    LIST_VALID_DAYS,
    RENEW_BEFORE,
    LicenceStatus,
    add_licence_status_routes,
    renew_status_lists_hourly,
)
from signing.licence import Licence, StatusEntry, issue_licence
from signing.status_list import StatusPurpose, parse_status_list

BOOKS = "publication-retail-licence"
BASE = "https://127.0.0.1:9/.well-known/tongban/status"


async def _issue(offices: Offices, number: str, index: int) -> str:
    r, h = offices.r, offices.h
    opened = await r.desk.open_case(matter=BOOKS, mode="proxy_receipt", handling=HANDLING)
    case_id = opened.record.case.header.case_id
    await offices.deliver()
    await h.desk.act(case_id, EventKind.ACCEPT, {})
    await h.desk.act(case_id, EventKind.DECIDE, {"decision": "approve"})
    now = offices.clock()
    licence = Licence(
        issuer_node=HANDLING, number=number, licence_type=BOOKS,
        holder_id="91420106MA4KXXXX1X", holder_name="武昌书店", scope="图书零售",
        department_zh="大丰区行政审批局", department_en="Dafeng Approval Bureau",
        issued_at=now, valid_from=now, valid_until=now + timedelta(days=365),
        status=tuple(StatusEntry(p, index, f"{BASE}/{p.value}") for p in StatusPurpose),
    )  # fmt: skip
    token = issue_licence(licence, offices.pki.keys[HANDLING].seal, at=now)
    await h.desk.act(case_id, EventKind.ISSUE_LICENCE, {"licence": token, "licence_number": number})
    return token


def _status(offices: Offices) -> LicenceStatus:
    """The handling office's licence status changes, on its own store and clock."""
    h = offices.h
    return LicenceStatus(
        node_id=HANDLING, desk=h.desk, store=h.cases, signer=offices.pki.keys[HANDLING].seal,
        status_dir=h.verifier.status_dir, clock=offices.clock,
    )  # fmt: skip


async def test_revocation_through_the_staff_route_is_published_and_logged(
    offices: Offices,
) -> None:
    h, clock = offices.h, offices.clock
    token = await _issue(offices, "XK-320982-0007", 7)
    other = await _issue(offices, "XK-320982-0008", 8)
    status = _status(offices)
    app = h.staff(clock)
    add_licence_status_routes(app, status)
    headers = {"Authorization": f"Bearer {h.staff_token(clock)}"}
    log = AuditStore(h.store.connection)
    before = log.size()

    async def post(number: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        url = f"{base}/staff/v1/licences/{number}/status"
        async with http.post(url, json=body) as resp:
            return resp.status, await resp.json(content_type=None)

    async with serve(app) as base, aiohttp.ClientSession(headers=headers) as http:
        code, answer = await post("XK-320982-0007", {"purpose": "revocation", "value": True})
        assert code == 200, answer
        assert (answer["index"], answer["changed"]) == (7, True)
        # the same request again changes nothing and logs nothing
        code, again = await post("XK-320982-0007", {"purpose": "revocation", "value": True})
        assert (code, again["changed"], again["log_index"]) == (200, False, None)
        code, undo = await post("XK-320982-0007", {"purpose": "revocation", "value": False})
        assert (code, undo["code"]) == (409, "conflict")
        code, missing = await post("XK-NOPE", {"purpose": "revocation", "value": True})
        assert (code, missing["code"]) == (404, "not-found")
        code, bad = await post("XK-320982-0007", {"purpose": "expiry", "value": True})
        assert (code, bad["code"]) == (400, "invalid-request")

    report = await h.verifier.verify(token)
    assert (report["valid"], report["failure"]) == (False, "revoked")
    assert (await h.verifier.verify(other))["valid"] is True  # only bit 7 was set

    new = [(i, log.leaf(i)) for i in range(before, log.size())]
    assert [i for i, _ in new] == [answer["log_index"]]
    index, data = new[0]
    leaf = decode_leaf(data)
    assert leaf.kind is LeafKind.LICENCE_EVENT
    assert isinstance(leaf.body, LicenceEventLeaf)
    assert (leaf.body.id, leaf.body.event, leaf.body.status_index) == (
        "XK-320982-0007",
        "revoked",
        7,
    )
    size, root = log.head()
    verify_inclusion(leaf_hash(data), index, size, log.inclusion_proof(index, size), root)


async def test_suspension_and_reinstatement_each_append_a_leaf(offices: Offices) -> None:
    h = offices.h
    token = await _issue(offices, "XK-320982-0009", 9)
    status = _status(offices)
    log = AuditStore(h.store.connection)
    before = log.size()
    status.change("XK-320982-0009", StatusPurpose.SUSPENSION, True)
    assert (await h.verifier.verify(token))["failure"] == "suspended"
    status.change("XK-320982-0009", StatusPurpose.SUSPENSION, False)
    assert (await h.verifier.verify(token))["valid"] is True
    events = [decode_leaf(log.leaf(i)).body for i in range(before, log.size())]
    assert [getattr(b, "event", None) for b in events] == ["suspended", "reinstated"]


async def test_published_status_lists_are_re_signed_before_they_run_out(
    offices: Offices,
) -> None:
    h, clock = offices.h, offices.clock
    token = await _issue(offices, "XK-320982-0009", 9)
    status = _status(offices)
    status.change("XK-320982-0009", StatusPurpose.SUSPENSION, True)
    path = h.verifier.status_dir / "suspension.jwt"
    first = parse_status_list(path.read_text("ascii").strip())
    assert status.renew_due() == []  # 30 days left: nothing to do

    clock.advance(days=LIST_VALID_DAYS - 11)
    assert status.renew_due() == []
    clock.advance(days=2)  # 9 days left: re-signed, same bits, same URL
    assert set(status.renew_due()) == set(StatusPurpose)
    renewed = parse_status_list(path.read_text("ascii").strip())
    assert renewed.valid_until == clock() + timedelta(days=LIST_VALID_DAYS)
    assert renewed.valid_until > first.valid_until
    assert renewed.url == first.url
    assert renewed.status_list.get(9) is True
    report = await h.verifier.verify(token)
    assert (report["valid"], report["failure"]) == (False, "suspended")

    # run hourly, the lists never run out, however long the node runs
    for _ in range(6 * 24 * 10):
        clock.advance(hours=1)
        status.renew_due()
        current = parse_status_list(path.read_text("ascii").strip())
        assert current.valid_until - clock() > RENEW_BEFORE


async def test_a_renewal_that_fails_is_tried_again_and_an_overdue_list_is_alerted(
    offices: Offices,
) -> None:
    """A database error in a renewal ended the hourly task for good, silently: the lists
    then ran out 30 days later and every licence of the office went unconfirmable."""
    h, clock = offices.h, offices.clock
    await _issue(offices, "XK-320982-0009", 9)
    status = _status(offices)
    status.change("XK-320982-0009", StatusPurpose.SUSPENSION, True)
    assert status.alerts(clock()) == []
    clock.advance(days=LIST_VALID_DAYS - 8)  # renewal is due, and a day overdue

    tried = asyncio.Event()

    def broken(*_: object) -> object:
        tried.set()
        raise sqlite3.OperationalError("database is locked")

    holding = status._store.holding
    status._store.holding = broken  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(renew_status_lists_hourly(status, stop))
    await asyncio.wait_for(tried.wait(), 10)
    for _ in range(3):  # the task goes on to wait for the next hour, or ends
        await asyncio.sleep(0)
    assert not task.done()  # the failure is logged; the next hour tries again
    stop.set()
    await asyncio.wait_for(task, 5)
    assert {(a.code, a.severity.value) for a in status.alerts(clock())} == {
        ("status-list-not-renewed", "warning")
    }
    clock.advance(days=9)
    assert {a.severity.value for a in status.alerts(clock())} == {"critical"}
    status._store.holding = holding  # type: ignore[method-assign]
    assert set(status.renew_due()) == set(StatusPurpose)
    assert status.alerts(clock()) == []
    assert (h.verifier.status_dir / "revocation.jwt").exists()


def _two_workers(offices: Offices, tmp_path: Path, numbers: list[str]) -> list[LicenceStatus]:
    """Two workers of the handling office: each its own connection to the node's
    database, one status directory, the licences ``numbers`` looked up beforehand (the
    lookup each worker makes, without sharing the test's connection)."""
    h = offices.h
    found = {n: h.desk.licence(n) for n in numbers}

    class Cases:
        def licence(self, number: str) -> tuple[str, str] | None:
            return found[number]

    return [
        LicenceStatus(
            node_id=HANDLING,
            desk=cast(CaseDesk, Cases()),
            store=SqliteCaseStore(tmp_path / HANDLING / "relay.sqlite3"),
            signer=offices.pki.keys[HANDLING].seal,
            status_dir=h.verifier.status_dir,
            clock=offices.clock,
        )
        for _ in range(2)
    ]


async def test_two_workers_revoking_at_once_lose_no_bit(offices: Offices, tmp_path: Path) -> None:
    """Two workers of the node (each its own connection to the node's database, one
    status directory) revoke licences of the same list at the same time: every bit
    they set is in the published list, every change is one leaf."""
    h = offices.h
    numbers = [f"XK-320982-00{n:02d}" for n in range(1, 7)]
    for n, number in enumerate(numbers, start=1):
        await _issue(offices, number, n)
    log = AuditStore(h.store.connection)
    before = log.size()
    workers = _two_workers(offices, tmp_path, numbers)
    errors: list[BaseException] = []

    def revoke(worker: LicenceStatus, mine: list[str]) -> None:
        try:
            for number in mine:
                worker.change(number, StatusPurpose.REVOCATION, True)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=revoke, args=(workers[0], numbers[0::2])),
        threading.Thread(target=revoke, args=(workers[1], numbers[1::2])),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    path = h.verifier.status_dir / "revocation.jwt"
    published = parse_status_list(path.read_text("ascii").strip()).status_list
    assert [published.get(n) for n in range(1, 7)] == [True] * 6
    events = [decode_leaf(log.leaf(i)).body for i in range(before, log.size())]
    assert sorted(getattr(b, "status_index", None) for b in events) == [1, 2, 3, 4, 5, 6]


async def test_a_renewal_beside_a_change_of_a_bit_loses_no_bit(
    offices: Offices, tmp_path: Path
) -> None:
    """One worker re-signs the revocation list (held while it signs) as another
    revokes a licence of that list: the published list keeps the revocation, however
    the two meet (a renewal used to put back the list it had read before the bit)."""
    h, clock = offices.h, offices.clock
    numbers = ["XK-320982-0031", "XK-320982-0032"]
    for n, number in enumerate(numbers, start=31):
        await _issue(offices, number, n)
    renewing, changing = _two_workers(offices, tmp_path, numbers)
    changing.change(numbers[0], StatusPurpose.REVOCATION, True)  # the lists exist
    clock.advance(days=LIST_VALID_DAYS - 1)  # both due for renewal
    signing, go = threading.Event(), threading.Event()
    sign = renewing._sign

    def held_sign(*args: Any) -> str:
        signing.set()
        assert go.wait(10)
        return sign(*args)

    renewing._sign = held_sign  # type: ignore[method-assign]
    errors: list[BaseException] = []

    def run(work: Callable[[], object]) -> None:
        try:
            work()
        except BaseException as exc:
            errors.append(exc)

    renewal = threading.Thread(target=run, args=(renewing.renew_due,))
    renewal.start()
    try:
        assert signing.wait(10)
        change = threading.Thread(
            target=run,
            args=(lambda: changing.change(numbers[1], StatusPurpose.REVOCATION, True),),
        )
        change.start()
        # it waits for the list, or (before) went ahead; a sleep, not a join with a
        # timeout: under libfaketime (make test's shifted run) a timed join never expires
        time.sleep(0.5)
    finally:
        go.set()
        renewal.join(30)
    change.join(30)
    assert not errors
    path = h.verifier.status_dir / "revocation.jwt"
    published = parse_status_list(path.read_text("ascii").strip())
    assert [published.status_list.get(n) for n in (31, 32)] == [True, True]
    assert published.valid_until > clock() + RENEW_BEFORE
    assert sorted(p.name for p in path.parent.iterdir()) == ["revocation.jwt", "suspension.jwt"]


async def test_a_change_published_whose_transaction_failed_is_logged_when_asked_again(
    offices: Offices, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The transaction fails after the new list was put in place (a refused commit): the
    revocation is published and its leaf rolled back. The same request again logs it
    (``changed``), once; a third changes nothing."""
    h = offices.h
    token = await _issue(offices, "XK-320982-0011", 11)
    status = _status(offices)
    log = AuditStore(h.store.connection)
    before = log.size()
    holding = SqliteCaseStore.holding

    def refused_commit(self: SqliteCaseStore, names: Any, work: Any) -> Any:
        def then_fail(held: Any) -> Any:
            work(held)
            raise OSError("the commit was refused")

        return holding(self, names, then_fail)

    monkeypatch.setattr(SqliteCaseStore, "holding", refused_commit)
    with pytest.raises(OSError, match="refused"):
        status.change("XK-320982-0011", StatusPurpose.REVOCATION, True)
    monkeypatch.undo()
    assert log.size() == before  # rolled back
    path = h.verifier.status_dir / "revocation.jwt"
    assert parse_status_list(path.read_text("ascii").strip()).status_list.get(11) is True

    again = status.change("XK-320982-0011", StatusPurpose.REVOCATION, True)
    assert again["changed"] is True
    assert again["log_index"] == before
    leaf = decode_leaf(log.leaf(before))
    assert isinstance(leaf.body, LicenceEventLeaf)
    assert (leaf.body.id, leaf.body.event) == ("XK-320982-0011", "revoked")
    third = status.change("XK-320982-0011", StatusPurpose.REVOCATION, True)
    assert (third["changed"], log.size()) == (False, before + 1)
    assert (await h.verifier.verify(token))["failure"] == "revoked"


async def test_a_change_whose_record_cannot_be_kept_changes_nothing(offices: Offices) -> None:
    """Who changed a status and why (the console's record) is kept in the change's
    transaction: a record that cannot be written leaves the list and the log as they
    were, and the retry records and logs the change once."""
    h = offices.h
    token = await _issue(offices, "XK-320982-0012", 12)
    status = _status(offices)
    log = AuditStore(h.store.connection)
    before = log.size()

    def disk_full(log_index: int) -> None:
        raise OSError("no space left on device")

    with pytest.raises(OSError, match="no space"):
        status.change("XK-320982-0012", StatusPurpose.SUSPENSION, True, record=disk_full)
    assert log.size() == before
    assert not (h.verifier.status_dir / "suspension.jwt").exists()
    assert list(h.verifier.status_dir.glob("*.tmp")) == []  # the staged list is gone too
    assert (await h.verifier.verify(token))["failure"] != "suspended"

    kept: list[int] = []
    answer = status.change("XK-320982-0012", StatusPurpose.SUSPENSION, True, record=kept.append)
    assert answer["changed"] is True
    assert kept == [answer["log_index"]] == [before]
    assert (await h.verifier.verify(token))["failure"] == "suspended"


async def test_full_status_lists_refuse_a_licence_and_are_alerted_before(
    offices: Offices, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A licence past the lists' 131,072 entries verified as unconfirmable for ever (its
    bit outside every list) and could not be revoked; now it is refused, and staff are
    told at nine tenths."""
    from types import SimpleNamespace

    from relay.cases.errors import CaseError
    from relay.console.licensing import LicenceDesk
    from signing.status_list import MIN_BITS

    h, clock = offices.h, offices.clock
    status = _status(offices)
    monkeypatch.setattr(h.desk, "next_status_index", lambda: MIN_BITS * 9 // 10 - 1)
    assert status.alerts(clock()) == []
    monkeypatch.setattr(h.desk, "next_status_index", lambda: MIN_BITS * 9 // 10)
    [alert] = status.alerts(clock())
    assert (alert.code, alert.severity.value) == ("status-list-filling", "warning")
    monkeypatch.setattr(h.desk, "next_status_index", lambda: MIN_BITS)
    assert [a.severity.value for a in status.alerts(clock())] == ["critical"]
    record = SimpleNamespace(case=SimpleNamespace(header=SimpleNamespace(matter="x")))
    desk = SimpleNamespace(
        get=lambda _: record, node_id=HANDLING, next_status_index=lambda: MIN_BITS
    )
    licences = LicenceDesk(
        desk=desk,  # type: ignore[arg-type]
        signer=offices.pki.keys[HANDLING].seal, public_base="http://127.0.0.1:9", clock=clock,
    )  # fmt: skip
    with pytest.raises(CaseError) as refused:
        await licences.issue("C-1", {"holder_name": "x", "holder_id": "y", "scope": "z"}, staff="s")
    assert refused.value.code == "status-list-full"
    from relay.http.cases import problem_from_case

    problem = problem_from_case(refused.value)  # what the console's staff API answers
    assert (problem.status, problem.extra["reason"]) == (409, "status-list-full")
