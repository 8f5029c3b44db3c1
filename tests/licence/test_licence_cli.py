"""``tongban licence``: issue, status set/show, verify — exit codes and messages."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import zxingcpp
from licence_support import ISSUER, OTHER, PESTICIDE, T0, Federation
from PIL import Image

from relay.cli import main
from signing.licence import parse_licence

BASE = "https://320982.tongban.example/status/7"
ISSUED = T0 + timedelta(hours=1)


def _iso(delta: timedelta) -> str:
    return (T0 + delta).isoformat().replace("+00:00", "Z")


def _issue_args(fed: Federation, node: str = ISSUER) -> list[str]:
    return [
        "licence", "issue", "--node-dir", str(fed.nodes[node]), "--type", PESTICIDE,
        "--number", "苏农药零售2026第0007号", "--holder-id", "91320982MA1XY2Z3Q4",
        "--holder-name", "盐城市丰收农资经营部", "--scope", "农药零售",
        "--valid-days", "30", "--status-index", "7", "--status-url", BASE,
        "--department-en", "Dafeng District Administrative Approval Bureau",
        "--at", ISSUED.isoformat(),
    ]  # fmt: skip


def _issue(fed: Federation, out: Path, *extra: str, node: str = ISSUER) -> int:
    return main([*_issue_args(fed, node), "--out", str(out), *extra])


def _status(fed: Federation, lst: Path, purpose: str, value: int, at: timedelta) -> int:
    return main([
        "licence", "status", "set", "--node-dir", str(fed.nodes[ISSUER]), "--list", str(lst),
        "--index", "7", "--purpose", purpose, "--value", str(value),
        "--url", f"{BASE}/{purpose}", "--at", _iso(at),
    ])  # fmt: skip


def _verify(fed: Federation, tmp: Path, token: str, at: timedelta, *lists: Path) -> int:
    bundle = tmp / "bundle.pem"
    bundle.write_bytes(fed.bundle_pem)
    args = ["licence", "verify", token, "--trust", str(bundle), "--at", _iso(at)]
    for lst in lists:
        args += ["--status-list", str(lst)]
    return main(args)


@pytest.fixture
def issued(fed: Federation, tmp_path: Path) -> Path:
    out = tmp_path / "licence.jwt"
    assert _issue(fed, out) == 0
    return out


def test_issue_writes_token_and_qr_images(
    fed: Federation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    issued = tmp_path / "licence.jwt"
    qr = ["--qr-png", str(tmp_path / "l.png"), "--qr-svg", str(tmp_path / "l.svg")]
    assert _issue(fed, issued, *qr) == 0
    token = issued.read_text().strip()
    licence = parse_licence(token)
    assert licence.issuer_node == ISSUER
    assert licence.department_zh == "盐城市大丰区行政审批局"  # from the seal certificate
    assert [e.list_url for e in licence.status] == [f"{BASE}/revocation", f"{BASE}/suspension"]
    png = issued.with_name("l.png").read_bytes()
    read = zxingcpp.read_barcodes(
        Image.open(io.BytesIO(png)), formats=zxingcpp.BarcodeFormat.QRCode
    )
    assert len(read) == 1
    assert "/v#" in read[0].text  # the compact form's verify URL, not the long token
    assert issued.with_name("l.svg").read_bytes().startswith(b"<svg")
    out = capsys.readouterr().out
    assert "QR version" in out
    assert "level M" in out


def test_verify_lifecycle_valid_revoked(
    fed: Federation, issued: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rev, sus = tmp_path / "rev.jwt", tmp_path / "sus.jwt"
    assert _status(fed, rev, "revocation", 0, timedelta(hours=2)) == 0
    assert _status(fed, sus, "suspension", 0, timedelta(hours=2)) == 0
    capsys.readouterr()
    assert _verify(fed, tmp_path, str(issued), timedelta(days=1), rev, sus) == 0
    assert "VALID" in capsys.readouterr().out
    assert _status(fed, rev, "revocation", 1, timedelta(days=2)) == 0
    capsys.readouterr()
    assert _verify(fed, tmp_path, str(issued), timedelta(days=3), rev, sus) == 1
    captured = capsys.readouterr()
    assert "tongban: error[revoked]:" in captured.err
    assert "revocation   failed [revoked]" in captured.out
    # revocation is permanent
    assert _status(fed, rev, "revocation", 0, timedelta(days=3)) == 1
    assert "error[irreversible]" in capsys.readouterr().err


def test_verify_suspended_then_reinstated(
    fed: Federation, issued: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rev, sus = tmp_path / "rev.jwt", tmp_path / "sus.jwt"
    assert _status(fed, rev, "revocation", 0, timedelta(hours=2)) == 0
    assert _status(fed, sus, "suspension", 1, timedelta(hours=2)) == 0
    token = issued.read_text().strip()  # the token itself on the command line
    assert _verify(fed, tmp_path, token, timedelta(days=1), rev, sus) == 1
    assert "error[suspended]" in capsys.readouterr().err
    assert _status(fed, sus, "suspension", 0, timedelta(days=2)) == 0
    assert _verify(fed, tmp_path, token, timedelta(days=3), rev, sus) == 0
    assert main(["licence", "status", "show", "--list", str(sus), "--index", "7"]) == 0
    assert "index 7: 0" in capsys.readouterr().out


def test_verify_expired_and_tampered(
    fed: Federation, issued: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    roots_only = tmp_path / "roots.pem"  # the test CRL goes stale after 30 days
    roots_only.write_bytes((fed.directory / "root.pem").read_bytes())
    late = _iso(timedelta(days=30, hours=1))  # exp = issued + 30 days, exclusive
    args = ["licence", "verify", str(issued), "--trust", str(roots_only), "--at", late]
    assert main(args) == 1
    assert "tongban: error[expired]: the licence has expired" in capsys.readouterr().err
    token = issued.read_text().strip()
    head, payload, sig = token.split(".")
    flipped = payload[:5] + ("A" if payload[5] != "A" else "B") + payload[6:]
    assert _verify(fed, tmp_path, f"{head}.{flipped}.{sig}", timedelta(days=1)) == 1
    assert "error[signature]" in capsys.readouterr().err


def test_verify_json_report(
    fed: Federation, issued: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    bundle = tmp_path / "b.pem"
    bundle.write_bytes(fed.bundle_pem)
    code = main(["licence", "verify", str(issued), "--trust", str(bundle), "--json",
                 "--at", _iso(timedelta(days=1))])  # fmt: skip
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] is True
    assert doc["licence"]["issuer_node"] == ISSUER
    assert [c["outcome"] for c in doc["checks"]][3:] == ["skipped"] * 3


def test_usage_errors_exit_2(
    fed: Federation, issued: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["licence", "verify", str(issued), "--trust", str(tmp_path / "none.pem")]) == 2
    assert "error[file-not-found]" in capsys.readouterr().err
    bundle = tmp_path / "b.pem"
    bundle.write_bytes(fed.bundle_pem)
    assert main(["licence", "verify", str(issued), "--trust", str(bundle), "--at", "noon"]) == 2
    assert main(["licence", "verify", str(issued), "--trust", str(bundle),
                 "--status-list", str(issued)]) == 2  # fmt: skip
    with pytest.raises(SystemExit) as caught:
        main(["licence", "issue", "--node-dir", str(fed.nodes[ISSUER])])
    assert caught.value.code == 2
    # a node cannot add bits to another node's list
    lst = tmp_path / "l.jwt"
    assert _status(fed, lst, "revocation", 1, timedelta(hours=2)) == 0
    other = ["--node-dir", str(fed.nodes[OTHER]), "--list", str(lst)]
    bit = ["--index", "1", "--purpose", "revocation", "--value", "1"]
    assert main(["licence", "status", "set", *other, *bit]) == 2
    # a time the seal certificate does not cover: every verifier would refuse it
    capsys.readouterr()
    assert _issue(fed, tmp_path / "then.jwt", "--at", "2001-01-01T00:00:00+00:00") == 2
    assert "outside the seal certificate's validity" in capsys.readouterr().err
    assert not (tmp_path / "then.jwt").exists()
    # the TLS key and certificate put where the seal belongs: refused before signing
    swapped = tmp_path / "swapped"
    shutil.copytree(fed.nodes[ISSUER], swapped)
    for kind in ("key", "pem"):
        (swapped / f"seal.{kind}").write_bytes((swapped / f"tls.{kind}").read_bytes())
    capsys.readouterr()
    issue = [a if a != str(fed.nodes[ISSUER]) else str(swapped) for a in _issue_args(fed)]
    assert main([*issue, "--out", str(tmp_path / "tls.jwt")]) == 2
    assert "holds no usable seal" in capsys.readouterr().err
    assert main(["sign", str(bundle), "--node-dir", str(swapped)]) == 2
    assert "holds no usable seal" in capsys.readouterr().err
    # full-width digits are no number a person typed as one (int() takes them)
    with pytest.raises(SystemExit) as caught:
        _issue(fed, tmp_path / "wide.jwt", "--valid-days", "３６５")
    assert caught.value.code == 2
    assert "not a whole number" in capsys.readouterr().err
    # an index no list holds: the licence could never be revoked
    capsys.readouterr()
    with pytest.raises(SystemExit) as caught:
        _issue(fed, tmp_path / "far.jwt", "--status-index", "131072")
    assert caught.value.code == 2
    assert "outside the lists' 0..131071" in capsys.readouterr().err
    assert not (tmp_path / "far.jwt").exists()
    # a list smaller than the 131,072 entries §9.2 asks for: a usage error, no traceback
    capsys.readouterr()
    small = ["--node-dir", str(fed.nodes[ISSUER]), "--list", str(tmp_path / "small.jwt")]
    url = ["--url", f"{BASE}/revocation", "--size", "1000"]
    assert main(["licence", "status", "set", *small, *bit, *url]) == 2
    assert "error[usage]" in capsys.readouterr().err
    # nor one larger than any verifier decompresses (its own `status show` refused it)
    huge = ["--url", f"{BASE}/revocation", "--size", str(16 * 1024 * 1024 * 8 + 8)]
    assert main(["licence", "status", "set", *small, *bit, *huge]) == 2
    assert "at most" in capsys.readouterr().err
    assert not (tmp_path / "small.jwt").exists()


def test_installed_entry_point_exit_code(fed: Federation, issued: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "b.pem"
    bundle.write_bytes(fed.bundle_pem)
    run = subprocess.run(
        [sys.executable, "-m", "relay.cli", "licence", "verify", str(issued), "--trust",
         str(bundle), "--at", _iso(timedelta(days=40))],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 1
    assert "tongban: error[" in run.stderr
