"""Byte encodings shared by every tongban format.

- ``b64url`` / ``b64url_decode``: base64url without padding (RFC 7515 §2); decoding
  refuses padding, whitespace and non-alphabet characters.
- ``canonical_json``: the bytes tongban signs when it signs a JSON object: RFC 8785
  (JCS) for the subset tongban uses (objects, arrays, strings, integers, booleans,
  null; no floating-point numbers): keys sorted, no insignificant whitespace, UTF-8
  without escaping non-ASCII characters.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from signing.errors import MalformedInput

__all__ = ["b64url", "b64url_decode", "canonical_json"]

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    if not isinstance(text, str) or not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise MalformedInput("not base64url without padding")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:  # pragma: no cover - the regex already filters
        raise MalformedInput("not base64url without padding") from exc


def _check(value: Any, path: str) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if abs(value) > 2**53 - 1:
            raise MalformedInput(f"{path or '/'}: integer outside the I-JSON range")
        return
    if isinstance(value, float):
        raise MalformedInput(f"{path or '/'}: floating-point numbers are not canonical here")
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check(item, f"{path}/{i}")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise MalformedInput(f"{path or '/'}: object keys must be strings")
            _check(item, f"{path}/{key}")
        return
    raise MalformedInput(f"{path or '/'}: {type(value).__name__} is not a JSON value")


def canonical_json(value: Any) -> bytes:
    """Serialize ``value`` to its canonical bytes (JCS subset, see module docstring)."""
    _check(value, "")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
