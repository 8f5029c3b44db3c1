"""Join links are refused at the signalling WebSocket with a clear close code and reason."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from media_support import WAIT, Inbox, World, make_plan, make_world, served

from remote_survey.session import Role


async def _closed_with(
    world: World, token: str, device: str, **extra: str
) -> tuple[int | None, str]:
    async with aiohttp.ClientSession() as http:
        ws = await world.join(http, token, device, **extra)
        msg = await ws.receive(timeout=WAIT)
        await ws.close()
        assert msg.type is aiohttp.WSMsgType.CLOSE, msg
        return msg.data, msg.extra


@pytest.fixture
def world(tmp_path: Path) -> World:
    world = make_world(tmp_path)
    now = datetime.now(UTC)
    world.hub.open(make_plan(now))
    world.hub.open(make_plan(now, session_id="sv-media-0002"))
    return world


async def test_expired_link_is_closed_4410_expired(world: World) -> None:
    token = world.token(
        Role.SITE,
        "site-1",
        not_before=datetime.now(UTC) - timedelta(hours=2),
        valid_for=timedelta(minutes=30),
    )
    async with served(world, "127.0.0.1"):
        assert await _closed_with(world, token, "phone-1") == (4410, "expired")


async def test_link_not_yet_valid_is_closed_4425(world: World) -> None:
    token = world.token(Role.SITE, "site-1", not_before=datetime.now(UTC) + timedelta(hours=1))
    async with served(world, "127.0.0.1"):
        assert await _closed_with(world, token, "phone-1") == (4425, "not-yet-valid")


async def test_link_used_on_another_device_is_closed_4409(world: World) -> None:
    token = world.token(Role.OBSERVER, "obs-1")
    async with served(world, "127.0.0.1"), aiohttp.ClientSession() as http:
        first = Inbox(await world.join(http, token, "tablet-1"))
        assert (await first.expect("welcome"))["role"] == "observer"
        closed = await _closed_with(world, token, "tablet-2")
        assert closed == (4409, "used-on-other-device")
        await first.close()


async def test_link_for_another_session_is_closed_4404(world: World) -> None:
    other = world.token(Role.SITE, "site-1", session_id="sv-media-0002")
    unknown = world.token(Role.SITE, "site-1", session_id="sv-not-open")
    async with served(world, "127.0.0.1"):
        closed = await _closed_with(world, other, "phone-1", session="sv-media-0001")
        assert closed == (4404, "wrong-session")
        assert await _closed_with(world, unknown, "phone-1") == (4404, "wrong-session")


async def test_link_used_for_a_role_it_does_not_grant_is_closed_4403(world: World) -> None:
    site = world.token(Role.SITE, "site-1")
    async with served(world, "127.0.0.1"):
        closed = await _closed_with(world, site, "phone-1", role="inspector")
        assert closed == (4403, "role-not-granted")
        # a link made for someone who is not in the plan under that role
        stranger = world.token(Role.INSPECTOR, "site-1")
        assert await _closed_with(world, stranger, "pc-9") == (4403, "not-a-participant")


async def test_forged_or_missing_link_is_closed_4401_or_4400(world: World) -> None:
    token = world.token(Role.INSPECTOR, "insp-1")
    head, payload, sig = token.split(".")
    forged = f"{head}.{payload}.{sig[:-4]}AAAA"
    async with served(world, "127.0.0.1"):
        assert await _closed_with(world, forged, "pc-1") == (4401, "bad-token")
        assert await _closed_with(world, "", "pc-1") == (4400, "bad-request")


async def test_refused_joins_leave_the_ledger_and_the_evidence_untouched(world: World) -> None:
    token = world.token(Role.SITE, "site-1")
    async with served(world, "127.0.0.1"):
        await _closed_with(world, token, "phone-1", role="observer")
    room = world.hub.rooms["sv-media-0001"].room
    assert dict(room.ledger.bindings) == {}
    assert room.chain.entries == ()
    assert (room.media_dir / "evidence.jsonl").read_bytes() == b""


async def test_a_client_that_stops_reading_is_disconnected_not_buffered(world: World) -> None:
    token = world.token(Role.OBSERVER, "obs-1")
    async with served(world, "127.0.0.1"), aiohttp.ClientSession() as http:
        inbox = Inbox(await world.join(http, token, "tablet-1"))
        await inbox.expect("welcome")
        live = world.hub.rooms["sv-media-0001"]
        (conn,) = live.connections
        writer_blocked = asyncio.Event()
        original = conn.ws.send_json

        async def stuck(*args: object, **kwargs: object) -> None:  # a peer that never reads
            writer_blocked.set()
            await asyncio.Event().wait()

        conn.ws.send_json = stuck  # type: ignore[method-assign]
        live.broadcast({"type": "state", "state": "live"})
        await asyncio.wait_for(writer_blocked.wait(), WAIT)
        for _ in range(200):
            live.broadcast({"type": "state", "state": "live"})
        assert conn.outbox.qsize() <= 64
        await asyncio.wait_for(inbox.closed_event.wait(), WAIT)
        assert inbox.closed is not None
        assert inbox.closed[0] == 4008
        conn.ws.send_json = original  # type: ignore[method-assign]


async def test_a_link_to_a_survey_put_away_is_refused_without_opening_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session named was opened from disk (its whole evidence read and hashed on the
    event loop) before the token was checked: any caller could make the node do it."""
    from remote_survey.room import SurveyRoom
    from remote_survey.session import Event, Participant

    room = world.hub.rooms["sv-media-0001"].room
    room.end(Participant("insp-1", "李勘查"), Event.ABANDON)
    assert world.hub.retire_ended() == ["sv-media-0001"]
    world.hub._opened_ended.clear()  # as after a restart, or once more have ended since
    opened: list[object] = []
    monkeypatch.setattr(SurveyRoom, "restore", lambda *a, **k: opened.append(a))
    junk = "eyJhbGciOiJFZERTQSJ9.eyJzZXNzaW9uIjoic3YtbWVkaWEtMDAwMSJ9.AAAA"
    async with served(world, "127.0.0.1"):
        closed = await _closed_with(world, junk, "pc-1", session="sv-media-0001")
        assert closed == (4410, "session-ended")
    assert opened == []
