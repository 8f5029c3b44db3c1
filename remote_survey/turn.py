"""TURN for surveys: time-limited credentials (the TURN REST scheme) and ICE servers.

Phones on mobile networks sit behind carrier NAT; their media reach the node only
through a TURN relay. The node and the TURN server (e.g. coturn with
``use-auth-secret`` and ``static-auth-secret``) share a secret; for each participant the
node hands out, in ``welcome.iceServers``, a credential that needs no TURN-side
database and expires by itself (draft-uberti-behave-turn-rest, as coturn implements it):

    username   = "<expiry, Unix seconds>:<user>"
    credential = base64(HMAC-SHA1(secret, username))

:func:`turn_credential` is pure (the time is passed in); :class:`IceConfig` holds a
node's STUN/TURN settings and builds the RTCIceServer dictionaries for one person.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from remote_survey.errors import SurveyError

__all__ = ["IceConfig", "load_turn_secret", "turn_credential"]


def turn_credential(secret: bytes, user: str, expires: datetime) -> tuple[str, str]:
    """The (username, credential) pair valid until ``expires`` for ``user``."""
    if ":" in user:
        raise ValueError("a TURN user name must not contain ':'")
    username = f"{int(expires.timestamp())}:{user}"
    digest = hmac.new(secret, username.encode("utf-8"), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def load_turn_secret(path: Path) -> bytes:
    """The shared secret in ``path`` (one line; surrounding whitespace is dropped)."""
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise SurveyError(f"cannot read the TURN secret {path}: {exc.strerror}") from None
    if len(secret) < 16:
        raise SurveyError(f"the TURN secret in {path} is shorter than 16 bytes")
    return secret


@dataclass(frozen=True)
class IceConfig:
    """A node's ICE servers: STUN URLs as they are, TURN URLs with fresh credentials."""

    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    turn_secret: bytes = b""
    turn_ttl: timedelta = timedelta(hours=6)

    def servers_for(self, user: str, now: datetime) -> list[dict[str, Any]]:
        """RTCIceServer dictionaries for ``user`` (session and person ids) at ``now``."""
        servers: list[dict[str, Any]] = []
        if self.stun_urls:
            servers.append({"urls": list(self.stun_urls)})
        if self.turn_urls:
            username, credential = turn_credential(self.turn_secret, user, now + self.turn_ttl)
            servers.append(
                {"urls": list(self.turn_urls), "username": username, "credential": credential}
            )
        return servers
