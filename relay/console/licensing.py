"""Issuing a licence from the console: the facts a person enters, sealed by the node.

The approver enters the holder, the scope, the validity and (optionally) the licence
number; :class:`LicenceDesk` builds the :class:`~signing.licence.Licence` (issuer this
node, type the case's matter, department the office's names, status entries in this
node's published revocation and suspension lists at the next free index), seals it
with the node's seal key and takes the case's ``issue-licence`` step through the desk
(which checks it, logs the ``issued`` licence event and sends it to the receiving
office). The node's status lists the licence names are published first, empty, if the
node has none yet: a verifier that finds no list takes the licence for unverifiable.
Wrong input is a :class:`~relay.cases.errors.MalformedEvent` naming the field.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from relay.cases.desk import CaseDesk
from relay.cases.errors import CaseError, MalformedEvent
from relay.cases.model import EventKind
from relay.cases.store import CaseRecord
from relay.http.licences import status_url
from signing.errors import MalformedInput
from signing.keys import Signer
from signing.licence import Licence, StatusEntry, issue_licence, parse_licence
from signing.licence_compact import Issuer, issue_compact_licence, licence_url
from signing.qr import render_qr, render_url_qr
from signing.status_list import MIN_BITS, StatusPurpose

__all__ = ["LicenceDesk"]

_MAX_VALID_DAYS = 50 * 366
_PURPOSES = (StatusPurpose.REVOCATION, StatusPurpose.SUSPENSION)


def _text(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > 500:
        raise MalformedEvent(f"the licence needs {name!r} (1..500 characters)")
    return value.strip()


class LicenceDesk:
    def __init__(
        self,
        *,
        desk: CaseDesk,
        signer: Signer,
        public_base: str,
        clock: Callable[[], datetime],
        publish_lists: Callable[[Sequence[StatusEntry]], object] | None = None,
    ) -> None:
        self._desk = desk
        self._signer = signer
        self.public_base = public_base
        self._clock = clock
        self._publish_lists = publish_lists  # LicenceStatus.publish_missing
        self._issuing = asyncio.Lock()

    async def issue(self, case_id: str, body: Mapping[str, Any], *, staff: str) -> CaseRecord:
        """Seal the licence for ``case_id`` from ``body`` and take ``issue-licence``.
        One issue at a time: the next status-list index is read from the store (one
        index probe) and taken by the step that records the licence, so two licences
        issued at once never share an index (revoking one would revoke the other)."""
        async with self._issuing:
            return await self._issue(case_id, body, staff=staff)

    async def _issue(self, case_id: str, body: Mapping[str, Any], *, staff: str) -> CaseRecord:
        record = self._desk.get(case_id)
        header = record.case.header
        me = self._desk.node_id
        days = body.get("valid_days", 365 * 5)
        if isinstance(days, bool) or not isinstance(days, int) or not 0 < days <= _MAX_VALID_DAYS:
            raise MalformedEvent(
                f"'valid_days' must be a whole number of days, 1..{_MAX_VALID_DAYS}"
            )
        at = self._clock().replace(microsecond=0)
        index = self._desk.next_status_index()
        if index >= MIN_BITS:  # its bit would lie outside the node's status lists
            raise CaseError(
                f"the node's status lists are full ({MIN_BITS} licences): no licence can be "
                "issued with a status entry until they are extended",
                code="status-list-full",
            )
        number = body.get("number") or f"{me}-{at:%Y}-{index + 1:06d}"
        if not isinstance(number, str) or len(number) > 64:
            raise MalformedEvent("'number' must be a text of at most 64 characters")
        zh, en = self._desk.office_names.get(me, (me, me))
        try:
            licence = Licence(
                issuer_node=me,
                number=number,
                licence_type=header.matter,
                holder_id=_text(body, "holder_id"),
                holder_name=_text(body, "holder_name"),
                scope=_text(body, "scope"),
                department_zh=zh,
                department_en=en,
                issued_at=at,
                valid_from=at,
                valid_until=at + timedelta(days=days),
                status=tuple(
                    StatusEntry(p, index, status_url(self.public_base, p)) for p in _PURPOSES
                ),
            )
            token = issue_licence(licence, self._signer, at=at)
        except MalformedInput as exc:
            raise MalformedEvent(f"the licence is not valid: {exc}") from None
        if self._publish_lists is not None:  # before the licence exists: its lists exist
            self._publish_lists(licence.status)
        details = {"licence": token, "licence_number": number, "staff": staff}
        return await self._desk.act(case_id, EventKind.ISSUE_LICENCE, details)

    def qr_svg(self, token: str, case_id: str) -> bytes:
        """The QR code a citizen scans: a link to this node's verify page, which a phone
        camera opens (the bare ``vc+jwt`` is text it only shows). A licence this node
        issued travels in the compact form (protocol.md §9.4, a small code); a partner's,
        which only its issuer can seal so, by a short link to this node (``/l/<code>``,
        on to ``/v#token=``)."""
        licence = parse_licence(token)
        base = self.public_base.rstrip("/")
        if licence.issuer_node != self._desk.node_id:  # a short link to the whole token
            links = self._desk.short_links
            if links is None:
                return render_url_qr(f"{base}/v#token={token}").svg
            return render_qr(f"{base}/l/{links.licence_code(case_id)}").svg
        zh, en = licence.department_zh, licence.department_en
        issuer = Issuer(licence.issuer_node, zh, en, self.public_base, self._signer.chain)
        credential = issue_compact_licence(licence, self._signer, issuer)
        return render_url_qr(licence_url(self.public_base, credential), scale=4).svg

    @staticmethod
    def text_qr_svg(text: str) -> bytes:
        """Any link (e.g. a tracking link) as a QR code."""
        return render_qr(text, scale=4).svg
