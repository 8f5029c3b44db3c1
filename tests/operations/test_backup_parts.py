"""Issue 14: ``relay.backup`` on a stopped node's data directory: what restore refuses,
and what it keeps (the drill with running nodes is test_backup_drill)."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pagecache import cached_bytes

from relay.backup import BackupError, DataDirLock, backup, restore
from relay.core.sqlite_store import SqliteStore

NOW = datetime.now(UTC)


def _data(folder: Path) -> Path:
    SqliteStore(folder).close()
    (folder / "calendars").mkdir()
    (folder / "calendars" / "cn-2027.json").write_text('{"year": 2027}', encoding="utf-8")
    (folder / "partial" / "upload-half").write_bytes(b"half an upload")
    return folder


def test_a_backup_lists_every_file_and_leaves_uploads_out(tmp_path: Path) -> None:
    data = _data(tmp_path / "data")
    manifest = backup(data, tmp_path / "bk", node_id="420106", now=NOW)
    assert set(manifest.files) == {"relay.sqlite3", "calendars/cn-2027.json"}
    listed = json.loads((tmp_path / "bk" / "manifest.json").read_text(encoding="utf-8"))
    assert listed["node_id"] == "420106"
    assert set(listed["files"]) == set(manifest.files)
    with pytest.raises(BackupError, match="not empty"):
        backup(data, tmp_path / "bk", node_id="420106", now=NOW)


MIB = 1 << 20


def _read_so_far() -> int:
    """Bytes this process has read through read system calls (/proc/self/io rchar)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar: "):
            return int(line.split()[1])
    raise AssertionError("/proc/self/io has no rchar")


def _with_blob(data: Path, size: int) -> tuple[bytes, str, Path]:
    """A blob of ``size`` random bytes stored in the node's data: its bytes, digest and
    file."""
    blob = os.urandom(size)
    digest = hashlib.sha256(blob).hexdigest()
    store = SqliteStore(data)
    try:
        held = store.temp_path()
        held.parent.mkdir(parents=True, exist_ok=True)
        held.write_bytes(blob)
        store.publish_blob(held, digest, len(blob))
        return blob, digest, store.blob_path(digest)
    finally:
        store.close()


def test_a_blob_is_copied_checked_and_left_out_of_the_page_cache(tmp_path: Path) -> None:
    """Each file is read once, a blob hashed as it is copied: the manifest names it by
    its digest, and neither the node's file nor the copy stays in the page cache. A blob
    whose bytes do not match its name fails the backup."""
    data = _data(tmp_path / "data")
    blob, digest, source = _with_blob(data, 5 * MIB)
    recording = data / "survey-media" / "sv-0001" / "seg-000001.mkv"
    recording.parent.mkdir(parents=True)
    recording.write_bytes(os.urandom(3 * MIB))
    recording.chmod(0o640)
    assert source.read_bytes() == blob  # now in the page cache
    assert cached_bytes(source) > len(blob) - MIB, (
        f"reading {source} did not cache it: this test needs a disk-backed file system"
    )
    before = _read_so_far()
    manifest = backup(data, tmp_path / "bk", node_id="420106", now=NOW)
    read = _read_so_far() - before
    database = manifest.files["relay.sqlite3"][0]  # read by the snapshot, then hashed
    total = sum(size for size, _ in manifest.files.values())
    assert read < total + database + MIB, f"read {read} bytes to back up {total}"
    kept = tmp_path / "bk" / recording.relative_to(data)
    assert kept.read_bytes() == recording.read_bytes()
    assert kept.stat().st_mode & 0o777 == 0o640
    rel = f"blobs/{digest[:2]}/{digest}"
    assert manifest.files[rel] == (len(blob), digest)
    copy = tmp_path / "bk" / rel
    assert cached_bytes(source) < MIB, "the node's blob stayed in the page cache"
    assert cached_bytes(copy) < MIB, "the copy stayed in the page cache"
    assert copy.read_bytes() == blob

    damaged = bytearray(blob)
    damaged[len(blob) // 2] ^= 1
    source.write_bytes(bytes(damaged))
    with pytest.raises(BackupError, match=f"blob {digest} does not match its name"):
        backup(data, tmp_path / "bk2", node_id="420106", now=NOW)
    assert not (tmp_path / "bk2" / "manifest.json").exists()


def test_restore_reads_each_file_once_checks_it_and_keeps_its_mode(tmp_path: Path) -> None:
    """A restore copies each file of the backup once, checking its digest as it copies
    (it used to read every file twice), keeps each file's mode, and leaves the blob out
    of the page cache. A damaged file is found on the way: the data directory stays as
    it was and nothing of the restore is left."""
    data = _data(tmp_path / "data")
    blob, digest, _ = _with_blob(data, 6 * MIB)
    secret = data / "staff-token.key"
    secret.write_bytes(b"k" * 32)
    secret.chmod(0o600)
    manifest = backup(data, tmp_path / "bk", node_id="420106", now=NOW)
    total = sum(size for size, _ in manifest.files.values())

    before = _read_so_far()
    restore(tmp_path / "bk", tmp_path / "restored", node_id="420106", now=NOW, replace=False)
    read = _read_so_far() - before
    assert total <= read < total + MIB, f"read {read} bytes to restore {total}"
    rel = f"blobs/{digest[:2]}/{digest}"
    restored = tmp_path / "restored" / rel
    assert cached_bytes(restored) < MIB, "the restored blob stayed in the page cache"
    assert cached_bytes(tmp_path / "bk" / rel) < MIB, "the backup's blob stayed in the cache"
    assert restored.read_bytes() == blob
    assert (tmp_path / "restored" / "staff-token.key").stat().st_mode & 0o777 == 0o600

    damaged = bytearray(blob)
    damaged[-1] ^= 1
    (tmp_path / "bk" / rel).write_bytes(bytes(damaged))

    def held_data() -> dict[Path, bytes]:  # but the lock file, which the check takes
        return {
            p.relative_to(data): p.read_bytes()
            for p in data.rglob("*")
            if p.is_file() and p.name != "node.lock"
        }

    kept = held_data()
    with pytest.raises(BackupError, match=f"{rel} in the backup is missing or damaged"):
        restore(tmp_path / "bk", data, node_id="420106", now=NOW, replace=True)
    assert held_data() == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bk", "data", "restored"]


def test_restore_refuses_a_data_dir_with_files_unless_replacing(tmp_path: Path) -> None:
    data = _data(tmp_path / "data")
    backup(data, tmp_path / "bk", node_id="420106", now=NOW)
    (data / "calendars" / "cn-2027.json").write_text('{"year": 2028}', encoding="utf-8")
    with pytest.raises(BackupError, match="--replace"):
        restore(tmp_path / "bk", data, node_id="420106", now=NOW, replace=False)
    with pytest.raises(BackupError, match="of node 420106, not of 999999"):
        restore(tmp_path / "bk", tmp_path / "other", node_id="999999", now=NOW, replace=True)
    restore(tmp_path / "bk", data, node_id="420106", now=NOW, replace=True)
    assert (data / "calendars" / "cn-2027.json").read_text(encoding="utf-8") == '{"year": 2027}'
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("data.replaced-")]
    assert len(kept) == 1
    assert '"year": 2028' in (kept[0] / "calendars" / "cn-2027.json").read_text(encoding="utf-8")


def test_restore_refuses_an_unfinished_backup_and_a_running_node(tmp_path: Path) -> None:
    data = _data(tmp_path / "data")
    backup(data, tmp_path / "bk", node_id="420106", now=NOW)
    (tmp_path / "bk" / "manifest.json").unlink()
    with pytest.raises(BackupError, match="manifest"):
        restore(tmp_path / "bk", data, node_id="420106", now=NOW, replace=True)
    backup(data, tmp_path / "bk2", node_id="420106", now=NOW)
    running = DataDirLock(data)
    try:
        with pytest.raises(BackupError, match="running node"):
            restore(tmp_path / "bk2", data, node_id="420106", now=NOW, replace=True)
    finally:
        running.release()


def test_backup_on_postgresql_is_refused_naming_pg_dump(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The SQLite snapshot would copy nothing of a PostgreSQL node: say what to use."""
    from relay.cli import main

    config = tmp_path / "node.toml"
    config.write_text(
        '[node]\nid = "420106"\nkey_dir = "keys"\ndata_dir = "data"\n'
        'trust_bundle = "bundle.pem"\n[listeners.federation]\nport = 8443\n'
        "[listeners.public]\nport = 8080\n[listeners.staff]\nport = 8444\n"
        '[database]\nurl = "postgresql://tongban@db.example/tongban"\n',
        encoding="utf-8",
    )
    assert main(["backup", "--config", str(config), "--out", str(tmp_path / "bk")]) != 0
    assert "pg_dump" in capsys.readouterr().err
    assert not (tmp_path / "bk").exists()


@pytest.mark.parametrize("name", ["../evil", "/etc/evil", "calendars/../../evil"])
def test_restore_refuses_a_manifest_naming_a_path_outside_the_backup(
    tmp_path: Path, name: str
) -> None:
    """A backup whose manifest lists ``../evil`` (with its digest) read it from beside the
    backup and wrote it beside the data folder, as root."""
    data = _data(tmp_path / "data")
    backup(data, tmp_path / "bk", node_id="420106", now=NOW)
    evil = b"not yours"
    (tmp_path / "evil").write_bytes(evil)
    path = tmp_path / "bk" / "manifest.json"
    listed = json.loads(path.read_text(encoding="utf-8"))
    listed["files"][name] = {"size": len(evil), "sha256": hashlib.sha256(evil).hexdigest()}
    path.write_text(json.dumps(listed), encoding="utf-8")
    with pytest.raises(BackupError, match="outside the backup"):
        restore(tmp_path / "bk", data, node_id="420106", now=NOW, replace=True)
    assert (data / "calendars" / "cn-2027.json").exists()  # nothing moved aside


def test_restore_refuses_a_manifest_without_the_database(tmp_path: Path) -> None:
    """``{"files": {}}`` moved the node's data aside and put an empty folder in place."""
    data = _data(tmp_path / "data")
    backup(data, tmp_path / "bk", node_id="420106", now=NOW)
    path = tmp_path / "bk" / "manifest.json"
    listed = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**listed, "files": {}}), encoding="utf-8")
    with pytest.raises(BackupError, match=r"lists no relay\.sqlite3"):
        restore(tmp_path / "bk", data, node_id="420106", now=NOW, replace=True)
    assert (data / "relay.sqlite3").exists()
