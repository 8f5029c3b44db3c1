"""A whole node (three listeners, outbox task) over a fake core; graceful shutdown; CLI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from relay_http_fake_core import RunningFakeCore
from relay_http_support import Pki, client_ssl, free_ports, write_config

from relay.cli import main
from relay.config import NodeConfig, load_config
from relay.core.ports import PeerLink
from relay.node import CoreHandle, Node
from relay.tls import BundleSource


class Built:
    core: RunningFakeCore | None = None
    closed = False


def _factory(folder: Path, built: Built, core_class: type[RunningFakeCore] = RunningFakeCore):
    def factory(
        config: NodeConfig, link: PeerLink, bundle: BundleSource, clock: object
    ) -> CoreHandle:
        built.core = core_class(folder)

        def close() -> None:
            built.closed = True

        return CoreHandle(core=built.core, storage_ok=lambda: not built.closed, close=close)

    return factory


@pytest.fixture
async def running(pki: Pki, tmp_path: Path) -> AsyncIterator[tuple[Node, Built, Path]]:
    ports = free_ports(3)
    config_path = write_config(
        tmp_path / "node",
        pki,
        pki.a,
        "420106",
        ports=(ports[0], ports[1], ports[2]),
        partners=(("320982", pki.b / "node.json", "https://127.0.0.1:1"),),
    )
    built = Built()
    node = Node(load_config(config_path), core_factory=_factory(tmp_path, built))
    await node.start()
    try:
        yield node, built, config_path
    finally:
        await node.stop()


async def test_node_serves_three_listeners_with_readiness(
    pki: Pki, running: tuple[Node, Built, Path]
) -> None:
    node, built, _ = running
    assert set(node.urls) == {"federation", "public", "staff"}
    assert node.urls["public"].startswith("http://")
    async with aiohttp.ClientSession() as session:
        ready = await session.get(node.urls["public"] + "/readyz")
        assert ready.status == 200
        assert (await ready.json())["checks"] == {"storage": True, "outbox": True}
        resp = await session.post(
            node.urls["federation"] + "/federation/v1/packets",
            json={"packets": ["x"]},
            ssl=client_ssl(pki, pki.b),
        )
        assert resp.status == 200
        staff = await session.get(node.urls["staff"] + "/staff/v1/inbox", ssl=client_ssl(pki, None))
        assert staff.status == 401
    assert built.core is not None
    assert built.core.batches == [("320982", ["x"])]
    assert built.core.outbox_runs == 1


async def test_oversize_header_is_refused_by_the_parser(running: tuple[Node, Built, Path]) -> None:
    node, _, _ = running
    async with aiohttp.ClientSession() as session:
        resp = await session.get(node.urls["public"] + "/healthz", headers={"X-Big": "a" * 10_000})
        assert resp.status in (400, 431)


async def test_graceful_shutdown_finishes_in_flight_requests(pki: Pki, tmp_path: Path) -> None:
    gate = asyncio.Event()
    entered = asyncio.Event()

    class Slow(RunningFakeCore):
        async def receive_batch(self, peer_id: str, packets: list[str]) -> list[str]:  # type: ignore[override]
            entered.set()
            await gate.wait()
            return await super().receive_batch(peer_id, packets)

    ports = free_ports(3)
    config_path = write_config(
        tmp_path / "n",
        pki,
        pki.a,
        "420106",
        ports=ports,  # type: ignore[arg-type]
        partners=(("320982", pki.b / "node.json", "https://127.0.0.1:1"),),
    )
    built = Built()
    node = Node(load_config(config_path), core_factory=_factory(tmp_path, built, Slow))
    await node.start()
    url = node.urls["federation"] + "/federation/v1/packets"
    async with aiohttp.ClientSession() as session:
        in_flight = asyncio.ensure_future(
            session.post(url, json={"packets": ["late"]}, ssl=client_ssl(pki, pki.b))
        )
        await entered.wait()
        stopping = asyncio.ensure_future(node.stop())
        done, _ = await asyncio.wait({stopping}, timeout=0.2)
        assert not done, "stop() returned while a request was in flight"
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.post(
                node.urls["public"] + "/healthz",
                ssl=False,
            )
        gate.set()
        resp = await in_flight
        assert resp.status == 200
        assert (await resp.json())["receipts"] == ["receipt-of-late"]
        await stopping
    assert built.closed


async def test_cli_send_and_inbox_over_the_staff_api(
    pki: Pki, running: tuple[Node, Built, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, built, config_path = running
    content = tmp_path / "content.json"
    content.write_text(json.dumps({"applicant": "张三"}, ensure_ascii=False), encoding="utf-8")
    scan = tmp_path / "id-card.pdf"
    scan.write_bytes(b"%PDF scan " * 50_000)
    argv = ["send", "--config", str(config_path), "--to", "320982", "--case", "C-1"]
    argv += ["--matter", "business-licence", "--action", "submit", "--content", str(content)]
    argv += ["--attach", str(scan)]
    code = await asyncio.to_thread(main, argv)
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out)["to"] == "320982"
    assert built.core is not None
    assert built.core.created[0]["content"] == {"applicant": "张三"}
    assert len(built.core.complete) == 1

    code = await asyncio.to_thread(main, ["inbox", "--config", str(config_path)])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "case C1" in out.out
    assert len(out.out.strip().splitlines()) == 2

    code = await asyncio.to_thread(
        main, ["inbox", "--config", str(config_path), "--token", "not-a-token"]
    )
    assert code == 1
    assert "tongban: error[token-invalid]" in capsys.readouterr().err
    # a token with a line break was a traceback (aiohttp refuses it as a header)
    code = await asyncio.to_thread(
        main, ["inbox", "--config", str(config_path), "--token", "abc\r\nX: 1"]
    )
    assert code == 2
    assert "tongban: error[usage]" in capsys.readouterr().err
    # an attachment that is a folder says so (it said "does not exist")
    code = await asyncio.to_thread(main, [*argv[:-1], str(tmp_path)])
    assert code == 2
    assert "is a directory" in capsys.readouterr().err


async def test_cli_send_refused_by_agreement_exits_1(
    running: tuple[Node, Built, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, built, config_path = running
    content = tmp_path / "c.json"
    content.write_text("{}", encoding="utf-8")
    argv = ["send", "--config", str(config_path), "--to", "320982", "--case", "C-2"]
    argv += ["--matter", "m", "--action", "forbidden", "--content", str(content)]
    code = await asyncio.to_thread(main, argv)
    assert code == 1
    assert "tongban: error[not-authorized]" in capsys.readouterr().err
    assert built.core is not None
    assert built.core.created == []


async def test_client_trickling_its_request_head_is_disconnected(pki: Pki, tmp_path: Path) -> None:
    ports = free_ports(3)
    config_path = write_config(
        tmp_path / "n",
        pki,
        pki.a,
        "420106",
        ports=ports,  # type: ignore[arg-type]
        extra='[limits]\nrequest_timeout = "500ms"\n',
    )
    built = Built()
    node = Node(load_config(config_path), core_factory=_factory(tmp_path, built))
    await node.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", ports[1])
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        await writer.drain()
        async with asyncio.timeout(10):
            rest = await reader.read()  # EOF once the node gives up on us
        assert rest == b""
        writer.close()
    finally:
        await node.stop()


async def test_serve_refuses_a_tampered_partner_descriptor(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tampered = tmp_path / "320982.json"
    document = json.loads((pki.b / "node.json").read_bytes())
    jws = document["descriptor"]
    middle = len(jws) // 2
    document["descriptor"] = jws[:middle] + ("A" if jws[middle] != "A" else "B") + jws[middle + 1 :]
    tampered.write_text(json.dumps(document), encoding="utf-8")
    ports = free_ports(4)
    config_path = write_config(
        tmp_path / "n",
        pki,
        pki.a,
        "420106",
        ports=ports[:3],  # type: ignore[arg-type]
        partners=(("320982", tampered, f"https://127.0.0.1:{ports[3]}"),),
    )
    code = await asyncio.to_thread(main, ["serve", "--config", str(config_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "tongban: error[start]: node 420106 could not start" in err
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"http://127.0.0.1:{ports[1]}/healthz")


async def test_public_over_tls_and_staff_over_plain_loopback(pki: Pki, tmp_path: Path) -> None:
    ports = free_ports(3)
    config_path = write_config(tmp_path / "n", pki, pki.a, "420106", ports=ports)  # type: ignore[arg-type]
    text = config_path.read_text(encoding="utf-8")
    text = text.replace(f"port = {ports[1]}", f"port = {ports[1]}\ntls = true")
    text = text.replace(f"port = {ports[2]}", f"port = {ports[2]}\ntls = false")
    config_path.write_text(text, encoding="utf-8")
    built = Built()
    node = Node(load_config(config_path), core_factory=_factory(tmp_path, built))
    await node.start()
    try:
        assert node.urls["public"].startswith("https://")
        assert node.urls["staff"].startswith("http://")
        async with aiohttp.ClientSession() as session:
            health = await session.get(node.urls["public"] + "/healthz", ssl=client_ssl(pki, None))
            assert health.status == 200
            staff = await session.get(node.urls["staff"] + "/staff/v1/outbox")
            assert staff.status == 401
        code = await asyncio.to_thread(main, ["inbox", "--config", str(config_path), "--json"])
        assert code == 0
    finally:
        await node.stop()


async def test_certified_node_that_is_not_a_partner_is_refused(
    pki: Pki, running: tuple[Node, Built, Path]
) -> None:
    node, built, _ = running
    async with aiohttp.ClientSession() as session:
        resp = await session.post(
            node.urls["federation"] + "/federation/v1/packets",
            json={"packets": ["x"]},
            ssl=client_ssl(pki, pki.stranger),
        )
        assert resp.status == 403
        assert (await resp.json(content_type=None))["code"] == "peer-not-partner"
    assert built.core is not None
    assert built.core.batches == []


async def test_failed_start_undoes_what_it_did(pki: Pki, tmp_path: Path) -> None:
    import socket

    ports = free_ports(3)
    config_path = write_config(tmp_path / "n", pki, pki.a, "420106", ports=ports)  # type: ignore[arg-type]
    built = Built()
    node = Node(load_config(config_path), core_factory=_factory(tmp_path, built))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", ports[2]))  # the staff port is taken
        busy.listen()
        with pytest.raises(OSError, match="address already in use"):
            await node.start()
    assert built.closed, "storage was left open"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", ports[0]))  # the federation listener was closed again


async def test_extensions_add_routes_behind_each_listeners_checks(pki: Pki, tmp_path: Path) -> None:
    listener_key = web.AppKey("listener", str)

    async def hello_keyed(request: web.Request) -> web.Response:
        return web.json_response({"hello": request.app[listener_key]})

    def extension(name: str, app: web.Application) -> None:
        if name in ("public", "staff"):
            app[listener_key] = name
            app.router.add_get(f"/{name}/v1/hello", hello_keyed)

    ports = free_ports(3)
    config_path = write_config(tmp_path / "n", pki, pki.a, "420106", ports=ports)  # type: ignore[arg-type]
    built = Built()
    node = Node(
        load_config(config_path), core_factory=_factory(tmp_path, built), extensions=[extension]
    )
    await node.start()
    try:
        async with aiohttp.ClientSession() as session:
            public = await session.get(node.urls["public"] + "/public/v1/hello")
            assert await public.json() == {"hello": "public"}
            staff = await session.get(
                node.urls["staff"] + "/staff/v1/hello", ssl=client_ssl(pki, None)
            )
            assert staff.status == 401  # the staff token check applies to added routes
    finally:
        await node.stop()
