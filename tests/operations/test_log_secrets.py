"""Issue 14: no secret reaches a log line, and every line is one JSON event.

Two real ``tongban serve`` processes log at DEBUG in JSON while the test hands them
every secret a node handles without a person signing in: staff bearer tokens (good and
forged), a case's tracking access code and signed tracking link (public API, query
string included), a survey's join tokens (the WebSocket takes them in its query
string: before this issue the access log wrote them in full), packets and receipts.
Afterwards neither log holds any of them, nor a line of the nodes' private key files.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from chaoskit import MATTER, B, Federation, send_backlog, wait_drained
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from media_support import make_plan
from opskit import LoggedProc, token

from relay.config import load_config
from relay.staff_auth import StaffRole, issue_token
from relay.staff_client import StaffClient, staff_base_url
from remote_survey.reportjson import plan_to_json

JSON_DEBUG = ("--log-format", "json", "--log-level", "DEBUG")


def _key_lines(folder: Path) -> set[str]:
    """The base64 lines of every PEM private key in ``folder``."""
    lines: set[str] = set()
    for path in folder.iterdir():
        text = path.read_text(errors="replace") if path.is_file() else ""
        if "PRIVATE KEY-----" in text:
            lines |= {ln for ln in text.splitlines() if ln and not ln.startswith("-----")}
    return lines


async def test_no_token_key_or_access_code_reaches_a_log_line(federation: Federation) -> None:
    cfg_a = load_config(federation.config_a)
    node_a = LoggedProc(federation.config_a, *JSON_DEBUG)
    node_b = LoggedProc(federation.config_b, *JSON_DEBUG)
    await asyncio.gather(node_a.start(), node_b.start())
    secrets: dict[str, str] = {}
    try:
        clerk = token(federation.config_a, StaffRole.CLERK, "clerk-1")
        secrets["clerk token"] = clerk
        forged = issue_token(Ed25519PrivateKey.generate(), node_id=cfg_a.node_id,
                             subject="mallory", roles=[StaffRole.CLERK],
                             now=datetime.now(UTC), ttl=600)  # fmt: skip
        secrets["forged token"] = forged
        sent = await send_backlog(federation.config_a, cases=2, per_case=2)
        await wait_drained(federation.config_a, len(sent))
        client = StaffClient.for_config(cfg_a, clerk)
        staff = staff_base_url(cfg_a)
        public = f"http://127.0.0.1:{federation.public_port_a}"
        connector = aiohttp.TCPConnector(ssl=client.ssl_context or False)
        async with aiohttp.ClientSession(connector=connector) as http:
            auth = {"Authorization": f"Bearer {clerk}"}
            async with http.get(f"{staff}/staff/v1/outbox", headers=auth) as resp:
                outbox = await resp.json()
            secrets["receipt"] = next(i["receipt"] for i in outbox["items"] if i["receipt"])
            bad = {"Authorization": f"Bearer {forged}"}
            async with http.get(f"{staff}/staff/v1/outbox", headers=bad) as resp:
                assert resp.status == 401
            case = {"handling": B, "matter": MATTER, "materials": []}
            async with http.post(f"{staff}/staff/v1/cases", json=case, headers=auth) as resp:
                assert resp.status == 201, await resp.text()
                opened = await resp.json()
            secrets["access code"] = opened["access_code"]
            secrets["tracking link"] = opened["tracking_link"]
            ask = {"case": opened["case"]["case"], "code": opened["access_code"]}
            async with http.post(f"{public}/public/v1/track", json=ask) as resp:
                assert resp.status == 200, await resp.text()
            link = {"link": opened["tracking_link"]}
            async with http.get(f"{public}/public/v1/track", params=link) as resp:
                assert resp.status == 200, await resp.text()
            plan = plan_to_json(make_plan(datetime.now(UTC), session_id="sv-logs-1"))
            async with http.post(f"{staff}/staff/v1/surveys", json=plan, headers=auth) as resp:
                assert resp.status == 201, await resp.text()
                links = (await resp.json())["links"]
            for entry in links:
                join = entry["path"].split("#token=")[1].split("&")[0]
                secrets[f"join token of {entry['person']}"] = join
                secrets[f"join token signature of {entry['person']}"] = join.split(".")[2]
            site = next(e for e in links if e["role"] == "site")["path"].split("#token=")[1]
            ws = public.replace("http", "ws", 1) + "/survey/v1/ws"
            # a careless client putting the token in the URL is refused, and not logged
            async with http.ws_connect(f"{ws}?token={site}&device=p1") as sock:
                closing = await sock.receive(timeout=20)
                assert closing.type == aiohttp.WSMsgType.CLOSE, closing
                assert closing.data == 4400
            async with http.ws_connect(f"{ws}?device=p1") as sock:  # as the page joins
                await sock.send_json({"type": "join", "token": site})
                assert (await sock.receive_json(timeout=20))["type"] == "welcome"
    finally:
        await asyncio.gather(node_a.stop(), node_b.stop())
    for item in sent:
        secrets[f"packet {item}"] = item  # ids are not secret; they show the log has content
    keys = _key_lines(cfg_a.key_dir) | _key_lines(cfg_a.data_dir)
    logs = {
        "A": node_a.log.read_text(encoding="utf-8"),
        "B": node_b.log.read_text(encoding="utf-8"),
    }
    lines = [line for text in logs.values() for line in text.splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]  # every line is one JSON event
    assert all({"ts", "level", "logger", "msg"} <= set(e) for e in events)
    access = [e["msg"] for e in events if e["logger"].startswith("tongban.relay.access")]
    for path in ("/survey/v1/ws", "/public/v1/track", "/staff/v1/outbox"):
        assert any(path in line for line in access), f"no access log line for {path}"
    everything = "\n".join(logs.values())
    leaked = [what for what, value in secrets.items()
              if not what.startswith("packet") and value in everything]  # fmt: skip
    assert not leaked, f"secrets in the log: {leaked}"
    assert not [k for k in keys if k in everything], "a private key line is in the log"
    assert secrets["access code"].replace("-", "") not in everything.replace("-", "")
