"""How a node logs: one event a line, as JSON or as text, never a secret.

``tongban serve --log-format json`` writes one JSON object per line::

    {"ts": "2026-12-04T15:10:00.123+00:00", "level": "INFO", "logger": "tongban.relay.node",
     "msg": "node 420106 serving ...", "exc": "Traceback ..."}

(``exc`` only with a traceback; fields given with ``extra=`` are added as they are, so
the access log carries ``method``, ``path``, ``status``, ``bytes``, ``seconds``,
``remote``). A small formatter rather than python-json-logger: the format is a handful
of fields, and the redaction below has to run on the final line anyway.

Where the lines go: standard error by default — under systemd that is the journal
(``journalctl -u tongban -o cat`` gives the JSON lines back) —, or ``--log-file PATH``,
a file rotated by size (``--log-max-bytes``, ``--log-backups``) by the process itself.

**No secrets.** Secrets reach a node in request URLs (the survey join token and the
tracking link are query parameters of WebSocket and GET requests), in headers (staff
bearer tokens) and in files (keys). Two measures:

- the access log (:class:`AccessLog`) records the request path only, never the query
  string or a header; and of a matched route only the parameters known to name no
  secret and no person (:data:`LOGGED_PARAMETERS`: case, packet, digest, session...),
  the others as their template (``/t/{short}``, ``.../applicants/{applicant}``);
- every line passes :func:`redact`, which replaces what looks like a compact JWS/JWT
  (the join token, tracking links, staff tokens, packets and receipts), a ``token=`` /
  ``link=`` / ``code=`` parameter, a bearer credential or a PEM private key block by
  ``[redacted]`` — a net under mistakes in new log calls.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

__all__ = [
    "LOGGED_PARAMETERS",
    "AccessLog",
    "JsonFormatter",
    "TextFormatter",
    "configured_logging",
    "logged_path",
    "redact",
]

REDACTED = "[redacted]"
_SECRETS: list[tuple[re.Pattern[str], str]] = [
    # PEM private keys (any kind)
    (
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S
        ),
        REDACTED,
    ),
    # compact JWS / JWT: base64url header starting {" (eyJ), payload, signature
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"), REDACTED),
    # bearer credentials
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"), rf"\1{REDACTED}"),
    # secret query or form parameters
    (re.compile(r"(?i)\b(token|link|code|key)=[^&\s\"']+"), rf"\1={REDACTED}"),
]
LOGGED_PARAMETERS = frozenset(
    {"case", "packet_id", "digest", "session", "matter", "purpose", "file", "node", "number"}
)
"""Route parameters the access log writes as they are; any other stays ``{name}``."""
# attributes every LogRecord has; anything else came in through ``extra=``
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def redact(text: str) -> str:
    """``text`` with everything that looks like a secret replaced by ``[redacted]``."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, msg, exc, and ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in event:
                event[key] = value
        if record.exc_info:
            event["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            event["exc"] = record.exc_text
        if record.stack_info:
            event["stack"] = self.formatStack(record.stack_info)
        line = json.dumps(event, ensure_ascii=False, default=str, separators=(",", ":"))
        return redact(line)


class TextFormatter(logging.Formatter):
    """The human format (``time LEVEL logger: message``), redacted like the JSON one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def logged_path(request: BaseRequest) -> str:
    """The path as the access log writes it: the matched route's template with only the
    :data:`LOGGED_PARAMETERS` filled in; an unmatched path as it is, redacted."""
    match = getattr(request, "match_info", None)
    resource = getattr(getattr(match, "route", None), "resource", None)
    info: dict[str, object] = getattr(resource, "get_info", dict)()
    if match is None or "formatter" not in info:  # a plain path, a static file, no match
        return redact(request.path)[:300]
    values = {k: (v if k in LOGGED_PARAMETERS else f"{{{k}}}") for k, v in match.items()}
    try:
        return str(info["formatter"]).format_map(values)
    except (KeyError, ValueError):
        return str(info["formatter"])


class AccessLog(AbstractAccessLogger):
    """aiohttp's access log without query strings, headers or secret path parameters."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        path = logged_path(request)
        fields = {
            "remote": request.remote or "-",
            "method": request.method,
            "path": path,
            "status": response.status,
            "bytes": response.body_length,
            "seconds": round(time, 6),
        }
        self.logger.info(
            "%s %s %s %d %d %.3fs",
            fields["remote"],
            request.method,
            path,
            response.status,
            response.body_length,
            time,
            extra=fields,
        )


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted (as logging's own
    last-resort handler does), not to the stream that was current when it was made."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


@contextmanager
def configured_logging(
    level: str,
    *,
    fmt: str = "text",
    file: Path | None = None,
    max_bytes: int = 50 * 1024 * 1024,
    backups: int = 10,
) -> Iterator[logging.Handler]:
    """Route the root logger to one handler (stderr, or a size-rotated ``file``) for the
    duration of the block, then put back the handlers and level there were before (so
    ``tongban serve`` run in-process, as tests do, leaves logging as it found it)."""
    handler: logging.Handler
    if file is None:
        handler = _StderrHandler()
    else:
        file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    saved, saved_level = root.handlers[:], root.level
    for old in saved:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        handler.close()
        for old in saved:
            root.addHandler(old)
        root.setLevel(saved_level)
