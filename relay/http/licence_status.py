"""Staff route that changes the status of a licence this node issued.

``POST /staff/v1/licences/{number}/status`` ``{"purpose": "revocation"|"suspension",
"value": true|false}`` (role ``clerk``) finds the licence with that number in this
node's cases, sets or clears its bit in the node's own status list of that purpose
(``<data_dir>/status/<purpose>.jwt``, the list at the URL the licence names; created
empty when missing), re-signs the list with the node's seal and publishes it, and
appends a ``licence-event`` audit leaf (``revoked``, ``suspended`` or ``reinstated``)
in the same database transaction as the file is put in place. That transaction holds
the list from before it is read (:meth:`SqliteCaseStore.holding`), so two workers of the
node changing bits of one list at once never lose one another's bit.

The published list is what verifiers see; the transaction also records the bit the
leaf logs (``licence_status_logged``). A transaction that fails after its file was put
in place (its commit refused, the node stopped) leaves the change published and not
logged: the same request again finds the bit published and not logged, and logs it
then (``changed``: true) instead of answering that nothing changed.

A published list is valid for ``LIST_VALID_DAYS``; :meth:`LicenceStatus.renew_due`
re-signs each of the node's lists (same bits, same URL, nothing logged: no licence's
status changes) once less than ``RENEW_BEFORE`` of its validity is left, so verifiers
never meet an expired list while the node runs. The case layer runs it at start and
hourly (:func:`renew_status_lists_hourly`). Answers
``{"number", "purpose", "index", "value", "changed", "log_index"}``; an unchanged bit
changes nothing and logs nothing. Revocation cannot be undone (409 ``conflict``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from relay.alerts import Severity, StaffAlert
from relay.audit.leaves import LicenceEvent
from relay.audit.licence_events import licence_leaf
from relay.cases.desk import CaseDesk
from relay.cases.sqlite_store import Held, SqliteCaseStore
from relay.db.open import storage_errors
from relay.http.body import read_json_object, require_str
from relay.permissions import StaffAction, require
from relay.problem import Problem, ProblemCode
from signing.errors import MalformedInput, SigningError
from signing.keys import Signer
from signing.licence import StatusEntry, parse_licence
from signing.status_list import (
    MIN_BITS,
    StatusList,
    StatusListCredential,
    StatusPurpose,
    parse_status_list,
    sign_status_list,
)

__all__ = [
    "LIST_VALID_DAYS",
    "RENEW_BEFORE",
    "LicenceStatus",
    "add_licence_status_routes",
    "renew_status_lists_hourly",
]

LIST_VALID_DAYS = 30
RENEW_BEFORE = timedelta(days=10)
_log = logging.getLogger("tongban.relay.licences")


class LicenceStatus:
    """Changes the node's own status lists and logs each change."""

    def __init__(
        self,
        *,
        node_id: str,
        desk: CaseDesk,
        store: SqliteCaseStore,
        signer: Signer,
        status_dir: Path,
        clock: Callable[[], datetime],
    ) -> None:
        self.node_id = node_id
        self._desk = desk
        self._store = store
        self._signer = signer
        self.status_dir = status_dir
        self._clock = clock

    def _licence(self, number: str) -> tuple[str, str]:
        found = self._desk.licence(number)
        if found is None:
            raise Problem(404, ProblemCode.NOT_FOUND, f"no licence {number} in this node's cases")
        return found

    def change(
        self,
        number: str,
        purpose: StatusPurpose,
        value: bool,
        *,
        record: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Set the bit of licence ``number`` in its list of ``purpose`` to ``value``
        (see the module note); the answer. ``record`` (who changed it and why, kept
        apart) is called with the leaf's index in the change's transaction, before the
        list is put in place: when it raises, nothing is changed or logged."""
        token, case_id = self._licence(number)
        licence = parse_licence(token)
        if licence.issuer_node != self.node_id:
            raise Problem(409, ProblemCode.CONFLICT, "only the issuing office changes its status")
        entry = next((e for e in licence.status if e.purpose is purpose), None)
        if entry is None:
            raise Problem(409, ProblemCode.CONFLICT, f"the licence has no {purpose} status entry")
        answer: dict[str, Any] = {
            "number": number, "purpose": purpose.value, "index": entry.index, "value": value,
            "changed": False, "log_index": None,
        }  # fmt: skip

        def locked(held: Held) -> dict[str, Any]:
            """Read, change and publish the list while holding it: another worker
            changing a bit of the same list waits, then reads what this one wrote."""
            path = self.status_dir / f"{purpose.value}.jwt"
            lst = StatusList.empty(purpose)
            if path.exists():
                current = parse_status_list(path.read_text("ascii").strip())
                if current.url != entry.list_url or current.status_list.purpose is not purpose:
                    raise Problem(
                        409, ProblemCode.CONFLICT, f"{path.name} is not the licence's list"
                    )
                lst = current.status_list
            published = lst.get(entry.index) == value
            if published and held.logged_status(number, purpose.value) == value:
                return answer
            if purpose is StatusPurpose.REVOCATION and not value and not published:
                raise Problem(409, ProblemCode.CONFLICT, "revocation cannot be undone")
            now = self._clock()
            if purpose is StatusPurpose.REVOCATION:
                event = LicenceEvent.REVOKED
            else:
                event = LicenceEvent.SUSPENDED if value else LicenceEvent.REINSTATED
            leaf = licence_leaf(token, event, node_id=self.node_id, case_id=case_id, at=now)
            staged = None
            if not published:  # else the list shows it and the log does not: a change
                # whose transaction failed after its file was put in place, logged now
                self.status_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                for other in licence.status:  # the licence's other lists are published too
                    other_path = self.status_dir / f"{other.purpose.value}.jwt"
                    if other.purpose is not purpose and not other_path.exists():
                        empty = self._sign(other.list_url, StatusList.empty(other.purpose), now)
                        os.replace(self._stage(other_path, empty), other_path)
                signed = self._sign(entry.list_url, lst.with_bit(entry.index, value), now)
                staged = self._stage(path, signed)
            try:
                index = held.append(leaf)
                held.log_status(number, purpose.value, value)
                if record is not None:
                    record(index)
            except BaseException:
                if staged is not None:
                    staged.unlink(missing_ok=True)
                raise
            if staged is not None:
                os.replace(staged, path)  # a failure rolls the leaf back
            return {**answer, "changed": True, "log_index": index}

        # both lists: publishing one may publish the other empty (the licence names both)
        return self._store.holding([_held(p) for p in StatusPurpose], locked)

    def publish_missing(self, entries: Sequence[StatusEntry]) -> list[StatusPurpose]:
        """Publish an empty list at each of ``entries``' URLs that this node has not
        published yet (a licence about to be issued names them: a verifier that finds no
        list cannot tell a valid licence from a revoked one); the purposes published.
        Nothing is logged: no licence's status changes."""
        now = self._clock()

        def publish(entry: StatusEntry, _held: Held) -> bool:
            path = self.status_dir / f"{entry.purpose.value}.jwt"
            if path.exists():
                return False
            self.status_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            empty = self._sign(entry.list_url, StatusList.empty(entry.purpose), now)
            os.replace(self._stage(path, empty), path)
            return True

        return [
            entry.purpose
            for entry in entries
            if not (self.status_dir / f"{entry.purpose.value}.jwt").exists()
            and self._store.holding([_held(entry.purpose)], functools.partial(publish, entry))
        ]

    def renew_due(self) -> list[StatusPurpose]:
        """Re-sign every published list of this node with less than ``RENEW_BEFORE``
        of validity left (or already expired); the purposes renewed. Each list is held
        while it is read and put back, as a change of a bit holds it: a bit another
        worker sets meanwhile is never undone by a renewal of the list read before."""
        now = self._clock()

        def renew(purpose: StatusPurpose, _held: Held) -> bool:
            path = self.status_dir / f"{purpose.value}.jwt"
            if not path.exists():
                return False
            current = parse_status_list(path.read_text("ascii").strip())
            if current.valid_until - now > RENEW_BEFORE:
                return False
            signed = self._sign(current.url, current.status_list, now)
            os.replace(self._stage(path, signed), path)
            return True

        return [  # nothing is logged: no licence's status changes
            purpose
            for purpose in StatusPurpose
            if self._store.holding([_held(purpose)], functools.partial(renew, purpose))
        ]

    def alerts(self, now: datetime) -> list[StaffAlert]:
        """A published list that renewal has left to run low (less than
        ``RENEW_BEFORE`` minus a day left: hourly renewals have failed for a day) or
        that ran out: once it has, every licence of this node verifies as
        unconfirmable; and lists nine tenths full (one index probe)."""
        alerts: list[StaffAlert] = []
        taken = self._desk.next_status_index()
        if taken >= MIN_BITS * 9 // 10:
            alerts.append(
                StaffAlert.of(
                    "licences",
                    "status-list:filling",
                    "status-list-filling",
                    Severity.CRITICAL if taken >= MIN_BITS else Severity.WARNING,
                    now,
                    "证照状态列表将满，满后无法签发新证照",
                    "The licence status lists are nearly full; once full no licence can be issued",
                    f"{taken} of the {MIN_BITS} entries of this node's status lists are "
                    "taken; once all are, issuing a licence is refused. Plan the lists' "
                    "extension with the system's maintainers now",
                    subject="status-lists",
                )
            )
        for purpose in StatusPurpose:
            path = self.status_dir / f"{purpose.value}.jwt"
            try:
                current = parse_status_list(path.read_text("ascii").strip())
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError, MalformedInput) as exc:
                detail = f"{path} cannot be read as a status list ({exc})"
                alerts.append(_list_alert(purpose, Severity.CRITICAL, now, detail))
                continue
            left = current.valid_until - now
            if left > RENEW_BEFORE - timedelta(days=1):
                continue
            severity = Severity.CRITICAL if left <= timedelta(0) else Severity.WARNING
            detail = (
                f"the {purpose.value} status list published at {current.url} is valid until "
                f"{current.valid_until.isoformat()} and was not renewed (see the node's log); "
                "once it runs out, verifiers cannot confirm this office's licences. Fix the "
                "cause (storage, database, seal key): the node tries again every hour"
            )
            alerts.append(_list_alert(purpose, severity, now, detail))
        return alerts

    def _sign(self, url: str, lst: StatusList, now: datetime) -> str:
        credential = StatusListCredential(
            issuer_node=self.node_id, url=url, status_list=lst, issued_at=now, valid_from=now,
            valid_until=now + timedelta(days=LIST_VALID_DAYS),
        )  # fmt: skip
        return sign_status_list(credential, self._signer, at=now)

    @staticmethod
    def _stage(path: Path, token: str) -> Path:
        """``token`` written and synced under a name of this call's own, beside
        ``path``, for :func:`os.replace`."""
        fd, staged = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(token.encode("ascii") + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(staged, 0o644)  # a published list: readable by the public listener
        return Path(staged)


def _list_alert(
    purpose: StatusPurpose, severity: Severity, now: datetime, detail: str
) -> StaffAlert:
    return StaffAlert.of(
        "licences",
        f"status-list:{purpose.value}",
        "status-list-not-renewed",
        severity,
        now,
        "证照状态列表未能按时更新，到期后各方将无法确认本单位证照的状态",
        "The licence status list was not renewed; once it runs out no licence of this "
        "office can be confirmed",
        detail,
        subject=purpose.value,
    )


def _held(purpose: StatusPurpose) -> str:
    """The name a worker holds a status list by (:meth:`SqliteCaseStore.holding`)."""
    return f"status-list:{purpose.value}"


async def renew_status_lists_hourly(status: LicenceStatus, stop: asyncio.Event) -> None:
    """Run :meth:`LicenceStatus.renew_due` now and every hour until ``stop``; a
    failure of storage (a database error too), of a list file or of the seal is logged
    at ERROR and tried again the next hour, and :meth:`LicenceStatus.alerts` says so
    once a list is overdue."""
    while not stop.is_set():
        try:
            for purpose in status.renew_due():
                _log.info("status list %s re-signed before it ran out", purpose.value)
        except storage_errors(MalformedInput, SigningError, ValueError):  # ValueError: a
            # list file that is not ASCII (UnicodeDecodeError)
            _log.exception("the node's status lists could not be renewed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 3600)


def add_licence_status_routes(app: web.Application, status: LicenceStatus) -> None:
    """``POST /staff/v1/licences/{number}/status`` on a staff application."""

    async def change(request: web.Request) -> web.Response:
        require(request, StaffAction.LICENCE)
        body = await read_json_object(request)
        try:
            purpose = StatusPurpose(require_str(body, "purpose"))
        except ValueError:
            raise Problem(
                400, ProblemCode.INVALID_REQUEST, "'purpose' is revocation or suspension"
            ) from None
        value = body.get("value")
        if not isinstance(value, bool):
            raise Problem(400, ProblemCode.INVALID_REQUEST, "'value' must be true or false")
        try:
            answer = status.change(request.match_info["number"], purpose, value)
        except MalformedInput as exc:
            raise Problem(409, ProblemCode.CONFLICT, str(exc)) from None
        return web.json_response(answer)

    app.router.add_post("/staff/v1/licences/{number}/status", change)
