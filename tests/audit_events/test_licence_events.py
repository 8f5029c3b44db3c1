"""Issuing a licence in a case appends a licence-event leaf with the case step."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from casekit import HANDLING
from casekit_offices import Offices

from relay.audit.leaves import LeafKind, LicenceEventLeaf, decode_leaf
from relay.audit.merkle import leaf_hash, verify_inclusion
from relay.audit.store import AuditStore
from relay.cases.model import EventKind
from signing.licence import Licence, issue_licence

BOOKS = "publication-retail-licence"


async def test_issuing_a_licence_in_a_case_appends_a_licence_event_leaf(offices: Offices) -> None:
    r, h = offices.r, offices.h
    opened = await r.desk.open_case(matter=BOOKS, mode="proxy_receipt", handling=HANDLING)
    case_id = opened.record.case.header.case_id
    await offices.deliver()
    await h.desk.act(case_id, EventKind.ACCEPT, {})
    await h.desk.act(case_id, EventKind.DECIDE, {"decision": "approve"})
    log = AuditStore(h.store.connection)
    before = log.size()
    now = offices.clock()
    licence = Licence(
        issuer_node=HANDLING, number="XK-320982-0042", licence_type=BOOKS,
        holder_id="91420106MA4KXXXX1X", holder_name="武昌书店", scope="图书零售",
        department_zh="大丰区行政审批局", department_en="Dafeng Approval Bureau",
        issued_at=now, valid_from=now, valid_until=now + timedelta(days=1825),
    )  # fmt: skip
    token = issue_licence(licence, offices.pki.keys[HANDLING].seal, at=now)
    await h.desk.act(
        case_id, EventKind.ISSUE_LICENCE, {"licence": token, "licence_number": licence.number}
    )

    found = [
        (i, log.leaf(i))
        for i in range(before, log.size())
        if decode_leaf(log.leaf(i)).kind is LeafKind.LICENCE_EVENT
    ]
    assert len(found) == 1
    index, data = found[0]
    leaf = decode_leaf(data)
    assert (leaf.node, leaf.at) == (HANDLING, int(now.timestamp()))
    assert leaf.body == LicenceEventLeaf(
        id="XK-320982-0042",
        case=case_id,
        event="issued",
        credential_digest=hashlib.sha256(token.encode("ascii")).hexdigest(),
        status_index=None,
    )
    size, root = log.head()
    verify_inclusion(leaf_hash(data), index, size, log.inclusion_proof(index, size), root)
    # the receiving office logs no issuance: it did not issue the licence
    await offices.deliver()
    theirs = AuditStore(r.store.connection)
    kinds = [decode_leaf(theirs.leaf(i)).kind for i in range(theirs.size())]
    assert LeafKind.LICENCE_EVENT not in kinds
