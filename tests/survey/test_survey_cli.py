"""``tongban survey verify``: exit 0 valid, 1 invalid (each failure listed), 2 usage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from survey_support import FinishedSurvey, Pki

from relay.cli import main


def _write_report(survey: FinishedSurvey, tmp_path: Path) -> Path:
    path = tmp_path / "report.jws"
    path.write_text(survey.token + "\n", encoding="ascii")
    return path


def _args(report: Path, survey: FinishedSurvey, pki: Pki) -> list[str]:
    return [
        "survey",
        "verify",
        str(report),
        "--media",
        str(survey.media),
        "--trust",
        str(pki.bundle_path),
        "--at",
        survey.verify_at.isoformat(),
    ]


def test_valid_report_exits_0(
    survey: FinishedSurvey, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _write_report(survey, tmp_path)
    assert main(_args(report, survey, pki)) == 0
    out = capsys.readouterr().out
    assert f"{report}: VALID" in out
    assert "surveyed by node 420106" in out
    assert "verdict: pass_with_corrections" in out
    assert "within 20 m for 83.3% of the session" in out


def test_tampered_media_exits_1_listing_each_failure(
    survey: FinishedSurvey, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _write_report(survey, tmp_path)
    (survey.media / "seg-0002.webm").write_bytes(b"x" * 3002)
    (survey.media / "snap-0001.jpg").unlink()
    assert main(_args(report, survey, pki)) == 1
    err = capsys.readouterr().err
    assert "tongban: error[media-digest-mismatch]: seg-0002.webm was altered" in err
    assert "tongban: error[media-missing]: snap-0001.jpg is missing" in err
    assert "INVALID (2 problems)" in err


def test_expired_check_time_reports_the_certificate_cause(
    survey: FinishedSurvey, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _write_report(survey, tmp_path)
    args = _args(report, survey, pki)
    args[-1] = "2040-01-01T00:00:00+00:00"
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "error[signature]" in err
    assert "expired" in err


def test_missing_report_file_exits_2(
    survey: FinishedSurvey, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_args(tmp_path / "nope.jws", survey, pki)) == 2
    assert "error[file-not-found]" in capsys.readouterr().err


def test_missing_media_dir_exits_2(
    survey: FinishedSurvey, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _args(_write_report(survey, tmp_path), survey, pki)
    args[args.index("--media") + 1] = str(tmp_path / "no-media")
    assert main(args) == 2
    assert "error[file-not-found]" in capsys.readouterr().err


def test_bad_trust_bundle_exits_2(
    survey: FinishedSurvey, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bogus = tmp_path / "bundle.pem"
    bogus.write_text("not a bundle\n")
    args = _args(_write_report(survey, tmp_path), survey, pki)
    args[args.index("--trust") + 1] = str(bogus)
    assert main(args) == 2
    assert "error[bad-trust-bundle]" in capsys.readouterr().err


def test_missing_option_and_bad_time_exit_2(
    survey: FinishedSurvey, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _write_report(survey, tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["survey", "verify", str(report), "--trust", str(pki.bundle_path)])
    assert info.value.code == 2
    args = _args(report, survey, pki)
    args[-1] = "yesterday"
    assert main(args) == 2
    assert "error[usage]" in capsys.readouterr().err


def test_real_process_exit_codes(survey: FinishedSurvey, pki: Pki, tmp_path: Path) -> None:
    report = _write_report(survey, tmp_path)
    cmd = [sys.executable, "-m", "relay.cli", *_args(report, survey, pki)]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0, ok.stderr
    (survey.media / "evidence.jsonl").write_bytes(b"")
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 1
    assert "error[chain-length-mismatch]" in bad.stderr


def test_repeated_failures_are_counted_not_flooded(
    survey: FinishedSurvey, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _write_report(survey, tmp_path)
    evidence = survey.media / "evidence.jsonl"
    lines = evidence.read_bytes().splitlines(keepends=True)
    evidence.write_bytes(b"".join(reversed(lines)))  # 24 entries, every link broken
    assert main(_args(report, survey, pki)) == 1
    err = capsys.readouterr().err
    assert err.count("error[chain-broken-link]: entry") == 20
    assert "error[chain-broken-link]: ... and 4 more chain-broken-link failures" in err
