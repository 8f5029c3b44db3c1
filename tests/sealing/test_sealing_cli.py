"""``tongban seal`` / ``tongban open`` with real node directories from the dev PKI."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from certs.pki import init_federation, issue_node
from relay.cli import main
from signing.hpke import HpkeSuite
from signing.sealed import read_header

BIG = 3 * 65536 + 99  # several stream segments, so a late failure follows written plaintext


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("sealing-cli")
    now = datetime.now(UTC)
    init_federation(base / "hubei", "Hubei", now=now)
    init_federation(base / "jiangsu", "Jiangsu", now=now)
    issue_node(
        base / "hubei", "420106", "武昌区政务服务中心", "127.0.0.1", base / "n420106", now=now
    )
    issue_node(
        base / "hubei", "420981", "应城市政务服务中心", "127.0.0.2", base / "n420981", now=now
    )
    for fed in ("hubei", "jiangsu"):
        bundle = (base / fed / "root.pem").read_bytes() + (base / fed / "crl.pem").read_bytes()
        (base / f"{fed}-bundle.pem").write_bytes(bundle)
    plain = base / "application.pdf"
    plain.write_bytes(os.urandom(BIG))
    return {
        "base": base,
        "plain": plain,
        "node": base / "n420106",
        "other": base / "n420981",
        "trust": base / "hubei-bundle.pem",
        "wrong_trust": base / "jiangsu-bundle.pem",
    }


def run(*argv: str | Path) -> int:
    return main([str(a) for a in argv])


def seal(world: dict[str, Path], out: Path, *extra: str | Path) -> int:
    return run("seal", world["plain"], "--to", world["node"] / "node.json", "--out", out, *extra)


def no_leftovers(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.endswith(".part")]


def test_seal_with_trust_then_open_restores_the_file(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed, opened = tmp_path / "a.sealed", tmp_path / "a.pdf"
    assert seal(world, sealed, "--trust", world["trust"]) == 0
    assert "warning" not in capsys.readouterr().err
    with sealed.open("rb") as f:
        header = read_header(f)
    assert header.recipient_node == "420106"
    assert {e.suite for e in header.entries} == set(HpkeSuite) - {HpkeSuite.SM2_SM4GCM}
    assert run("open", sealed, "--node-dir", world["node"], "--out", opened) == 0
    assert opened.read_bytes() == world["plain"].read_bytes()
    assert no_leftovers(tmp_path)


def test_seal_without_trust_warns_and_still_seals(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert seal(world, tmp_path / "b.sealed") == 0
    assert "not verified" in capsys.readouterr().err
    assert (
        run("open", tmp_path / "b.sealed", "--node-dir", world["node"], "--out", tmp_path / "b")
        == 0
    )


def test_suite_choice_seals_to_that_suite_only(world: dict[str, Path], tmp_path: Path) -> None:
    sealed = tmp_path / "pq.sealed"
    assert seal(world, sealed, "--trust", world["trust"], "--suite", "mlkem768x25519") == 0
    with sealed.open("rb") as f:
        assert [e.suite for e in read_header(f).entries] == [HpkeSuite.MLKEM768_X25519]
    assert run("open", sealed, "--node-dir", world["node"], "--out", tmp_path / "pq") == 0


def test_another_node_cannot_open_and_no_output_is_left(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed, out = tmp_path / "c.sealed", tmp_path / "c.pdf"
    assert seal(world, sealed, "--trust", world["trust"]) == 0
    capsys.readouterr()
    assert run("open", sealed, "--node-dir", world["other"], "--out", out) == 1
    assert "error[cannot-open]" in capsys.readouterr().err
    assert not out.exists()
    assert no_leftovers(tmp_path)


@pytest.mark.parametrize("where", ["last-byte", "truncate"])
def test_damaged_file_leaves_no_partial_plaintext(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    sealed, out = tmp_path / "d.sealed", tmp_path / "d.pdf"
    assert seal(world, sealed, "--trust", world["trust"]) == 0
    data = bytearray(sealed.read_bytes())
    if where == "last-byte":
        data[-1] ^= 1
    else:
        del data[-20:]
    sealed.write_bytes(bytes(data))
    capsys.readouterr()
    assert run("open", sealed, "--node-dir", world["node"], "--out", out) == 1
    err = capsys.readouterr().err
    assert err.startswith("tongban: error[cannot-open]: ")
    assert not out.exists()
    assert no_leftovers(tmp_path)


def test_descriptor_from_another_federation_is_refused(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "e.sealed"
    assert seal(world, out, "--trust", world["wrong_trust"]) == 1
    assert "error[descriptor-invalid]" in capsys.readouterr().err
    assert not out.exists()


def test_altered_descriptor_is_refused(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Swap the recipient's listed keys for another node's: the signature no longer holds.
    import json

    node = json.loads((world["node"] / "node.json").read_text())
    other = json.loads((world["other"] / "node.json").read_text())
    head, _, sig = node["descriptor"].split(".")
    forged = {"descriptor": ".".join([head, other["descriptor"].split(".")[1], sig])}
    fake = tmp_path / "node.json"
    fake.write_text(json.dumps(forged))
    out = tmp_path / "f.sealed"
    assert run("seal", world["plain"], "--to", fake, "--out", out, "--trust", world["trust"]) == 1
    assert "error[descriptor-invalid]" in capsys.readouterr().err
    assert not out.exists()


def test_usage_errors_exit_2(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    existing = tmp_path / "exists"
    existing.write_bytes(b"keep me")
    assert seal(world, existing) == 2
    assert existing.read_bytes() == b"keep me"
    missing = tmp_path / "missing"
    assert run("seal", missing, "--to", world["node"] / "node.json", "--out", tmp_path / "x") == 2
    assert run("open", missing, "--node-dir", world["node"], "--out", tmp_path / "y") == 2
    assert run("open", world["plain"], "--node-dir", tmp_path, "--out", tmp_path / "z") == 2
    assert run("seal", world["plain"], "--to", world["plain"], "--out", tmp_path / "w") == 2
    with pytest.raises(SystemExit) as caught:
        seal(world, tmp_path / "v", "--suite", "rsa")
    assert caught.value.code == 2
    assert no_leftovers(tmp_path)
    # an output that is a folder is named as such, not blamed on the input
    capsys.readouterr()
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert seal(world, folder, "--force") == 2
    err = capsys.readouterr().err
    assert f"{folder} is a directory" in err
    assert str(world["plain"]) not in err
    assert no_leftovers(tmp_path)


def test_force_replaces_an_existing_output(world: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "g.sealed"
    out.write_bytes(b"old")
    assert seal(world, out, "--force") == 0
    assert out.read_bytes().startswith(b"TBSEAL\x01")


def test_opened_file_is_private_to_the_owner(world: dict[str, Path], tmp_path: Path) -> None:
    sealed, opened = tmp_path / "h.sealed", tmp_path / "h.pdf"
    assert seal(world, sealed) == 0
    assert run("open", sealed, "--node-dir", world["node"], "--out", opened) == 0
    assert opened.stat().st_mode & 0o077 == 0


def test_installed_tongban_command_seals_and_opens(world: dict[str, Path], tmp_path: Path) -> None:
    tongban = Path(sys.executable).parent / "tongban"
    sealed, opened = tmp_path / "i.sealed", tmp_path / "i.pdf"
    node_json = world["node"] / "node.json"
    trust = world["trust"]
    seal_cmd = [tongban, "seal", world["plain"], "--to", node_json, "--out", sealed]
    result = subprocess.run([*seal_cmd, "--trust", trust], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    result = subprocess.run(
        [tongban, "open", sealed, "--node-dir", world["other"], "--out", opened],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "error[cannot-open]" in result.stderr
    result = subprocess.run(
        [tongban, "open", sealed, "--node-dir", world["node"], "--out", opened],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert opened.read_bytes() == world["plain"].read_bytes()
