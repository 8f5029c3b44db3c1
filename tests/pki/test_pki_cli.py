"""`tongban pki` commands: exit codes, refusals and private key file modes."""

from __future__ import annotations

import stat

import pytest

from relay.cli import main


@pytest.fixture
def federation(tmp_path):
    assert main(["pki", "init-federation", "--out", str(tmp_path / "fed"), "--name", "Hubei"]) == 0
    return tmp_path / "fed"


def _issue(federation, out, node="420106", *extra: str) -> int:
    return main(
        [
            "pki",
            "issue-node",
            "--federation",
            str(federation),
            "--node",
            node,
            "--name",
            "武昌区政务服务中心",
            "--host",
            "127.0.0.1",
            "--out",
            str(out),
            *extra,
        ]
    )


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_key_files_are_mode_0600(federation, tmp_path) -> None:
    assert _issue(federation, tmp_path / "node") == 0
    assert _mode(federation / "root.key") == 0o600
    for name in ("tls.key", "seal.key", "hpke-x25519.key", "hpke-mlkem768x25519.key"):
        assert _mode(tmp_path / "node" / name) == 0o600, name
    assert (tmp_path / "node" / "root.pem").read_bytes() == (federation / "root.pem").read_bytes()


@pytest.mark.parametrize("code", ["12345", "1234567", "abcdef", "000000", "42-106", "４２０１０６"])
def test_bad_node_codes_are_refused_with_exit_2(federation, tmp_path, capsys, code) -> None:
    assert _issue(federation, tmp_path / "node", code) == 2
    err = capsys.readouterr().err
    assert "tongban: error[pki]:" in err
    assert "6-digit" in err
    assert not (tmp_path / "node").exists()


def test_existing_node_directory_is_not_overwritten(federation, tmp_path, capsys) -> None:
    out = tmp_path / "node"
    assert _issue(federation, out) == 0
    before = (out / "seal.key").read_bytes()
    assert _issue(federation, out) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (out / "seal.key").read_bytes() == before


def test_existing_federation_is_not_overwritten(federation, capsys) -> None:
    key = (federation / "root.key").read_bytes()
    assert main(["pki", "init-federation", "--out", str(federation), "--name", "X"]) == 2
    assert (federation / "root.key").read_bytes() == key


def test_revoke_command_reissues_the_crl(federation, tmp_path, capsys) -> None:
    from cryptography import x509

    assert _issue(federation, tmp_path / "node") == 0
    seal = x509.load_pem_x509_certificate((tmp_path / "node" / "seal.pem").read_bytes())
    assert (
        main(
            [
                "pki",
                "revoke",
                "--federation",
                str(federation),
                "--cert",
                str(tmp_path / "node" / "seal.pem"),
            ]
        )
        == 0
    )
    crl = x509.load_pem_x509_crl((federation / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(seal.serial_number) is not None


def test_revoke_refuses_a_certificate_of_another_federation(federation, tmp_path) -> None:
    other = tmp_path / "other"
    assert main(["pki", "init-federation", "--out", str(other), "--name", "Jiangsu"]) == 0
    assert (
        main(["pki", "revoke", "--federation", str(federation), "--cert", str(other / "root.pem")])
        == 2
    )
    assert (
        main(
            [
                "pki",
                "revoke",
                "--federation",
                str(federation),
                "--cert",
                str(tmp_path / "missing.pem"),
            ]
        )
        == 2
    )


def test_issue_node_needs_both_urls_or_neither(federation, tmp_path) -> None:
    assert _issue(federation, tmp_path / "n", "420106", "--public-url", "https://x") == 2


@pytest.mark.parametrize("bad", ["notaurl", "ftp://x", "https://"])
def test_issue_node_refuses_an_endpoint_no_directory_would_take(
    federation, tmp_path, capsys, bad
) -> None:
    """It issued the node with exit 0, and sign-directory then left the node out."""
    urls = ["--federation-url", "https://127.0.0.1:8443", "--public-url", bad]
    assert _issue(federation, tmp_path / "n", "420106", *urls) == 2
    assert "is not an http(s) URL with a host" in capsys.readouterr().err
    assert not (tmp_path / "n").exists()


def test_installed_tongban_command_refuses_a_bad_code_with_exit_2(tmp_path) -> None:
    """The real console script, in a child process: exit status and stderr format."""
    import subprocess
    import sys
    from pathlib import Path

    tongban = Path(sys.executable).with_name("tongban")
    fed = tmp_path / "fed"
    ok = subprocess.run(
        [str(tongban), "pki", "init-federation", "--out", str(fed), "--name", "Hubei"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [
            str(tongban),
            "pki",
            "issue-node",
            "--federation",
            str(fed),
            "--node",
            "42O106",
            "--name",
            "x",
            "--host",
            "127.0.0.1",
            "--out",
            str(tmp_path / "n"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("tongban: error[pki]: node code '42O106' is not a 6-digit")


def test_renew_crl_keeps_the_revoked_and_moves_next_update_past_a_future_instant(
    federation, tmp_path
) -> None:
    from datetime import UTC, datetime, timedelta

    from cryptography import x509

    from certs.pki import CRL_VALIDITY, renew_crl, revoke

    assert _issue(federation, tmp_path / "node") == 0
    seal_pem = (tmp_path / "node" / "seal.pem").read_bytes()
    seal = x509.load_pem_x509_certificate(seal_pem)
    revoke(federation, seal_pem, now=datetime.now(UTC))
    before = x509.load_pem_x509_crl((federation / "crl.pem").read_bytes())
    later = before.next_update_utc + timedelta(days=400)  # long stale by then
    crl = renew_crl(federation, now=later)
    assert crl.next_update_utc == later.replace(microsecond=0) + CRL_VALIDITY
    assert crl.get_revoked_certificate_by_serial_number(seal.serial_number) is not None
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number == before.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
    assert x509.load_pem_x509_crl((federation / "crl.pem").read_bytes()) == crl


def test_renew_crl_command_reissues_a_fresh_crl(federation, capsys) -> None:
    from cryptography import x509

    before = x509.load_pem_x509_crl((federation / "crl.pem").read_bytes())
    assert main(["pki", "renew-crl", "--federation", str(federation)]) == 0
    after = x509.load_pem_x509_crl((federation / "crl.pem").read_bytes())
    assert after.next_update_utc >= before.next_update_utc
    assert after.extensions != before.extensions  # a new CRL number
    assert "crl.pem re-issued, next update" in capsys.readouterr().out


def test_renew_crl_refuses_a_directory_that_is_no_federation(tmp_path, capsys) -> None:
    assert main(["pki", "renew-crl", "--federation", str(tmp_path / "nothing")]) == 2
    assert "not a readable federation directory" in capsys.readouterr().err


def test_a_csr_to_a_folder_that_is_not_there_makes_no_key(federation, tmp_path, capsys) -> None:
    """The new key used to be written first: every later attempt then refused with
    "renewal is pending" until someone deleted it."""
    assert _issue(federation, tmp_path / "node") == 0
    out = tmp_path / "no-such-folder" / "tls.csr"
    assert main(["pki", "csr", "--node-dir", str(tmp_path / "node"), "--out", str(out)]) == 2
    assert "error[file-unwritable]" in capsys.readouterr().err
    assert not (tmp_path / "node" / "tls.key.next").exists()
    good = tmp_path / "tls.csr"
    assert main(["pki", "csr", "--node-dir", str(tmp_path / "node"), "--out", str(good)]) == 0
    assert good.read_bytes().startswith(b"-----BEGIN CERTIFICATE REQUEST-----")


def test_a_crl_is_not_signed_with_a_key_that_is_not_the_roots(federation, tmp_path, capsys) -> None:
    """``root.pem`` replaced by a node certificate: `pki crl` re-issued the CRL naming
    that node as its issuer, signed by the root key, with exit 0."""
    assert _issue(federation, tmp_path / "node") == 0
    before = (federation / "crl.pem").read_bytes()
    (federation / "root.pem").write_bytes((tmp_path / "node" / "tls.pem").read_bytes())
    assert main(["pki", "crl", "--federation", str(federation)]) == 2
    assert "root.key is not the key of root.pem" in capsys.readouterr().err
    assert (federation / "crl.pem").read_bytes() == before
