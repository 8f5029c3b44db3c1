"""The directories a node holds: one verified copy per federation root, newest wins.

:class:`DirectorySet` is an immutable value; :func:`merge` is the pure rule that decides
whether an offered copy replaces the held one (same root; higher ``serial``, or the same
serial issued later). :class:`DirectoryCache` is the disk shell: one file per root in
the node's cache folder, re-verified when loaded (a cached copy that no longer verifies,
e.g. after its key was revoked, is dropped and logged).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType

from relay.federation.publish import write_atomically
from signing.certificates import TrustBundle
from signing.errors import InvalidSignature
from signing.federation_directory import DirectoryEntry, VerifiedDirectory, verify_directory

__all__ = ["DirectoryCache", "DirectorySet", "Offer", "claimed_federation", "merge"]

_log = logging.getLogger("tongban.relay.federation")


class Offer(StrEnum):
    """What :func:`merge` made of an offered copy."""

    NEWER = "newer"  # replaces the held copy (or is the first of its root)
    SAME = "same"
    OLDER = "older"


@dataclass(frozen=True)
class DirectorySet:
    """Verified directories by root id (:func:`signing.federation_directory.root_id`)."""

    by_root: Mapping[str, VerifiedDirectory] = field(default_factory=dict)
    dropped: Mapping[str, str] = field(default_factory=dict)
    """Copies left out when the set was loaded, by the federation they claim to be of,
    with why: a copy that no longer verifies (its key expired or was revoked,
    a CRL went stale) is dropped, and staff must hear of it."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_root", MappingProxyType(dict(self.by_root)))
        object.__setattr__(self, "dropped", MappingProxyType(dict(self.dropped)))

    def __iter__(self) -> Iterator[VerifiedDirectory]:
        return iter(self.by_root[k] for k in sorted(self.by_root))

    def __len__(self) -> int:
        return len(self.by_root)

    def entry(self, node_id: str) -> tuple[VerifiedDirectory, DirectoryEntry] | None:
        """The entry of ``node_id`` and the directory listing it (None when unlisted)."""
        for verified in self:
            entry = verified.entries.get(node_id)
            if entry is not None:
                return verified, entry
        return None

    def node_ids(self) -> frozenset[str]:
        return frozenset(n for v in self for n in v.entries)


def merge(held: DirectorySet, offered: VerifiedDirectory) -> tuple[DirectorySet, Offer]:
    """The set after ``offered`` arrived, and what it was."""
    current = held.by_root.get(offered.root_id)
    if current is not None and not offered.newer_than(current):
        same = current.token == offered.token or not current.newer_than(offered)
        return held, Offer.SAME if same else Offer.OLDER
    return DirectorySet({**held.by_root, offered.root_id: offered}), Offer.NEWER


def claimed_federation(path: Path) -> str | None:
    """The federation a directory file says it is of, unverified (to name a copy that no
    longer verifies to people); None when that cannot be read."""
    import json

    from signing.encoding import b64url_decode

    try:
        payload = json.loads(b64url_decode(path.read_text("ascii").strip().split(".")[1]))
        name = payload["federation"]
    except (OSError, ValueError, IndexError, KeyError, TypeError):
        return None
    return name if isinstance(name, str) and name.isprintable() and len(name) <= 64 else None


class DirectoryCache:
    """Directory copies on disk: ``<folder>/<root id>.directory.jws``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def load(self, bundle: TrustBundle, *, at: datetime) -> DirectorySet:
        """The cached copies that verify now; the others in ``dropped``."""
        held = DirectorySet()
        if not self.folder.is_dir():
            return held
        dropped: dict[str, str] = {}
        for path in sorted(self.folder.glob("*.directory.jws")):
            try:
                verified = verify_directory(path.read_bytes(), bundle, at=at)
            except (OSError, InvalidSignature) as exc:
                _log.warning("cached directory %s dropped: %s", path.name, exc or "invalid")
                name = claimed_federation(path) or path.name.removesuffix(".directory.jws")
                dropped[name] = "it no longer verifies"
                continue
            held, _ = merge(held, verified)
        return DirectorySet(held.by_root, dropped)

    def save(self, verified: VerifiedDirectory) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomically(self.folder / f"{verified.root_id}.directory.jws", verified.file_bytes)
