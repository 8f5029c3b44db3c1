"""A survey that runs past its window, and one nobody can finish: never a dead end.

Links made at scheduling end with the window. Whoever dropped after it could not rejoin
(``expired``), the office could not make new links (``window-passed``), and no staff
route ended a survey: it stayed ``interrupted`` for ever, its case unsurveyable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from media_support import World, make_plan, make_world

from relay.problem import problem_middleware
from relay.staff_auth import STAFF_KEY, StaffClaims, StaffRole
from remote_survey.join import check_join_token
from remote_survey.session import Role, SurveyState
from remote_survey.staffapi import OVERRUN, add_staff_routes


class Clock:
    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at


@web.middleware
async def as_inspector(request: web.Request, handler: Any) -> web.StreamResponse:
    now = datetime.now(UTC)
    request[STAFF_KEY] = StaffClaims(
        "李勘查", (StaffRole.INSPECTOR,), now, now + timedelta(hours=1), "t-1"
    )
    return await handler(request)


@asynccontextmanager
async def staff(world: World) -> AsyncIterator[str]:
    app = web.Application(middlewares=[problem_middleware, as_inspector])
    add_staff_routes(app, world.hub, world.join_key)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/staff/v1/surveys"
    finally:
        await runner.cleanup()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def world(tmp_path: Path, clock: Clock) -> World:
    world = make_world(tmp_path)
    world.hub.config = dataclasses.replace(world.hub.config, clock=clock)
    return world


async def test_a_started_survey_past_its_window_gets_links_that_let_people_back(
    world: World, clock: Clock
) -> None:
    plan = make_plan(clock.at)
    room = world.hub.open(plan).room
    room.site_live()
    room.site_lost()  # the phone dropped
    clock.at = plan.window.end + timedelta(minutes=10)  # and the window has passed
    async with (
        staff(world) as base,
        aiohttp.ClientSession() as http,
        http.post(f"{base}/{plan.session_id}/links") as answer,
    ):
        assert answer.status == 201, await answer.text()
        links = {x["role"]: x["path"] for x in (await answer.json())["links"]}
    token = links["site"].split("#token=")[1]
    claims = check_join_token(
        token, world.join_key.public_key(), node_id=plan.surveying_office,
        session_id=plan.session_id, role=Role.SITE, at=clock.at,
    )  # fmt: skip
    assert claims.expires == (clock.at + OVERRUN).replace(microsecond=0)
    assert room.site_live() is SurveyState.LIVE  # the rejoin itself needs no window


async def test_a_survey_never_started_past_its_window_is_abandoned_by_the_office(
    world: World, clock: Clock
) -> None:
    plan = make_plan(clock.at)
    live = world.hub.open(plan)
    clock.at = plan.window.end + timedelta(minutes=10)
    async with staff(world) as base, aiohttp.ClientSession() as http:
        async with http.post(f"{base}/{plan.session_id}/links") as answer:
            assert answer.status == 409
            assert (await answer.json())["reason"] == "window-passed"  # schedule anew
        async with http.post(f"{base}/{plan.session_id}/abandon") as answer:
            assert answer.status == 200, await answer.text()
            assert (await answer.json())["state"] == "abandoned"
        assert live.room.state is SurveyState.ABANDONED
        async with http.post(f"{base}/{plan.session_id}/abandon") as answer:
            assert answer.status == 409
            assert (await answer.json())["reason"] == "bad-state"
        async with http.post(f"{base}/sv-nope/abandon") as answer:
            assert answer.status == 404
