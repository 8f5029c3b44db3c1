"""The dev PKI's output is accepted by OpenSSL, an implementation we did not write."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from certs.pki import revoke
from signing.certificates import Purpose, TrustBundle, validate_path
from signing.errors import CertificateRejected
from signing.keys import load_pem_chain

OPENSSL = "openssl"


def _verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OPENSSL, "verify", *args], capture_output=True, text=True, timeout=20, check=False
    )


def test_openssl_verify_accepts_tls_and_seal_certificates(hubei) -> None:
    node = hubei.nodes["420106"]
    for leaf in ("tls.pem", "seal.pem"):
        result = _verify("-CAfile", str(hubei.directory / "root.pem"), str(node / leaf))
        assert result.returncode == 0, result.stderr
        assert "OK" in result.stdout


def test_openssl_verify_with_crl_check_accepts_unrevoked_and_purpose_sslclient(hubei) -> None:
    node = hubei.nodes["420981"]
    fed = hubei.directory
    result = _verify(
        "-crl_check",
        "-CRLfile",
        str(fed / "crl.pem"),
        "-CAfile",
        str(fed / "root.pem"),
        "-purpose",
        "sslclient",
        str(node / "tls.pem"),
    )
    assert result.returncode == 0, result.stderr
    result = _verify(
        "-purpose", "sslserver", "-CAfile", str(fed / "root.pem"), str(node / "tls.pem")
    )
    assert result.returncode == 0, result.stderr


def test_openssl_refuses_seal_certificate_for_tls_server_purpose(hubei) -> None:
    node = hubei.nodes["420106"]
    result = _verify(
        "-purpose",
        "sslserver",
        "-CAfile",
        str(hubei.directory / "root.pem"),
        str(node / "seal.pem"),
    )
    assert result.returncode != 0


def _free_port() -> int:
    from relay.loopback import free_ports

    return free_ports(1)[0]


def _wait_listening(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("openssl s_server exited early")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("openssl s_server did not start listening")


def test_openssl_tls13_mutual_authentication_between_two_nodes(hubei) -> None:
    server, client = hubei.nodes["420106"], hubei.nodes["420981"]
    root = str(hubei.directory / "root.pem")
    port = _free_port()
    srv = subprocess.Popen(
        [
            OPENSSL,
            "s_server",
            "-accept",
            f"127.0.0.1:{port}",
            "-tls1_3",
            "-naccept",
            "2",
            "-cert",
            str(server / "tls.pem"),
            "-key",
            str(server / "tls.key"),
            "-CAfile",
            root,
            "-Verify",
            "1",
            "-verify_return_error",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_listening(port, srv, time.monotonic() + 10)
        cli = subprocess.run(
            [
                OPENSSL,
                "s_client",
                "-connect",
                f"127.0.0.1:{port}",
                "-tls1_3",
                "-cert",
                str(client / "tls.pem"),
                "-key",
                str(client / "tls.key"),
                "-CAfile",
                root,
                "-verify_return_error",
                "-verify_ip",
                "127.0.0.1",
            ],
            input=b"",
            capture_output=True,
            timeout=20,
            check=False,
        )
        out = cli.stdout.decode(errors="replace")
        assert cli.returncode == 0, out + cli.stderr.decode(errors="replace")
        assert "TLSv1.3" in out
        assert "Verify return code: 0 (ok)" in out
        assert "CN = 420106" in out  # the server's identity as the client saw it
    finally:
        srv.kill()
        server_out, _ = srv.communicate(timeout=10)
    text = server_out.decode(errors="replace")
    assert "CN = 420981" in text or "CN=420981" in text, text  # the client cert reached it


def test_openssl_tls13_server_refuses_client_without_certificate(hubei) -> None:
    server = hubei.nodes["420106"]
    root = str(hubei.directory / "root.pem")
    port = _free_port()
    srv = subprocess.Popen(
        [
            OPENSSL,
            "s_server",
            "-accept",
            f"127.0.0.1:{port}",
            "-tls1_3",
            "-naccept",
            "2",
            "-cert",
            str(server / "tls.pem"),
            "-key",
            str(server / "tls.key"),
            "-CAfile",
            root,
            "-Verify",
            "1",
            "-verify_return_error",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_listening(port, srv, time.monotonic() + 10)
        cli = subprocess.run(
            [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_3", "-CAfile", root],
            input=b"hello\n",
            capture_output=True,
            timeout=20,
            check=False,
        )
        # With -naccept the server exits after the refused handshake; waiting for it
        # (rather than killing it at once) lets it report the refusal under load too.
        server_out, _ = srv.communicate(timeout=20)
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.communicate(timeout=10)
    text = server_out.decode(errors="replace") + cli.stdout.decode(errors="replace")
    # The refusal shows as the client's alert ("certificate required") when the client
    # is still reading, or only in the server's log when the client quit first.
    refused = (
        "certificate required" in text
        or "peer did not return a certificate" in text
        or cli.returncode != 0
    )
    assert refused, text


def test_revocation_is_seen_by_validate_path_and_by_openssl(tmp_path, now) -> None:
    from certs.pki import init_federation, issue_node

    fed = tmp_path / "fed"
    init_federation(fed, "Henan", now=now)
    issue_node(fed, "411302", "宛城区政务服务中心", "127.0.0.1", tmp_path / "n", now=now)
    seal_pem = (tmp_path / "n" / "seal.pem").read_bytes()
    chain = load_pem_chain(seal_pem)
    bundle = TrustBundle.from_pem((fed / "root.pem").read_bytes() + (fed / "crl.pem").read_bytes())
    validate_path(chain, bundle, purpose=Purpose.SEAL, at=now, node_id="411302")

    revoke(fed, seal_pem, now=now)
    bundle = TrustBundle.from_pem((fed / "root.pem").read_bytes() + (fed / "crl.pem").read_bytes())
    with pytest.raises(CertificateRejected) as info:
        validate_path(chain, bundle, purpose=Purpose.SEAL, at=now, node_id="411302")
    assert info.value.reason == "revoked"
    # the TLS certificate of the same node is still good
    validate_path(
        load_pem_chain((tmp_path / "n" / "tls.pem").read_bytes()),
        bundle,
        purpose=Purpose.TLS_PEER,
        at=now,
        node_id="411302",
    )
    result = _verify(
        "-crl_check",
        "-CRLfile",
        str(fed / "crl.pem"),
        "-CAfile",
        str(fed / "root.pem"),
        str(tmp_path / "n" / "seal.pem"),
    )
    assert result.returncode != 0
    assert "revoked" in (result.stdout + result.stderr)


def test_two_federations_coexist_in_one_concatenated_bundle(hubei, jiangsu, now) -> None:
    bundle = TrustBundle.from_pem(hubei.bundle_pem() + jiangsu.bundle_pem())
    assert len(bundle.roots) == 2
    assert len(bundle.crls) == 2
    for fed in (hubei, jiangsu):
        for code, directory in fed.nodes.items():
            for leaf, purpose in (("tls.pem", Purpose.TLS_PEER), ("seal.pem", Purpose.SEAL)):
                chain = load_pem_chain((directory / leaf).read_bytes())
                identity = validate_path(chain, bundle, purpose=purpose, at=now, node_id=code)
                assert identity.node_id == code
                assert identity.serial == chain[0].serial_number
    # and openssl agrees with a concatenated CAfile
    both = Path(hubei.directory.parent / "both.pem")
    both.write_bytes(hubei.bundle_pem() + jiangsu.bundle_pem())
    result = _verify("-CAfile", str(both), str(jiangsu.nodes["320982"] / "seal.pem"))
    assert result.returncode == 0, result.stderr
