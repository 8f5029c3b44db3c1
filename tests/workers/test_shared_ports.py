"""Several ``tongban serve`` workers of one node on one host share its ports
(``--reuse-port``, SO_REUSEPORT), refused on SQLite; behind a real HAProxy in TCP mode
a partner's mutual TLS still ends at a worker."""

from __future__ import annotations

import asyncio
import ssl
import sys
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from relay_http_support import Pki, client_ssl, free_ports, write_config
from workerkit import Worker, haproxy

A, B = "420106", "320982"


def _config(pki: Pki, folder: Path, ports: tuple[int, int, int], extra: str = "") -> Path:
    (partner_port,) = free_ports(1)
    return write_config(folder, pki, pki.a, A, ports=ports,
                        partners=((B, pki.b / "node.json", f"https://127.0.0.1:{partner_port}"),),
                        extra=extra)  # fmt: skip


async def test_a_sqlite_node_refuses_to_share_its_ports(workers_pki: Pki, tmp_path: Path) -> None:
    config = _config(workers_pki, tmp_path / "a", free_ports(3))  # type: ignore[arg-type]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay.cli", "serve", "--config", str(config), "--reuse-port",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 2, out.decode()
    assert "tongban: error[reuse-port]:" in err.decode()
    assert "PostgreSQL" in err.decode()
    assert "[database] url" in err.decode()
    assert b"serving" not in out
    assert not (tmp_path / "a" / "data" / "relay.sqlite3").exists()  # nothing was opened


async def _fresh_gets(url: str, n: int, context: ssl.SSLContext | None) -> list[int]:
    """``n`` GETs, each on a new connection (the kernel or HAProxy picks a worker each)."""
    statuses = []
    for _ in range(n):
        connector = aiohttp.TCPConnector(ssl=context if context is not None else False,
                                         force_close=True)  # fmt: skip
        timeout = aiohttp.ClientTimeout(total=30)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get(url, timeout=timeout) as response,
        ):
            statuses.append(response.status)
    return statuses


def _peer_certificate(port: int, context: ssl.SSLContext) -> bytes:
    import socket

    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


@pytest.mark.timeout(300)
async def test_two_workers_share_the_ports_and_haproxy_passes_mutual_tls_through(
    workers_pki: Pki, pg_url: str, tmp_path: Path
) -> None:
    ports = free_ports(4)
    config = _config(workers_pki, tmp_path / "a", ports[:3],  # type: ignore[arg-type]
                     extra=f'[database]\nurl = "{pg_url}"\n')  # fmt: skip
    workers = [Worker(config, tmp_path / f"worker-{i}.log", "--reuse-port") for i in (1, 2)]
    try:
        for worker in workers:
            await worker.start()  # the second binds the ports the first holds
        public = f"http://127.0.0.1:{ports[1]}/healthz"
        assert set(await _fresh_gets(public, 40, None)) == {200}
        assert all(w.served("/healthz") for w in workers), "the kernel used one worker only"

        with haproxy(tmp_path / "haproxy", ports[3], {"shared": ("127.0.0.1", ports[0])}) as lb:
            partner = client_ssl(workers_pki, workers_pki.b)
            url = f"https://127.0.0.1:{ports[3]}/federation/v1/descriptor"
            assert set(await _fresh_gets(url, 40, partner)) == {200}
            assert lb.sessions()["shared"] >= 40
            path = "/federation/v1/descriptor"
            assert all(w.served(path) for w in workers), "one worker answered everything"
            # TLS passes through: the partner sees the node's certificate, not HAProxy's
            own = x509.load_pem_x509_certificate((workers_pki.a / "tls.pem").read_bytes())
            assert _peer_certificate(ports[3], partner) == own.public_bytes(Encoding.DER)
            # and the worker checks the partner's: no client certificate, no answer
            with pytest.raises(aiohttp.ClientError):
                await _fresh_gets(url, 1, client_ssl(workers_pki, None))
        leaders = [w for w in workers if "became the node's leader" in w.log.read_text()]
        assert len(leaders) == 1, "not exactly one leader among the workers"
    finally:
        for worker in workers:
            await worker.stop()
    said = "".join(w.log.read_text(errors="replace") for w in workers)
    assert "Traceback" not in said, said[-3000:]
