"""The schema of a node's relay store (SQLite, and PostgreSQL derived from it) and the
row conversions it needs.

Tables: ``outbox`` (one row per outgoing packet: state, attempts, next attempt,
receipt), ``outbox_bodies`` (the packet itself and a sealed copy of its content, by the
``ord`` of its outbox row), ``send_seq`` (per destination and case:
last seq and digest), ``peers`` (per destination backoff), ``uploaded`` (blobs a peer
holds), ``inbox`` (one row per accepted packet with the receipt returned), ``recv_seq``
(per sender and case), ``inbox_blobs`` (which packet names which blob), ``blobs``
(complete content-addressed blobs), ``uploads`` (partial uploads and their durable
offset), ``attachments`` (staged attachments and their wrapped keys); plus the audit
log tables of :mod:`relay.audit.store`.

``inbox_unsettled`` (step 2) names, by case, the accepted packets the application above
the relay has not settled yet (:meth:`relay.core.service.RelayNode.settle_inbox`: the
case layer settles a packet once its outcome is recorded). A packet enters it in the
transaction that accepts it and leaves it after the application committed what it made
of it, so it holds at least every packet not yet applied (a crash in between leaves a
settled one a little longer, never the reverse) and stays as small as what is in
progress: the case layer's admission check reads a case's pending packets from it, an
index range whatever the history of the case. Step 2 enters every packet accepted
before it (the case layer's sync at start settles those it finds applied).

``outbox_bodies`` (step 3) holds the two large columns of an outgoing packet, ``token``
(the signed packet as sent) and ``own_copy`` (its content sealed for this node), which
are written once, with the outbox row in the same transaction, and never change (the
retention purge empties ``own_copy``). They used to be columns of ``outbox``, where
SQLite rewrote them, overflow pages included, with every change of the packet's state
(queued, in flight, delivered with its receipt): several KB of WAL per change. Now a
state change writes the small row only; the bodies are read where the packet's bytes
are needed (sending a batch, the sender's own copy of a packet). Step 3 moves the
bodies of existing rows over and drops the two columns from ``outbox``; on SQLite that
rewrites the table once, at the first start of the release, in time and (reusable)
file space proportional to the packets held (about 2,000 packets a second, and 80% of
their size, on a small machine).

``outbox_heads`` keeps, per destination and case with open packets, the *head* (the
open packet with the lowest ``seq``) and when it is next due, so the outbox finds what
to send, and when to wake, with indexed reads whose cost does not grow with the number
of queued or stored packets. It is derived data: rebuilt from ``outbox`` at every open
(:data:`REBUILD_HEADS`) and kept in step by every write that changes a packet's state.
Partial indexes (``outbox_live``, ``outbox_live_expiry``) hold only open packets, so
delivered history costs nothing to skip.

``outbox_blobs`` (step 5) names, by blob digest, the outgoing packets whose
attachments it carries (written with the outbox row; step 5 fills it from the
packets' summaries), as ``inbox_blobs`` does for incoming ones: one staged attachment
may travel in packets of several cases, and the retention purge deletes a blob only
when no packet of another case names it.

``outbox_refusals`` (step 4) names each packet refused for good: rejected by the partner,
or dead (its case successors, dead as ``predecessor-*``, included; since this release an
expired packet too: step 4 itself left out the expiries before it). It is written in
the transaction that settles the packet as refused, with two marks:

- ``standing``, set until a later packet of its case is queued to that partner (sent
  again, or the case moved on), which clears it in the enqueueing transaction. The
  staff alerts (a parked packet, a profile refusal, a refused survey report) read the
  standing refusals through a partial index: what staff must act on now, never every
  refusal ever kept.
- ``noticed``, set by the integration scan once it made the refusal's event, so each
  scan reads only the refusals that are new to it (a partial index), and a crash in
  between makes it read one again (its event id makes the second record a no-op).

Step 4 fills it from the outbox (standing as the alert board judged it before: no later
packet of the case to that partner queued, in flight or delivered; not noticed, so the
first scan reads each old refusal once and finds its event made) and drops the index
``outbox_parked`` it replaces.

The schema is the ``relay`` component's :data:`MIGRATIONS`. On PostgreSQL the tables and
columns are the same (types mapped by :func:`relay.db.pg.pg_ddl`; ``offset`` is quoted,
a reserved word there) plus the lease of a case head on ``outbox_heads``
(``lease_owner``, ``lease_until``, ``lease_seq``: the worker sending that case, until
when, up to which ``seq``; see :mod:`relay.core.pg_store`). There ``outbox_heads`` is
kept in step transactionally and never rebuilt while workers run (a copy made from
SQLite rebuilds it once with :data:`REBUILD_HEADS`).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from relay.core.model import AttachmentInfo, PacketSummary
from relay.db.migrations import Migration
from relay.db.pg import pg_ddl

__all__ = [
    "LIVE",
    "MIGRATIONS",
    "REBUILD_HEADS",
    "SCHEMA",
    "dt",
    "fsync_dir",
    "summary_from_json",
    "summary_json",
    "ts",
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    ord INTEGER PRIMARY KEY AUTOINCREMENT,
    packet_id TEXT NOT NULL UNIQUE,
    peer TEXT NOT NULL, case_id TEXT NOT NULL, seq INTEGER NOT NULL,
    digest TEXT NOT NULL, token TEXT NOT NULL, summary TEXT NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL, expires REAL NOT NULL, reason TEXT, receipt TEXT,
    own_copy TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_case ON outbox (peer, case_id, seq);
CREATE INDEX IF NOT EXISTS outbox_open ON outbox (state, peer);
CREATE INDEX IF NOT EXISTS outbox_by_case ON outbox (case_id, ord);
CREATE TABLE IF NOT EXISTS send_seq (
    peer TEXT NOT NULL, case_id TEXT NOT NULL, seq INTEGER NOT NULL, digest TEXT NOT NULL,
    PRIMARY KEY (peer, case_id)
);
CREATE TABLE IF NOT EXISTS peers (
    peer TEXT PRIMARY KEY, failures INTEGER NOT NULL, next_attempt_at REAL
);
CREATE TABLE IF NOT EXISTS uploaded (
    peer TEXT NOT NULL, digest TEXT NOT NULL, PRIMARY KEY (peer, digest)
);
CREATE TABLE IF NOT EXISTS inbox (
    ord INTEGER PRIMARY KEY AUTOINCREMENT,
    packet_id TEXT NOT NULL UNIQUE,
    sender TEXT NOT NULL, case_id TEXT NOT NULL, seq INTEGER NOT NULL,
    digest TEXT NOT NULL, token TEXT NOT NULL, summary TEXT NOT NULL,
    received_at REAL NOT NULL, receipt TEXT NOT NULL, log_index INTEGER,
    UNIQUE (sender, case_id, seq)
);
CREATE INDEX IF NOT EXISTS inbox_case ON inbox (case_id, ord);
CREATE TABLE IF NOT EXISTS recv_seq (
    sender TEXT NOT NULL, case_id TEXT NOT NULL, seq INTEGER NOT NULL, digest TEXT NOT NULL,
    PRIMARY KEY (sender, case_id)
);
CREATE TABLE IF NOT EXISTS inbox_blobs (
    digest TEXT NOT NULL, packet_id TEXT NOT NULL, PRIMARY KEY (digest, packet_id)
);
CREATE TABLE IF NOT EXISTS blobs (digest TEXT PRIMARY KEY, size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS uploads (
    kind TEXT NOT NULL, digest TEXT NOT NULL, size INTEGER NOT NULL, offset INTEGER NOT NULL,
    PRIMARY KEY (kind, digest)
);
CREATE TABLE IF NOT EXISTS attachments (
    plain_digest TEXT PRIMARY KEY, plain_size INTEGER NOT NULL,
    blob_digest TEXT NOT NULL, blob_size INTEGER NOT NULL,
    media_type TEXT NOT NULL, name TEXT NOT NULL, key_kid TEXT NOT NULL,
    wrapped_key BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS attachments_blob ON attachments (blob_digest);
CREATE INDEX IF NOT EXISTS outbox_live ON outbox (peer, case_id, seq)
    WHERE state IN ('queued', 'in_flight');
CREATE INDEX IF NOT EXISTS outbox_live_expiry ON outbox (expires)
    WHERE state IN ('queued', 'in_flight');
CREATE TABLE IF NOT EXISTS outbox_heads (
    peer TEXT NOT NULL, case_id TEXT NOT NULL, ord INTEGER NOT NULL, due REAL,
    PRIMARY KEY (peer, case_id)
);
CREATE INDEX IF NOT EXISTS outbox_heads_ord ON outbox_heads (peer, ord);
CREATE INDEX IF NOT EXISTS outbox_heads_due ON outbox_heads (peer, due);
"""

_AUDIT_ONCE = """
CREATE TABLE IF NOT EXISTS audit_once (digest TEXT PRIMARY KEY) WITHOUT ROWID;
"""

_PG_LEASES = """
ALTER TABLE outbox_heads ADD COLUMN lease_owner TEXT,
    ADD COLUMN lease_until DOUBLE PRECISION, ADD COLUMN lease_seq BIGINT;
"""

_UNSETTLED = """
CREATE TABLE IF NOT EXISTS inbox_unsettled (
    case_id TEXT NOT NULL, packet_id TEXT NOT NULL, PRIMARY KEY (case_id, packet_id)
) WITHOUT ROWID;
INSERT INTO inbox_unsettled (case_id, packet_id) SELECT case_id, packet_id FROM inbox;
"""

_BODIES = """
CREATE TABLE IF NOT EXISTS outbox_bodies (
    ord INTEGER PRIMARY KEY, token TEXT NOT NULL, own_copy TEXT NOT NULL
);
INSERT INTO outbox_bodies (ord, token, own_copy) SELECT ord, token, own_copy FROM outbox;
ALTER TABLE outbox DROP COLUMN token;
ALTER TABLE outbox DROP COLUMN own_copy;
"""

_REFUSALS = """
CREATE TABLE IF NOT EXISTS outbox_refusals (
    ord INTEGER PRIMARY KEY, peer TEXT NOT NULL, case_id TEXT NOT NULL,
    standing INTEGER NOT NULL, noticed INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_refusals_standing ON outbox_refusals (peer, case_id)
    WHERE standing = 1;
CREATE INDEX IF NOT EXISTS outbox_refusals_unnoticed ON outbox_refusals (ord)
    WHERE noticed = 0;
INSERT INTO outbox_refusals (ord, peer, case_id, standing, noticed)
SELECT d.ord, d.peer, d.case_id, CASE WHEN EXISTS (
    SELECT 1 FROM outbox l WHERE l.peer = d.peer AND l.case_id = d.case_id
    AND l.ord > d.ord AND l.state IN ('queued', 'in_flight', 'delivered')
) THEN 0 ELSE 1 END, 0
FROM outbox d WHERE d.state = 'rejected'
    OR (d.state = 'dead' AND d.reason IS NOT NULL AND d.reason != 'expired');
DROP INDEX IF EXISTS outbox_parked;
"""

_OUTBOX_BLOBS = """
CREATE TABLE IF NOT EXISTS outbox_blobs (
    digest TEXT NOT NULL, packet_id TEXT NOT NULL, PRIMARY KEY (digest, packet_id)
);
"""

_OUTBOX_BLOBS_FILL = """
INSERT INTO outbox_blobs (digest, packet_id)
SELECT DISTINCT json_extract(a.value, '$.digest'), o.packet_id
FROM outbox o, json_each(o.summary, '$.attachments') a
WHERE json_valid(o.summary) AND json_extract(a.value, '$.digest') IS NOT NULL;
"""

_OUTBOX_BLOBS_FILL_PG = """
INSERT INTO outbox_blobs (digest, packet_id)
SELECT DISTINCT a.value ->> 'digest', o.packet_id
FROM outbox o, jsonb_array_elements(COALESCE(o.summary::jsonb -> 'attachments', '[]')) a
WHERE a.value ->> 'digest' IS NOT NULL;
"""

MIGRATIONS = [
    Migration(
        1,
        "outbox, inbox, sequences, blobs, uploads, attachments",
        SCHEMA + _AUDIT_ONCE,
        pg_ddl(SCHEMA.replace(" offset INTEGER", ' "offset" INTEGER') + _AUDIT_ONCE) + _PG_LEASES,
    ),
    Migration(2, "accepted packets not yet settled", _UNSETTLED, pg_ddl(_UNSETTLED)),
    Migration(3, "outgoing packets' bodies apart from their state", _BODIES, pg_ddl(_BODIES)),
    Migration(4, "packets refused for good, standing and noticed", _REFUSALS, pg_ddl(_REFUSALS)),
    Migration(
        5,
        "which outgoing packet names which blob",
        _OUTBOX_BLOBS + _OUTBOX_BLOBS_FILL,
        pg_ddl(_OUTBOX_BLOBS) + _OUTBOX_BLOBS_FILL_PG,
    ),
]
"""Steps of the ``relay`` component (step 1: the tables SQLite files already have)."""

LIVE = "('queued', 'in_flight')"
"""The open outbox states as an SQL literal (the partial indexes above name them so: a
query uses such an index only when it repeats the literal, not a bound parameter)."""

REBUILD_HEADS = """
DELETE FROM outbox_heads;
INSERT INTO outbox_heads (peer, case_id, ord, due)
SELECT o.peer, o.case_id, o.ord, o.next_attempt_at FROM outbox o
WHERE o.state IN ('queued', 'in_flight') AND o.seq = (
    SELECT MIN(p.seq) FROM outbox p
    WHERE p.peer = o.peer AND p.case_id = o.case_id AND p.state IN ('queued', 'in_flight')
);
"""


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ts(at: datetime | None) -> float | None:
    return None if at is None else at.timestamp()


def dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def summary_json(s: PacketSummary) -> str:
    return json.dumps(
        {
            "packet_id": s.packet_id,
            "digest": s.digest,
            "case_id": s.case_id,
            "sender": s.sender,
            "receiver": s.receiver,
            "matter": s.matter,
            "action": s.action,
            "mode": s.mode,
            "seq": s.seq,
            "created": s.created.timestamp(),
            "expires": s.expires.timestamp(),
            "attachments": [a.__dict__ for a in s.attachments],
        },
        ensure_ascii=False,
    )


def summary_from_json(text: str) -> PacketSummary:
    d: dict[str, Any] = json.loads(text)
    d["created"] = datetime.fromtimestamp(d["created"], UTC)
    d["expires"] = datetime.fromtimestamp(d["expires"], UTC)
    d["attachments"] = tuple(AttachmentInfo(**a) for a in d["attachments"])
    return PacketSummary(**d)
