"""`tongban serve` mounts the case routes: the tracking and verification pages, the
public tracking API and the staff case list answer on a real node process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime

import aiohttp
from casekit import HANDLING, RECEIVING
from casekit_offices import free_port
from test_node_cases import write_config

from relay.config import load_config
from relay.staff_auth import StaffRole, issue_token, load_or_create_token_key


def _partner_compact_licence(pki) -> str:
    """A food business licence sealed by HANDLING in the compact form (no status lists)."""
    from datetime import timedelta

    from signing.descriptor import verify_descriptor
    from signing.licence import Licence
    from signing.licence_compact import Issuer, issue_compact_licence, licence_url

    keys = pki.keys[HANDLING]
    now = datetime.now(UTC).replace(microsecond=0)
    issuer = Issuer.from_descriptor(verify_descriptor(keys.descriptor_bytes, pki.bundle, at=now))
    licence = Licence(
        issuer_node=HANDLING, number="JY-SERVE-1", licence_type="food-business-licence",
        holder_id="91320982MA1XK2JC3L", holder_name="盐城江城餐饮管理有限公司",
        scope="热食类食品制售", department_zh=issuer.name_zh, department_en=issuer.name_en,
        issued_at=now - timedelta(hours=1), valid_from=now - timedelta(hours=1),
        valid_until=now + timedelta(days=365),
    )  # fmt: skip
    return licence_url(issuer.public_base, issue_compact_licence(licence, keys.seal, issuer))


async def test_serve_mounts_tracking_verification_and_staff_case_routes(office_pki, tmp_path):
    ports = {k: free_port() for k in ("federation", "public", "staff")}
    config_path = write_config(tmp_path / "r", office_pki, RECEIVING, ports, HANDLING, free_port())
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay.cli", "serve", "--config", str(config_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert b"serving" in line, line + (await proc.stderr.read() if proc.stderr else b"")
        public = f"http://127.0.0.1:{ports['public']}"
        staff = f"http://127.0.0.1:{ports['staff']}"
        config = load_config(config_path)
        key = load_or_create_token_key(config.staff.token_key)
        token = issue_token(key, node_id=RECEIVING, subject="t", roles=[StaffRole.READER],
                            now=datetime.now(UTC), ttl=60)  # fmt: skip
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{public}/track") as resp:
                assert resp.status == 200
                assert "办件进度查询" in await resp.text()
            async with http.get(f"{public}/verify") as resp:
                assert resp.status == 200
            wrong = {"case": "X", "code": "Y"}
            async with http.post(f"{public}/public/v1/track", json=wrong) as resp:
                assert resp.status == 404
                assert (await resp.json())["code"] == "not-found"
            async with http.get(f"{public}/.well-known/tongban/status/revocation") as resp:
                assert resp.status == 404
            # a partner's compact licence: its kid resolved from the partner's descriptor
            async with http.get(f"{public}/v") as resp:
                assert resp.status == 200
            body = {"credential": _partner_compact_licence(office_pki)}
            async with http.post(f"{public}/public/v1/licences/verify", json=body) as resp:
                report = await resp.json()
            assert report["valid"] is True, report
            assert report["names"]["licence_type"] == {
                "zh": "食品经营许可",
                "en": "Food business licence",
            }
            body = {"credential": "NOT-A-LICENCE"}
            async with http.post(f"{public}/public/v1/licences/verify", json=body) as resp:
                assert resp.status == 200
                assert (await resp.json())["failure"] == "malformed"
            headers = {"Authorization": f"Bearer {token}"}
            async with http.get(f"{staff}/staff/v1/cases", headers=headers) as resp:
                assert resp.status == 200
                assert await resp.json() == {"cases": [], "next": None}
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)
