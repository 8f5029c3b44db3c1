"""Run only inside the network namespace made by test_survey_media_netns.py.

A phone on a network that reaches the node only through a TURN relay: this namespace
(the "carrier") holds a real coturn and two links, one to the phone's namespace
(10.9.1.0/24) and one to the node's (10.9.2.0/24), and forwards no packets between
them. The node (its own process in its namespace) gives the page TURN credentials of
the REST scheme from its shared secret; the page's HTTP reaches it through a TCP proxy
here (as a reverse proxy would), its media only through coturn's relay. Headless
Chromium runs in the phone's namespace. The survey goes live and records segments, and
coturn logged the allocation of the time-limited user name the node issued.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from media_support import WAIT
from playwright.async_api import async_playwright

MS = int(WAIT * 1000)
PHONE_IP, CARRIER_PHONE_SIDE = "10.9.1.2", "10.9.1.1"
NODE_IP, CARRIER_NODE_SIDE = "10.9.2.2", "10.9.2.1"
NODE_PORT, PROXY_PORT, TURN_PORT = 8443, 8080, 3478
HERE = Path(__file__).parent


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def _namespace(name: str, ip: str, carrier_ip: str) -> Iterator[int]:
    """A child network namespace (held by a sleeping process) linked to this one."""
    holder = subprocess.Popen(["unshare", "-n", "sleep", "600"])
    try:
        pid = str(holder.pid)
        for _ in range(200):  # the holder has entered its namespace when they differ
            if os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net"):
                break
            subprocess.run(["sleep", "0.05"], check=True)
        _run("ip", "link", "add", f"to-{name}", "type", "veth", "peer", "name", "eth0",
             "netns", pid)  # fmt: skip
        _run("ip", "addr", "add", f"{carrier_ip}/24", "dev", f"to-{name}")
        _run("ip", "link", "set", f"to-{name}", "up")
        inside = ("nsenter", "-t", pid, "-n")
        _run(*inside, "ip", "link", "set", "lo", "up")
        _run(*inside, "ip", "addr", "add", f"{ip}/24", "dev", "eth0")
        _run(*inside, "ip", "link", "set", "eth0", "up")
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def _tcp_proxy(host: str, port: int, target: tuple[str, int]) -> AsyncIterator[None]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*target)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(handle, host, port)
    try:
        yield
    finally:
        server.close()


async def test_a_phone_behind_a_turn_relay_only_goes_live_with_time_limited_credentials(
    tmp_path: Path,
) -> None:
    Path("/proc/sys/net/ipv4/ip_forward").write_text("0\n")  # the carrier routes nothing
    secret = tmp_path / "turn-secret"
    secret.write_text(secrets.token_hex(24) + "\n")
    log = tmp_path / "turnserver.log"
    turn = subprocess.Popen(
        ["turnserver", "-n", "--no-cli", "--no-tls", "--no-dtls", "--fingerprint",
         f"--listening-ip={CARRIER_PHONE_SIDE}", f"--relay-ip={CARRIER_NODE_SIDE}",
         f"--listening-port={TURN_PORT}", "--min-port=49160", "--max-port=49260",
         "--use-auth-secret", f"--static-auth-secret={secret.read_text().strip()}",
         "--realm=tongban.test", f"--allowed-peer-ip={NODE_IP}", f"--log-file={log}",
         "--simple-log", "--verbose"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    with (
        _namespace("phone", PHONE_IP, CARRIER_PHONE_SIDE) as phone,
        _namespace("node", NODE_IP, CARRIER_NODE_SIDE) as node,
    ):
        # the phone cannot reach the node directly: no route, nothing forwarded
        direct = subprocess.run(
            ["nsenter", "-t", str(phone), "-n", "ip", "route", "get", NODE_IP],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert direct.returncode != 0, direct.stdout
        server = await asyncio.create_subprocess_exec(
            "nsenter", "-t", str(node), "-n", sys.executable, str(HERE / "_turn_node.py"),
            str(tmp_path / "node"), NODE_IP, str(NODE_PORT), str(secret),
            f"turn:{CARRIER_PHONE_SIDE}:{TURN_PORT}?transport=udp",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert server.stdout is not None
        try:
            async with asyncio.timeout(60):
                line = (await server.stdout.readline()).decode()
            assert line.startswith("LINK "), line
            path = line.split(" ", 1)[1].strip()
            browser_sh = tmp_path / "chromium-in-phone-ns.sh"
            browser_sh.write_text(f'#!/bin/sh\nexec nsenter -t {phone} -n /usr/bin/chromium "$@"\n')
            browser_sh.chmod(0o755)
            origin = f"http://{CARRIER_PHONE_SIDE}:{PROXY_PORT}"
            flags = [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                "--disable-features=WebRtcHideLocalIpsWithMdns",
                f"--unsafely-treat-insecure-origin-as-secure={origin}",
            ]  # fmt: skip
            proxy = _tcp_proxy(CARRIER_PHONE_SIDE, PROXY_PORT, (NODE_IP, NODE_PORT))
            async with proxy, async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=str(browser_sh), args=flags, timeout=MS
                )
                try:
                    ctx = await browser.new_context(
                        viewport={"width": 390, "height": 844}, is_mobile=True
                    )
                    page = await ctx.new_page()
                    await page.goto(origin + path, timeout=MS)
                    await page.click("#notice-ack")
                    # live without an inspector: the media reached the node
                    await page.wait_for_selector(
                        "#status[data-state='waiting_inspector']", timeout=3 * MS
                    )
                    async with asyncio.timeout(90):
                        done = (await server.stdout.readline()).decode()
                    assert done.startswith("LIVE "), done
                    assert int(done.split()[1]) >= 2
                finally:
                    await browser.close()
        finally:
            if server.returncode is None:
                server.kill()
            await server.wait()
            turn.terminate()
            turn.wait(timeout=10)
    logged = log.read_text(errors="replace")
    # the relay served the node-issued, time-limited user of this site party
    assert ":sv-media-0001.site-1" in logged, logged[-2000:]
    assert "ALLOCATE processed, success" in logged, logged[-2000:]
