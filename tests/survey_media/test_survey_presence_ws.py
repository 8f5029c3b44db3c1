"""Signalling without media: the join token stays out of URLs and logs, everyone sees who
is connected with which devices, the recording notice is chained, and a refused report
says which item or which proof is missing, without ending the survey."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from media_support import WAIT, Inbox, World, make_plan, make_world, served

from remote_survey import room as room_module
from remote_survey.entries import Note
from remote_survey.room import NOTICE_ACKNOWLEDGED, REPORT_FILE, REQUEST_FILE
from remote_survey.session import Role, SurveyState


@pytest.fixture
def world(tmp_path: Path) -> World:
    world = make_world(tmp_path)
    world.hub.open(make_plan(datetime.now(UTC)))
    return world


async def _presence(inbox: Inbox, where: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first presence message (received so far or later) that satisfies ``where``."""
    async with asyncio.timeout(WAIT):
        while True:
            for m in inbox.messages:
                if m["type"] == "presence" and where(m):
                    return m
            await asyncio.sleep(0.05)


async def test_the_join_token_is_sent_in_a_message_never_in_the_url_or_the_log(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = world.token(Role.OBSERVER, "obs-1")
    async with served(world, "127.0.0.1"), aiohttp.ClientSession() as http:
        inbox = Inbox(await world.join(http, token, "tablet-1"))
        assert (await inbox.expect("welcome"))["role"] == "observer"
        await inbox.close()
        old = world.token(Role.OBSERVER, "obs-1")  # an old client puts it in the URL
        url = world.ws_url("tablet-2") + f"&token={old}"
        async with http.ws_connect(url) as ws:
            msg = await ws.receive(timeout=WAIT)
            assert (msg.data, msg.extra) == (4400, "token-in-url")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "/survey/v1/ws?device=tablet-1" in logged  # the access log saw the request
    assert token.split(".")[2] not in logged
    room = world.hub.rooms["sv-media-0001"].room
    assert "tablet-2" not in dict(room.ledger.bindings).values()


async def test_presence_shows_who_is_connected_and_their_devices_on_both_sides(
    world: World,
) -> None:
    async with served(world, "127.0.0.1"), aiohttp.ClientSession() as http:
        inspector = Inbox(await world.join(http, world.token(Role.INSPECTOR, "insp-1"), "pc-1"))
        await inspector.expect("welcome")
        await _presence(inspector, lambda p: p["inspector"]["joined"] and not p["site"]["joined"])
        site = Inbox(await world.join(http, world.token(Role.SITE, "site-1"), "phone-1"))
        welcome = await site.expect("welcome")
        assert welcome["state"] == "scheduled"
        assert welcome["inspectors"] == ["李勘查"]
        assert welcome["notice"] is False
        # the phone sees the inspector is there, the inspector sees the phone
        await _presence(site, lambda p: p["inspector"]["joined"] and p["site"]["joined"])
        await site.ws.send_json(
            {"type": "status", "camera": "denied", "microphone": "on", "location": "denied"}
        )
        seen = await _presence(inspector, lambda p: p["site"].get("camera") == "denied")
        assert seen["site"] == {
            "joined": True,
            "name": "张店主",
            "camera": "denied",
            "microphone": "on",
            "location": "denied",
            "network": "unknown",
        }
        await site.ws.send_json({"type": "status", "camera": "broken"})
        assert (await site.expect("error"))["code"] == "bad-request"
        # the recording notice, acknowledged on the phone, is chained and shown
        await site.ws.send_json({"type": "notice-ack"})
        await _presence(inspector, lambda p: p["notice"] is True)
        room = world.hub.rooms["sv-media-0001"].room
        assert [e.body for e in room.chain.entries] == [Note(NOTICE_ACKNOWLEDGED, "site-1")]
        await site.close()
        await _presence(inspector, lambda p: p["notice"] is True and not p["site"]["joined"])
        await inspector.close()


async def test_a_refused_report_names_the_item_or_the_missing_proof_and_ends_nothing(
    world: World,
) -> None:
    async with served(world, "127.0.0.1"), aiohttp.ClientSession() as http:
        inspector = Inbox(await world.join(http, world.token(Role.INSPECTOR, "insp-1"), "pc-1"))
        await inspector.expect("welcome")
        one = [{"item": "kitchen-layout", "answer": "pass"}]
        both = [*one, {"item": "fire-exit", "answer": ""}]  # the page's "not answered yet"
        await inspector.ws.send_json({"type": "report", "verdict": "pass", "answers": both})
        refused = await inspector.expect("error")
        assert (refused["code"], refused["item"]) == ("unanswered", "fire-exit")
        both[1]["answer"] = "pass"
        await inspector.ws.send_json({"type": "report", "verdict": "", "answers": both})
        assert (await inspector.expect("error"))["code"] == "no-verdict"
        await inspector.ws.send_json({"type": "report", "verdict": "pass", "answers": both})
        refused = await inspector.expect("error")
        assert refused["code"] == "reason-required"
        assert refused["missing"] == ["location", "challenge"]
        room = world.hub.rooms["sv-media-0001"].room
        assert room.state is SurveyState.SCHEDULED
        assert room.report_token is None
        await inspector.close()


async def test_a_report_that_could_not_be_written_is_kept_and_signed_at_the_next_try(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The survey ends for the report, whose file cannot be written: the inspector is
    told so, what they signed is kept beside the evidence, and their next try seals it."""
    room = world.hub.rooms["sv-media-0001"].room
    room.admit(world.token(Role.SITE, "site-1"), Role.SITE, "phone-1")
    room.site_live()
    answers = [
        {"item": "kitchen-layout", "answer": "fail", "note": "灶台紧贴墙面"},
        {"item": "fire-exit", "answer": "pass"},
    ]
    written = room_module.write_durably

    def no_report(path: Path, data: bytes) -> None:
        if path.name == REPORT_FILE:
            raise OSError(28, "No space left on device")
        written(path, data)

    async with served(world, "127.0.0.1"), aiohttp.ClientSession() as http:
        inspector = Inbox(await world.join(http, world.token(Role.INSPECTOR, "insp-1"), "pc-1"))
        await inspector.expect("welcome")
        monkeypatch.setattr(room_module, "write_durably", no_report)
        await inspector.ws.send_json({"type": "report", "verdict": "fail", "answers": answers})
        refused = await inspector.expect("error")
        assert refused["code"] == "report-not-written"
        assert room.state is SurveyState.COMPLETED
        assert room.report_token is None
        assert (room.media_dir / REQUEST_FILE).is_file()
        monkeypatch.undo()
        await inspector.ws.send_json({"type": "report", "verdict": "fail", "answers": answers})
        signed = await inspector.expect("report")
        assert signed["token"] == room.report_token
        assert not (room.media_dir / REQUEST_FILE).exists()
        await inspector.close()


async def test_a_report_while_the_site_is_away_is_refused_unless_it_converts_the_survey(
    world: World,
) -> None:
    """Not yet started, or interrupted: completing needs the site party live, and the
    inspector is told so (not a bare bad-state); converting to an on-site visit ends the
    survey and seals its report from either state."""
    room = world.hub.rooms["sv-media-0001"].room
    answers = [
        {"item": "kitchen-layout", "answer": "note", "note": "未能查看"},
        {"item": "fire-exit", "answer": "note", "note": "未能查看"},
    ]
    async with served(world, "127.0.0.1"), aiohttp.ClientSession() as http:
        inspector = Inbox(await world.join(http, world.token(Role.INSPECTOR, "insp-1"), "pc-1"))
        await inspector.expect("welcome")
        room.admit(world.token(Role.SITE, "site-1"), Role.SITE, "phone-1")
        room.site_live()
        room.site_lost()
        assert room.state is SurveyState.INTERRUPTED
        await inspector.ws.send_json({"type": "report", "verdict": "fail", "answers": answers})
        assert (await inspector.expect("error"))["code"] == "site-not-live"
        assert room.state is SurveyState.INTERRUPTED
        report = {"type": "report", "verdict": "convert_to_onsite", "answers": answers}
        await inspector.ws.send_json(report)
        signed = await inspector.expect("report")
        assert room.state is SurveyState.CONVERTED_TO_ONSITE
        assert signed["token"] == room.report_token
        await inspector.close()
