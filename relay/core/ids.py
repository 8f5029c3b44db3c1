"""Packet ids: UUIDs whose first bits are the time they were made (version 7); a packet
sent again by staff gets one derived from the refused packet's (version 5).

Protocol §8 asks a sender for a UUID, lowercase and hyphenated, and a receiver takes any
string of 1-64 characters. Version 7 (RFC 9562 §5.7) puts the Unix
time in milliseconds in the first 48 bits and 74 random bits after the version and
variant bits: ids made one after another sort together, so the unique index on
``packet_id`` of the sender's outbox and of the receiver's inbox grows at its end, where
random version-4 ids touched a page of the index anywhere for every packet.
``bench outbox_writes`` prints the bytes a packet costs the sender's WAL.

The time in an id tells nobody more than the packet's ``created`` already does. The
random bits come from the operating system, so ids stay unique across restarts and
across the workers of one node, and a clock set back makes no duplicate.
"""

from __future__ import annotations

import os
import time
import uuid

__all__ = ["packet_id", "resent_id"]


def packet_id() -> str:
    """A new UUID version 7, lowercase and hyphenated."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # the RFC 9562 variant, 10
    return str(uuid.UUID(int=value))  # (its version= knows 1-5 only before Python 3.14)


_RESENT = uuid.UUID("6f1b0c1e-9d5e-4c3a-8a57-1f0e3c6b2d40")  # this namespace only


def resent_id(refused: str) -> str:
    """The id of the packet that sends the refused packet ``refused`` again: a UUID of
    version 5 (RFC 9562 §5.5) named by ``refused``, so that asking twice makes one."""
    return str(uuid.uuid5(_RESENT, refused))
