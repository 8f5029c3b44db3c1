"""The ``[database]`` table of a node's configuration.

::

    [database]
    url = "postgresql://tongban@db.example:5432/tongban"   # absent: SQLite in data_dir
    blob_dir = "/srv/shared/tongban-blobs"                  # absent: data_dir/blobs

The URL is a libpq connection URI; leave the password out of it and give it in
``~/.pgpass`` or ``PGPASSFILE`` (libpq reads both), so the configuration file holds no
secret. Several workers of one node share the database and the blob directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["DatabaseSettings", "DatabaseUrlError", "check_url"]

_SCHEMES = ("postgresql", "postgres")


class DatabaseUrlError(ValueError):
    """A ``[database] url`` that is not a PostgreSQL connection URI."""


def check_url(url: str) -> str:
    """``url`` if it is a usable ``postgresql://`` URI, else :class:`DatabaseUrlError`."""
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise DatabaseUrlError("must start with postgresql:// (or be left out for SQLite)")
    if parts.password:
        raise DatabaseUrlError(
            "must not hold a password; put it in ~/.pgpass or the file PGPASSFILE names"
        )
    if not parts.path.strip("/") and "dbname=" not in parts.query:
        raise DatabaseUrlError("must name a database, e.g. postgresql://host/tongban")
    return url


@dataclass(frozen=True)
class DatabaseSettings:
    """``url`` None: the embedded SQLite files in the data directory."""

    url: str | None = None
    blob_dir: Path | None = None

    @property
    def postgresql(self) -> bool:
        return self.url is not None
