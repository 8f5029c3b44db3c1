"""``tongban serve`` runs surveys: staff schedule them, the public listener serves them."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from media_support import make_plan

from certs.pki import init_federation, issue_node
from relay.staff_auth import StaffRole, issue_token, load_or_create_token_key
from remote_survey.nodehub import JOIN_KEY_FILE
from remote_survey.reportjson import plan_to_json


def _ports(count: int) -> list[int]:
    from relay.loopback import free_ports

    return free_ports(count)


async def test_serve_schedules_a_survey_for_staff_and_admits_its_links_publicly(
    tmp_path: Path,
) -> None:
    base = datetime.now(UTC) - timedelta(hours=1)
    init_federation(tmp_path / "fed", "Hubei", now=base)
    node = tmp_path / "node"
    issue_node(tmp_path / "fed", "420106", "武昌区政务服务中心", "127.0.0.1", node, now=base)
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes((tmp_path / "fed" / "root.pem").read_bytes())
    ports = _ports(3)
    config = tmp_path / "node.toml"
    config.write_text(
        "\n".join(
            [
                "[node]",
                'id = "420106"',
                f'key_dir = "{node}"',
                'data_dir = "data"',
                f'trust_bundle = "{bundle}"',
                "[listeners.federation]",
                f"port = {ports[0]}",
                "[listeners.public]",
                f"port = {ports[1]}",
                "[listeners.staff]",
                "tls = false",
                f"port = {ports[2]}",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relay.cli",
        "serve",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(60):
            line = (await proc.stdout.readline()).decode()
        assert line.startswith("tongban: node 420106 serving "), line
        public = f"http://127.0.0.1:{ports[1]}"
        staff = f"http://127.0.0.1:{ports[2]}"
        key = load_or_create_token_key(tmp_path / "data" / "staff-token.key")
        clerk = issue_token(
            key,
            node_id="420106",
            subject="王科员",
            roles=[StaffRole.CLERK],
            now=datetime.now(UTC),
            ttl=600,
        )
        auth = {"Authorization": f"Bearer {clerk}"}
        plan = make_plan(datetime.now(UTC))
        async with aiohttp.ClientSession() as http:
            anonymous = await http.post(f"{staff}/staff/v1/surveys", json=plan_to_json(plan))
            assert anonymous.status == 401
            made = await http.post(
                f"{staff}/staff/v1/surveys", json=plan_to_json(plan), headers=auth
            )
            assert made.status == 201, await made.text()
            links = {link["person"]: link for link in (await made.json())["links"]}
            assert set(links) == {"insp-1", "site-1", "obs-1"}
            assert links["obs-1"]["path"].endswith("&role=observer")
            again = await http.post(
                f"{staff}/staff/v1/surveys", json=plan_to_json(plan), headers=auth
            )
            assert again.status == 409
            own = plan_to_json(make_plan(datetime.now(UTC), session_id="sv-own"))
            own["requesting_office"] = "420106"  # this node: the report could not be sent
            itself = await http.post(f"{staff}/staff/v1/surveys", json=own, headers=auth)
            assert itself.status == 422
            assert "requesting-office-is-surveyor" in (await itself.json())["detail"]
            other = plan_to_json(make_plan(datetime.now(UTC), session_id="sv-other"))
            other["surveying_office"] = "320982"
            wrong = await http.post(f"{staff}/staff/v1/surveys", json=other, headers=auth)
            assert wrong.status == 422
            reader = issue_token(
                key,
                node_id="420106",
                subject="读者",
                roles=[StaffRole.READER],
                now=datetime.now(UTC),
                ttl=600,
            )
            reading = {"Authorization": f"Bearer {reader}"}
            forbidden = await http.post(f"{staff}/staff/v1/surveys", json=other, headers=reading)
            assert forbidden.status == 403
            unknown = await http.get(f"{staff}/staff/v1/surveys/sv-nope", headers=reading)
            assert unknown.status == 404
            token = links["site-1"]["path"].split("#token=")[1]
            ws_url = public.replace("http", "ws", 1) + "/survey/v1/ws?device=p1"
            async with http.ws_connect(ws_url) as ws:
                await ws.send_json({"type": "join", "token": token})
                welcome = await ws.receive_json(timeout=20)
                assert welcome["type"] == "welcome"
                assert welcome["role"] == "site"
            status = await http.get(f"{staff}/staff/v1/surveys/{plan.session_id}", headers=auth)
            assert (await status.json())["state"] == "scheduled"
            # the links are not kept: a lost one is made again, and opens the room on a
            # new phone, as long as the survey has not ended
            relinked = f"{staff}/staff/v1/surveys/{plan.session_id}/links"
            assert (await http.post(relinked, headers=reading)).status == 403
            fresh = await http.post(relinked, headers=auth)
            assert fresh.status == 201, await fresh.text()
            renewed = {link["person"]: link for link in (await fresh.json())["links"]}
            assert set(renewed) == {"insp-1", "site-1", "obs-1"}
            assert renewed["site-1"]["path"] != links["site-1"]["path"]
            token = renewed["site-1"]["path"].split("#token=")[1]
            async with http.ws_connect(ws_url.replace("device=p1", "device=p2")) as ws:
                await ws.send_json({"type": "join", "token": token})
                assert (await ws.receive_json(timeout=20))["type"] == "welcome"
            missing = await http.post(f"{staff}/staff/v1/surveys/sv-nope/links", headers=auth)
            assert missing.status == 404
            page = await http.get(f"{public}/survey/v1/inspector")
            assert page.status == 200
            assert "inspector.js" in await page.text()
            async with http.ws_connect(f"{public}/survey/v1/ws?device=d") as ws:
                await ws.send_json({"type": "join", "token": "x.y.z"})
                msg = await ws.receive(timeout=20)
                assert (msg.data, msg.extra) == (4404, "wrong-session")
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert (node / JOIN_KEY_FILE).stat().st_mode & 0o077 == 0
