"""What a running node remembers about witnessing, in its database (storage layer): the
SQLite file, or the PostgreSQL database of ``[database] url``.

Tables, next to the log itself (:mod:`relay.audit.store`) in ``relay.sqlite3`` (or the
PostgreSQL database; the ``witnessing`` component's :data:`MIGRATIONS`)::

    audit_checkpoints   size PK, note, signed_at        our own signed checkpoints
    audit_cosignatures  (size, witness) PK, note, at    our checkpoints as partners
                                                        cosigned them (POST cosign)
    audit_partners      origin PK, state (JSON)         PartnerState per partner we witness
    audit_alerts        id PK, at, origin, reason, detail, evidence (JSON)
    audit_packet_leaves idx PK, packet_id, digest       index of our packet leaves
    audit_acks          packet_digest PK, peer, idx     partners' accepting receipts
    audit_meta          key PK, value                   e.g. how far the index reached

The packet index is a cache derived from the log (rebuilt from any point), so it is
filled after the fact, not in the append's transaction. Each write here is one short
``BEGIN IMMEDIATE`` transaction on this module's own connection; the SQL is the portable
subset :class:`relay.db.pg.PgConnection` runs unchanged.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from relay.audit.errors import AuditError
from relay.audit.leaves import Direction, LeafKind, PacketLeaf, ReceiptLeaf, decode_leaf
from relay.audit.store import MIGRATIONS as LOG_MIGRATIONS
from relay.audit.store import AuditStore
from relay.audit.witness import ForkEvidence, PartnerState
from relay.db.migrations import Migration, migrate
from relay.db.open import write_transaction
from relay.db.pg import PgConnection, connect, pg_ddl
from relay.db.settings import DatabaseSettings

__all__ = ["MIGRATIONS", "Alert", "AuditState", "PacketEntry", "open_state"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    size INTEGER PRIMARY KEY, note BLOB NOT NULL, signed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_cosignatures (
    size INTEGER NOT NULL, witness TEXT NOT NULL, note BLOB NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (size, witness)
);
CREATE TABLE IF NOT EXISTS audit_partners (origin TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, origin TEXT NOT NULL,
    reason TEXT NOT NULL, detail TEXT NOT NULL, evidence TEXT
);
CREATE TABLE IF NOT EXISTS audit_packet_leaves (
    idx INTEGER PRIMARY KEY, packet_id TEXT NOT NULL, digest TEXT NOT NULL,
    kind TEXT NOT NULL, peer TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_packet_leaves_id ON audit_packet_leaves (packet_id);
CREATE INDEX IF NOT EXISTS audit_packet_leaves_digest ON audit_packet_leaves (digest);
CREATE INDEX IF NOT EXISTS audit_packet_leaves_peer ON audit_packet_leaves (peer);
CREATE TABLE IF NOT EXISTS audit_acks (
    packet_digest TEXT PRIMARY KEY, peer TEXT NOT NULL, idx INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# step 2: when a partner last cosigned is read at every metrics scrape: an index, not a
# scan of every cosignature ever kept (one per checkpoint per witness)
_COSIGNED_AT = "CREATE INDEX IF NOT EXISTS audit_cosignatures_at ON audit_cosignatures (at);"

MIGRATIONS = [
    Migration(1, "checkpoints, cosignatures, partners, alerts, packet index", _SCHEMA,
              pg_ddl(_SCHEMA)),
    Migration(2, "cosignatures by time", _COSIGNED_AT, _COSIGNED_AT),
]  # fmt: skip
"""Steps of the ``witnessing`` component (step 1: the tables SQLite files already have)."""


_PUT_PARTNER = (
    "INSERT INTO audit_partners (origin, state) VALUES (?, ?)"
    " ON CONFLICT (origin) DO UPDATE SET state = excluded.state"
)

_SELECT = "SELECT idx, packet_id, digest, kind, peer FROM audit_packet_leaves"
_ENTRY_QUERIES = {
    "packet_id": _SELECT + " WHERE packet_id = ? ORDER BY idx",
    "digest": _SELECT + " WHERE digest = ? ORDER BY idx",
    "peer": _SELECT + " WHERE peer = ? ORDER BY idx",
    "exchanged": "SELECT idx, packet_id, digest, kind, peer FROM audit_packet_leaves"
    " WHERE peer = ? AND (kind = 'packet-received' OR digest IN"
    " (SELECT packet_digest FROM audit_acks WHERE peer = ?)) ORDER BY idx",
}


@dataclass(frozen=True)
class Alert:
    """A staff alert: a partner's log forked (or showed a split view)."""

    id: int
    at: datetime
    origin: str
    reason: str
    detail: str
    evidence: ForkEvidence | None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "origin": self.origin,
            "reason": self.reason,
            "detail": self.detail,
            "evidence": None if self.evidence is None else self.evidence.to_json(),
        }


@dataclass(frozen=True)
class PacketEntry:
    """One packet leaf of our log: where it is and what it names."""

    index: int
    packet_id: str
    digest: str
    kind: LeafKind
    peer: str  # the other node: ``to`` of a sent packet, ``from`` of a received one


def open_state(data_dir: Path, database: DatabaseSettings) -> AuditState:
    """The node's witnessing state where its configuration keeps its tables."""
    if database.url is not None:
        return AuditState(connect(database.url, application_name="tongban audit"))
    return AuditState(data_dir / "relay.sqlite3")


class AuditState:
    """Our log (read side), our checkpoints, partner states and alerts: in the SQLite
    file at ``path``, or on a PostgreSQL connection (closed with this object)."""

    def __init__(self, path: Path | PgConnection) -> None:
        self._conn: sqlite3.Connection | PgConnection
        if isinstance(path, PgConnection):
            self._conn = path
        else:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA busy_timeout=5000")
        migrate(self._conn, "audit", LOG_MIGRATIONS)
        migrate(self._conn, "witnessing", MIGRATIONS)
        self.log = AuditStore(self._conn)

    @property
    def connection(self) -> sqlite3.Connection | PgConnection:
        return self._conn

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection | PgConnection]:
        with write_transaction(self._conn) as conn:
            yield conn

    # -- our checkpoints -----------------------------------------------------------------

    def latest_checkpoint(self) -> bytes | None:
        row = self._conn.execute(
            "SELECT note FROM audit_checkpoints ORDER BY size DESC LIMIT 1"
        ).fetchone()
        return None if row is None else bytes(row[0])

    def checkpoint(self, size: int) -> bytes | None:
        row = self._conn.execute(
            "SELECT note FROM audit_checkpoints WHERE size = ?", (size,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def checkpoint_covering(self, index: int) -> bytes | None:
        """The latest signed checkpoint whose tree holds leaf ``index``."""
        row = self._conn.execute(
            "SELECT note FROM audit_checkpoints WHERE size > ? ORDER BY size DESC LIMIT 1",
            (index,),
        ).fetchone()
        return None if row is None else bytes(row[0])

    def put_checkpoint(self, size: int, note: bytes, at: datetime) -> bytes:
        """Keep our signed checkpoint of ``size``; return the one that stands: the
        first signed for that size (another worker of the node may have been first)."""
        with self._tx() as c:
            c.execute(
                "INSERT OR IGNORE INTO audit_checkpoints (size, note, signed_at) VALUES (?,?,?)",
                (size, note, at.timestamp()),
            )
            row: Any = c.execute(
                "SELECT note FROM audit_checkpoints WHERE size = ?", (size,)
            ).fetchone()
        return bytes(row[0])

    def put_cosignature(self, size: int, witness: str, note: bytes, at: datetime) -> None:
        """Keep a partner's cosigned copy of our checkpoint of ``size`` (latest wins)."""
        with self._tx() as c:
            c.execute(
                "INSERT INTO audit_cosignatures (size, witness, note, at) VALUES (?,?,?,?)"
                " ON CONFLICT (size, witness) DO UPDATE SET note = excluded.note,"
                " at = excluded.at",
                (size, witness, note, at.timestamp()),
            )

    def cosignatures(self, size: int) -> dict[str, bytes]:
        """Witness origin → cosigned note, for our checkpoint of ``size``."""
        rows = self._conn.execute(
            "SELECT witness, note FROM audit_cosignatures WHERE size = ?", (size,)
        ).fetchall()
        return {str(w): bytes(n) for w, n in rows}

    def last_cosignature_at(self) -> datetime | None:
        """When a partner last cosigned one of our checkpoints (None: never)."""
        row: Any = self._conn.execute("SELECT MAX(at) FROM audit_cosignatures").fetchone()
        return None if row[0] is None else datetime.fromtimestamp(float(row[0]), UTC)

    def latest_cosigned_size(self, witness: str) -> int | None:
        row: Any = self._conn.execute(
            "SELECT MAX(size) FROM audit_cosignatures WHERE witness = ?", (witness,)
        ).fetchone()
        return None if row[0] is None else int(row[0])

    # -- partners we witness --------------------------------------------------------------

    def partner(self, origin: str) -> PartnerState:
        row = self._conn.execute(
            "SELECT state FROM audit_partners WHERE origin = ?", (origin,)
        ).fetchone()
        if row is None:
            return PartnerState(origin)
        return PartnerState.from_json(json.loads(row[0]))

    def put_partner(self, state: PartnerState) -> None:
        with self._tx() as c:
            c.execute(_PUT_PARTNER, (state.origin, json.dumps(state.to_json())))

    def halt_partner(self, state: PartnerState, detail: str, at: datetime) -> Alert:
        """Persist a halted state and its alert in one transaction."""
        evidence = state.evidence
        with self._tx() as c:
            c.execute(_PUT_PARTNER, (state.origin, json.dumps(state.to_json())))
            row: Any = c.execute(
                "INSERT INTO audit_alerts (at, origin, reason, detail, evidence)"
                " VALUES (?,?,?,?,?) RETURNING id",
                (
                    at.timestamp(),
                    state.origin,
                    evidence.reason.value if evidence is not None else "fork",
                    detail,
                    None if evidence is None else json.dumps(evidence.to_json()),
                ),
            ).fetchone()
            alert_id = int(row[0])
        return Alert(alert_id, at, state.origin, evidence.reason.value if evidence else "fork",
                     detail, evidence)  # fmt: skip

    def alerts(self) -> list[Alert]:
        rows = self._conn.execute(
            "SELECT id, at, origin, reason, detail, evidence FROM audit_alerts ORDER BY id"
        ).fetchall()
        return [
            Alert(
                int(r[0]),
                datetime.fromtimestamp(r[1], UTC),
                str(r[2]),
                str(r[3]),
                str(r[4]),
                None if r[5] is None else ForkEvidence.from_json(json.loads(r[5])),
            )
            for r in rows
        ]

    # -- the seal chains our checkpoints were signed under ----------------------------------

    def keep_seal_chain(self, key_id: bytes, pem: str) -> None:
        """Keep the certificate chain of our note key ``key_id`` (its first keeping
        wins): a proof of a checkpoint signed before a seal rotation needs that chain."""
        with self._tx() as c:
            c.execute(
                "INSERT INTO audit_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                (f"seal-chain:{key_id.hex()}", pem),
            )

    def seal_chain_pem(self, key_id: bytes) -> str | None:
        """The chain kept for our note key ``key_id`` (PEM), if any."""
        row = self._conn.execute(
            "SELECT value FROM audit_meta WHERE key = ?", (f"seal-chain:{key_id.hex()}",)
        ).fetchone()
        return None if row is None else str(row[0])

    # -- packet leaves of our log ----------------------------------------------------------

    def index_packets(self, limit: int | None = None) -> bool:
        """Index the packet leaves appended since the last call (at most ``limit``
        leaves); True when the index has caught up with the log."""
        row = self._conn.execute("SELECT value FROM audit_meta WHERE key = 'indexed'").fetchone()
        start, size = (0 if row is None else int(row[0])), self.log.size()
        end = size if limit is None else min(size, start + limit)
        if start >= end:
            return True
        entries, acks = [], []
        rows = self._conn.execute(
            "SELECT idx, data FROM audit_leaves WHERE idx >= ? AND idx < ? ORDER BY idx",
            (start, end),
        )
        for index, data in rows:
            try:
                leaf = decode_leaf(bytes(data))
            except AuditError:
                continue
            body = leaf.body
            if isinstance(body, PacketLeaf):
                peer = body.to_node if leaf.kind is LeafKind.PACKET_SENT else body.from_node
                entries.append((index, body.id, body.digest, leaf.kind.value, peer))
            elif (
                isinstance(body, ReceiptLeaf)
                and body.direction == Direction.RECEIVED
                and body.status == "accepted"
            ):
                acks.append((body.packet_digest, body.from_node, index))
        with self._tx() as c:
            c.executemany(
                "INSERT INTO audit_packet_leaves (idx, packet_id, digest, kind, peer)"
                " VALUES (?,?,?,?,?) ON CONFLICT (idx) DO UPDATE SET"
                " packet_id = excluded.packet_id, digest = excluded.digest,"
                " kind = excluded.kind, peer = excluded.peer",
                entries,
            )
            c.executemany(
                "INSERT INTO audit_acks (packet_digest, peer, idx) VALUES (?,?,?)"
                " ON CONFLICT (packet_digest) DO UPDATE SET peer = excluded.peer,"
                " idx = excluded.idx",
                acks,
            )
            c.execute(
                "INSERT INTO audit_meta (key, value) VALUES ('indexed', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(end),),
            )
        return end == size

    def _entries(self, where: str, arg: str) -> list[PacketEntry]:
        self.index_packets()
        query = _ENTRY_QUERIES[where]
        rows = self._conn.execute(query, (arg,) * query.count("?")).fetchall()
        return [PacketEntry(int(r[0]), r[1], r[2], LeafKind(r[3]), r[4]) for r in rows]

    def packets_by_id(self, packet_id: str) -> list[PacketEntry]:
        return self._entries("packet_id", packet_id)

    def packets_by_digest(self, digest: str) -> list[PacketEntry]:
        return self._entries("digest", digest)

    def packets_with(self, peer: str) -> list[PacketEntry]:
        """Packet leaves of packets sent to or received from ``peer``."""
        return self._entries("peer", peer)

    def exchanged_with(self, peer: str) -> list[PacketEntry]:
        """Packets ``peer`` must have logged: those it sent us, and those we sent that it
        accepted (its receipt is in our log; refused packets are not logged)."""
        return self._entries("exchanged", peer)
