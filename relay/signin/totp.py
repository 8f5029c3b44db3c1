"""TOTP second factor (RFC 6238 through ``pyotp``): enrolment and the sign-in check.

An account may hold a base32 secret (160 random bits); it then needs the current
6-digit code at sign-in. A code is accepted for its own 30-second step or one step
either side (clock drift), and each step only once per account: a code seen once is
refused afterwards (replay), kept as ``totp_last_step`` in the staff directory.
"""

from __future__ import annotations

import hmac

import pyotp

from relay.signin.store import StaffStore

__all__ = ["ISSUER", "TotpCheck", "new_secret", "provisioning_uri"]

ISSUER = "tongban"
_INTERVAL = 30


def new_secret() -> str:
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, name: str, node_id: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads (as text or QR code)."""
    return pyotp.TOTP(secret).provisioning_uri(
        name=f"{name}@{node_id}", issuer_name=f"{ISSUER} {node_id}"
    )


class TotpCheck:
    """Checks codes against an account's secret, each time step used at most once."""

    def __init__(self, store: StaffStore) -> None:
        self._store = store

    def verify(self, name: str, secret: str, code: str, now: float) -> bool:
        code = code.strip().replace(" ", "")
        if len(code) != 6 or not code.isdigit():
            return False
        totp = pyotp.TOTP(secret, interval=_INTERVAL)
        step = int(now // _INTERVAL)
        for candidate in (step, step - 1, step + 1):
            if hmac.compare_digest(totp.at(candidate * _INTERVAL), code):
                return self._store.use_totp_step(name, candidate)
        return False
