"""Password hashing: argon2id through ``argon2-cffi`` (PHC strings, parameters inside).

The parameters are OWASP's first recommended argon2id configuration (19 MiB, 2 passes,
1 lane: about 0.1 s on one core): strong against offline guessing, and cheap enough that
a burst of sign-in attempts cannot exhaust a county office's small server (every attempt,
even for an unknown name, costs one hash). A stored hash made with other parameters
still verifies, and :func:`needs_rehash` says when to store a fresh one after a
successful sign-in.
Verification of an unknown account runs against a fixed dummy hash, so the answer takes
as long whether or not the name exists.
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "MIN_LENGTH",
    "check_new_password",
    "hash_password",
    "needs_rehash",
    "one_time_password",
    "verify_password",
]

MIN_LENGTH = 10
_MAX_LENGTH = 1024
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_DUMMY = _HASHER.hash("tongban: no such account")


def check_new_password(password: str) -> str:
    """``password`` if it may be set; raises ``ValueError`` saying why not."""
    if len(password) < MIN_LENGTH:
        raise ValueError(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > _MAX_LENGTH:
        raise ValueError(f"a password has at most {_MAX_LENGTH} characters")
    if password.strip() != password:
        raise ValueError("a password must not start or end with white space")
    return password


def hash_password(password: str) -> str:
    return _HASHER.hash(check_new_password(password))


def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored`` (``None``: no password; still hashes)."""
    if len(password) > _MAX_LENGTH:
        return False
    try:
        return _HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return _HASHER.check_needs_rehash(stored)


def one_time_password() -> str:
    """A random password to hand to a person once (16 characters, ~95 bits)."""
    return secrets.token_urlsafe(12)
