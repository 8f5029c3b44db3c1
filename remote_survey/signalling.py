"""WebSocket signalling of a survey: admission, offer/answer and inspector actions.

``GET /survey/v1/ws?device=DEVICE_ID[&session=ID][&role=ROLE]`` upgrades to a
WebSocket; the client's first message is ``{"type": "join", "token": JOIN_TOKEN}`` (the
token never appears in a URL, so no access log holds it). The server then checks the
join link (:mod:`remote_survey.join`) for the session and role asked for (by default
those the link names). A refused link closes
the socket with an application close code and the stable reason as close reason
(:data:`CLOSE_CODES`). An admitted participant gets ``welcome`` then the server's
``offer``; everything else is JSON text messages, one object each, with a ``type``
(normative list: ``docs/protocol.md`` §12). Each connection has a bounded outgoing
queue; a client that stops reading is disconnected instead of growing memory.

Presence: each client reports its own devices (``status``: camera, microphone,
location, network quality) and the server sends everyone ``presence`` (who is
connected, and each one's last status) whenever someone joins, leaves or reports.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import json
import logging
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import jwt
from aiohttp import WSMsgType, web

from remote_survey.errors import JoinRefused, MalformedReport, SurveyError
from remote_survey.report import Answer, ChecklistAnswer, Verdict
from remote_survey.room import ReportRequest, RoomError, SurveyRoom
from remote_survey.session import Event, Participant, Role, SurveyState

if TYPE_CHECKING:  # loaded when someone first joins (load_media)
    from remote_survey.peer import Peer, RoomMedia

__all__ = ["CLOSE_CODES", "Connection", "LiveRoom", "handle_ws"]

CLOSE_CODES = {
    "bad-request": 4400,
    "bad-token": 4401,
    "wrong-audience": 4401,
    "role-not-granted": 4403,
    "not-a-participant": 4403,
    "wrong-session": 4404,
    "used-on-other-device": 4409,
    "expired": 4410,
    "session-ended": 4410,
    "not-yet-valid": 4425,
    "token-in-url": 4400,
    "replaced": 4000,
    "too-slow": 4008,
}
_OUTBOX = 64
_MAX_MESSAGE = 256 * 1024
_REPLACE_TIMEOUT = 10.0
_JOIN_TIMEOUT = 10.0
# what a page may report about its own devices (``status``), per member
STATUS_VALUES = {
    "camera": ("on", "off", "denied", "absent", "unknown"),
    "microphone": ("on", "off", "denied", "absent", "unknown"),
    "location": ("ok", "waiting", "denied", "absent", "unknown"),
    "network": ("good", "fair", "poor", "unknown"),
}
_log = logging.getLogger("tongban.survey.signalling")


@dataclass(eq=False)
class Connection:
    role: Role
    person: Participant
    device_id: str
    ws: web.WebSocketResponse
    peer: Peer
    outbox: asyncio.Queue[dict[str, Any] | None] = field(
        default_factory=lambda: asyncio.Queue(_OUTBOX)
    )
    closing: asyncio.Future[bool] | None = None
    status: dict[str, str] = field(default_factory=lambda: dict.fromkeys(STATUS_VALUES, "unknown"))

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.outbox.put_nowait(message)
        except asyncio.QueueFull:
            self.closing = asyncio.ensure_future(
                self.ws.close(code=CLOSE_CODES["too-slow"], message=b"too-slow")
            )

    async def writer(self) -> None:
        while (message := await self.outbox.get()) is not None:
            if self.ws.closed:
                return
            with contextlib.suppress(ConnectionError):
                await self.ws.send_json(message)


_MEDIA = "remote_survey.peer"
"""The server-side WebRTC media (aiortc and PyAV: some 28 MiB of memory and 0.3 s to
load), loaded by the first join in the process, not at its start: a node holding no
survey, or only ended ones, never needs it."""


async def load_media() -> None:
    """Load :data:`_MEDIA` in a thread the first time (the event loop keeps serving)."""
    if _MEDIA not in sys.modules:
        await asyncio.to_thread(importlib.import_module, _MEDIA)


class LiveRoom:
    """A room plus its media and the connections currently in it."""

    def __init__(self, room: SurveyRoom) -> None:
        self.room = room
        self._media: RoomMedia | None = None
        self.connections: set[Connection] = set()

    @property
    def media(self) -> RoomMedia:
        """The room's media, made at first use (after :func:`load_media`)."""
        if self._media is None:
            from remote_survey.peer import RoomMedia

            self._media = RoomMedia(self.room, self.broadcast)
        return self._media

    @property
    def site_peer(self) -> Peer | None:
        """The site party's peer while it is connected (None before any media)."""
        return None if self._media is None else self._media.site

    def broadcast(self, message: dict[str, Any], roles: tuple[Role, ...] = tuple(Role)) -> None:
        for conn in tuple(self.connections):
            if conn.role in roles:
                conn.send(message)

    def presence(self) -> dict[str, Any]:
        """Who is connected as the site party and as an inspector, with their devices."""
        message: dict[str, Any] = {"type": "presence"}
        for role in (Role.SITE, Role.INSPECTOR):
            present = [c for c in self.connections if c.role is role]
            if present:
                conn = present[-1]
                message[role.value] = {"joined": True, "name": conn.person.name, **conn.status}
            else:
                message[role.value] = {"joined": False}
        message["notice"] = self.room.notice_ms is not None
        return message

    def announce(self) -> None:
        self.broadcast(self.presence())

    async def close(self) -> None:
        for conn in tuple(self.connections):
            await conn.ws.close(code=1001, message=b"server-shutdown")
        site = self.site_peer
        if site is not None:
            await self.media.site_gone(site)


async def _refuse(ws: web.WebSocketResponse, reason: str) -> web.WebSocketResponse:
    await ws.close(code=CLOSE_CODES.get(reason, 4400), message=reason.encode())
    return ws


def _peek(token: str) -> dict[str, Any]:
    """Claims of a join token before it is checked (only to find the room and role)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims if isinstance(claims, dict) else {}


async def _join_token(ws: web.WebSocketResponse) -> str:
    """The token of the client's first message, ``{"type": "join", "token": ...}``."""
    try:
        msg = await ws.receive(timeout=_JOIN_TIMEOUT)
    except TimeoutError:
        return ""
    if msg.type is not WSMsgType.TEXT:
        return ""
    try:
        data = json.loads(msg.data)
    except ValueError:
        return ""
    if not isinstance(data, dict) or data.get("type") != "join":
        return ""
    token = data.get("token")
    return token if isinstance(token, str) else ""


class Rooms(Protocol):
    """Where a connection finds its survey (a dict of them, or the node's hub)."""

    def get(self, session_id: str, /) -> LiveRoom | None: ...

    def has_ended(self, session_id: str, /) -> bool:
        """Whether ``session_id`` ended and was put away (:meth:`get` opens it from disk)."""
        ...


async def handle_ws(request: web.Request, rooms: Rooms) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=15.0, max_msg_size=_MAX_MESSAGE)
    await ws.prepare(request)
    if "token" in request.query:  # would be in access logs: refused, never used
        return await _refuse(ws, "token-in-url")
    device = request.query.get("device", "")
    if not device:
        return await _refuse(ws, "bad-request")
    token = await _join_token(ws)
    if not token:
        return await _refuse(ws, "bad-request")
    claims = _peek(token)
    session_id = request.query.get("session") or claims.get("session")
    if isinstance(session_id, str) and rooms.has_ended(session_id):
        # refused as it is: opening its evidence from disk before the token is checked
        # would let anyone make the node read and hash a whole survey, again and again
        return await _refuse(ws, "session-ended")
    live = rooms.get(session_id) if isinstance(session_id, str) else None
    if live is None:
        return await _refuse(ws, "wrong-session")
    try:
        role = Role(str(request.query.get("role") or claims.get("role")))
    except ValueError:
        return await _refuse(ws, "role-not-granted")
    try:
        _, person = live.room.admit(token, role, device)
    except JoinRefused as exc:
        return await _refuse(ws, exc.reason)
    except RoomError as exc:
        return await _refuse(ws, exc.code)
    for old in tuple(live.connections):
        if old.device_id == device or (role is Role.SITE and old.role is Role.SITE):
            await old.ws.close(code=CLOSE_CODES["replaced"], message=b"replaced")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(old.peer.closed.wait(), _REPLACE_TIMEOUT)
    await load_media()
    from remote_survey.peer import Peer

    peer = Peer(role, device, live.room)
    conn = Connection(role, person, device, ws, peer)
    live.connections.add(conn)
    writer = asyncio.ensure_future(conn.writer())
    try:
        await _session(live, conn)
    except Exception:
        # the response is a WebSocket already: log here, close with 1011 below
        _log.exception("survey %s: signalling with %s failed", live.room.plan.session_id, role)
        await ws.close(code=1011, message=b"internal-error")
    finally:
        live.connections.discard(conn)
        live.announce()
        if role is Role.SITE:
            await live.media.site_gone(peer)
        else:
            await live.media.viewer_gone(peer)
        try:
            conn.outbox.put_nowait(None)
        except asyncio.QueueFull:
            writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        if not ws.closed:
            await ws.close()
    return ws


async def _session(live: LiveRoom, conn: Connection) -> None:
    media, peer = live.media, conn.peer
    if conn.role is Role.SITE:
        await media.claim_site(peer)  # after a previous site connection is handled
    conn.send(live.room.welcome(conn.person, conn.role))
    live.announce()

    @peer.pc.on("connectionstatechange")
    async def on_state() -> None:
        if peer.pc.connectionState in ("failed", "closed"):
            await conn.ws.close(code=1000, message=b"media-ended")

    conn.send({"type": "offer", "sdp": await media.offer(peer)})
    async for msg in conn.ws:
        if msg.type is not WSMsgType.TEXT:
            break
        try:
            data = json.loads(msg.data)
            if not isinstance(data, dict) or not isinstance(data.get("type"), str):
                raise RoomError("bad-request", "a message is a JSON object with a type")
            await _dispatch(live, conn, data)
        except (RoomError, SurveyError, ValueError, KeyError, TypeError) as exc:
            code = exc.code if isinstance(exc, RoomError) else "bad-request"
            detail = exc.detail if isinstance(exc, RoomError) else {}
            conn.send({"type": "error", "code": code, "message": str(exc)[:300], **detail})


_VIEWERS = (Role.INSPECTOR, Role.OBSERVER)


async def _dispatch(live: LiveRoom, conn: Connection, data: dict[str, Any]) -> None:
    room, media, person, kind = live.room, live.media, conn.person, data["type"]
    if kind == "answer":
        await media.answer(conn.peer, str(data["sdp"]))
    elif kind == "snapshot":
        room.check_snapshot(person)
        frame = media.latest_frame()
        if frame is None:
            raise RoomError("no-video", "no video from the site yet")
        from remote_survey.recorder import encode_still, encode_thumbnail

        png = await asyncio.to_thread(encode_still, frame)
        thumb = await asyncio.to_thread(encode_thumbnail, frame)
        taken = room.snapshot(person, png)
        taken["thumbnail"] = "data:image/png;base64," + base64.b64encode(thumb).decode("ascii")
        live.broadcast(taken, _VIEWERS)
    elif kind == "challenge":
        issued = room.issue_challenge(person, str(data.get("instruction", "")))
        live.broadcast(issued, (Role.SITE, *_VIEWERS))
    elif kind == "challenge-shown":
        live.broadcast(room.challenge_shown(person, str(data["id"])), _VIEWERS)
    elif kind == "notice-ack":
        room.acknowledge_notice(person)
        live.announce()
    elif kind == "status":
        _status(conn, data)
        live.announce()
    elif kind == "challenge-confirm":
        result = room.confirm_challenge(person, str(data["id"]), str(data["result"]))
        live.broadcast(result, _VIEWERS)
    elif kind == "geofix":
        distance = room.fix(person, float(data["lat"]), float(data["lon"]), float(data["accuracy"]))
        if distance is not None:
            live.broadcast(
                {
                    "type": "geofix",
                    "distance_m": distance / 1000,
                    "accuracy_m": float(data["accuracy"]),
                },
                _VIEWERS,
            )
    elif kind == "end":
        await _end(live, person, Event(str(data["event"])))
    elif kind == "report":
        await _report(live, conn, data)
    else:
        raise RoomError("bad-request", f"unknown message type {kind!r}")


def _status(conn: Connection, data: dict[str, Any]) -> None:
    for key, allowed in STATUS_VALUES.items():
        if key in data:
            value = data[key]
            if value not in allowed:
                raise RoomError("bad-request", f"status {key} is one of {list(allowed)}")
            conn.status[key] = value


async def _end(
    live: LiveRoom, person: Participant, event: Event, report: ReportRequest | None = None
) -> None:
    room = live.room
    if room.plan.role_of(person.person_id) is not Role.INSPECTOR:
        raise RoomError("not-allowed", f"{person.person_id} may not end the survey")
    room.check_end(person, event)  # a refused end leaves the recording running
    await live.media.stop_recording()  # the last segment is chained before the end
    state = room.end(person, event, report)
    live.broadcast({"type": "state", "state": state.value})
    await live.media.survey_ended()


async def end_by_office(live: LiveRoom) -> SurveyState:
    """The office abandons the survey (its staff, not a participant): checked first, then
    the open segment closed and chained, the state changed, every page told, the site's
    connection closed. Raises :class:`RoomError`."""
    room = live.room
    room.check_office_end()
    media = live._media  # none: nobody joined since the start (nothing to stop or load)
    if media is not None:
        await media.stop_recording()
    state = room.end_by_office()
    live.broadcast({"type": "state", "state": state.value})
    if media is not None:
        await media.survey_ended()
    return state


async def _report(live: LiveRoom, conn: Connection, data: dict[str, Any]) -> None:
    room = live.room
    try:
        verdict = Verdict(str(data["verdict"]))
    except ValueError:
        raise RoomError("no-verdict", "choose a verdict") from None
    answers = []
    for item in data["answers"]:
        item_id = str(item["item"])
        try:
            answer = Answer(str(item["answer"]))
        except ValueError:
            raise RoomError("unanswered", f"item {item_id} is not answered", item=item_id) from None
        try:
            answers.append(
                ChecklistAnswer(
                    item_id=item_id,
                    answer=answer,
                    note=str(item.get("note", "")),
                    snapshots=tuple(str(h) for h in item.get("snapshots", ())),
                )
            )
        except MalformedReport as exc:
            raise RoomError("bad-report", str(exc), item=item_id) from None
    remarks, reason = str(data.get("remarks", "")), str(data.get("reason", ""))
    room.check_report(conn.person, answers, verdict, remarks, reason)  # before ending it
    if not room.state.is_final:  # check_report: complete only while live
        convert = verdict is Verdict.CONVERT_TO_ONSITE
        request = ReportRequest(conn.person.person_id, tuple(answers), verdict, remarks, reason)
        await _end(live, conn.person, Event.CONVERT if convert else Event.COMPLETE, request)
    try:
        token = room.report(conn.person, answers, verdict, remarks, reason)
    except OSError as exc:  # kept: sealed by the next try, or when the node starts again
        _log.error("survey %s: the report was not written: %s", room.plan.session_id, exc)
        raise RoomError(
            "report-not-written",
            "the report could not be written; what you signed is kept: sign again, or it"
            " is sealed when the node starts again",
        ) from None
    # every inspector's page locks its controls: nothing may be added to a sealed chain
    live.broadcast({"type": "report", "token": token, "head": room.chain.head}, (Role.INSPECTOR,))
