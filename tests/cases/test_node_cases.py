"""Cases between two real nodes (`relay.node.Node`: federation over mutual TLS on
127.0.0.1, the outbox task) with their tables on SQLite, and again on PostgreSQL
(``[database] url``): a case opened through the staff API of one node reaches the
other, its step comes back live to the applicant's WebSocket on the receiving node's
public listener, and `tongban cases` lists the cases."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psycopg
import pytest
from casekit import HANDLING, RECEIVING
from casekit_offices import free_port
from dbkit import Database

from relay.cli import main
from relay.config import load_config
from relay.http.case_services import CaseLayer
from relay.node import Node
from relay.staff_auth import StaffRole, issue_token, load_or_create_token_key

BOOKS = "publication-retail-licence"


@dataclass
class Pair:
    r: Node
    h: Node
    config_r: Path
    config_h: Path


def write_config(folder: Path, pki, node: str, ports: dict[str, int], partner: str,
                 partner_port: int, database: str | None = None) -> Path:  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    node_dir = pki.federation.parent / node
    partner_dir = pki.federation.parent / partner
    bundle = folder / "bundle.pem"
    fed = pki.federation
    bundle.write_bytes((fed / "root.pem").read_bytes() + (fed / "crl.pem").read_bytes())
    text = f"""[node]
id = "{node}"
key_dir = "{node_dir}"
data_dir = "data"
trust_bundle = "{bundle}"
[listeners.federation]
port = {ports["federation"]}
[listeners.public]
port = {ports["public"]}
tls = false
[listeners.staff]
port = {ports["staff"]}
tls = false
[[partners]]
id = "{partner}"
descriptor = "{partner_dir / "node.json"}"
federation_url = "https://127.0.0.1:{partner_port}"
[agreements]
files = ["{pki.agreement}"]
[outbox]
base_backoff = "50ms"
"""
    if database is not None:
        text += f'[database]\nurl = "{database}"\n'
    path = folder / "node.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
async def pair(office_pki, tmp_path: Path, database: Database) -> AsyncIterator[Pair]:
    ports = {n: {k: free_port() for k in ("federation", "public", "staff")}
             for n in (RECEIVING, HANDLING)}  # fmt: skip
    url = {n: database.url(n) if database.postgresql else None for n in (RECEIVING, HANDLING)}
    config_r = write_config(tmp_path / "r", office_pki, RECEIVING, ports[RECEIVING], HANDLING,
                            ports[HANDLING]["federation"], url[RECEIVING])  # fmt: skip
    config_h = write_config(tmp_path / "h", office_pki, HANDLING, ports[HANDLING], RECEIVING,
                            ports[RECEIVING]["federation"], url[HANDLING])  # fmt: skip
    r, h = (
        Node(load_config(c), core_factory=layer.core_factory, extensions=[layer.extension])
        for c, layer in ((config_r, CaseLayer()), (config_h, CaseLayer()))
    )
    await h.start()
    await r.start()
    try:
        yield Pair(r, h, config_r, config_h)
    finally:
        await r.stop()
        await h.stop()


def _auth(node: Node) -> dict[str, str]:
    from datetime import UTC, datetime

    key = load_or_create_token_key(node.config.staff.token_key)
    token = issue_token(key, node_id=node.config.node_id, subject="clerk-9",
                        roles=[StaffRole.CLERK], now=datetime.now(UTC), ttl=600)  # fmt: skip
    return {"Authorization": f"Bearer {token}"}


async def _eventually_case(http: aiohttp.ClientSession, node: Node, case_id: str) -> dict:
    url = f"{node.urls['staff']}/staff/v1/cases/{case_id}"
    async with asyncio.timeout(30):
        while True:
            async with http.get(url, headers=_auth(node)) as resp:
                if resp.status == 200:
                    return await resp.json()
            await asyncio.sleep(0.05)  # delivery runs on the node's outbox task


async def test_case_between_two_real_nodes_with_live_tracking(pair: Pair, capsys):
    async with aiohttp.ClientSession() as http:
        body = {"matter": BOOKS, "handling": HANDLING, "case_id": "WC-NODE-1"}
        url = f"{pair.r.urls['staff']}/staff/v1/cases"
        async with http.post(url, json=body, headers=_auth(pair.r)) as resp:
            assert resp.status == 201, await resp.text()
            opened = await resp.json()
        at_handler = await _eventually_case(http, pair.h, "WC-NODE-1")
        assert at_handler["me"] == "handling"
        assert at_handler["state"] == "submitted"
        assert at_handler["time_limit_working_days"] == 20

        track = f"{pair.r.urls['public']}/public/v1/track"
        lookup = {"case": "WC-NODE-1", "code": opened["access_code"]}
        async with http.post(track, json=lookup) as resp:
            view = await resp.json()
            assert resp.status == 200
        ws_url = f"{pair.r.urls['public']}/public/v1/track/ws"
        async with http.ws_connect(ws_url, params={"link": view["link"]}) as ws:
            first = json.loads((await ws.receive(timeout=10)).data)["view"]
            assert first["state"] == "submitted"
            events = f"{pair.h.urls['staff']}/staff/v1/cases/WC-NODE-1/events"
            async with http.post(events, json={"event": "accept"}, headers=_auth(pair.h)) as resp:
                assert resp.status == 200
            pushed = json.loads((await ws.receive(timeout=30)).data)["view"]
            assert pushed["state"] == "accepted"
            assert pushed["steps"][-1]["office"]["role"] == "办理地"

        async with http.get(f"{pair.r.urls['public']}/track") as resp:
            assert resp.status == 200
            assert "办件进度查询" in await resp.text()

    code = await asyncio.to_thread(main, ["cases", "--config", str(pair.config_r)])
    assert code == 0
    out = capsys.readouterr().out
    assert "WC-NODE-1" in out
    assert "accepted" in out
    code = await asyncio.to_thread(main, ["cases", "--config", str(pair.config_h), "--overdue"])
    assert code == 0
    assert "no overdue cases" in capsys.readouterr().out
    code = await asyncio.to_thread(
        main, ["cases", "--config", str(pair.config_h), "act", "WC-NODE-1", "deliver"]
    )
    assert code == 1
    assert "error[conflict]" in capsys.readouterr().err
    for node in (pair.r, pair.h):  # the tables are where [database] says, nowhere else
        url = node.config.database.url
        if url is not None:
            with psycopg.connect(url) as conn:
                found = conn.execute("SELECT case_id FROM cases").fetchall()
            assert found == [("WC-NODE-1",)]
        assert (node.config.data_dir / "relay.sqlite3").exists() is (url is None)


async def test_cases_are_listed_a_page_at_a_time_and_the_cli_follows_the_pages(
    pair: Pair, capsys, monkeypatch
):
    """GET /staff/v1/cases answers a page (oldest first) and where the next starts; the
    pages together hold every case once, in order, on SQLite and PostgreSQL; a case
    opened while a client pages comes on a later page. A cursor not given by the node
    is a problem document. ``tongban cases`` follows the pages."""
    import relay.http.cases as case_routes

    ids = [f"WC-PAGE-{i}" for i in range(5)]
    base = f"{pair.r.urls['staff']}/staff/v1/cases"
    async with aiohttp.ClientSession() as http:

        async def get(params: dict[str, str]) -> dict:
            async with http.get(base, params=params, headers=_auth(pair.r)) as resp:
                assert resp.status == 200, await resp.text()
                return await resp.json()

        for case_id in ids[:4]:
            body = {"matter": BOOKS, "handling": HANDLING, "case_id": case_id}
            async with http.post(base, json=body, headers=_auth(pair.r)) as resp:
                assert resp.status == 201, await resp.text()
        first = await get({"limit": "3"})
        assert [c["case"] for c in first["cases"]] == ids[:3]
        body = {"matter": BOOKS, "handling": HANDLING, "case_id": ids[4]}
        async with http.post(base, json=body, headers=_auth(pair.r)) as resp:
            assert resp.status == 201  # opened while the client pages
        second = await get({"limit": "3", "after": first["next"]})
        assert [c["case"] for c in second["cases"]] == ids[3:]
        assert second["next"] is None
        assert [c["case"] for c in (await get({}))["cases"]] == ids  # one page of 100
        for params in ({"limit": "0"}, {"limit": "1001"}, {"after": "not-a-cursor"}):
            async with http.get(base, params=params, headers=_auth(pair.r)) as resp:
                assert resp.status == 400, params
                assert (await resp.json())["code"] == "invalid-request"

    monkeypatch.setattr(case_routes, "PAGE_SIZE", 2)
    code = await asyncio.to_thread(main, ["cases", "--config", str(pair.config_r)])
    assert code == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == ids
    code = await asyncio.to_thread(main, ["cases", "--config", str(pair.config_r), "--json"])
    assert code == 0
    assert [c["case"] for c in json.loads(capsys.readouterr().out)["cases"]] == ids
