"""Validation of the JSON members shared by packets and receipts (pure)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from relay.core.errors import MalformedPacket
from signing.certificates import is_node_id

__all__ = [
    "digest_field",
    "format_time",
    "int_field",
    "is_digest",
    "micros_time",
    "node_field",
    "parse_time",
    "str_field",
    "time_micros",
]

_DIGEST = re.compile(r"[0-9a-f]{64}")


def is_digest(text: object) -> bool:
    return isinstance(text, str) and _DIGEST.fullmatch(text) is not None


def format_time(at: datetime) -> int:
    """A time as it appears in packets and receipts: whole seconds since the epoch."""
    return int(at.timestamp())


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def time_micros(at: datetime) -> int:
    """An aware datetime as integer microseconds since the Unix epoch (exact): how times
    cross to the crypto helper, where a datetime with its time zone pickles several
    times slower."""
    return (at - _EPOCH) // _MICROSECOND


def micros_time(micros: int) -> datetime:
    """The UTC datetime :func:`time_micros` gave ``micros`` for."""
    return _EPOCH + timedelta(microseconds=micros)


_LAST_SECOND = 253_402_300_799
"""9999-12-31T23:59:59Z: the last time a date can hold."""


def parse_time(value: object) -> datetime:
    """A time in whole seconds since the epoch, up to the end of year 9999 (a later one,
    even signed by a partner, is malformed, never an exception of the date library)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _LAST_SECOND:
        raise MalformedPacket(f"not a time in whole seconds since the epoch: {value!r}")
    return datetime.fromtimestamp(value, UTC)


def str_field(obj: Mapping[str, Any], key: str, *, max_len: int = 256) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise MalformedPacket(f"{key!r} must be a non-empty string")
    return value


def int_field(obj: Mapping[str, Any], key: str, *, minimum: int = 0) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise MalformedPacket(f"{key!r} must be an integer >= {minimum}")
    return value


def node_field(obj: Mapping[str, Any], key: str) -> str:
    value = str_field(obj, key)
    if not is_node_id(value):
        raise MalformedPacket(f"{key!r} must be a node id (6 digits, not 000000)")
    return value


def digest_field(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not is_digest(value):
        raise MalformedPacket(f"{key!r} must be a lowercase hex SHA-256")
    assert isinstance(value, str)
    return value
