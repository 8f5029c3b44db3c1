"""Exceptions of the signing core.

::

    SigningError
    ├── InvalidSignature        opaque: a JWS, detached signature or descriptor failed
    ├── DecryptionFailed        opaque: an HPKE ciphertext or sealed stream failed to open
    ├── CertificateRejected     a certificate path failed validation (reason code attached)
    └── MalformedInput          bytes that are not what they claim to be (PEM, JSON, keys)

Callers get one opaque error per failed verification or decryption; the precise cause
is logged on the ``tongban.signing`` logger (and, for certificates, carried as a stable
``reason`` code because path-validation failures are actionable for operators).
"""

from __future__ import annotations

__all__ = [
    "CertificateRejected",
    "DecryptionFailed",
    "InvalidSignature",
    "MalformedInput",
    "SigningError",
]


class SigningError(Exception):
    """Base of every error raised by :mod:`signing`."""


class InvalidSignature(SigningError):
    """A signature did not verify. Deliberately carries no detail."""

    def __init__(self) -> None:
        super().__init__("signature verification failed")


class DecryptionFailed(SigningError):
    """A ciphertext could not be opened. Deliberately carries no detail."""

    def __init__(self) -> None:
        super().__init__("decryption failed")


class CertificateRejected(SigningError):
    """A certificate path was refused; ``reason`` is a stable code, e.g. ``revoked``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class MalformedInput(SigningError):
    """Input that cannot be parsed as the expected structure."""
