"""Step 4: three ``tongban serve`` nodes, a case packet with an attachment from 420106 to
320982 through the staff API, its signed receipt, 320982's inbox and the content read
back."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

from relay.core.receipts import ReceiptStatus, verify_receipt
from relay.demo.context import Demo
from relay.demo.errors import StepFailed
from relay.demo.nodes import staff_client, start_nodes
from relay.demo.offices import DAFENG, NINGJIN, WUCHANG
from relay.demo.report import Reporter
from relay.staff_client import StaffApiError, StaffClient

__all__ = ["relay_step", "wait_delivered"]

ATTACHMENT_MIB = 4
_DELIVERY_TIMEOUT = 30.0


def _attachment(path: Path) -> str:
    """A few MiB of scan-like bytes; returns the SHA-256 hex."""
    sha = hashlib.sha256()
    with path.open("wb") as fh:
        for _ in range(ATTACHMENT_MIB):
            block = os.urandom(1 << 20)
            sha.update(block)
            fh.write(block)
    return sha.hexdigest()


async def wait_delivered(client: StaffClient, packet_id: str) -> dict[str, Any]:
    """Poll the sender's outbox until the packet is settled; its outbox entry."""
    async with asyncio.timeout(_DELIVERY_TIMEOUT):
        while True:
            items = (await client.get("/staff/v1/outbox"))["items"]
            for item in items:
                if item["packet"]["packet_id"] == packet_id and item["state"] in (
                    "delivered",
                    "rejected",
                    "dead",
                ):
                    return dict(item)
            await asyncio.sleep(0.05)


async def relay_step(demo: Demo, out: Reporter) -> None:
    await start_nodes(demo)
    for office in demo.offices:
        urls = demo.endpoints(office.node_id)
        node = demo.nodes[office.node_id]
        out.info(
            f"{office.short} serving pid {node.process.pid}: federation {urls['federation']} "
            f"(mTLS), log {node.log.relative_to(demo.root.parent)}"
        )
    out.proved("三个节点均已就绪", "all three nodes answer GET /readyz with 200 (storage, outbox)")

    scan = demo.root / "files" / "premises-floor-plan.pdf"
    plain_sha = _attachment(scan)
    case_id = "DEMO-RELAY-0001"
    request = {
        "to": DAFENG.node_id,
        "case_id": case_id,
        "matter": "food-business-licence",
        "action": "submit",
        "mode": "proxy_receipt",
        "content": {
            "applicant": "武汉江城餐饮管理有限公司",
            "premises": "江苏省盐城市大丰区幸福路 18 号",
            "materials": ["食品经营许可申请书", "经营场所平面图和设备布局图"],
        },
    }
    async with staff_client(demo, WUCHANG.node_id) as wuchang:
        sent = await wuchang.send(request, [scan])
        packet_id = sent["packet_id"]
        out.info(
            f"420106 职员通过 staff API 发送 sends packet {packet_id[:12]}… case {case_id} "
            f"seq {sent['seq']} with {scan.name} ({ATTACHMENT_MIB} MiB, sealed for 320982)"
        )
        item = await wait_delivered(wuchang, packet_id)
        if item["state"] != "delivered" or not item["receipt"]:
            raise StepFailed(f"packet not delivered: {item['state']} {item['reason']}")
        receipt = verify_receipt(
            item["receipt"], demo.bundle(), at=demo.now(), expected_from=DAFENG.node_id
        )
        if receipt.status is not ReceiptStatus.ACCEPTED or receipt.packet_id != packet_id:
            raise StepFailed(f"unexpected receipt {receipt}")
        if receipt.packet_digest != sent["digest"]:
            raise StepFailed("the receipt names another packet digest")
        out.proved(
            "回执签名有效：大丰区已接收",
            f"signed receipt verified: status {receipt.status.value}, receiver "
            f"{receipt.sender}, packet digest {receipt.packet_digest[:12]}…, audit-log "
            f"position {receipt.log_index} of {receipt.log_size}, after {item['attempts']} "
            f"attempt(s)",
        )
        try:
            await wuchang.send(
                {
                    **request,
                    "to": NINGJIN.node_id,
                    "matter": "pesticide-retail-licence",
                    "case_id": "DEMO-RELAY-0002",
                },
                [],
            )
        except StaffApiError as exc:
            out.proved(
                "发送方依协议拒绝未授权的包",
                f"420106 refuses to send a pesticide case to 371422 (not a handler): "
                f"{exc.status} {exc.code}",
            )
        else:
            raise StepFailed("420106 accepted a packet the agreement does not grant")

    async with staff_client(demo, DAFENG.node_id) as dafeng:
        inbox = (await dafeng.get("/staff/v1/inbox", {"case_id": case_id}))["items"]
        if [i["packet"]["packet_id"] for i in inbox] != [packet_id]:
            raise StepFailed(f"320982's inbox for {case_id}: {inbox}")
        out.proved(
            "大丰区收件箱中可见",
            f"320982's inbox lists it: from {inbox[0]['packet']['from']}, received "
            f"{inbox[0]['received_at']}, log index {inbox[0]['log_index']}",
        )
        opened = await dafeng.get(f"/staff/v1/packets/{packet_id}")
        if opened["content"] != request["content"]:
            raise StepFailed("320982 read different content")
        attachments = opened["packet"]["attachments"]
        if [a.get("plain_digest") for a in attachments] != [plain_sha]:
            raise StepFailed(f"attachment digest differs: {attachments}")
        out.proved(
            "大丰区读回内容与附件摘要一致",
            f"320982 reads the content back (applicant {opened['content']['applicant']}) and "
            f"the attachment's plaintext SHA-256 matches the file sent ({plain_sha[:12]}…)",
        )
