"""The acceptance test of several workers: a node run as two ``tongban serve`` workers on
one real PostgreSQL database behind a real HAProxy (TCP mode, mutual TLS end to end),
flooded by a partner node while it sends to the partner too; one worker is killed -9
mid-flood: the leader (HAProxy spreading the flood over both), and in the second
variant the one HAProxy is sending to (``balance first``).

Afterwards: every packet is in the receiver's inbox exactly once with the digest its
sender signed, in per-case order, in both directions; every receipt verifies (the
receiver's seal, accepted, naming the packet, a log position of its own); the partner,
witnessing the node through HAProxy (so checkpoints come from either worker), never
saw a fork, cosigned the node's final checkpoint, and that checkpoint is consistent
with one fetched before the kill.

``WORKERS_FLOOD`` sizes the flood (default 120 packets from the partner, half as many
back, so that ``make test`` stays short; ``make workers-flood`` runs the issue's 2,000).
The workers emulate two hosts: the same configuration but for their ports and their
data directories, the database and the blob directory shared. The lease on a case is
6 s here (2 min by default), so a dead worker's cases are taken over quickly.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from chaoskit import Federation, Proc, Sent, assert_exactly_once, staff, wait_for
from relay_http_support import Pki, free_ports, write_agreement, write_config
from workerkit import Worker, haproxy, leads

from relay.audit.checkpoint import Checkpoint, SignedNote, origin_for
from relay.audit.merkle import verify_consistency
from relay.audit.state import AuditState
from relay.audit.witness import PartnerStatus
from relay.config import load_config
from relay.core.receipts import ReceiptStatus, verify_receipt
from relay.http.audit_client import AuditClient
from relay.staff_auth import StaffRole
from relay.tls import BundleSource, client_context

NODE, PARTNER = "420106", "320982"  # the node run as two workers; its partner (SQLite)
MATTER = "food-business-licence"
FLOOD = int(os.environ.get("WORKERS_FLOOD", "120"))
PER_CASE = 10
TIMERS = (  # a dead worker's cases are taken over after the lease: 6 s here, not 2 min
    '[outbox]\nbase_backoff = "50ms"\nmax_backoff = "500ms"\nbatch_size = 10\nlease = "6s"\n'
    '[limits]\nrequest_timeout = "5s"\n'
    '[audit]\ncheckpoint_interval = "200ms"\nwitness_interval = "300ms"\n'
)


@dataclass
class Setup:
    pki: Pki
    partner: Path  # the partner's node.toml
    workers: list[Path]  # each worker's node.toml
    federation_ports: list[int]  # each worker's federation port, behind HAProxy
    lb_port: int


def _setup(pki: Pki, base: Path, pg_url: str) -> Setup:
    now = datetime.now(UTC).replace(microsecond=0)
    agreement = write_agreement(base / "agreement.json", {NODE: pki.a, PARTNER: pki.b}, at=now)
    lb_port, *partner_ports = free_ports(4)
    shared = base / "shared"
    shared.mkdir()
    extra = f'[agreements]\nfiles = ["{agreement}"]\n' + TIMERS
    partner = write_config(base / "partner", pki, pki.b, PARTNER,
                           ports=tuple(partner_ports),  # type: ignore[arg-type]
                           partners=((NODE, pki.a / "node.json",
                                      f"https://127.0.0.1:{lb_port}"),),
                           extra=extra)  # fmt: skip
    node_extra = (
        extra
        + f'[database]\nurl = "{pg_url}"\nblob_dir = "{shared / "blobs"}"\n'
        + f'[staff]\ntoken_key = "{shared / "staff-token.key"}"\n'
    )
    workers, federation_ports = [], []
    for i in (1, 2):
        ports = free_ports(3)
        federation_ports.append(ports[0])
        to_partner = ((PARTNER, pki.b / "node.json", f"https://127.0.0.1:{partner_ports[0]}"),)
        worker = write_config(base / f"worker-{i}", pki, pki.a, NODE, ports=ports,  # type: ignore[arg-type]
                              partners=to_partner, extra=node_extra)  # fmt: skip
        workers.append(worker)
    return Setup(pki, partner, workers, federation_ports, lb_port)


async def _queue(config: Path, to: str, cases: int, tag: str) -> dict[str, Sent]:
    """Queue ``cases * PER_CASE`` packets for ``to``: the cases side by side, the steps
    of each in order."""
    sent: dict[str, Sent] = {}
    async with staff(config, StaffRole.CLERK) as clerk:

        async def one_case(case: int) -> None:
            for step in range(PER_CASE):
                summary = await clerk.send(
                    {"to": to, "case_id": f"{tag}-{case:03d}", "matter": MATTER,
                     "action": "submit", "mode": "proxy_receipt",
                     "content": {"case": case, "step": step}},
                    [],
                )  # fmt: skip
                sent[summary["packet_id"]] = Sent(summary["packet_id"], summary["case_id"],
                                                  summary["seq"], summary["digest"])  # fmt: skip

        await asyncio.gather(*(one_case(c) for c in range(cases)))
    return sent


async def _delivered(config: Path) -> int:
    outbox = await staff(config).get("/staff/v1/outbox", {"state": "delivered"})
    return len(outbox["items"])


async def _receipts_verify(sender: Path, receiver_id: str, pki: Pki) -> list[int]:
    """Every receipt in ``sender``'s outbox verifies as ``receiver_id``'s acceptance of
    that packet; the receiver's log positions they name."""
    items = (await staff(sender).get("/staff/v1/outbox"))["items"]
    positions = []
    for item in items:
        receipt = verify_receipt(item["receipt"], pki.bundle, at=datetime.now(UTC),
                                 expected_from=receiver_id)  # fmt: skip
        assert receipt.status is ReceiptStatus.ACCEPTED, receipt
        assert receipt.packet_id == item["packet"]["packet_id"]
        assert receipt.packet_digest == item["packet"]["digest"]
        assert receipt.log_index is not None
        assert receipt.log_size is not None
        assert receipt.log_index < receipt.log_size
        positions.append(receipt.log_index)
    twice = [i for i, n in Counter(positions).items() if n > 1]
    assert not twice, f"two receipts name the same log position: {twice[:5]}"
    return positions


def _audit_client(setup: Setup) -> AuditClient:
    """The partner's view of the node's audit endpoints, through HAProxy."""
    bundle = BundleSource(setup.pki.bundle_path)
    context = client_context(bundle.current(), setup.pki.b / "tls.pem", setup.pki.b / "tls.key")
    return AuditClient(NODE, f"https://127.0.0.1:{setup.lb_port}", bundle=bundle,
                       ssl_context=context, clock=lambda: datetime.now(UTC),
                       timeout=30)  # fmt: skip


def _size(note: bytes) -> Checkpoint:
    return Checkpoint.parse(SignedNote.parse(note).text)


def _witnessed(partner: Path) -> tuple[PartnerStatus, int | None]:
    """What the partner's witness holds about the node: its status, the size cosigned."""
    state = AuditState(load_config(partner).data_dir / "relay.sqlite3")
    try:
        held = state.partner(origin_for(NODE))
        return held.status, None if held.checkpoint is None else held.checkpoint.size
    finally:
        state.close()


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("victim", ["any-worker", "the-one-haproxy-sends-to"])
async def test_kill_9_of_one_of_two_workers_mid_flood_loses_and_repeats_nothing(
    victim: str, workers_pki: Pki, pg_url: str, tmp_path: Path
) -> None:
    setup = _setup(workers_pki, tmp_path, pg_url)
    first = victim == "the-one-haproxy-sends-to"
    partner = Proc(setup.partner)
    workers = [Worker(c, c.parent / "serve.log", level="WARNING") for c in setup.workers]
    servers = {f"w{i + 1}": ("127.0.0.1", p) for i, p in enumerate(setup.federation_ports)}
    total_in, total_out = FLOOD // PER_CASE * PER_CASE, FLOOD // PER_CASE // 2 * PER_CASE
    try:
        await asyncio.gather(partner.start(), *(w.start() for w in workers))
        with haproxy(tmp_path / "haproxy", setup.lb_port, servers,
                     balance="first" if first else "roundrobin") as lb:  # fmt: skip
            audit = _audit_client(setup)
            try:
                leading = [await leads(c) for c in setup.workers]
                assert leading.count(True) == 1, leading
                # roundrobin: both workers take the flood, the leader is killed; first:
                # HAProxy sends all to the first worker (while it is up), which is killed
                dead = 0 if first else leading.index(True)
                alive = 1 - dead
                before = await audit.checkpoint()
                # the partner floods the node; the node sends back (through the worker
                # that stays, whose staff listener the clerk uses)
                flood = asyncio.create_task(_queue(setup.partner, NODE, total_in // PER_CASE, "P"))
                back = asyncio.create_task(
                    _queue(setup.workers[alive], PARTNER, total_out // PER_CASE, "N")
                )
                await wait_for(lambda: _at_least(setup.partner, total_in // 10),
                               "a tenth of the flood")  # fmt: skip
                assert await _delivered(setup.partner) < total_in, "flood over before the kill"
                if first:
                    sessions = lb.sessions()
                    assert sessions["w1"] > 0, sessions
                    assert sessions["w2"] == 0, sessions
                await workers[dead].kill9()
                from_partner, to_partner = await flood, await back
                await wait_for(lambda: _all_delivered(setup.partner, total_in),
                               "the partner's packets delivered", timeout=600)  # fmt: skip
                survivor = setup.workers[alive]
                await wait_for(lambda: _all_delivered(survivor, total_out),
                               "the node's packets delivered", timeout=600)  # fmt: skip
                if first:
                    assert lb.sessions()["w2"] > 0  # HAProxy moved to the survivor
                # the survivor leads (took over if the dead worker led): checkpoints go on
                await wait_for(lambda: leads(survivor), "the survivor to lead")
                await assert_exactly_once(
                    Federation(workers_pki, setup.partner, survivor, 0, 0, 0), from_partner
                )
                await assert_exactly_once(
                    Federation(workers_pki, survivor, setup.partner, 0, 0, 0), to_partner
                )
                positions = await _receipts_verify(setup.partner, NODE, workers_pki)
                await _receipts_verify(survivor, PARTNER, workers_pki)
                # one consistent log: the partner's witness cosigned the final checkpoint
                # (never a fork), and it extends the one fetched before the flood
                final = _size(await audit.checkpoint())
                assert final.size > max(positions)

                async def cosigned_final() -> bool:
                    status, size = _witnessed(setup.partner)
                    assert status is not PartnerStatus.HALTED, "the partner saw a fork"
                    return size is not None and size >= final.size

                await wait_for(cosigned_final, "the partner to cosign the final checkpoint")
                old = _size(before)
                proof = await audit.consistency(old.size, final.size)
                verify_consistency(old.size, final.size, proof, old.root_hash, final.root_hash)
            finally:
                await audit.close()
    finally:
        for worker in workers:
            await worker.stop()
        await partner.stop()
    said = "".join(w.said() for w in workers) + partner.said()
    assert "Traceback" not in said, said[-4000:]


async def _at_least(config: Path, count: int) -> bool:
    return await _delivered(config) >= count


async def _all_delivered(config: Path, total: int) -> bool:
    return await _delivered(config) == total
