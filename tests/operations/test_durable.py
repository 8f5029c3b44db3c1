"""``relay.durable.write_durably``: a file is replaced whole or not at all."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from relay.durable import write_durably


def test_a_write_whose_sync_fails_leaves_the_old_file_and_no_temporary_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "state.json"
    write_durably(target, b"old")

    def failing_sync(fd: int) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr("relay.durable.os.fsync", failing_sync)
    with pytest.raises(OSError, match="I/O error"):
        write_durably(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_published_file_gets_its_mode_and_a_named_temporary_file_is_used(
    tmp_path: Path,
) -> None:
    published = tmp_path / "directory.jws"
    before = os.umask(0o077)
    try:
        write_durably(published, b"x", mode=0o644)
    finally:
        os.umask(before)
    assert stat.S_IMODE(published.stat().st_mode) == 0o644
    key = tmp_path / "P.key"
    write_durably(key, b"k", tmp=tmp_path / "P.key.new")
    assert key.read_bytes() == b"k"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["P.key", "directory.jws"]
