"""Step 5: whole cross-province cases through the nodes' staff and public APIs.

- 食品经营许可: handed in at 420106 武昌区, handled by 320982 大丰区 (which surveys the
  premises itself), approved, licence sealed and carried back, delivered, concluded and
  rated by the applicant on the public tracking API.
- 农药经营许可 with a delegated survey (委托勘查): handed in at 371422 宁津县 where the
  shop is, handled by 320982, which delegates the site survey to 371422; 371422 runs a
  real recorded remote survey (:mod:`relay.demo.survey`: WebRTC peers, a synthetic
  camera), sends the sealed report with its media, and both copies verify with
  ``tongban survey verify``.

Every step is a signed packet under the agreement; the demo only drives the staff API
as a desk clerk would and reads what the other office's copy says.
"""

from __future__ import annotations

import asyncio
import json
import sys
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from relay.cases.terms import load_terms
from relay.config import load_config
from relay.core.receipts import verify_receipt
from relay.demo.context import Demo
from relay.demo.errors import StepFailed
from relay.demo.licensing import (
    LicenceFacts,
    compact_url,
    publish_status_lists,
    save_qr,
    seal_licence,
    status_lists,
    terminal_qr,
)
from relay.demo.nodes import staff_client
from relay.demo.offices import DAFENG, NINGJIN, WUCHANG
from relay.demo.report import Reporter
from relay.demo.survey import run_remote_survey
from relay.licence_print import PrintSize, print_view
from remote_survey.room import REPORT_FILE
from remote_survey.vault import MAGIC, MEDIA_KEY_FILE
from signing.licence import parse_licence, verify_licence

__all__ = ["CaseDesk", "cases_step", "delegated_survey_case", "food_licence_case"]

_WAIT = 30.0
FOOD = "food-business-licence"
PESTICIDE = "pesticide-retail-licence"


class CaseDesk:
    """One office's case routes (staff API, bearer token) and its public listener."""

    def __init__(self, demo: Demo, node_id: str) -> None:
        self.node_id = node_id
        client = staff_client(demo, node_id)
        self._base = client.base_url
        self._ssl = client.ssl_context
        self._headers = {"Authorization": f"Bearer {client.token}"}
        self.public = demo.endpoints(node_id)["public"]
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> CaseDesk:
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._ssl or False),
            timeout=aiohttp.ClientTimeout(total=30),
        )
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._http is not None:
            await self._http.close()

    async def _call(
        self, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        assert self._http is not None, "use CaseDesk in 'async with'"
        async with self._http.request(method, url, json=body, headers=headers) as resp:
            text = await resp.text()
            return resp.status, json.loads(text) if text else None

    async def staff(self, method: str, path: str, body: Any = None) -> Any:
        status, data = await self._call(method, self._base + path, body, self._headers)
        if status >= 400:
            detail = data.get("detail") if isinstance(data, dict) else data
            raise StepFailed(f"{self.node_id} {method} {path}: {status} {detail}")
        return data

    async def public_post(self, path: str, body: Any) -> Any:
        status, data = await self._call("POST", self.public + path, body)
        if status >= 400:
            raise StepFailed(f"{self.node_id} public POST {path}: {status} {data}")
        return data

    async def act(self, case_id: str, event: str, details: dict[str, Any] | None = None) -> Any:
        body = {"event": event, "details": details or {}}
        return await self.staff("POST", f"/staff/v1/cases/{case_id}/events", body)

    async def wait(self, case_id: str, state: object, what: str = "state") -> dict[str, Any]:
        """Poll our copy of the case until its field ``what`` equals ``state``."""
        try:
            async with asyncio.timeout(_WAIT):
                while True:
                    code, data = await self._call(
                        "GET", f"{self._base}/staff/v1/cases/{case_id}", None, self._headers
                    )
                    if code == 200 and isinstance(data, dict) and data.get(what) == state:
                        return data
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise StepFailed(f"{self.node_id}'s copy of {case_id} never reached {state}") from None


def _timeline(case: dict[str, Any]) -> list[tuple[str, str, int]]:
    return [(e["event"], e["origin"], e["seq"]) for e in case["timeline"]]


_TERMINAL_COLUMNS = 80


def _show_licence(demo: Demo, out: Reporter, token: str, stem: str) -> str:
    """The licence's QR code: the compact form's verify URL, drawn in the terminal when
    it fits (80 columns, and the terminal's width), else the URL and the PNG's path."""
    url = compact_url(demo, DAFENG.node_id, token)
    qr, png, svg = save_qr(url, demo.root / "licences", stem)
    (demo.root / "licences" / f"{stem}.jwt").write_text(token + "\n", encoding="ascii")
    (demo.root / "licences" / f"{stem}.url").write_text(url + "\n", encoding="ascii")
    for size in PrintSize:
        page = print_view(parse_licence(token), url, size=size)
        (demo.root / "licences" / f"{stem}-{size.value}.html").write_text(page, encoding="utf-8")
    drawing = terminal_qr(url, qr)
    width = max(len(line) for line in drawing.splitlines())
    columns = out.terminal_columns()
    if width <= min(columns or _TERMINAL_COLUMNS, _TERMINAL_COLUMNS):
        out.plain(drawing)
    else:
        out.info(
            f"(二维码需要 {width} 列，终端只有 {columns or _TERMINAL_COLUMNS} 列，请打开 PNG · "
            f"the QR code needs {width} columns: open the PNG below)"
        )
    out.info(
        f"电子证照二维码 licence QR: version {qr.version}, level {qr.error}, "
        f"{qr.modules}×{qr.modules} modules ({qr.printed_width_mm(0.34):.0f} mm at 0.34 mm); "
        f"{png.relative_to(demo.root.parent)}, {svg.name}"
    )
    out.info(f"  扫码打开核验页 the code opens the verify page: {url}")
    out.info(f"  打印版 print views: {stem}-a4.html, {stem}-card.html")
    return url


async def _verify_compact(out: Reporter, url: str, verifier: CaseDesk) -> None:
    """The compact form checked by a partner's public endpoint, as the page does."""
    online = await verifier.public_post("/public/v1/licences/verify", {"credential": url})
    if not online.get("valid"):
        raise StepFailed(f"compact licence refused by {verifier.node_id}: {online}")
    out.proved(
        "二维码中的紧凑证照经宁津县核验有效",
        f"{verifier.node_id} verifies the QR code's compact licence (issuer found by its "
        f"key id among the partners' descriptors): valid, "
        f"{online['names']['licence_type']['zh']}",
    )


async def _receipts(demo: Demo, out: Reporter, case_id: str, desks: list[CaseDesk]) -> None:
    """Every packet of the case, both directions, with its verified signed receipt."""
    rows = []
    for desk in desks:
        for item in (await desk.staff("GET", "/staff/v1/outbox"))["items"]:
            packet = item["packet"]
            if packet["case_id"] != case_id:
                continue
            if item["state"] != "delivered" or not item["receipt"]:
                raise StepFailed(f"packet {packet['action']} of {case_id}: {item['state']}")
            receipt = verify_receipt(
                item["receipt"], demo.bundle(), at=demo.now(), expected_from=packet["to"]
            )
            if receipt.packet_digest != packet["digest"]:
                raise StepFailed("a receipt names another packet")
            rows.append((desks.index(desk), packet["seq"], packet, receipt))
    for _, _, packet, receipt in sorted(rows, key=lambda row: row[:2]):
        out.info(
            f"  {packet['from']}→{packet['to']} #{packet['seq']:<2} {packet['action']:<15} "
            f"{receipt.status.value} by {receipt.sender}, audit log #{receipt.log_index}"
        )
    out.proved(
        "本案每个签名包都有对方签名的回执",
        f"all {len(rows)} packets of the case, both directions, were delivered and each "
        f"signed receipt verifies against the trust bundle",
    )


async def _verify_licence(demo: Demo, out: Reporter, token: str, verifier: CaseDesk) -> None:
    at = demo.now()
    terms = load_terms([demo.agreement_path], demo.bundle(), at=at)
    lists = status_lists(demo, DAFENG.node_id)
    report = verify_licence(
        token, demo.bundle(), at=at, status_lists=lists, entitled=terms.entitled
    )
    if not report.valid or report.unchecked:
        raise StepFailed(f"licence check failed offline: {report.to_json()}")
    checks = ", ".join(str(r.check) for r in report.checks)
    out.proved(
        "证照离线验证全部通过",
        f"licence verified offline with the trust bundle, 320982's status lists and the "
        f"agreement: {checks} all passed",
    )
    online = await verifier.public_post("/public/v1/licences/verify", {"token": token})
    if not online.get("valid"):
        raise StepFailed(f"licence refused by {verifier.node_id}'s public endpoint: {online}")
    out.proved(
        f"{demo.office(verifier.node_id).short}公共验证接口确认证照有效",
        f"{verifier.node_id}'s public endpoint POST /public/v1/licences/verify says valid "
        f"(status lists fetched from the issuer 320982's public listener)",
    )


Desks = dict[str, CaseDesk]


async def food_licence_case(demo: Demo, out: Reporter, desks: Desks) -> None:
    """Hand-in at 420106, handled by 320982, licence back, delivered, rated."""
    wuchang, dafeng = desks[WUCHANG.node_id], desks[DAFENG.node_id]
    materials = ["食品经营许可申请书", "营业执照", "经营场所平面图和设备布局图", "食品安全管理制度"]
    body = {"matter": FOOD, "handling": DAFENG.node_id, "materials": materials}
    opened = await wuchang.staff("POST", "/staff/v1/cases", body)
    case_id, code = opened["case"]["case"], opened["access_code"]
    out.info(
        f"申请人在武昌区窗口递交 the applicant hands in at 420106: case {case_id}, "
        f"access code {code} (the node keeps only its scrypt hash)"
    )
    at_dafeng = await dafeng.wait(case_id, "submitted")
    out.proved(
        "大丰区收到签名的提交包，开始计时",
        f"320982's copy is submitted: {at_dafeng['time_limit_working_days']} working days, "
        f"site survey required: {at_dafeng['survey_required']}",
    )
    steps: list[tuple[str, dict[str, Any], str]] = [
        ("accept", {}, "受理"),
        ("request-survey", {"surveyor": "handling"}, "自行安排远程勘查"),
        (
            "survey-report",
            {"outcome": "pass", "report": "远程勘查：加工间布局与平面图一致"},
            "勘查通过",
        ),
        ("decide", {"decision": "approve"}, "准予许可"),
    ]
    for event, details, zh in steps:
        await dafeng.act(case_id, event, details)
        out.info(f"320982 {zh} · {event}")
    facts = LicenceFacts(
        matter=FOOD,
        number="JY13209820260001",
        holder_id="91320982MA1XK2JC3L",
        holder_name="盐城江城餐饮管理有限公司",
        scope="热食类食品制售",  # as printed on a licence: the catalogue's Chinese term
        department_zh="盐城市大丰区行政审批局",
        department_en="Dafeng District Administrative Approval Bureau, Yancheng",
        valid_days=5 * 365,
        status_index=1,
    )
    token = seal_licence(demo, DAFENG.node_id, facts, demo.now())
    await dafeng.act(case_id, "issue-licence", {"licence": token, "licence_number": facts.number})
    out.info(f"320982 签发电子证照 · issues e-licence {facts.number}, sealed with its seal")
    at_wuchang = await wuchang.wait(case_id, "licence_issued")
    out.proved(
        "证照随签名包送回武昌区",
        f"420106's copy holds licence {at_wuchang['licence_number']} (its seal checked when "
        f"the packet was applied)",
    )
    await wuchang.act(case_id, "deliver", {"method": "窗口领取"})
    await wuchang.act(case_id, "conclude")
    view = await wuchang.public_post("/public/v1/track", {"case": case_id, "code": code})
    link = view["link"]
    rating = {"rating": "good", "comment": "跑一次就办成了"}
    rated = await wuchang.public_post("/public/v1/track/rating", {"link": link, **rating})
    out.info(
        f"420106 送达、办结 · delivers and concludes; the applicant looks the case up with its "
        f"access code and rates it 好评 good ({rated['state_label']})"
    )
    final = await dafeng.wait(case_id, rating, "rating")
    mine = await wuchang.staff("GET", f"/staff/v1/cases/{case_id}")
    if _timeline(mine) != _timeline(final) or mine["state"] != "concluded":
        raise StepFailed("the two offices' copies of the case differ")
    out.proved(
        "好评送达办理地，两地案卷一致",
        f"the rating reached 320982 and both copies hold the same "
        f"{len(mine['timeline'])}-step timeline, state {mine['state']}",
    )
    await _receipts(demo, out, case_id, [wuchang, dafeng])
    await _verify_licence(demo, out, token, desks[NINGJIN.node_id])
    compact = _show_licence(demo, out, token, "food-business-licence")
    await _verify_compact(out, compact, desks[NINGJIN.node_id])
    url = f"{wuchang.public}/track#link={link}"
    out.info(f"申请人查询页 applicant's tracking page: {url}")
    out.info(f"  (or {wuchang.public}/track with case {case_id} and access code {code})")
    if "short_path" in opened:
        short = f"{wuchang.public}{opened['short_path']}"
        out.info(
            f"  短信链接 SMS link ({len(short)} characters, the access code sent separately): "
            f"{short}"
        )
    demo.facts.setdefault("tracking", []).append(url)


async def delegated_survey_case(demo: Demo, out: Reporter, desks: Desks) -> None:
    """Pesticide retail licence: hand-in at 371422 where the shop is, handled by 320982,
    which delegates the site survey to 371422 (委托勘查)."""
    ningjin, dafeng = desks[NINGJIN.node_id], desks[DAFENG.node_id]
    body = {
        "matter": PESTICIDE,
        "handling": DAFENG.node_id,
        "materials": ["农药经营许可申请表", "营业执照", "经营场所和仓储场所地址、面积、平面图"],
    }
    opened = await ningjin.staff("POST", "/staff/v1/cases", body)
    case_id, code = opened["case"]["case"], opened["access_code"]
    out.info(
        f"农药经营许可：店在宁津县，371422 收件 · pesticide retail licence handed in at "
        f"371422 where the shop is: case {case_id}"
    )
    await dafeng.wait(case_id, "submitted")
    await dafeng.act(case_id, "accept")
    await dafeng.act(case_id, "request-survey", {"surveyor": "receiving"})
    request = await ningjin.wait(case_id, "survey_requested")
    out.proved(
        "大丰区委托宁津县现场勘查",
        f"320982 accepts and delegates the site survey: 371422's copy is "
        f"{request['state']} (a request-survey packet under the handler-to-surveyor clause)",
    )
    session, links = await _schedule_survey(demo, out, ningjin, case_id)
    site = (37.6520004, 116.8000003)  # the phone at the shop's door
    items = ["c1", "c2", "c3"]
    survey = await run_remote_survey(ningjin.public, links, site, items)
    media = demo.config_path(NINGJIN.node_id).parent / "data" / "survey" / session
    segments = sorted(p.name for p in media.glob("seg-*.mkv"))
    out.proved(
        "远程勘查真实进行：合成摄像头录像、截图、核验码、定位，勘查员签章报告",
        f"two WebRTC peers joined {session} with their signed links: the site party "
        f"acknowledged the recording notice, a synthetic camera sent {survey['frames_sent']} "
        f"frames, recorded in {len(segments)} segments, snapshot {survey['snapshot']}, "
        f"challenge {survey['challenge'].split()[0]} acknowledged on site and confirmed, a "
        f"fix {survey['distance_m']:.1f} m from the shop; report sealed by 371422 "
        f"(chain head {survey['head'][:16]}…)",
    )
    sent = await ningjin.staff("POST", f"/staff/v1/surveys/{session}/send")
    await dafeng.wait(case_id, "survey_reported")
    copy = demo.config_path(DAFENG.node_id).parent / "data" / "survey-reports" / case_id / session
    await _collected(copy, DAFENG.node_id)
    key = load_config(demo.config_path(NINGJIN.node_id)).key_dir / MEDIA_KEY_FILE
    sealed = sum(p.read_bytes().startswith(MAGIC) for p in media.glob("seg-*.mkv"))
    if sealed != len(segments) or not segments:
        raise StepFailed(f"371422 keeps {len(segments) - sealed} segments unencrypted")
    await _survey_verify(demo, media, key)  # sealed at rest: opened with the node's key
    await _survey_verify(demo, copy)
    out.proved(
        "勘查报告连同录像送达大丰区，两地用 tongban survey verify 验证通过",
        f"371422 sent the sealed report with {len(sent['files'])} files as the case's "
        f"survey-report packet; 320982's copy is survey_reported, and `tongban survey "
        f"verify` accepts the report against the media at 371422 (kept encrypted at rest, "
        f"opened with its survey-media.key) and at 320982",
    )
    await dafeng.act(case_id, "decide", {"decision": "approve"})
    facts = LicenceFacts(
        matter=PESTICIDE,
        number="农药经许（苏）32098220260002",
        holder_id="91320982MA2NJ4FX7Q",
        holder_name="盐城绿丰农资有限公司宁津经营部",
        scope="农药零售（不含限制使用农药） pesticide retail, restricted pesticides excluded",
        department_zh="盐城市大丰区行政审批局",
        department_en="Dafeng District Administrative Approval Bureau, Yancheng",
        valid_days=5 * 365,
        status_index=2,
    )
    token = seal_licence(demo, DAFENG.node_id, facts, demo.now())
    await dafeng.act(case_id, "issue-licence", {"licence": token, "licence_number": facts.number})
    await ningjin.wait(case_id, "licence_issued")
    await ningjin.act(case_id, "deliver", {"method": "邮寄"})
    await ningjin.act(case_id, "conclude")
    done = await dafeng.wait(case_id, "concluded")
    out.proved(
        "农药经营许可证送达宁津县，案件办结",
        f"licence {facts.number} sealed by 320982 reached 371422, was delivered and the case "
        f"concluded on both sides ({len(done['timeline'])} steps)",
    )
    save_qr(
        compact_url(demo, DAFENG.node_id, token), demo.root / "licences", "pesticide-retail-licence"
    )
    view = await ningjin.public_post("/public/v1/track", {"case": case_id, "code": code})
    url = f"{ningjin.public}/track#link={view['link']}"
    out.info(f"申请人查询页 applicant's tracking page: {url}")
    demo.facts.setdefault("tracking", []).append(url)


async def _collected(folder: Path, node_id: str) -> None:
    """Wait for the node's verified copy of a survey report in ``folder``: the node collects
    it after the batch that carried the packet (the case moved on with that batch), once
    the attachments are in, and renames the finished folder into place."""
    try:
        async with asyncio.timeout(_WAIT):
            while not (folder / REPORT_FILE).exists():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise StepFailed(f"{node_id} never kept its copy of the survey report {folder}") from None


async def _survey_verify(demo: Demo, folder: Path, key: Path | None = None) -> None:
    """``tongban survey verify`` on a survey folder, as a real command."""
    extra = [] if key is None else ["--media-key", str(key)]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay.cli", "survey", "verify", str(folder / REPORT_FILE),
        "--media", str(folder), "--trust", str(demo.bundle_path), *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), _WAIT)
    if process.returncode != 0:
        raise StepFailed(f"tongban survey verify {folder}: {stderr.decode()}{stdout.decode()}")


async def _schedule_survey(
    demo: Demo, out: Reporter, desk: CaseDesk, case_id: str
) -> tuple[str, dict[str, str]]:
    """The surveying office schedules a remote survey session for the case and gets one
    join link per participant (role -> page path with the token in its fragment)."""
    start = demo.now()
    session = f"SV-{case_id}"
    plan = {
        "session": session,
        "case": case_id,
        "matter": PESTICIDE,
        "surveying_office": desk.node_id,
        "requesting_office": DAFENG.node_id,
        "window": {
            "start_ms": int(start.timestamp() * 1000),
            "end_ms": int((start + timedelta(hours=8)).timestamp() * 1000),
        },
        "site": {
            "address": "山东省德州市宁津县津城街道长官路 66 号",
            "lat_e7": 376520000,
            "lon_e7": 1168000000,
        },
        "inspectors": [{"id": "inspector-1", "name": "宁津县行政审批服务局 勘查员"}],
        "site_party": {"id": "shop-owner", "name": "经营部负责人"},
        "observers": [],
        "checklist": [
            {"item": f"c{i + 1}", "text": text}
            for i, text in enumerate(
                ["经营场所面积与仓储条件", "农药与食品、饲料隔离存放", "安全防护与应急处置设施"]
            )
        ],
    }
    scheduled = await desk.staff("POST", "/staff/v1/surveys", plan)
    state = await desk.staff("GET", f"/staff/v1/surveys/{session}")
    links = {link["role"]: f"{desk.public}{link['path']}" for link in scheduled["links"]}
    out.proved(
        "宁津县安排远程勘查，生成勘查员与现场人员的加入链接",
        f"371422 schedules remote survey {session} ({state['state']}): signed join links "
        f"for the {' and the '.join(sorted(links))}",
    )
    for role, url in sorted(links.items()):
        out.info(f"  {role:<9} {url[:110]}…")
    demo.facts.setdefault("survey", []).extend(sorted(links.items()))
    return session, {link["role"]: link["path"] for link in scheduled["links"]}
    return session


async def cases_step(demo: Demo, out: Reporter) -> None:
    publish_status_lists(demo, DAFENG.node_id, demo.now())
    async with AsyncExitStack() as stack:
        desks = {
            o.node_id: await stack.enter_async_context(CaseDesk(demo, o.node_id))
            for o in demo.offices
        }
        await food_licence_case(demo, out, desks)
        await delegated_survey_case(demo, out, desks)
