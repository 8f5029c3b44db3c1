"""Shared helpers for CLI commands: error reporting and file reading."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from signing.keys import Signer

__all__ = [
    "CliError",
    "fail",
    "read_bytes",
    "seal_signer",
    "whole_number",
    "within_certificate",
    "write_output",
]


class CliError(Exception):
    """An error to report on stderr with a stable code and a non-zero exit."""

    def __init__(self, code: str, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.exit_code = exit_code


def fail(code: str, message: str, exit_code: int = 1) -> int:
    sys.stderr.write(f"tongban: error[{code}]: {message}\n")
    return exit_code


def read_bytes(path: str | Path, what: str) -> bytes:
    """Read a file the user named, turning OS errors into a usage error."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise CliError("file-not-found", f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise CliError("file-not-found", f"{what} {path} is a directory, not a file") from None
    except OSError as exc:
        raise CliError("file-unreadable", f"cannot read {what} {path}: {exc.strerror}") from None


def write_output(path: str | Path, data: bytes) -> None:
    """Write a file the user named whole or not at all (a failure leaves what was there,
    and no part of the new one), turning OS errors into a usage error."""
    from relay.durable import write_durably

    try:
        write_durably(Path(path), data)
    except IsADirectoryError:
        raise CliError("file-unwritable", f"cannot write {path}: it is a directory") from None
    except OSError as exc:
        raise CliError("file-unwritable", f"cannot write {path}: {exc.strerror}") from None


def within_certificate(signer: Signer, at: datetime) -> datetime:
    """``at`` when the signer's seal certificate is valid then: a signature made at
    another time (``--at``) is refused by every verifier, and may replace a good one."""
    leaf = signer.leaf
    if not leaf.not_valid_before_utc <= at < leaf.not_valid_after_utc:
        raise CliError(
            "usage",
            f"--at {at.isoformat()} is outside the seal certificate's validity "
            f"({leaf.not_valid_before_utc.isoformat()} .. {leaf.not_valid_after_utc.isoformat()})",
        )
    return at


def seal_signer(node_dir: str | Path) -> Signer:
    """The node's seal (``seal.key``, ``seal.pem``) as a signer, refused with a usage
    error when it is no seal (e.g. the TLS key and certificate put there: what it signs
    every verifier would refuse)."""
    from signing.certificates import Purpose, check_purpose
    from signing.errors import SigningError
    from signing.keys import Signer

    folder = Path(node_dir)
    key = read_bytes(folder / "seal.key", "seal key")
    chain = read_bytes(folder / "seal.pem", "seal certificate")
    try:
        signer = Signer.from_pem(key, chain)
        check_purpose(signer.leaf, Purpose.SEAL)
    except SigningError as exc:
        raise CliError("node-dir", f"{folder} holds no usable seal: {exc}") from None
    return signer


def whole_number(text: str) -> int:
    """An argparse type: a whole number in ASCII digits (``int`` also takes full-width
    and other Unicode digits, which a person did not mean as a number)."""
    import argparse

    digits = text[1:] if text[:1] in "+-" else text
    if not digits or not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (ASCII digits)")
    return int(text)
