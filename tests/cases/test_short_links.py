"""Short tracking links (/t/AB3K7Q): they fit an SMS, name a case, grant nothing without
the access code, and share the case's guessing budget with the case number."""

from __future__ import annotations

import random
from pathlib import Path

import aiohttp
from casekit_offices import serve
from dbkit import Database
from test_http import open_case, post

from relay.cases.short_links import SHORT_LENGTH, ShortLinks, new_short_code
from relay.cases.tracking import CODE_ALPHABET


def test_short_codes_are_six_letters_of_the_code_alphabet_and_map_one_to_one(database: Database):
    rng = random.Random(5)
    codes = {new_short_code(rng.randbytes) for _ in range(2000)}
    assert len(codes) == 2000  # 30 bits: no collision among a few thousand
    assert all(len(c) == SHORT_LENGTH and set(c) <= set(CODE_ALPHABET) for c in codes)
    links = ShortLinks(database.connect(), randbytes=random.Random(1).randbytes)
    a, b = links.code_for("CASE-A"), links.code_for("CASE-B")
    assert a != b
    assert links.code_for("CASE-A") == a  # one code per case, kept
    assert links.case_for(a) == "CASE-A"
    assert links.case_for(a.lower()) == "CASE-A"  # typed from an SMS in lower case
    assert links.case_for("ZZZZZZ") is None  # the seeded draws never give this one
    assert links.case_for("no such code!") is None
    links.close()
    reopened = ShortLinks(database.connect())
    assert reopened.case_for(b) == "CASE-B"  # server-side, across restarts
    reopened.close()


def test_a_collision_draws_again(database: Database):
    draws = iter([b"\x00\x00\x00\x00", b"\x00\x00\x00\x00", b"\x00\x00\x00\x04"])
    links = ShortLinks(database.connect(), randbytes=lambda n: next(draws))
    first = links.code_for("CASE-A")
    second = links.code_for("CASE-B")  # the first draw collides with CASE-A's code
    assert first != second
    assert links.case_for(second) == "CASE-B"


async def test_short_link_fits_an_sms_and_needs_the_access_code(offices, clock, tmp_path: Path):
    offices.r.desk.short_links = ShortLinks(tmp_path / "short.sqlite3")
    async with (
        serve(offices.r.staff(clock)) as staff,
        serve(offices.r.public()) as public,
        aiohttp.ClientSession() as http,
    ):
        mine = await open_case(http, staff, offices.r, clock, case_id="WC-SHORT-1")
        other = await open_case(http, staff, offices.r, clock, case_id="WC-SHORT-2")
        short_path = mine["short_path"]
        assert short_path.startswith("/t/")
        host = "https://zwfw-" + "x" * 20 + ".gov.cn"  # a 40-character https host
        assert len(host) == 40
        assert len(host + short_path) <= 60
        async with http.get(public + short_path) as r:
            assert r.status == 200
            assert "办件进度查询" in await r.text()
        track = f"{public}/public/v1/track"
        short = short_path.removeprefix("/t/")
        status, view = await post(http, track, {"short": short, "code": mine["access_code"]})
        assert status == 200
        assert view["case"] == "WC-SHORT-1"
        async with http.get(track, params={"link": view["link"]}) as r:
            assert (await r.json())["case"] == "WC-SHORT-1"  # the long signed link still works
        # another case's code, and an unknown short code, get the same answer
        wrong = await post(http, track, {"short": short, "code": other["access_code"]})
        unknown = await post(http, track, {"short": "ZZZZZZ", "code": mine["access_code"]})
        assert wrong[0] == unknown[0] == 404
        assert wrong[1]["code"] == unknown[1]["code"] == "not-found"
        # the short link and the case number draw on one budget of guesses for the case
        for guess in range(3):
            await post(http, track, {"short": short, "code": f"2222{guess}-22222"})
        status, _ = await post(http, track, {"case": "WC-SHORT-1", "code": "33333-33333"})
        assert status == 404  # the fifth failure: the case's bucket (5) is now empty
        status, problem = await post(http, track, {"short": short, "code": mine["access_code"]})
        assert status == 429
        assert problem["code"] == "too-many-requests"
        status, _ = await post(http, track, {"case": "WC-SHORT-1", "code": mine["access_code"]})
        assert status == 429


async def test_a_licence_link_leads_to_the_verify_page_with_the_case_licence(
    database: Database, offices, clock, tmp_path: Path
):
    """A partner's licence handed over here is printed as ``/l/<code>``: a QR code of
    version 3 or so, where the whole token made one of version 38. The link names the
    case (two partners' licences may carry one number), whose licence it reads when
    opened: none, no link."""
    links = ShortLinks(database.connect(), randbytes=random.Random(3).randbytes)
    code = links.licence_code("WC-LIC-1")
    assert len(code) == 10
    assert set(code) <= set(CODE_ALPHABET)
    assert links.licence_code("WC-LIC-1") == code  # one link per case, kept
    assert links.licence_code("WC-LIC-2") != code
    assert links.licence_case(code.lower()) == "WC-LIC-1"
    assert links.licence_case(code[:6]) is None  # a tracking code names no licence
    assert links.licence_case("ZZZZZZZZZZ") is None
    offices.r.desk.short_links = links
    async with (
        serve(offices.r.staff(clock)) as staff,
        serve(offices.r.public()) as public,
        aiohttp.ClientSession() as http,
    ):
        await open_case(http, staff, offices.r, clock, case_id="WC-LIC-1")
        # the case holds no licence (yet, or any more after the retention purge): 404
        async with http.get(f"{public}/l/{code}", allow_redirects=False) as answer:
            assert answer.status == 404
            assert (await answer.json(content_type=None))["code"] == "not-found"
        record = offices.r.desk.get("WC-LIC-1")
        view = record.case.view
        object.__setattr__(view, "licence", "a.b.c")  # as if the licence had come
        offices.r.desk.get = lambda case_id: record  # type: ignore[method-assign]
        async with http.get(f"{public}/l/{code}", allow_redirects=False) as answer:
            assert answer.status == 302
            assert answer.headers["Location"] == "/v#token=a.b.c"
            assert answer.headers["Cache-Control"] == "no-store"
        async with http.get(f"{public}/l/ZZZZZZZZZZ", allow_redirects=False) as answer:
            assert answer.status == 404
        # a person's browser (a purged licence's QR code) gets a page that says why and
        # what to do next, in Chinese with an English switch; it got English JSON
        page = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
        async with http.get(f"{public}/l/ZZZZZZZZZZ", headers=page) as answer:
            assert answer.status == 404
            assert answer.content_type == "text/html"
            text = await answer.text()
            assert "证照链接已经失效" in text
            assert 'href="/v?lang=zh"' in text
            assert "not-found" not in text
        async with http.get(f"{public}/l/ZZZZZZZZZZ?lang=en", headers=page) as answer:
            assert "licence link no longer works" in await answer.text()
        for path in ("/", "/t/AB3K7Q/", "/nothing"):
            async with http.get(f"{public}{path}", headers=page) as answer:
                assert answer.status == 404, path
                assert "链接不完整或已经失效" in await answer.text(), path
        async with http.get(f"{public}/public/v1/nothing", headers=page) as answer:
            assert answer.content_type == "application/problem+json"  # an API: a program
