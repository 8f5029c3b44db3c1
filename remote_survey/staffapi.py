"""Staff routes to run surveys on a node: schedule one and get its join links, follow it.

Added to the node's staff listener (behind its bearer-token check) by
:func:`remote_survey.web.survey_extension` when the hub's join key is given::

    POST /staff/v1/surveys             schedule: body = the survey plan object of
                                       docs/protocol.md §10.6 ("survey" without the
                                       outcome fields); answers 201 with one join link
                                       per participant                   (role clerk)
    GET  /staff/v1/surveys/{session}   state, chain head and length, the sealed
                                       report once signed                (any role)

A link is ``{"person", "role", "path"}`` where ``path`` is the page path with the token
in its fragment (``/survey/v1/site#token=...``), to append to the node's public
endpoint. Links are valid from 15 minutes before the window until its end; links
asked for again for a survey that started and runs past its window are valid for
:data:`OVERRUN` more (whoever dropped can rejoin and the inspector sign the report). A
plan whose requesting office is this node itself is refused: the report could never be
sent. ``POST /staff/v1/surveys/{session}/abandon`` ends a survey nobody can finish (the
office's own way out, as the inspector's ``abandon``): the case can then be surveyed
again under a new session.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from relay.http.body import read_json_object
from relay.permissions import StaffAction, require
from relay.problem import Problem, ProblemCode
from remote_survey.errors import SurveyError
from remote_survey.join import issue_join_token, new_jti
from remote_survey.reportjson import plan_from_json
from remote_survey.room import RoomError
from remote_survey.session import Role, SurveyPlan
from remote_survey.signalling import end_by_office

if TYPE_CHECKING:
    from remote_survey.web import SurveyHub

__all__ = ["LINK_LEAD", "add_staff_routes"]

LINK_LEAD = timedelta(minutes=15)
OVERRUN = timedelta(hours=2)
"""How long links asked for again stay valid for a survey that runs past its window."""
_PAGES = {Role.SITE: "site", Role.INSPECTOR: "inspector", Role.OBSERVER: "inspector"}


def _links(
    plan: SurveyPlan,
    key: Ed25519PrivateKey,
    node_id: str,
    jti: Callable[[], str],
    until: datetime | None = None,
) -> list[dict[str, str]]:
    people = [
        *((p, Role.INSPECTOR) for p in plan.inspectors),
        (plan.site_party, Role.SITE),
        *((p, Role.OBSERVER) for p in plan.observers),
    ]
    links = []
    for person, role in people:
        token = issue_join_token(
            key,
            node_id=node_id,
            session_id=plan.session_id,
            role=role,
            subject=person.person_id,
            not_before=plan.window.start - LINK_LEAD,
            expires=until or plan.window.end,
            jti=jti(),
        )
        fragment = f"token={token}" + ("&role=observer" if role is Role.OBSERVER else "")
        links.append(
            {
                "person": person.person_id,
                "role": role.value,
                "path": f"/survey/v1/{_PAGES[role]}#{fragment}",
            }
        )
    return links


def add_staff_routes(
    app: web.Application,
    hub: SurveyHub,
    join_key: Ed25519PrivateKey,
    *,
    jti: Callable[[], str] = new_jti,
) -> None:
    """Add the survey staff routes for ``hub``; links are signed with ``join_key``."""
    node_id = hub.config.node_id
    clock = hub.config.clock

    async def schedule(request: web.Request) -> web.Response:
        require(request, StaffAction.SURVEY)
        body = await read_json_object(request)
        try:
            plan = plan_from_json(body)
        except (SurveyError, KeyError, TypeError, ValueError) as exc:
            raise Problem(422, ProblemCode.INVALID_REQUEST, f"not a survey plan: {exc}") from None
        if plan.surveying_office != node_id:
            raise Problem(
                422,
                ProblemCode.INVALID_REQUEST,
                f"this node is {node_id}; the plan names {plan.surveying_office} as surveyor",
            )
        if plan.requesting_office == plan.surveying_office:
            raise Problem(
                422,
                ProblemCode.INVALID_REQUEST,
                f"requesting-office-is-surveyor: the report goes to the requesting office, "
                f"which must be the case's other office, not this node ({node_id})",
            )
        if plan.window.end <= clock():
            raise Problem(422, ProblemCode.INVALID_REQUEST, "the survey window has passed")
        if plan.session_id in hub.rooms or plan.session_id in hub.ended:
            raise Problem(409, ProblemCode.CONFLICT, f"survey {plan.session_id} already exists")
        try:
            hub.open(plan)
        except ValueError:  # kept on disk but not resumed (damaged): never overwritten
            raise Problem(
                409, ProblemCode.CONFLICT, f"survey {plan.session_id} already exists on disk"
            ) from None
        links = _links(plan, join_key, node_id, jti)
        return web.json_response(
            {"session": plan.session_id, "links": links},
            status=201,
            headers={"Cache-Control": "no-store"},
        )

    async def status(request: web.Request) -> web.Response:
        session = request.match_info["session"]
        live = hub.get(session)
        if live is None:
            raise Problem(404, ProblemCode.NOT_FOUND, f"no survey {session} on this node")
        room = live.room
        return web.json_response(
            {
                "session": session,
                "state": room.state.value,
                "chain": {"head": room.chain.head, "length": len(room.chain.entries)},
                "report": room.report_token,
            },
            headers={"Cache-Control": "no-store"},
        )

    async def links_again(request: web.Request) -> web.Response:
        """Fresh join links of a survey not ended (those shown at scheduling are not
        kept: a page reloaded, a phone changed, a message lost). The links given before
        stay valid, each for the device that first used it."""
        require(request, StaffAction.SURVEY)
        session = request.match_info["session"]
        live = hub.get(session)
        if live is None:
            raise Problem(404, ProblemCode.NOT_FOUND, f"no survey {session} on this node")
        plan = live.room.plan
        if live.room.state.is_final:
            raise Problem(
                409, ProblemCode.CONFLICT, f"the survey is {live.room.state.value}",
                extra={"reason": "session-ended"},
            )  # fmt: skip
        until = None
        if plan.window.end <= clock():
            if live.room.session.started_at is None:  # never started: schedule it anew
                raise Problem(
                    409, ProblemCode.CONFLICT, "the survey window has passed",
                    extra={"reason": "window-passed"},
                )  # fmt: skip
            until = clock() + OVERRUN  # started, running over: rejoin, end and sign
        return web.json_response(
            {"session": session, "links": _links(plan, join_key, node_id, jti, until)},
            status=201,
            headers={"Cache-Control": "no-store"},
        )

    async def abandon(request: web.Request) -> web.Response:
        """End a survey nobody can finish (its window passed, the inspector gone): the
        case can be surveyed again under a new session."""
        require(request, StaffAction.SURVEY)
        session = request.match_info["session"]
        live = hub.get(session)
        if live is None:
            raise Problem(404, ProblemCode.NOT_FOUND, f"no survey {session} on this node")
        try:
            state = await end_by_office(live)
        except RoomError as exc:
            raise Problem(409, ProblemCode.CONFLICT, str(exc), extra={"reason": exc.code}) from None
        return web.json_response(
            {"session": session, "state": state.value}, headers={"Cache-Control": "no-store"}
        )

    app.router.add_post("/staff/v1/surveys", schedule)
    app.router.add_post("/staff/v1/surveys/{session}/abandon", abandon)
    app.router.add_get("/staff/v1/surveys/{session}", status)
    app.router.add_post("/staff/v1/surveys/{session}/links", links_again)
