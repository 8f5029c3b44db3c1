"""Claim-level helpers shared by the licence and status list credentials (private)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography import x509

from signing.certificates import is_node_id
from signing.encoding import b64url_decode
from signing.errors import MalformedInput

_URN_PREFIX = "urn:tongban:node:"


def issuer_urn(node_id: str) -> str:
    """``urn:tongban:node:<node id>``, the ``iss`` of licences and status lists."""
    if not is_node_id(node_id):
        raise MalformedInput(f"{node_id!r} is not a node id")
    return _URN_PREFIX + node_id


def node_from_urn(urn: object) -> str:
    """The node id named by an ``iss`` value; :class:`MalformedInput` otherwise."""
    if not isinstance(urn, str) or not urn.startswith(_URN_PREFIX):
        raise MalformedInput("iss is not urn:tongban:node:<node id>")
    node = urn[len(_URN_PREFIX) :]
    if not is_node_id(node):
        raise MalformedInput("iss is not urn:tongban:node:<node id>")
    return node


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload of a compact JWS as a JSON object, without any verification."""
    if not isinstance(token, str):
        raise MalformedInput("a token is text")
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise MalformedInput("not a compact JWS (three dot-separated parts)")
    return json_object(b64url_decode(parts[1]))


def json_object(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedInput("payload is not UTF-8 JSON") from exc
    if not isinstance(value, dict):
        raise MalformedInput("payload is not a JSON object")
    return value


def as_object(value: object, where: str, allowed: Iterable[str] | None = None) -> Mapping[str, Any]:
    """``value`` as a JSON object; with ``allowed``, any other member is refused."""
    if not isinstance(value, dict):
        raise MalformedInput(f"{where} must be a JSON object")
    if allowed is not None:
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise MalformedInput(f"{where} has unknown member(s) {', '.join(unknown)}")
    return value


def check_url(url: object) -> None:
    if (
        not isinstance(url, str)
        or not url.startswith(("https://", "http://"))
        or "#" in url
        or any(c.isspace() for c in url)
    ):
        raise MalformedInput(f"{url!r} is not an http(s) URL without fragment")


def numeric(t: datetime) -> int:
    return int(t.timestamp())


def from_numeric(value: object, name: str) -> datetime:
    """A NumericDate as an aware UTC time; :class:`MalformedInput` when it is not a
    non-negative integer or lies beyond what a date can hold (year 9999)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedInput(f"{name} must be a non-negative integer NumericDate")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise MalformedInput(f"{name} is out of range") from None


def x5c_chain(token: str) -> tuple[x509.Certificate, ...]:
    """The ``x5c`` chain of a compact JWS header, unverified (for path checks)."""
    if not isinstance(token, str) or token.strip().count(".") != 2:
        raise MalformedInput("not a compact JWS (three dot-separated parts)")
    header = json_object(b64url_decode(token.strip().split(".")[0]))
    x5c = header.get("x5c")
    if not isinstance(x5c, list) or not x5c or not all(isinstance(c, str) for c in x5c):
        raise MalformedInput("the header carries no x5c certificate chain")
    try:
        return tuple(
            x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in x5c
        )
    except (ValueError, binascii.Error) as exc:
        raise MalformedInput("x5c holds an unparsable certificate") from exc
