"""Purging a case's content after the agreement's ``retention_years`` (the data rule).

A case is *due* when it has ended (concluded, rejected, denied or withdrawn) and
``retention_years`` (from the agreement that granted it, looked up at its opening) have
passed since its last step. :func:`purged_copy` is the pure part: the case copy with
every piece of content replaced — the application, materials lists, texts, reasons,
notes, the licence token — while what the workflow folds on (the kinds of step, their
order, times, decision, licence number, rating) stays, so the case's history and SLA
record remain. :class:`RetentionPurge` is the scheduled shell, per due case:

1. the relay's copies of the case's packets lose their content: the stored incoming
   packet (whose sealed content this node can open) and the own copy of each outgoing
   one are emptied, the attachment blobs of those packets deleted;
2. in one transaction of the case store: the purged copy replaces the case and an
   audit leaf ``retention-purge`` (case, agreement, retention years, SHA-256 of the copy
   before, packet and attachment counts) is appended;
3. the applicant index entry of the case is dropped.

Step 1 is idempotent and runs first, so a crash between the steps is finished by the
next run. Kept as they were: packet digests and routing facts, receipts, the audit log
and every proof from it (leaves carry only identifiers and digests).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from relay.audit.leaves import AuditLeaf, LeafKind, RetentionPurgeLeaf, encode_leaf
from relay.cases.errors import CaseError
from relay.cases.model import CaseHeader, CaseState, thaw
from relay.cases.sqlite_store import NOT_DUE, SqliteCaseStore, case_to_json
from relay.cases.store import CaseRecord
from relay.cases.terms import TermsSource
from relay.cases.workflow import Case
from relay.db.migrations import Connection
from relay.db.open import RELAY_FILE, sqlite_connection, write_transaction
from signing.encoding import canonical_json

__all__ = ["ENDED", "PURGED", "RetentionPurge", "due_at", "purged_copy"]

_log = logging.getLogger("tongban.relay.retention")

PURGED = "（已按保存期限删除）purged after the retention period"
ENDED = frozenset({CaseState.CONCLUDED, CaseState.REJECTED, CaseState.DENIED, CaseState.WITHDRAWN})
_KEPT = frozenset(
    {"decision", "licence_number", "outcome", "verdict", "rating", "surveyor", "complaint",
     "method"}
)  # fmt: skip


def _purged_details(details: Mapping[str, Any]) -> dict[str, Any]:
    """What the fold needs stays; texts become :data:`PURGED` (a required one keeps the
    event valid), the application (an object) goes."""
    out: dict[str, Any] = {}
    for name, value in thaw(details).items():
        if name in _KEPT or isinstance(value, int):
            out[name] = value
        elif isinstance(value, str):
            out[name] = PURGED
        elif isinstance(value, list):
            out[name] = [PURGED] if value else []
    return out


def purged_copy(case: Case) -> Case:
    events = tuple(replace(e, details=_purged_details(e.details)) for e in case.events)
    return Case(case.header, case.me, events)


def due_at(case: Case, retention_years: int) -> datetime | None:
    """When the case's content is due for purging (None while it has not ended)."""
    last = case.view.last_at
    if case.state not in ENDED or last is None:
        return None
    return _years_after(last, retention_years)


def _years_after(at: datetime, years: int) -> datetime:
    try:
        return at.replace(year=at.year + years)
    except ValueError:  # 29 February
        return at.replace(year=at.year + years, day=28)


class RetentionPurge:
    """Purges due cases of one node (see the module note)."""

    def __init__(
        self,
        *,
        node_id: str,
        cases: SqliteCaseStore,
        terms: TermsSource,
        relay_dir: Path,
        clock: Callable[[], datetime],
        forget_applicant: Callable[[str], None],
        connect: Callable[[], Connection] | None = None,
        blob_dir: Path | None = None,
    ) -> None:
        """``connect`` opens a connection to the relay core's tables (default: the
        SQLite file in ``relay_dir``); ``blob_dir`` holds the attachment blobs
        (default: ``relay_dir / "blobs"``)."""
        self._node = node_id
        self._cases = cases
        self._terms = terms
        self._connect = connect or (lambda: sqlite_connection(relay_dir / RELAY_FILE))
        self._blobs = blob_dir or relay_dir / "blobs"
        self._clock = clock
        self._forget = forget_applicant

    def run(self) -> list[str]:
        """Purge every due case not purged yet; the case ids purged.

        The cases written since the last run get their due time first (from their
        rows: agreement, opening, last step); then only the cases due are read, through
        the store's index of due times, so a node with years of cases reads neither
        those still kept nor those purged before."""
        now = self._clock()
        self._cases.schedule_purges(self._due_of)
        done = []
        for case_id in self._cases.purges_due(now):
            record = self._cases.get(case_id, keep=False)
            if record is None:
                continue
            header = record.case.header
            try:
                terms = self._terms(header.receiving, header.handling, header.matter,
                                    header.mode, record.opened_at)  # fmt: skip
            except CaseError as exc:
                _log.warning("case %s: retention unknown (%s)", header.case_id, exc)
                continue
            due = due_at(record.case, terms.retention_years)
            if due is None or due > now:  # written meanwhile: its due time is computed again
                continue
            if self._purge(record, terms.agreement_id, terms.retention_years, now):
                done.append(header.case_id)
        return done

    def _due_of(
        self, header: CaseHeader, state: CaseState, opened_at: datetime, last_at: datetime | None
    ) -> float:
        """When a case's content falls due (a timestamp; :data:`NOT_DUE` while it has
        not ended), from its row; raises :class:`CaseError` when no agreement says."""
        if state not in ENDED or last_at is None:
            return NOT_DUE
        terms = self._terms(header.receiving, header.handling, header.matter, header.mode,
                            opened_at)  # fmt: skip
        return _years_after(last_at, terms.retention_years).timestamp()

    def _purge(self, record: CaseRecord, agreement_id: str, years: int, now: datetime) -> bool:
        case_id = record.case.header.case_id
        purged = purged_copy(record.case)
        if purged == record.case:  # purged before, not noted (a stop, an older release)
            self._forget(case_id)
            self._cases.mark_purged(case_id)
            return False
        packets, blobs = self._purge_packets(case_id)
        before = hashlib.sha256(canonical_json(case_to_json(record.case))).hexdigest()
        body = RetentionPurgeLeaf(
            case=case_id, agreement_id=agreement_id, retention_years=years,
            content_digest=before, packets=packets, attachments=blobs,
        )  # fmt: skip
        leaf = encode_leaf(
            AuditLeaf(LeafKind.RETENTION_PURGE, self._node, int(now.timestamp()), body)
        )

        def change(old: CaseRecord | None) -> CaseRecord | None:
            if old is None or old.version != record.version:
                return None  # changed meanwhile: the next run looks again
            return CaseRecord(purged, old.access_hash, old.opened_at, old.version)

        after = self._cases.update(case_id, change, [leaf])
        if after is None or after.version == record.version:
            return False
        # forgotten before the case is noted purged: a stop in between has the next run
        # find the copy purged, forget (again: idempotent) and note it
        self._forget(case_id)
        self._cases.mark_purged(case_id)
        _log.info("case %s purged after %d years (%d packets, %d attachments)",
                  case_id, years, packets, blobs)  # fmt: skip
        return True

    def _purge_packets(self, case_id: str) -> tuple[int, int]:
        """Empty the relay's packet copies of the case and delete their attachment blobs
        (SQL on the relay core's ``inbox``/``outbox``/``outbox_bodies``/``blobs`` tables,
        through a connection of the node's backend)."""
        conn = self._connect()
        try:
            with write_transaction(conn):
                inbox = [r[0] for r in conn.execute(
                    "SELECT packet_id FROM inbox WHERE case_id = ?", (case_id,))]  # fmt: skip
                outbox = conn.execute(
                    "SELECT packet_id, summary FROM outbox WHERE case_id = ?", (case_id,)
                ).fetchall()
                digests = {r[0] for p in inbox for r in conn.execute(
                    "SELECT digest FROM inbox_blobs WHERE packet_id = ?", (p,))}  # fmt: skip
                for _, summary in outbox:
                    digests.update(_attachment_digests(summary))
                conn.execute("UPDATE inbox SET token = '' WHERE case_id = ?", (case_id,))
                conn.execute(
                    "UPDATE outbox_bodies SET own_copy = ''"
                    " WHERE ord IN (SELECT ord FROM outbox WHERE case_id = ?)",
                    (case_id,),
                )
                # one staged file may travel in packets of several cases (the same scan
                # handed in twice): its blob stays while a packet of another case names it
                digests = {d for d in digests if not _named_elsewhere(conn, d, case_id)}
                for digest in digests:
                    conn.execute("DELETE FROM blobs WHERE digest = ?", (digest,))
                    conn.execute("DELETE FROM attachments WHERE blob_digest = ?", (digest,))
        finally:
            conn.close()
        removed = 0
        for digest in digests:
            path = self._blobs / digest[:2] / digest
            if path.exists():
                path.unlink()
                removed += 1
        return len(inbox) + len(outbox), removed


def _named_elsewhere(conn: Any, digest: str, case_id: str) -> bool:
    """A packet of another case, its copy not purged, names blob ``digest``."""
    incoming = conn.execute(
        "SELECT 1 FROM inbox_blobs b JOIN inbox i ON i.packet_id = b.packet_id"
        " WHERE b.digest = ? AND i.case_id != ? AND i.token != '' LIMIT 1",
        (digest, case_id),
    ).fetchone()
    if incoming is not None:
        return True
    outgoing = conn.execute(
        "SELECT 1 FROM outbox_blobs b JOIN outbox o ON o.packet_id = b.packet_id"
        " JOIN outbox_bodies d ON d.ord = o.ord"
        " WHERE b.digest = ? AND o.case_id != ? AND d.own_copy != '' LIMIT 1",
        (digest, case_id),
    ).fetchone()
    return outgoing is not None


def _attachment_digests(summary_json: str) -> set[str]:
    import json

    try:
        summary = json.loads(summary_json)
    except ValueError:
        return set()
    items = summary.get("attachments", []) if isinstance(summary, dict) else []
    return {a["digest"] for a in items if isinstance(a, dict) and isinstance(a.get("digest"), str)}
