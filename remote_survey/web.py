"""The survey's HTTP surface: signalling WebSocket and the two pages, as an aiohttp app.

:class:`SurveyHub` holds the node's running surveys (kept on disk, resumed after a
restart by :meth:`SurveyHub.resume`) (:class:`~remote_survey.signalling.
LiveRoom` per session); :func:`survey_app` returns an :class:`aiohttp.web.Application`
serving, under ``/survey/v1/``:

==================================== ===========================================
``GET ws?device=..``                 signalling (:mod:`remote_survey.signalling`)
``GET site``                         the on-site party's page (phone)
``GET inspector``                    the inspector's (and observer's) page
``GET static/<file>``                the pages' scripts and styles, no build step
==================================== ===========================================

Join links point at a page with the token in the URL fragment
(``/survey/v1/site#token=...``), so it never reaches access logs; the page opens the
WebSocket itself and sends the token as its first message, never in the socket's URL.
:func:`add_survey_routes` adds the same routes to an existing app
(the node's public listener); :func:`survey_extension` is the same as a
``relay.node.Node`` extension: ``Node(config, extensions=[survey_extension(hub)])``.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from remote_survey.errors import SurveyError
from remote_survey.persist import STATE_FILE, load_state
from remote_survey.room import REQUEST_FILE, RoomConfig, SurveyRoom
from remote_survey.session import SurveyPlan, SurveyState
from remote_survey.signalling import LiveRoom, handle_ws

__all__ = [
    "HUB_KEY",
    "PREFIX",
    "SurveyHub",
    "add_survey_routes",
    "survey_app",
    "survey_extension",
]

_log = logging.getLogger("tongban.survey")
PREFIX = "/survey/v1"
STATIC = Path(__file__).with_name("static")
HUB_KEY: web.AppKey[SurveyHub] = web.AppKey("survey_hub", object)  # type: ignore[arg-type]
_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self'; img-src 'self' data: blob:; "
        "media-src 'self' blob:; style-src 'self'; script-src 'self'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


_ENDED_KEPT = 16  # surveys that ended, opened on demand, kept in memory at once


class SurveyHub:
    """The surveys a node runs at the moment, keyed by session id (``rooms``), and those
    that ended, kept on disk and opened on demand (:meth:`get`)."""

    def __init__(self, config: RoomConfig) -> None:
        self.config = config
        self.rooms: dict[str, LiveRoom] = {}
        # surveys that ended (before this start, or since: retired from ``rooms``): their
        # final state, counted by state for the gauges, and the few opened lately (a
        # report to send, a status asked for)
        self.ended: dict[str, SurveyState] = {}
        self._ended_counts: Counter[str] = Counter()
        self._opened_ended: OrderedDict[str, LiveRoom] = OrderedDict()

    def resume(self) -> list[str]:
        """Open again every session kept under the media root that has not ended (after
        a node restart); one that ended is only noted (:attr:`ended`), its evidence left
        unread until asked for (:meth:`get`): a start reads what is going on, not every
        survey the node ever held. One that ended with a report asked for and not sealed
        (a stop in between) is opened to seal it.

        A session that cannot be read is logged and left alone (its files untouched);
        returns the ids of the sessions resumed.
        """
        resumed = []
        root = self.config.media_root
        for folder in sorted(root.iterdir()) if root.is_dir() else ():
            if not (folder / STATE_FILE).is_file() or folder.name in self.rooms:
                continue
            try:
                session, _ = load_state(folder)
                if session.state.is_final and session.plan.session_id == folder.name:
                    if (folder / REQUEST_FILE).exists():  # a report a stop left unsealed
                        SurveyRoom.restore(folder, self.config)  # seals it
                    self._note_ended(folder.name, session.state)
                    continue
                room = SurveyRoom.restore(folder, self.config)
            except SurveyError as exc:
                _log.error("survey %s not resumed: %s", folder.name, exc)
                continue
            self.rooms[room.plan.session_id] = LiveRoom(room)
            resumed.append(room.plan.session_id)
        return resumed

    def get(self, session_id: str) -> LiveRoom | None:
        """The survey ``session_id``: a running one, or one that ended (opened from its
        folder, checked as at a restart; the last few are kept); None when this node
        holds no such survey, or its files cannot be read (logged)."""
        live = self.rooms.get(session_id) or self._opened_ended.get(session_id)
        if live is not None or session_id not in self.ended:
            return live
        try:
            room = SurveyRoom.restore(self.config.media_root / session_id, self.config)
        except SurveyError as exc:
            _log.error("survey %s cannot be opened: %s", session_id, exc)
            return None
        live = LiveRoom(room)
        self._keep_opened(session_id, live)
        return live

    def has_ended(self, session_id: str) -> bool:
        """Whether ``session_id`` ended and was put away (:meth:`get` opens it from disk)."""
        return session_id in self.ended and session_id not in self.rooms

    def _keep_opened(self, session_id: str, live: LiveRoom) -> None:
        self._opened_ended[session_id] = live
        self._opened_ended.move_to_end(session_id)
        while len(self._opened_ended) > _ENDED_KEPT:
            self._opened_ended.popitem(last=False)

    def _note_ended(self, session_id: str, state: SurveyState) -> None:
        held = self.ended.get(session_id)
        if held is not None:
            self._ended_counts[held.value] -= 1
        self.ended[session_id] = state
        self._ended_counts[state.value] += 1

    def retire_ended(self) -> list[str]:
        """Move the rooms whose survey ended and that nobody is in any more (no
        connection, no site media) from :attr:`rooms` to :attr:`ended`; each stays among
        the few opened lately, the same object :meth:`get` gives. A node running for
        months holds in memory the surveys going on, not every one since it started.
        Returns the ids retired."""
        retired = []
        for session_id, live in tuple(self.rooms.items()):
            if live.room.state.is_final and not live.connections and live.site_peer is None:
                del self.rooms[session_id]
                self._note_ended(session_id, live.room.state)
                self._keep_opened(session_id, live)
                retired.append(session_id)
        return retired

    def state_counts(self) -> dict[str, int]:
        """How many surveys this node holds in each state (running and ended): the
        ended ones are counted as they end, so a count does not read every survey ever
        held."""
        self.retire_ended()
        counts = Counter({state: n for state, n in self._ended_counts.items() if n})
        counts.update(live.room.state.value for live in self.rooms.values())
        return dict(counts)

    def open(self, plan: SurveyPlan) -> LiveRoom:
        """Start serving a scheduled survey (its media directory is created)."""
        self.retire_ended()
        if (
            plan.session_id in self.rooms
            or plan.session_id in self.ended
            or (self.config.media_root / plan.session_id / STATE_FILE).exists()
        ):
            raise ValueError(f"survey {plan.session_id} is already open")
        live = LiveRoom(SurveyRoom(plan, self.config))
        self.rooms[plan.session_id] = live
        return live

    async def close(self) -> None:
        for live in tuple(self.rooms.values()):
            await live.close()


def _page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(_: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / name, headers=_HEADERS)

    return handler


def add_survey_routes(app: web.Application, hub: SurveyHub) -> None:
    """Mount the survey routes on ``app`` and close the hub's rooms on shutdown."""

    async def ws(request: web.Request) -> web.StreamResponse:
        return await handle_ws(request, hub)

    async def on_shutdown(_: web.Application) -> None:
        await hub.close()

    app[HUB_KEY] = hub
    app.router.add_get(f"{PREFIX}/ws", ws)
    app.router.add_get(f"{PREFIX}/site", _page("site.html"))
    app.router.add_get(f"{PREFIX}/inspector", _page("inspector.html"))
    app.router.add_static(f"{PREFIX}/static/", STATIC, follow_symlinks=False)
    app.on_shutdown.append(on_shutdown)


def survey_app(hub: SurveyHub) -> web.Application:
    """A stand-alone application serving the survey routes of ``hub``."""
    app = web.Application()
    add_survey_routes(app, hub)
    return app


def survey_extension(
    hub: SurveyHub, join_key: Ed25519PrivateKey | None = None
) -> Callable[[str, web.Application], None]:
    """A node extension: pages and signalling on the public listener; with ``join_key``
    also the staff routes that schedule surveys and hand out their join links
    (:mod:`remote_survey.staffapi`) on the staff listener."""

    def extension(listener: str, app: web.Application) -> None:
        if listener == "public":
            add_survey_routes(app, hub)
        elif listener == "staff" and join_key is not None:
            from remote_survey.staffapi import add_staff_routes

            add_staff_routes(app, hub, join_key)

    return extension
