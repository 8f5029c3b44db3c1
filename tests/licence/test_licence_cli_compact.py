"""``tongban licence issue/verify`` with the compact form: the QR holds the verify URL,
and ``verify`` takes that URL (or the bare credential) offline with ``--issuer``."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
import zxingcpp
from licence_support import ISSUER, OTHER, PESTICIDE, T0, Federation
from PIL import Image

from relay.cli import main
from signing.digits import digits_decode, digits_encode
from signing.licence_compact import credential_from_text

ISSUED = T0 + timedelta(hours=1)


def _iso(delta: timedelta) -> str:
    return (T0 + delta).isoformat().replace("+00:00", "Z")


def _public(fed: Federation, node: str) -> str:
    descriptor = json.loads((fed.nodes[node] / "node.json").read_text())["descriptor"]
    import base64

    payload = descriptor.split(".")[1]
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(body["endpoints"]["public"]).rstrip("/")


def _issue(fed: Federation, tmp: Path, *, node: str = ISSUER, days: int = 30) -> str:
    status = f"{_public(fed, node)}/.well-known/tongban/status"
    url_file = tmp / f"{node}-{days}.url"
    assert main([
        "licence", "issue", "--node-dir", str(fed.nodes[node]), "--type", PESTICIDE,
        "--number", "苏农药零售2026第0007号", "--holder-id", "91320982MA1XY2Z3Q4",
        "--holder-name", "盐城市丰收农资经营部", "--scope", "农药零售",
        "--valid-days", str(days), "--status-index", "7", "--status-url", status,
        "--at", ISSUED.isoformat(), "--out", str(tmp / f"{node}-{days}.jwt"),
        "--url-out", str(url_file), "--qr-png", str(tmp / f"{node}-{days}.png"),
        "--print", str(tmp / f"{node}-{days}"),
    ]) == 0  # fmt: skip
    return url_file.read_text().strip()


def _status(fed: Federation, lst: Path, purpose: str, value: int) -> None:
    url = f"{_public(fed, ISSUER)}/.well-known/tongban/status/{purpose}"
    assert main([
        "licence", "status", "set", "--node-dir", str(fed.nodes[ISSUER]), "--list", str(lst),
        "--index", "7", "--purpose", purpose, "--value", str(value), "--url", url,
        "--at", _iso(timedelta(hours=2)),
    ]) == 0  # fmt: skip


def _verify(fed: Federation, tmp: Path, licence: str, *extra: str, at=timedelta(days=1)) -> int:
    bundle = tmp / "bundle.pem"
    bundle.write_bytes(fed.bundle_pem)
    return main(["licence", "verify", licence, "--trust", str(bundle), "--at", _iso(at), *extra])


def _issuer(fed: Federation, node: str = ISSUER) -> list[str]:
    return ["--issuer", str(fed.nodes[node] / "node.json")]


def test_issue_puts_the_verify_url_in_the_qr_and_verify_accepts_it(
    fed: Federation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _issue(fed, tmp_path)
    out = capsys.readouterr().out
    assert url.startswith(_public(fed, ISSUER) + "/v#")
    assert f"verify URL ({len(url)} characters)" in out
    assert "level M" in out
    for size, module in (("a4", "0.5"), ("card", "0.34")):
        page = (tmp_path / f"{ISSUER}-30-{size}.html").read_text()
        assert f'data-module-mm="{module}"' in page
        assert "盐城市丰收农资经营部" in page
        assert "<svg" in page
    png = (tmp_path / f"{ISSUER}-30.png").read_bytes()
    assert [
        r.text
        for r in zxingcpp.read_barcodes(
            Image.open(io.BytesIO(png)), formats=zxingcpp.BarcodeFormat.QRCode
        )
    ] == [url]
    rev, sus = tmp_path / "rev.jwt", tmp_path / "sus.jwt"
    _status(fed, rev, "revocation", 0)
    _status(fed, sus, "suspension", 0)
    lists = ["--status-list", str(rev), "--status-list", str(sus)]
    capsys.readouterr()
    assert _verify(fed, tmp_path, url, *_issuer(fed), *lists) == 0
    assert "\nVALID (not checked: entitlement)\n" in capsys.readouterr().out
    bare = credential_from_text(url)  # the credential without the URL, and from a file
    assert _verify(fed, tmp_path, bare, *_issuer(fed), *lists) == 0
    (tmp_path / "l.txt").write_text(url + "\n")
    assert _verify(fed, tmp_path, str(tmp_path / "l.txt"), *_issuer(fed), *lists) == 0


def test_verify_says_which_issuer_certificate_it_lacks(
    fed: Federation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _issue(fed, tmp_path)
    capsys.readouterr()
    assert _verify(fed, tmp_path, url) == 1
    captured = capsys.readouterr()
    assert "error[unknown-issuer]" in captured.err
    assert "--issuer" in captured.err
    assert "no issuer certificate for key id" in captured.out
    # a trust list holding only another office does not help either
    descriptor = json.loads((fed.nodes[OTHER] / "node.json").read_text())["descriptor"]
    (tmp_path / "trust.json").write_text(json.dumps({"descriptors": [descriptor]}))
    assert _verify(fed, tmp_path, url, "--issuer", str(tmp_path / "trust.json")) == 1
    assert "error[unknown-issuer]" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["revoked", "suspended", "expired", "tampered"])
def test_verify_gives_each_verdict_for_the_compact_form(
    fed: Federation, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    url = _issue(fed, tmp_path, days=2 if case == "expired" else 30)
    rev, sus = tmp_path / "rev.jwt", tmp_path / "sus.jwt"
    _status(fed, rev, "revocation", int(case == "revoked"))
    _status(fed, sus, "suspension", int(case == "suspended"))
    extra = [*_issuer(fed), "--status-list", str(rev), "--status-list", str(sus)]
    at = timedelta(days=3 if case == "expired" else 1)
    if case == "tampered":
        data = bytearray(digits_decode(credential_from_text(url)))
        data[-70] ^= 1  # a bit of the claims (the 64-byte signature is the tail)
        url = digits_encode(bytes(data))
    capsys.readouterr()
    assert _verify(fed, tmp_path, url, *extra, at=at) == 1
    err = capsys.readouterr().err
    code = {"tampered": "signature"}.get(case, case)
    assert f"error[{code}]" in err or (case == "tampered" and "error[malformed]" in err)
