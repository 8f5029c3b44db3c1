"""Survey media sealed at rest on the surveying node: what is on disk is not the media,
the report still verifies (with the node's key), and any change to a sealed file shows."""

from __future__ import annotations

import asyncio
import io
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import pytest
from media_support import World, make_plan, make_world

from relay.cli import main as cli_main
from remote_survey.entries import Segment
from remote_survey.errors import SurveyError
from remote_survey.fanout import FrameSink
from remote_survey.recorder import SegmentRecorder
from remote_survey.report import Answer, ChecklistAnswer, Verdict, verify_report
from remote_survey.room import RoomConfig, SurveyRoom
from remote_survey.session import Event, Participant
from remote_survey.vault import MAGIC, MediaVault, VaultError, load_or_create_media_key
from signing.certificates import TrustBundle

INSPECTOR = Participant("insp-1", "李勘查")
SITE_PARTY = Participant("site-1", "张店主")
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64


def _plain(vault: MediaVault, path: Path) -> bytes:
    return b"".join(vault.open_chunks(path))


def test_sealed_files_open_only_whole_unaltered_and_under_their_name(tmp_path: Path) -> None:
    vault = MediaVault(os.urandom(32))
    data = os.urandom((5 << 20) // 2)  # three records
    vault.seal_chunks([data[: 1 << 20], data[1 << 20 : 2 << 20], data[2 << 20 :]], tmp_path / "a")
    sealed = (tmp_path / "a").read_bytes()
    assert sealed.startswith(MAGIC)
    assert data[:4096] not in sealed
    assert _plain(vault, tmp_path / "a") == data
    vault.seal_chunks([], tmp_path / "empty")
    assert _plain(vault, tmp_path / "empty") == b""
    cases = {
        "flipped": sealed[:100] + bytes([sealed[100] ^ 1]) + sealed[101:],
        "cut": sealed[: len(sealed) - (len(data) - (2 << 20)) - 20],
        "extended": sealed + sealed[len(MAGIC) + 8 : len(MAGIC) + 8 + 64],
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(VaultError):
            _plain(vault, tmp_path / name)
    (tmp_path / "renamed").write_bytes(sealed)
    with pytest.raises(VaultError, match="altered"):
        _plain(vault, tmp_path / "renamed")
    with pytest.raises(VaultError, match="altered"):
        _plain(MediaVault(os.urandom(32)), tmp_path / "a")  # another node's key
    (tmp_path / "plain").write_bytes(data[:100])
    with pytest.raises(VaultError, match="not a sealed"):
        _plain(vault, tmp_path / "plain")


def test_the_media_key_is_created_private_and_refused_when_others_can_read_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "survey-media.key"
    key = load_or_create_media_key(path)
    assert len(key) == 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_media_key(path) == key
    path.chmod(0o640)
    with pytest.raises(SurveyError, match="chmod 600"):
        load_or_create_media_key(path)


def test_a_survey_with_a_vault_keeps_no_plain_media_and_its_report_verifies_with_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world: World = make_world(tmp_path)
    key_file = tmp_path / "survey-media.key"
    vault = MediaVault(load_or_create_media_key(key_file))
    base = world.hub.config
    now = datetime.now(UTC)
    config = RoomConfig(node_id=base.node_id, join_key=base.join_key, seal=base.seal,
                        media_root=base.media_root, clock=lambda: now, vault=vault)  # fmt: skip
    room = SurveyRoom(make_plan(now), config)
    room.site_live()
    recorder = SegmentRecorder(room.media_dir, now_ms=room.now_ms, on_segment=room.record,
                               with_audio=False, vault=vault)  # fmt: skip
    sink = FrameSink(100)
    for i in range(12):
        frame = av.VideoFrame(320, 240, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes([i * 20]) * plane.buffer_size)
        sink.offer((i * 0.05, frame))
    sink.close()
    asyncio.run(asyncio.wait_for(recorder.run(sink), 30))
    room.snapshot(INSPECTOR, PNG)
    room.end(INSPECTOR, Event.COMPLETE)
    answers = [ChecklistAnswer("kitchen-layout", Answer.FAIL, note="油烟机未清洗"),
               ChecklistAnswer("fire-exit", Answer.PASS)]  # fmt: skip
    token = room.report(INSPECTOR, answers, Verdict.FAIL)
    (segment,) = [e.body for e in room.chain.entries if isinstance(e.body, Segment)]
    on_disk = (room.media_dir / segment.name).read_bytes()
    assert on_disk.startswith(MAGIC)  # not Matroska: ffmpeg cannot read what is at rest
    with pytest.raises(av.error.InvalidDataError):
        av.open(io.BytesIO(on_disk))
    with av.open(io.BytesIO(_plain(vault, room.media_dir / segment.name))) as container:
        assert sum(1 for _ in container.decode(video=0)) == segment.frames == 12
    assert PNG not in (room.media_dir / "snap-0001.png").read_bytes()
    assert not list(room.media_dir.glob("*.partial"))
    bundle = TrustBundle.from_pem(world.bundle_path.read_bytes())
    at = now + timedelta(seconds=1)
    assert verify_report(token, bundle, room.media_dir, at, vault).ok
    blind = verify_report(token, bundle, room.media_dir, at)
    # read without the key: each file is said to be sealed, not altered (the alert of a
    # refused report sends staff to exactly this command)
    assert {f.code for f in blind.failures} == {"media-sealed"}
    args = ["survey", "verify", str(room.media_dir / "report.jws"), "--media",
            str(room.media_dir), "--trust", str(world.bundle_path)]  # fmt: skip
    capsys.readouterr()
    assert cli_main([*args, "--media-key", str(key_file)]) == 0
    assert "VALID" in capsys.readouterr().out
    assert cli_main(args) == 1
    assert "--media-key" in capsys.readouterr().err
    data = bytearray(on_disk)
    data[len(data) // 2] ^= 1
    (room.media_dir / segment.name).write_bytes(bytes(data))
    capsys.readouterr()
    assert cli_main([*args, "--media-key", str(key_file)]) == 1
    assert f"error[media-digest-mismatch]: {segment.name} was altered" in capsys.readouterr().err


def test_a_worker_never_reads_the_media_key_another_is_still_creating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers of a node start at once: the first is held while it makes its key,
    the second starts meanwhile. The second sees no key file or a whole one (never an
    empty one: 'does not hold a 32-byte key' stopped a worker in CI), and both end with
    the same key."""
    import secrets
    import threading

    path = tmp_path / "survey-media.key"
    holding, go = threading.Event(), threading.Event()
    real = secrets.token_bytes

    def held_first(n: int) -> bytes:
        if threading.current_thread().name == "first":
            holding.set()
            assert go.wait(10)
        return real(n)

    monkeypatch.setattr(secrets, "token_bytes", held_first)
    keys: dict[str, bytes] = {}
    first = threading.Thread(
        target=lambda: keys.__setitem__("first", load_or_create_media_key(path)), name="first"
    )
    first.start()
    try:
        assert holding.wait(10)
        keys["second"] = load_or_create_media_key(path)  # while the first is held
    finally:
        go.set()
        first.join(10)
    assert keys["first"] == keys["second"]
    assert len(keys["first"]) == 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["survey-media.key"]
