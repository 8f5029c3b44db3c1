"""A real RFC 3161 TSA for tests: ``openssl ts -reply`` behind a tiny aiohttp wrapper.

:func:`make_tsa_pki` makes a test CA and a TSA certificate (extendedKeyUsage
timeStamping, critical) with the ``openssl`` command line; :class:`OpenSslTsa` serves
``POST /tsa`` on loopback and answers each query by running ``openssl ts -reply``. The
TSA can be switched off (503) to show what the node does when it is down.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

OPENSSL = shutil.which("openssl")

_TS_CONFIG = """
[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
other_policies = 1.2.3.4.5
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
# no "certs =": OpenSSL writes a SET OF several certificates unsorted, which strict DER
# parsers (rfc3161-client) refuse; the token carries the TSA certificate alone
ess_cert_id_alg = sha256
"""

_EXT = """
[ ca ]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ tsa ]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature,nonRepudiation
extendedKeyUsage = critical,timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def _run(*args: str, cwd: Path) -> None:
    if OPENSSL is None:
        raise RuntimeError("the openssl command line is needed for the test TSA")
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class TsaPki:
    dir: Path
    ca: Path  # the test CA certificate (PEM): the TSA trust of the nodes
    tsa_cert: Path
    config: Path


def make_tsa_pki(folder: Path) -> TsaPki:
    """A test CA and a TSA certificate valid for 20 years, and the ``openssl ts`` config."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ext.cnf").write_text(_EXT)
    _run(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "7300",
        "-subj",
        "/CN=tongban test TSA root",
        "-extensions",
        "ca",
        "-config",
        "ext.cnf",
        cwd=folder,
    )
    _run(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "tsa.key",
        "-out",
        "tsa.csr",
        "-subj",
        "/CN=tongban test TSA",
        cwd=folder,
    )
    _run(
        "x509",
        "-req",
        "-in",
        "tsa.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "tsa.pem",
        "-days",
        "7299",
        "-extfile",
        "ext.cnf",
        "-extensions",
        "tsa",
        cwd=folder,
    )
    (folder / "serial").write_text("01\n")
    config = folder / "ts.cnf"
    config.write_text(_TS_CONFIG.format(dir=folder))
    return TsaPki(folder, folder / "ca.pem", folder / "tsa.pem", config)


class OpenSslTsa:
    """``POST /tsa`` (application/timestamp-query) answered by ``openssl ts -reply``."""

    def __init__(self, pki: TsaPki) -> None:
        self.pki = pki
        self.up = True
        self.answered = 0
        self._runner: web.AppRunner | None = None
        self.url = ""
        self._lock = asyncio.Lock()

    async def _reply(self, request: web.Request) -> web.Response:
        if not self.up:
            return web.Response(status=503, text="TSA down for the test")
        query = await request.read()
        async with self._lock:  # openssl ts keeps its serial in one file
            qfile, rfile = self.pki.dir / "query.tsq", self.pki.dir / "reply.tsr"
            qfile.write_bytes(query)
            proc = await asyncio.create_subprocess_exec(
                OPENSSL or "openssl",
                "ts",
                "-reply",
                "-config",
                str(self.pki.config),
                "-queryfile",
                str(qfile),
                "-out",
                str(rfile),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            _, err = await proc.communicate()
            if proc.returncode != 0:
                return web.Response(status=400, text=err.decode(errors="replace"))
            self.answered += 1
            return web.Response(body=rfile.read_bytes(), content_type="application/timestamp-reply")

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/tsa", self._reply)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/tsa"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def openssl_ts_verify(response: bytes, data: bytes, pki: TsaPki, folder: Path) -> None:
    """Let ``openssl ts -verify`` judge a DER TimeStampResp over ``data`` (raises if not)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "check.tsr").write_bytes(response)
    (folder / "check.dat").write_bytes(data)
    result = subprocess.run(
        [
            OPENSSL or "openssl",
            "ts",
            "-verify",
            "-in",
            "check.tsr",
            "-data",
            "check.dat",
            "-CAfile",
            str(pki.ca),
            "-untrusted",
            str(pki.tsa_cert),
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0 or "Verification: OK" not in result.stdout:
        raise AssertionError(f"openssl ts -verify refused: {result.stdout}{result.stderr}")
