"""Issue 14: the log formats (relay.logs): one JSON event a line, redaction, rotation."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from relay.logs import AccessLog, JsonFormatter, configured_logging, redact

JWS = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiLlvKDkuIkifQ.c2lnbmF0dXJlLWJ5dGVz"


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (f"GET /survey/v1/ws?token={JWS}&device=p1", "device=p1"),
        (f"receipt {JWS} stored", "stored"),
        ("Authorization: Bearer abc.def-ghi_jkl", "Authorization: Bearer"),
        ("GET /public/v1/track?link=opaque-link-value&lang=en", "lang=en"),
        ("code=7KQ2M-9XWAB case=WC-1", "case=WC-1"),
        ("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA\n-----END PRIVATE KEY-----", ""),
    ],
)
def test_secrets_are_redacted_and_the_rest_kept(text: str, kept: str) -> None:
    out = redact(text)
    assert "[redacted]" in out
    assert kept in out
    for secret in (JWS, "abc.def-ghi_jkl", "opaque-link-value", "7KQ2M-9XWAB", "MC4CAQAw"):
        assert secret not in out


def test_an_event_is_one_json_line_with_its_traceback_and_fields() -> None:
    logger = logging.getLogger("tongban.test.logs")
    try:
        raise ValueError("两行\n消息")
    except ValueError:
        record = logger.makeRecord(
            logger.name, logging.ERROR, __file__, 1, "失败: %s", (f"token={JWS}",),
            exc_info=__import__("sys").exc_info(), extra={"peer": "320982"},
        )  # fmt: skip
    line = JsonFormatter().format(record)
    assert "\n" not in line
    event = json.loads(line)
    assert event["level"] == "ERROR"
    assert event["logger"] == "tongban.test.logs"
    assert event["msg"] == "失败: token=[redacted]"
    assert event["peer"] == "320982"
    assert "ValueError: 两行\n消息" in event["exc"]
    assert JWS not in line


def test_a_log_file_rotates_by_size_and_logging_is_put_back(tmp_path: Path) -> None:
    root = logging.getLogger()
    before = (root.handlers[:], root.level)
    log = tmp_path / "logs" / "node.log"
    with configured_logging("INFO", fmt="json", file=log, max_bytes=4000, backups=2):
        logger = logging.getLogger("tongban.test.rotation")
        for n in range(200):
            logger.info("event %d %s", n, "x" * 40)
    assert (root.handlers, root.level) == before  # as tongban serve run in-process leaves it
    files = sorted(p.name for p in log.parent.iterdir())
    assert files == ["node.log", "node.log.1", "node.log.2"]
    for path in log.parent.iterdir():
        assert path.stat().st_size <= 4000
        lines = path.read_text(encoding="utf-8").splitlines()
        assert all(json.loads(line)["msg"].startswith("event") for line in lines)


def test_the_stderr_handler_writes_to_the_stderr_of_the_moment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with configured_logging("INFO", fmt="text"):
        logging.getLogger("tongban.test.stderr").warning("first")
        capsys.readouterr()  # pytest swaps the captured stream
        logging.getLogger("tongban.test.stderr").warning("second")
    assert "second" in capsys.readouterr().err


async def test_the_access_log_writes_only_harmless_route_parameters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A short tracking link (/t/{short}) or an applicant's id in a path is written as its
    template; a case number or digest as it is; a query string never."""
    import aiohttp
    from aiohttp import web

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/t/{short}", ok)
    app.router.add_get("/staff/v1/personal-data/applicants/{applicant}", ok)
    app.router.add_get("/staff/v1/cases/{case}", ok)
    app.router.add_get("/public/v1/track", ok)
    logger = logging.getLogger("tongban.test.access")
    runner = web.AppRunner(app, access_log=logger, access_log_class=AccessLog)
    with caplog.at_level(logging.INFO, logger="tongban.test.access"):
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            base = f"http://127.0.0.1:{runner.addresses[0][1]}"
            async with aiohttp.ClientSession() as http:
                for path in ("/t/AB3K7Q", "/staff/v1/personal-data/applicants/420106199001011234",
                             "/staff/v1/cases/WC-2026-0001", f"/public/v1/track?link={JWS}",
                             "/nowhere/token=abc"):  # fmt: skip
                    async with http.get(base + path) as resp:
                        await resp.read()
        finally:
            await runner.cleanup()  # waits for the handlers, access log lines included
    paths = [r.path for r in caplog.records if r.name == "tongban.test.access"]  # type: ignore[attr-defined]
    assert paths == [
        "/t/{short}",
        "/staff/v1/personal-data/applicants/{applicant}",
        "/staff/v1/cases/WC-2026-0001",
        "/public/v1/track",
        "/nowhere/token=[redacted]",
    ]
    text = caplog.text
    for secret in ("AB3K7Q", "420106199001011234", JWS, "abc"):
        assert secret not in text
