"""Two real nodes (three listeners each, mutual TLS between them) with the integration
mounted as ``tongban serve`` mounts it, and the example platform of each office: a case
imported from the receiving office's platform appears at the handling office with no
field typed, and the events reach both platforms once, the receiving one after being
down for a while."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import example_platform as example  # examples/platform.py (loaded by conftest)
from casekit import HANDLING, RECEIVING
from casekit_offices import Pki, free_port, serve
from integkit import BOOKS, FORM
from test_node_cases import write_config

from relay.config import load_config
from relay.http.case_services import CaseLayer
from relay.integration.layer import IntegrationLayer
from relay.node import Node
from relay.staff_auth import StaffRole, issue_token, load_or_create_token_key


async def _until(predicate: Callable[[], Any], what: str, timeout: float = 60.0) -> None:
    async def poll() -> None:
        while not await predicate():
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def _token(node: Node, role: StaffRole = StaffRole.CLERK) -> str:
    key = load_or_create_token_key(node.config.staff.token_key)
    return issue_token(key, node_id=node.config.node_id, subject="platform",
                       roles=[role], now=datetime.now(UTC), ttl=600)  # fmt: skip


async def test_an_imported_case_reaches_the_partner_and_both_platforms(
    data_pki: Pki, tmp_path: Path
):
    platforms = {
        n: example.Platform(
            example.seal_key((data_pki.keys[n].directory / "seal.pem").read_bytes())
        )
        for n in (RECEIVING, HANDLING)
    }
    platforms[RECEIVING].down = True  # under maintenance when the case comes in
    async with (
        serve(platforms[RECEIVING].app()) as url_r,
        serve(platforms[HANDLING].app()) as url_h,
    ):
        hooks = {RECEIVING: url_r, HANDLING: url_h}
        ports = {n: {k: free_port() for k in ("federation", "public", "staff")}
                 for n in (RECEIVING, HANDLING)}  # fmt: skip
        nodes = {}
        for node, partner in ((RECEIVING, HANDLING), (HANDLING, RECEIVING)):
            path = write_config(tmp_path / node, data_pki, node, ports[node], partner,
                                ports[partner]["federation"])  # fmt: skip
            with path.open("a", encoding="utf-8") as fh:
                fh.write(f'[[webhooks]]\nurl = "{hooks[node]}/webhooks"\n')
                fh.write('base_backoff = "50ms"\nmax_backoff = "200ms"\nmax_attempts = 1000\n')
            cases = CaseLayer()
            integration = IntegrationLayer(cases)
            nodes[node] = Node(
                load_config(path),
                core_factory=integration.core_factory(cases.core_factory),
                extensions=[cases.extension, integration.extension],
            )
        await nodes[HANDLING].start()
        await nodes[RECEIVING].start()
        try:
            await _scenario(nodes, platforms)
        finally:
            await nodes[RECEIVING].stop()
            await nodes[HANDLING].stop()
    for p in platforms.values():
        assert p.refused == 0  # every signature checked by joserfc
        assert p.repeats == 0
    assert [e["type"] for e in platforms[RECEIVING].events.values()] == [
        "case-created", "partner-step-received", "partner-step-received",
    ]  # fmt: skip
    assert [e["type"] for e in platforms[HANDLING].events.values()] == ["case-created"]


async def _scenario(nodes: dict[str, Node], platforms: dict[str, Any]) -> None:
    staff = {n: node.urls["staff"] for n, node in nodes.items()}
    auth = {n: {"Authorization": f"Bearer {_token(node)}"} for n, node in nodes.items()}
    async with aiohttp.ClientSession() as http:
        answer = await example.import_case(
            http, staff[RECEIVING], _token(nodes[RECEIVING]), matter=BOOKS, handling=HANDLING,
            form=FORM,
        )  # fmt: skip
        case_id = answer["case"]
        case_url = f"{staff[HANDLING]}/staff/v1/cases/{case_id}"

        async def at_partner() -> bool:
            async with http.get(case_url, headers=auth[HANDLING]) as resp:
                return resp.status == 200

        await _until(at_partner, "the case at the handling office")
        headers = {**auth[HANDLING], "Tongban-Purpose": "受理审查"}
        async with http.get(f"{case_url}/application", headers=headers) as resp:
            assert (await resp.json())["application"] == FORM  # nobody typed a field
        for step in ({"event": "accept"}, {"event": "decide",
                                           "details": {"decision": "approve"}}):  # fmt: skip
            async with http.post(f"{case_url}/events", json=step, headers=auth[HANDLING]) as r:
                assert r.status == 200, await r.text()

        async def tried_while_down() -> bool:
            return platforms[RECEIVING].unavailable >= 3

        await _until(tried_while_down, "attempts while the platform is down")
        platforms[RECEIVING].down = False

        async def all_delivered() -> bool:
            async with http.get(f"{staff[RECEIVING]}/staff/v1/integration/webhooks",
                                headers=auth[RECEIVING]) as resp:  # fmt: skip
                [row] = (await resp.json())["targets"]
            return row["delivered"] == 3 and row["pending"] == 0

        await _until(all_delivered, "the receiving office's three events delivered")

        # the event outbox, a page at a time: the pages are the whole list, in order
        events_url = f"{staff[RECEIVING]}/staff/v1/integration/events"
        async with http.get(events_url, headers=auth[RECEIVING]) as resp:
            whole = (await resp.json())["events"]
        assert len(whole) == 3
        paged, after = [], "0"
        while after is not None:
            async with http.get(f"{events_url}?limit=2&after={after}",
                                headers=auth[RECEIVING]) as resp:  # fmt: skip
                page = await resp.json()
            assert len(page["events"]) <= 2
            paged += page["events"]
            after = page.get("next")
        assert paged == whole
        # "²" is a digit to str.isdigit() and no number to int(): it was a 500
        for query in ("limit=0", "limit=1001", "after=x", "after=-1", "after=%C2%B2",
                      "limit=%C2%B2"):  # fmt: skip
            async with http.get(f"{events_url}?{query}", headers=auth[RECEIVING]) as resp:
                assert resp.status == 400, query
                assert resp.content_type == "application/problem+json"
        # a retry of a target that is not configured says so (it answered "0 retried")
        admin = {"Authorization": f"Bearer {_token(nodes[RECEIVING], StaffRole.ADMINISTRATOR)}"}
        async with http.post(
            f"{staff[RECEIVING]}/staff/v1/integration/webhooks/retry",
            json={"target": "https://platform.example/typo"}, headers=admin,
        ) as resp:  # fmt: skip
            assert resp.status == 404
            assert (await resp.json(content_type=None))["code"] == "not-found"

        async def handling_delivered() -> bool:
            return len(platforms[HANDLING].events) == 1

        await _until(handling_delivered, "the handling office's event delivered")
