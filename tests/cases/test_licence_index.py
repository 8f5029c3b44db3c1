"""The status-list index of the next e-licence (issue 12, flat costs).

Each licence a node issues takes the next free index in its revocation and suspension
lists. The index used to be found by decoding every licence ever issued at each issue;
the case row now keeps its licence's issuer and highest index, and the next one is one
index probe. Checked on SQLite and a real PostgreSQL (``database``), with rows written
before the columns existed, and against two issues at once."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

from casekit import HANDLING, RECEIVING, T0, details_for, header, later
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from dbkit import Database

from relay.cases.model import Event, EventKind, Office
from relay.cases.sqlite_store import SqliteCaseStore
from relay.cases.store import CaseRecord
from relay.cases.workflow import Case, Command, Received, transition
from relay.console.licensing import LicenceDesk
from signing.keys import Signer
from signing.licence import Licence, StatusEntry, parse_licence
from signing.status_list import StatusPurpose

K, H = EventKind, Office.HANDLING


def _token(issuer: str, index: int) -> str:
    """A licence token as a case records it (the store decodes it without verifying)."""
    licence = Licence(
        issuer_node=issuer, number=f"JY-{issuer}-{index}", licence_type="food-business-licence",
        holder_id="91320982MA1XY2Z3Q4", holder_name="丰收餐馆", scope="热食类食品制售",
        department_zh="行政审批局", department_en="Approval Bureau",
        issued_at=T0, valid_from=T0, valid_until=T0 + timedelta(days=365),
        status=tuple(
            StatusEntry(p, index, f"https://{issuer}.example/status/1/{p.value}")
            for p in (StatusPurpose.REVOCATION, StatusPurpose.SUSPENSION)
        ),
    )  # fmt: skip

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'EdDSA'})}.{part(licence.to_claims())}.c2ln"


def _licensed(store: SqliteCaseStore, case_id: str, token: str) -> None:
    """A case that goes from submission to its licence, ``token``."""
    fresh = Case(header(case_id), Office.RECEIVING)
    case, _ = transition(fresh, Command(K.SUBMIT, details_for(K.SUBMIT, fresh)), later(0))
    store.create(CaseRecord(case, None, T0, 1))
    steps = [
        Event(K.ACCEPT, H, 1, 1, later(10), {}),
        Event(K.DECIDE, H, 2, 1, later(20), {"decision": "approve"}),
        Event(K.ISSUE_LICENCE, H, 3, 1, later(30), {"licence": token, "licence_number": case_id}),
    ]
    for step in steps:

        def apply(old: CaseRecord | None, step: Event = step) -> CaseRecord:
            assert old is not None
            new, _ = transition(old.case, Received(step), step.at)
            return replace(old, case=new)

        store.update(case_id, apply)


def test_the_next_index_is_one_past_the_highest_this_node_issued(database: Database) -> None:
    """Only this node's licences count (a partner's licence recorded in a shared case
    does not), a licence that cannot be decoded is left out, and the first is 0."""
    store = SqliteCaseStore(database.connect())
    assert store.next_status_index(HANDLING) == 0
    for n, (issuer, index) in enumerate([(HANDLING, 0), (HANDLING, 5), (RECEIVING, 99)]):
        _licensed(store, f"WC-LIC-{n}", _token(issuer, index))
    _licensed(store, "WC-LIC-BROKEN", "eyJhbGciOiJFZERTQSJ9.e30.c2ln")
    assert store.next_status_index(HANDLING) == 6
    assert store.next_status_index(RECEIVING) == 100
    assert store.next_status_index("110101") == 0
    assert store.licence("WC-LIC-1") == (_token(HANDLING, 5), "WC-LIC-1")
    store.close()


def test_the_next_index_is_an_index_probe_and_old_rows_are_filled_at_open(
    tmp_path: Path,
) -> None:
    """The next index reads the index of (issuer, index), not the licences; rows written
    before the columns existed (licensed or not) are filled when a store opens, found
    through the same index (their issuer is NULL); a case without a licence gets an
    empty issuer, so no later start finds a row to fill, however many cases there are."""
    path = tmp_path / "relay.sqlite3"
    store = SqliteCaseStore(path)
    for n in range(3):
        _licensed(store, f"WC-OLD-{n}", _token(HANDLING, 10 + n))
    fresh = Case(header("WC-NO-LICENCE"), Office.RECEIVING)
    case, _ = transition(fresh, Command(K.SUBMIT, details_for(K.SUBMIT, fresh)), later(0))
    store.create(CaseRecord(case, None, T0, 1))
    unfilled = "SELECT COUNT(*) FROM cases WHERE licence_issuer IS NULL"
    assert store.connection.execute(unfilled).fetchone() == (0,)  # written: filled
    store.connection.execute("UPDATE cases SET licence_issuer = NULL, licence_index = NULL")
    store.close()

    conn = sqlite3.connect(path, isolation_level=None)
    ran: list[str] = []
    conn.set_trace_callback(ran.append)
    reopened = SqliteCaseStore(conn)
    assert reopened.next_status_index(HANDLING) == 13
    conn.set_trace_callback(None)
    fill = next(s for s in ran if "licence_issuer IS NULL" in s and s.startswith("SELECT"))
    [probe] = [s for s in ran if "MAX(licence_index)" in s]
    plans = {
        sql: [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)] for sql in (fill, probe)
    }
    assert plans[fill] == [  # the rows still to fill alone, sorted for paging
        "SEARCH cases USING INDEX cases_licence_index (licence_issuer=?)",
        "USE TEMP B-TREE FOR ORDER BY",
    ], plans
    assert plans[probe] == [
        "SEARCH cases USING COVERING INDEX cases_licence_index (licence_issuer=?)"
    ], plans
    assert conn.execute(unfilled).fetchone() == (0,)  # the next start finds none
    conn.close()


def _self_signed(node: str) -> Signer:
    key = Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, node)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(T0 - timedelta(days=1))
        .not_valid_after(T0 + timedelta(days=365))
        .sign(key, None)
    )
    return Signer(key, (cert,))


async def test_two_licences_issued_at_once_take_different_indexes() -> None:
    """Two approvers sealing licences at the same moment: the second reads the next
    index only once the first's step recorded its licence."""
    store: dict[str, str] = {}  # case id -> licence token, as the case rows hold them

    class Desk:
        node_id = HANDLING
        office_names: ClassVar = {HANDLING: ("行政审批局", "Approval Bureau")}

        def get(self, case_id: str) -> Any:
            return SimpleNamespace(case=SimpleNamespace(header=header(case_id)))

        def next_status_index(self) -> int:
            used = [parse_licence(t).status[0].index for t in store.values()]
            return max(used, default=-1) + 1

        async def act(self, case_id: str, kind: EventKind, details: dict[str, Any]) -> Any:
            await asyncio.sleep(0.01)  # the step's transaction
            store[case_id] = details["licence"]
            return details

    desk = LicenceDesk(
        desk=Desk(), signer=_self_signed(HANDLING),  # type: ignore[arg-type]
        public_base="https://320982.example", clock=lambda: T0,
    )  # fmt: skip
    body = {"holder_id": "91320982MA1XY2Z3Q4", "holder_name": "丰收餐馆", "scope": "热食类"}
    await asyncio.gather(*(desk.issue(f"WC-AT-ONCE-{n}", body, staff="审批员") for n in range(3)))
    indexes = sorted(parse_licence(t).status[0].index for t in store.values())
    assert indexes == [0, 1, 2]
