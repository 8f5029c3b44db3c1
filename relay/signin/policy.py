"""The rules of console sign-in and sessions (pure: times are arguments).

- **Account names** are 1-64 characters of ``a-z 0-9 . _ -``, starting with a letter
  or digit (the login id; the display name carries the person's real name).
- **Lockout** (:func:`after_failure`): each failed sign-in of an account counts; at
  ``lockout_threshold`` consecutive failures the account is locked for
  ``lockout_duration``, and the count starts again. A success clears the count.
  While locked, no password is even checked.
- **Per-address throttle** (:func:`address_retry_at`): at ``signin_address_limit``
  failed sign-ins from one address within ``signin_address_window``, that address may
  try again only when the oldest of them leaves the window. Unknown account names count
  here too, so guessing names is throttled as well.
- **Sessions** (:func:`session_end`): a session ends ``session_idle_timeout`` after its
  last request or ``session_lifetime`` after sign-in, whichever comes first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from relay.config import StaffSettings
from relay.staff_auth import StaffRole

__all__ = [
    "ACCOUNT_ROLES",
    "Lockout",
    "address_retry_at",
    "after_failure",
    "check_account_name",
    "session_end",
]

ACCOUNT_ROLES: tuple[StaffRole, ...] = (
    StaffRole.CLERK,
    StaffRole.APPROVER,
    StaffRole.INSPECTOR,
    StaffRole.LICENCE_OFFICER,
    StaffRole.ADMINISTRATOR,
)
"""Roles a person's account may hold (``reader`` is for bearer tokens)."""

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def check_account_name(name: str) -> str:
    """``name`` if it is a valid account name; raises ``ValueError`` saying why not."""
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"account name {name!r}: 1-64 characters a-z 0-9 . _ -, starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Lockout:
    """An account's failure count after a failed sign-in, and when it unlocks."""

    failures: int
    locked_until: float | None


def after_failure(failures: int, now: float, settings: StaffSettings) -> Lockout:
    """The account's state after one more failed sign-in at ``now``."""
    count = failures + 1
    if count >= settings.lockout_threshold:
        return Lockout(0, now + settings.lockout_duration)
    return Lockout(count, None)


def address_retry_at(failures: Sequence[float], settings: StaffSettings) -> float | None:
    """When an address with failed sign-ins at ``failures`` (oldest first, all within
    the window) may try again; ``None``: now."""
    if len(failures) < settings.signin_address_limit:
        return None
    return failures[-settings.signin_address_limit] + settings.signin_address_window


def session_end(created_at: float, last_seen: float, settings: StaffSettings) -> float:
    """When a session created at ``created_at`` and last used at ``last_seen`` ends."""
    return min(last_seen + settings.session_idle_timeout, created_at + settings.session_lifetime)
