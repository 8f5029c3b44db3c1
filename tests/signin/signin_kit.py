"""Shared pieces of the console sign-in tests, under a name no other test folder uses
(``conftest`` is ambiguous when several folders run together): the clock, the
settings, the desk served over TLS (its fixture is in conftest.py)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "relay_http"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "cases"))

from relay_http_fake_core import FakeCore

from relay.config import OidcSettings, StaffSettings
from relay.signin.store import StaffStore

NODE = "420106"


class Clock:
    """A clock the test moves; starts at the real now (no day is special)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


SETTINGS = StaffSettings(
    token_key=Path("unused"),
    session_idle_timeout=600.0,
    session_lifetime=3600.0,
    lockout_threshold=3,
    lockout_duration=300.0,
    signin_address_limit=8,
    signin_address_window=600.0,
)

OIDC = OidcSettings(
    issuer="https://127.0.0.1:1", client_id="tongban", client_secret="secret",
    roles={"approvers": ("approver",)},
)  # fmt: skip


@dataclass
class Desk:
    """A staff listener (fake core) with sign-in, served over TLS on 127.0.0.1."""

    url: str
    http: aiohttp.ClientSession
    data_dir: Path
    store: StaffStore
    clock: Clock
    token_key: Ed25519PrivateKey
    core: FakeCore
    ssl: object
