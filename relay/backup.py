"""Online backup and restore of a node's data directory.

``tongban backup --config node.toml --out DIR`` runs while the node works:

1. ``relay.sqlite3`` (outbox, inbox, cases, audit log, witnessing state: every table of
   the node is in this one file) is copied with SQLite's online backup API in one step,
   which reads one consistent snapshot while writers continue;
2. the blobs the *snapshot* names (its ``blobs`` table) are copied and checked against
   their names (a blob is named by the SHA-256 of its bytes and only enters ``blobs/``
   complete, before the row naming it commits), so the blobs match the database state;
   each blob is read once, hashed as it is copied, and neither copy stays in the page
   cache (a backup of many GiB would push the node's database pages out);
3. every other file of the data directory (calendars, status lists, survey media and
   reports, the staff-token key) is copied the same way, keeping its mode and times;
   uploads in progress (``partial/``, ``tmp/``) are not: the sender resumes them;
4. ``manifest.json`` lists every file with its size and SHA-256; it is written last, so
   a folder without one is an unfinished backup (and ``restore`` refuses it).

``tongban restore --config node.toml --from DIR`` refuses while the node runs (the node
holds an exclusive lock on ``<data_dir>/node.lock`` while it serves), refuses a data
directory that holds files unless ``--replace`` (the old directory is then kept as
``<data_dir>.replaced-<time>``), and copies the files of the manifest into a fresh
directory, checking each file's size and digest as it copies it (read once, left out of
the page cache). That directory is renamed into place only at the end, after every
file has been checked: a damaged backup or an interrupted restore leaves nothing
half-written and the data directory as it was.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from relay.core.blobs import CHUNK, SYNC_BYTES, BlobSink, ReadOnce

__all__ = ["BackupError", "DataDirLock", "Manifest", "backup", "restore"]

DATABASE = "relay.sqlite3"
MANIFEST = "manifest.json"
LOCK = "node.lock"
_SKIPPED = {DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm", "blobs", "partial", "tmp", LOCK}
_SKIPPED |= {".ready-probe"}


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why."""


class DataDirLock:
    """An exclusive ``flock`` on ``<data_dir>/node.lock`` held while a node serves;
    ``shared``: a shared one, held by each of several workers of one node (restore,
    which takes it exclusively, still waits for all of them)."""

    def __init__(self, data_dir: Path, *, shared: bool = False) -> None:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._fd = os.open(data_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise BackupError(f"{data_dir} is in use by a running node") from None

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _copy_once(src: Path, dst: Path) -> tuple[int, str]:
    """Copy ``src`` to the new file ``dst`` in one pass, with its mode and times: the
    size and SHA-256 (hex) of what was read. It is written as a partner's upload is
    (:class:`~relay.core.blobs.BlobSink`: hashed, fsync'd every 64 MiB and at the end,
    released from the page cache), and what was read leaves the cache too
    (:class:`~relay.core.blobs.ReadOnce`): a backup of many GiB would otherwise push the
    node's database pages out."""
    dst.touch(mode=0o600, exist_ok=False)
    sink = BlobSink(dst, 0)
    sink.open()
    try:
        with src.open("rb") as f:
            source, unsynced = ReadOnce(f), 0
            while chunk := source.read(CHUNK):
                sink.write(chunk)
                unsynced += len(chunk)
                if unsynced >= SYNC_BYTES:
                    sink.fsync()
                    unsynced = 0
        shutil.copystat(src, dst)
        return sink.sync(True), sink.sha.hexdigest()  # the fsync covers the mode too
    finally:
        sink.close()


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB pieces (hex)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_path(path: Path) -> None:
    """fsync a file or a directory by its path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Manifest:
    node_id: str
    created: str
    files: dict[str, tuple[int, str]]  # relative path → (size, sha256)
    audit_leaves: int

    def to_json(self) -> dict[str, object]:
        return {
            "v": 1,
            "node_id": self.node_id,
            "created": self.created,
            "audit_leaves": self.audit_leaves,
            "files": {p: {"size": s, "sha256": d} for p, (s, d) in sorted(self.files.items())},
        }

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        try:
            obj = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            files = {p: (int(f["size"]), str(f["sha256"])) for p, f in obj["files"].items()}
            manifest = cls(
                str(obj["node_id"]), str(obj["created"]), files, int(obj["audit_leaves"])
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise BackupError(f"{folder} holds no readable {MANIFEST}: {exc}") from None
        for name in files:  # every file inside the backup and the data folder, no other
            rel = Path(name)
            if not name or rel.is_absolute() or ".." in rel.parts or "\x00" in name:
                raise BackupError(f"{MANIFEST} names {name!r}, a path outside the backup")
        if DATABASE not in files:
            raise BackupError(f"{MANIFEST} lists no {DATABASE}: not a backup of a node")
        return manifest


def backup(data_dir: Path, out: Path, *, node_id: str, now: datetime) -> Manifest:
    """Copy the node's data in ``data_dir`` into the new folder ``out`` (see above)."""
    if not (data_dir / DATABASE).is_file():
        raise BackupError(f"{data_dir} holds no {DATABASE}")
    if out.exists() and any(out.iterdir()):
        raise BackupError(f"{out} exists and is not empty")
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{data_dir / DATABASE}?mode=ro", uri=True, timeout=30)
    target = sqlite3.connect(out / DATABASE)
    try:
        source.backup(target)  # one step: a single consistent snapshot
    finally:
        source.close()
    try:
        digests = [str(r[0]) for r in target.execute("SELECT digest FROM blobs")]
        leaves = int(target.execute("SELECT COUNT(*) FROM audit_leaves").fetchone()[0])
    finally:
        target.close()
    files: dict[str, tuple[int, str]] = {}
    for digest in digests:
        rel = Path("blobs") / digest[:2] / digest
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        size, sha = _copy_once(data_dir / rel, out / rel)
        if sha != digest:
            raise BackupError(f"blob {digest} does not match its name: the store is damaged")
        files[str(rel)] = (size, digest)
    for path in sorted(data_dir.rglob("*")):
        rel = path.relative_to(data_dir)
        if rel.parts[0] in _SKIPPED or not path.is_file():
            continue
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        files[str(rel)] = _copy_once(path, out / rel)
    for p in sorted(out.rglob("*")):
        name = str(p.relative_to(out))
        if p.is_file() and name not in files:  # the database's snapshot
            files[name] = (p.stat().st_size, file_sha256(p))
            fsync_path(p)
    manifest = Manifest(node_id, now.isoformat(), dict(sorted(files.items())), leaves)
    (out / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=1), encoding="utf-8")
    fsync_path(out / MANIFEST)
    return manifest


def restore(
    source: Path, data_dir: Path, *, node_id: str, now: datetime, replace: bool
) -> Manifest:
    """Restore the backup in ``source`` as the node's ``data_dir`` (see above)."""
    manifest = Manifest.read(source)
    if manifest.node_id != node_id:
        raise BackupError(f"the backup is of node {manifest.node_id}, not of {node_id}")
    if data_dir.exists():
        lock = DataDirLock(data_dir)  # refuses while the node runs
        lock.release()
        if any(p.name != LOCK for p in data_dir.iterdir()) and not replace:
            raise BackupError(f"{data_dir} holds data: restore with --replace to set it aside")
    fresh = data_dir.with_name(f"{data_dir.name}.restoring")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(mode=0o700, parents=True)
    try:  # each file read once: checked as it is copied
        for rel, (size, digest) in manifest.files.items():
            held, copy = source / rel, fresh / rel
            copy.parent.mkdir(parents=True, exist_ok=True)
            if not held.is_file() or _copy_once(held, copy) != (size, digest):
                raise BackupError(f"{rel} in the backup is missing or damaged (digest differs)")
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)  # the data directory was not touched
        raise
    if data_dir.exists():
        data_dir.rename(data_dir.with_name(f"{data_dir.name}.replaced-{now:%Y%m%dT%H%M%S}"))
    fresh.rename(data_dir)
    fsync_path(data_dir.parent)
    return manifest
