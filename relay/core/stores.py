"""The relay store a node's configuration asks for: :class:`SqliteStore` in the data
directory (no ``[database] url``), or :class:`PgStore` on the PostgreSQL database the
node's workers share, with sealed blobs in ``[database] blob_dir`` (shared storage)
when it is set, else in the data directory. :mod:`relay.core.pg_store` (and with it
the PostgreSQL driver) is loaded only for the latter."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from relay.audit.merkle import TreeHash
from relay.core.sqlite_store import SqliteStore, SqlStore
from relay.db.settings import DatabaseSettings

__all__ = ["open_relay_store"]


def open_relay_store(
    data_dir: Path,
    database: DatabaseSettings,
    *,
    clock: Callable[[], datetime] | None = None,
    worker: str | None = None,
    lease: timedelta | None = None,
    tree_hash: TreeHash | None = None,
) -> SqlStore:
    """Open the relay store (applying the ``relay`` and ``audit`` migrations); ``lease``:
    how long a worker's claim on a case lasts unrenewed (PostgreSQL, ``[outbox] lease``;
    by default :data:`relay.core.pg_store.DEFAULT_LEASE`)."""
    if database.url is None:
        return SqliteStore(data_dir, tree_hash=tree_hash)
    from relay.core.pg_store import DEFAULT_LEASE, PgStore

    lease = DEFAULT_LEASE if lease is None else lease
    shared = database.blob_dir
    if shared is None:
        return PgStore(database.url, blobs=data_dir / "blobs", work=data_dir, worker=worker,
                       lease=lease, clock=clock, tree_hash=tree_hash)  # fmt: skip
    return PgStore(database.url, blobs=shared, work=shared, worker=worker, lease=lease,
                   clock=clock, tree_hash=tree_hash)  # fmt: skip
