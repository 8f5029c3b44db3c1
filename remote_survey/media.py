"""Checking the media files an evidence chain names, in constant memory.

Every ``segment`` and ``snapshot`` entry names a file in the media directory with its
size and SHA-256. :func:`verify_media` reopens each one (without following symbolic
links), hashes it in 1 MiB reads and reports every file that is missing, not a regular
file, unreadable, of another size or of another digest. A renamed file shows up as the
old name missing.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from remote_survey.entries import Segment, Snapshot
from remote_survey.vault import MAGIC

if TYPE_CHECKING:
    from remote_survey.evidence import Entry
    from remote_survey.vault import MediaVault

__all__ = ["CHUNK", "MediaProblem", "file_digest", "verify_media"]

CHUNK = 1 << 20


@dataclass(frozen=True)
class MediaProblem:
    name: str
    code: str  # missing | not-a-file | unreadable | size-mismatch | digest-mismatch
    message: str


def file_digest(fd: int) -> tuple[int, str]:
    """Size and lowercase-hex SHA-256 of an open file descriptor, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    while True:
        n = os.readv(fd, [view])
        if n == 0:
            break
        digest.update(view[:n])
        size += n
    return size, digest.hexdigest()


def _check_one(directory: Path, name: str, size: int, sha256: str) -> MediaProblem | None:
    path = directory / name
    try:
        info = path.lstat()
    except FileNotFoundError:
        return MediaProblem(name, "missing", f"{name} is missing from {directory}")
    except OSError as exc:
        return MediaProblem(name, "unreadable", f"{name}: {exc.strerror}")
    if not stat.S_ISREG(info.st_mode):
        return MediaProblem(name, "not-a-file", f"{name} is not a regular file")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        return MediaProblem(name, "unreadable", f"{name}: {exc.strerror}")
    try:
        sealed = os.pread(fd, len(MAGIC), 0) == MAGIC
        actual_size, actual_sha = file_digest(fd)
    except OSError as exc:
        return MediaProblem(name, "unreadable", f"{name}: {exc.strerror}")
    finally:
        os.close(fd)
    if sealed and actual_size != size:  # the surveying node's own copy: sealed at rest
        return MediaProblem(
            name,
            "sealed",
            f"{name} is sealed at rest on the node that surveyed: give its key with "
            "--media-key <node dir>/survey-media.key",
        )
    if actual_size != size:
        return MediaProblem(
            name, "size-mismatch", f"{name} has {actual_size} bytes, the chain says {size}"
        )
    if actual_sha != sha256:
        return MediaProblem(name, "digest-mismatch", f"{name} was altered (SHA-256 differs)")
    return None


def _check_sealed(
    directory: Path, name: str, size: int, sha256: str, vault: MediaVault
) -> MediaProblem | None:
    from remote_survey.vault import VaultError

    path = directory / name
    if path.is_symlink() or not path.exists():
        return MediaProblem(name, "missing", f"{name} is missing from {directory}")
    if not path.is_file():
        return MediaProblem(name, "not-a-file", f"{name} is not a regular file")
    digest, actual_size = hashlib.sha256(), 0
    try:
        for chunk in vault.open_chunks(path):
            digest.update(chunk)
            actual_size += len(chunk)
    except VaultError as exc:
        return MediaProblem(name, "digest-mismatch", f"{name} was altered ({exc})")
    except OSError as exc:
        return MediaProblem(name, "unreadable", f"{name}: {exc.strerror}")
    if actual_size != size:
        return MediaProblem(
            name, "size-mismatch", f"{name} has {actual_size} bytes, the chain says {size}"
        )
    if digest.hexdigest() != sha256:
        return MediaProblem(name, "digest-mismatch", f"{name} was altered (SHA-256 differs)")
    return None


def verify_media(
    entries: Sequence[Entry], media_dir: str | Path, vault: MediaVault | None = None
) -> tuple[MediaProblem, ...]:
    """Recompute every named file's size and SHA-256; return every problem found.

    With ``vault`` the files are sealed media (:mod:`remote_survey.vault`): their
    plaintext is checked, and a file that does not open is reported altered."""
    directory = Path(media_dir)
    problems = []
    for entry in entries:
        body = entry.body
        if isinstance(body, Segment | Snapshot):
            if vault is not None:
                problem = _check_sealed(directory, body.name, body.size, body.sha256, vault)
            else:
                problem = _check_one(directory, body.name, body.size, body.sha256)
            if problem is not None:
                problems.append(problem)
    return tuple(problems)
