"""Issue 14: the log formats (relay.logs): one JSON event a line, redaction, rotation."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.logs import JsonFormatter, configure_logging, redact

JWS = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiLlvKDkuIkifQ.c2lnbmF0dXJlLWJ5dGVz"


@pytest.fixture
def root_logging() -> Iterator[None]:
    """configure_logging replaces the root handlers: put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
            handler.close()
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


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


def test_a_log_file_rotates_by_size(tmp_path: Path, root_logging: None) -> None:
    log = tmp_path / "logs" / "node.log"
    configure_logging("INFO", fmt="json", file=log, max_bytes=4000, backups=2)
    logger = logging.getLogger("tongban.test.rotation")
    for n in range(200):
        logger.info("event %d %s", n, "x" * 40)
    files = sorted(p.name for p in log.parent.iterdir())
    assert files == ["node.log", "node.log.1", "node.log.2"]
    for path in log.parent.iterdir():
        assert path.stat().st_size <= 4000
        assert all(
            json.loads(line)["msg"].startswith("event") for line in path.read_text().splitlines()
        )
