"""Short tracking links that fit an SMS: ``https://<public host>/t/AB3K7Q``.

The signed tracking link (:mod:`relay.cases.tracking`) is about 1,200 characters; a
text message to an applicant holds the short link and, in a separate message or on the
hand-in slip, the access code. The short code only *names* the case, like the case
number: it grants nothing. Opening ``/t/<code>`` shows the tracking page asking for the
access code, and the lookup (``POST /public/v1/track {"short", "code"}``) goes through
the same :meth:`~relay.cases.desk.CaseDesk.lookup` as a case number does:

- the code is 6 characters from :data:`~relay.cases.tracking.CODE_ALPHABET` (30 random
  bits; a fresh one is drawn on the rare collision), kept server-side in the table
  ``short_links`` of the node's database (``short`` → ``case_id``; both unique, so two
  workers drawing a code for the same case at once keep the first one stored);
- the secret stays the 50-bit access code, compared against its scrypt hash;
- the throttle is unchanged: the client address's bucket (10, one more every 6 s) on
  every lookup and the *case's* bucket (5, one more every 60 s) on every failed one — a
  short code that names a case charges that case's bucket, so guessing an access code
  through the short link or the case number shares one budget of about 1,440 tries a
  day: trying all 2^50 codes takes about 8 · 10^11 days. An unknown short code answers
  exactly like a wrong access code (``not-found``), so probing short codes does not even
  tell which exist, and it charges a bucket of its own.

An https host of up to 40 characters gives a link of at most 60 characters.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from relay.cases.tracking import CODE_ALPHABET, normalize_code
from relay.db.migrations import Connection, Migration, migrate
from relay.db.open import connection_for

__all__ = ["LICENCE_LENGTH", "MIGRATIONS", "SHORT_LENGTH", "ShortLinks", "new_short_code"]

SHORT_LENGTH = 6
_SCHEMA = """
CREATE TABLE IF NOT EXISTS short_links (
    short   TEXT PRIMARY KEY,
    case_id TEXT NOT NULL UNIQUE
);
"""

_LICENCES = """
CREATE TABLE IF NOT EXISTS licence_links (
    short   TEXT PRIMARY KEY,
    case_id TEXT NOT NULL UNIQUE
);
"""

MIGRATIONS = [
    Migration(1, "short tracking codes", _SCHEMA, _SCHEMA),
    Migration(2, "short links to licences handed over here", _LICENCES, _LICENCES),
]

LICENCE_LENGTH = 10
"""A licence link's code: 10 characters, 50 random bits (it names a licence, and its
content is then read with no further secret, as the paper licence itself shows it)."""


def new_short_code(randbytes: Callable[[int], bytes] = os.urandom) -> str:
    """Six characters from the access-code alphabet (30 random bits)."""
    value = int.from_bytes(randbytes(4), "big") >> 2  # 30 bits
    chars = []
    for _ in range(SHORT_LENGTH):
        value, index = divmod(value, 32)
        chars.append(CODE_ALPHABET[index])
    return "".join(chars)


def is_short_code(text: str) -> bool:
    return len(text) == SHORT_LENGTH and all(ch in CODE_ALPHABET for ch in text)


class ShortLinks:
    """Short codes of this node's cases on ``target`` (a connection from
    :func:`relay.db.open.open_connection`, or the path of the relay's SQLite file)."""

    def __init__(
        self, target: Path | Connection, *, randbytes: Callable[[int], bytes] = os.urandom
    ) -> None:
        self._conn = connection_for(target)
        migrate(self._conn, "short_links", MIGRATIONS)
        self._randbytes = randbytes

    def close(self) -> None:
        self._conn.close()

    def code_for(self, case_id: str) -> str:
        """The case's short code, drawn and stored on first use."""
        return self._drawn(
            "SELECT short FROM short_links WHERE case_id = ?",
            "INSERT OR IGNORE INTO short_links (short, case_id) VALUES (?, ?)",
            (case_id,),
            lambda: new_short_code(self._randbytes),
        )

    def _drawn(self, find: str, store: str, key: tuple[str, ...], draw: Callable[[], str]) -> str:
        """The code ``find`` finds for ``key``, else a fresh one from ``draw`` stored by
        ``store`` (a code that names something else is drawn again; another worker that
        stored one for ``key`` meanwhile wins)."""
        row = self._conn.execute(find, key[:1]).fetchone()
        if row is not None:
            return str(row[0])
        for _ in range(32):
            short = draw()
            if self._conn.execute(store, (short, *key)).rowcount == 1:
                return short
            row = self._conn.execute(find, key[:1]).fetchone()
            if row is not None:
                return str(row[0])
        raise RuntimeError("no free short code after 32 draws")  # pragma: no cover

    def case_for(self, short: str) -> str | None:
        """The case a short code names (letters normalized as access codes are)."""
        code = normalize_code(short)
        if not is_short_code(code):
            return None
        row = self._conn.execute(
            "SELECT case_id FROM short_links WHERE short = ?", (code,)
        ).fetchone()
        return None if row is None else str(row[0])

    def licence_code(self, case_id: str) -> str:
        """The code of a link to the licence of case ``case_id`` (``/l/<code>``), drawn
        and stored on first use: a partner's licence handed over here, which only its
        issuer can put in the compact form. The link names the case, whose licence is
        read when it is opened (a licence number is free text, and the retention purge
        takes the licence off the case)."""

        def draw() -> str:
            value = int.from_bytes(self._randbytes(7), "big") >> 6  # 50 bits
            chars = []
            for _ in range(LICENCE_LENGTH):
                value, index = divmod(value, 32)
                chars.append(CODE_ALPHABET[index])
            return "".join(chars)

        return self._drawn(
            "SELECT short FROM licence_links WHERE case_id = ?",
            "INSERT OR IGNORE INTO licence_links (short, case_id) VALUES (?, ?)",
            (case_id,),
            draw,
        )

    def licence_case(self, short: str) -> str | None:
        """The case whose licence a licence link's code names."""
        code = normalize_code(short)
        if len(code) != LICENCE_LENGTH or any(ch not in CODE_ALPHABET for ch in code):
            return None
        row = self._conn.execute(
            "SELECT case_id FROM licence_links WHERE short = ?", (code,)
        ).fetchone()
        return None if row is None else str(row[0])
