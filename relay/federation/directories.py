"""The directories a node holds: one verified copy per federation root, newest wins.

:class:`DirectorySet` is an immutable value; :func:`merge` is the pure rule that decides
whether an offered copy replaces the held one (same root; higher ``serial``, or the same
serial issued later). :class:`DirectoryCache` is the disk shell: one file per root in
the node's cache folder, re-verified when loaded (a cached copy that no longer verifies,
e.g. after its key was revoked, is dropped and logged).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType

from relay.federation.publish import write_atomically
from signing.certificates import TrustBundle
from signing.encoding import b64url_decode
from signing.errors import InvalidSignature
from signing.federation_directory import DirectoryEntry, VerifiedDirectory, verify_directory

__all__ = ["DirectoryCache", "DirectorySet", "Dropped", "Offer", "lapsed_copy", "merge"]

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
    dropped: Mapping[str, Dropped] = field(default_factory=dict)
    """Copies left out when the set was loaded because they no longer verify (their key
    expired, a CRL went stale), by root id: staff must hear of them."""

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


@dataclass(frozen=True)
class Dropped:
    """A held copy that no longer verifies: of which federation, and why."""

    federation: str
    why: str


def lapsed_copy(data: bytes, bundle: TrustBundle) -> VerifiedDirectory | None:
    """The directory file ``data`` as it verified at the ``issued_at`` it claims (read
    unverified), when it did: a copy that was valid and no longer is (its key expired
    or was revoked, a CRL went stale: it is checked under the bundle's roots without
    its CRLs), as opposed to a broken file or one of a root no longer trusted (None)."""
    try:
        token = data.decode("ascii").strip()
        payload = json.loads(b64url_decode(token.split(".")[1]))
        issued = datetime.fromtimestamp(int(payload["issued_at"]), UTC)
        return verify_directory(token, TrustBundle(bundle.roots, ()), at=issued)
    except (ValueError, IndexError, KeyError, TypeError, OverflowError, InvalidSignature):
        return None


class DirectoryCache:
    """Directory copies on disk: ``<folder>/<root id>.directory.jws``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def load(self, bundle: TrustBundle, *, at: datetime) -> DirectorySet:
        """The cached copies that verify now; the others in ``dropped``."""
        held = DirectorySet()
        if not self.folder.is_dir():
            return held
        dropped: dict[str, Dropped] = {}
        for path in sorted(self.folder.glob("*.directory.jws")):
            try:
                data = path.read_bytes()
                verified = verify_directory(data, bundle, at=at)
            except (OSError, InvalidSignature) as exc:
                _log.warning("cached directory %s dropped: %s", path.name, exc or "invalid")
                lapsed = lapsed_copy(data, bundle) if not isinstance(exc, OSError) else None
                if lapsed is not None:  # else broken, or of a root no longer trusted
                    why = "the cached copy was valid when it was signed, not now"
                    dropped[lapsed.root_id] = Dropped(lapsed.directory.federation, why)
                continue
            held, _ = merge(held, verified)
        return DirectorySet(held.by_root, dropped)

    def save(self, verified: VerifiedDirectory) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomically(self.folder / f"{verified.root_id}.directory.jws", verified.file_bytes)
