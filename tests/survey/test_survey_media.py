"""Media files named by the chain: every altered, removed or renamed file is reported."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from pathlib import Path

from survey_support import FinishedSurvey

from remote_survey.entries import Segment
from remote_survey.evidence import EvidenceChain, verify_media


def _problems(survey: FinishedSurvey) -> list[tuple[str, str]]:
    return [(p.name, p.code) for p in verify_media(survey.chain.entries, survey.media)]


def test_untouched_media_verifies(survey: FinishedSurvey) -> None:
    assert _problems(survey) == []


def test_altered_byte_same_size_is_a_digest_mismatch(survey: FinishedSurvey) -> None:
    path = survey.media / "seg-0002.webm"
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    assert _problems(survey) == [("seg-0002.webm", "digest-mismatch")]


def test_appended_bytes_are_a_size_mismatch(survey: FinishedSurvey) -> None:
    with (survey.media / "snap-0001.jpg").open("ab") as f:
        f.write(b"\x00")
    assert _problems(survey) == [("snap-0001.jpg", "size-mismatch")]


def test_removed_file_is_missing(survey: FinishedSurvey) -> None:
    (survey.media / "seg-0004.webm").unlink()
    assert _problems(survey) == [("seg-0004.webm", "missing")]


def test_renamed_files_are_missing_under_their_recorded_names(survey: FinishedSurvey) -> None:
    (survey.media / "seg-0001.webm").rename(survey.media / "seg-0001-renamed.webm")
    (survey.media / "snap-0001.jpg").rename(survey.media / "snap-0002.jpg")
    assert sorted(_problems(survey)) == [
        ("seg-0001.webm", "missing"),
        ("snap-0001.jpg", "missing"),
    ]


def test_swapped_segments_are_both_reported(survey: FinishedSurvey) -> None:
    a, b = survey.media / "seg-0000.webm", survey.media / "seg-0003.webm"
    tmp = survey.media / "swap.tmp"
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    codes = dict(_problems(survey))
    assert set(codes) == {"seg-0000.webm", "seg-0003.webm"}


def test_symlink_is_not_followed(survey: FinishedSurvey, tmp_path: Path) -> None:
    path = survey.media / "seg-0000.webm"
    outside = tmp_path / "outside.webm"
    outside.write_bytes(path.read_bytes())  # identical content, still refused
    path.unlink()
    path.symlink_to(outside)
    assert _problems(survey) == [("seg-0000.webm", "not-a-file")]


def test_directory_in_place_of_a_file(survey: FinishedSurvey) -> None:
    path = survey.media / "seg-0005.webm"
    path.unlink()
    path.mkdir()
    assert _problems(survey) == [("seg-0005.webm", "not-a-file")]


def test_large_file_is_hashed_in_constant_memory(tmp_path: Path) -> None:
    size = 64 * 1024 * 1024
    path = tmp_path / "big.webm"
    with path.open("wb") as f:  # sparse: cheap to create, real bytes to read
        f.truncate(size)
        f.seek(size - 1)
        f.write(b"\x01")
    expected = hashlib.sha256(b"\x00" * (size - 1) + b"\x01").hexdigest()
    chain = EvidenceChain("sv-1").append(Segment("big.webm", size, expected, 0, 10_000), 10_000)
    tracemalloc.start()
    try:
        problems = verify_media(chain.entries, tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert problems == ()
    assert peak < 4 * 1024 * 1024, f"peak Python allocation {peak} bytes for a 64 MiB file"


def test_unreadable_file_is_reported(survey: FinishedSurvey) -> None:
    path = survey.media / "seg-0003.webm"
    os.chmod(path, 0)
    try:
        if os.access(path, os.R_OK):  # running as root: permissions do not apply
            os.chmod(path, 0o644)
            path.unlink()
            expected = "missing"
        else:
            expected = "unreadable"
        assert _problems(survey) == [("seg-0003.webm", expected)]
    finally:
        if path.exists():
            os.chmod(path, 0o644)
