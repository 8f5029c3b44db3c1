"""`tongban sign` / `tongban verify`: exit codes 0 valid, 1 invalid, 2 usage."""

from __future__ import annotations

import pytest

from certs.pki import init_federation, revoke
from relay.cli import main


@pytest.fixture
def signed(node, tmp_path):
    doc = tmp_path / "licence.pdf"
    doc.write_bytes(b"%PDF-1.7 an e-licence\n")
    assert main(["sign", str(doc), "--node-dir", str(node.directory)]) == 0
    return doc, tmp_path / "licence.pdf.jws"


def test_sign_then_verify_prints_node_serial_and_time(node, signed, capsys) -> None:
    doc, sig = signed
    capsys.readouterr()
    assert main(["verify", str(doc), "--sig", str(sig), "--trust", str(node.bundle_path)]) == 0
    out = capsys.readouterr().out
    assert "VALID" in out
    assert "signer node: 371422" in out
    assert f"certificate serial: {node.signer.leaf.serial_number:x}" in out
    assert "signed at: 20" in out
    assert "application/pdf" in out


def test_changed_file_exits_1_with_the_reason(node, signed, capsys) -> None:
    doc, sig = signed
    doc.write_bytes(doc.read_bytes().replace(b"e-licence", b"E-licence"))
    capsys.readouterr()
    assert main(["verify", str(doc), "--sig", str(sig), "--trust", str(node.bundle_path)]) == 1
    err = capsys.readouterr().err
    assert "tongban: error[invalid-signature]:" in err
    assert "digest" in err


def test_other_federation_bundle_exits_1(node, signed, tmp_path, capsys) -> None:
    doc, sig = signed
    init_federation(tmp_path / "other", "Jiangsu", now=node.now)
    bundle = tmp_path / "other" / "root.pem"
    assert main(["verify", str(doc), "--sig", str(sig), "--trust", str(bundle)]) == 1
    assert "untrusted-root" in capsys.readouterr().err


def test_revoked_signer_exits_1(node, tmp_path, capsys) -> None:
    from certs.pki import issue_node

    fed = tmp_path / "fed"
    init_federation(fed, "Hubei", now=node.now)
    issue_node(fed, "420106", "武昌区", "127.0.0.1", tmp_path / "n", now=node.now)
    doc = tmp_path / "doc.txt"
    doc.write_text("hello")
    assert (
        main(["sign", str(doc), "--node-dir", str(tmp_path / "n"), "--out", str(tmp_path / "s")])
        == 0
    )
    revoke(fed, (tmp_path / "n" / "seal.pem").read_bytes(), now=node.now)
    bundle = tmp_path / "b.pem"
    bundle.write_bytes((fed / "root.pem").read_bytes() + (fed / "crl.pem").read_bytes())
    assert main(["verify", str(doc), "--sig", str(tmp_path / "s"), "--trust", str(bundle)]) == 1
    assert "revoked" in capsys.readouterr().err


def test_usage_and_io_errors_exit_2(node, signed, tmp_path, capsys) -> None:
    doc, sig = signed
    trust = str(node.bundle_path)
    assert main(["verify", str(tmp_path / "missing"), "--sig", str(sig), "--trust", trust]) == 2
    assert main(["verify", str(doc), "--sig", str(tmp_path / "missing"), "--trust", trust]) == 2
    junk = tmp_path / "junk.pem"
    junk.write_text("not a bundle")
    assert main(["verify", str(doc), "--sig", str(sig), "--trust", str(junk)]) == 2
    assert main(["sign", str(doc), "--node-dir", str(tmp_path / "nowhere")]) == 2
    assert main(["sign", str(tmp_path / "missing"), "--node-dir", str(node.directory)]) == 2
    with pytest.raises(SystemExit) as info:
        main(["verify", str(doc), "--trust", trust])
    assert info.value.code == 2
    assert "error[usage]" in capsys.readouterr().err
