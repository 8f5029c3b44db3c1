"""Issue 14: the backup drill. Two real nodes (in-process ``Node`` objects with the
audit log, over mutual TLS on 127.0.0.1, witness rounds run by the test); the receiver
B is backed up with the real ``tongban backup`` command while packets flow from A,
destroyed (stopped, data directory deleted) and restored with ``tongban restore``:

- everything B had acknowledged (signed an accepting receipt for) before the backup
  began is in B's inbox again, with the very receipt A holds;
- B's audit log verifies: its root recomputed from the leaves (RFC 9162 hashing, written
  out here) is the root of the latest checkpoint B signed;
- A's witnessing of B still agrees: A cosigned a checkpoint of B before the backup and
  cosigns B's next one after the restore (a consistency proof from the old one).

A restore is refused while B runs and from a damaged backup. And the limit of any
point-in-time backup, shown rather than hidden: a partner that witnessed B *after* the
backup sees the restored log as a rewritten history (a fork), as it must.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import shutil
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from audit_node_support import IDS, Federation, Pki, RunningNode, make_pki, write_configs

from relay.audit.service import Outcome

A, B = IDS[0], IDS[1]


@pytest.fixture(scope="module")
def audit_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("drill-pki"))


@pytest.fixture
async def pair(audit_pki: Pki, tmp_path: Path) -> AsyncIterator[Federation]:
    federation = Federation(audit_pki, write_configs(audit_pki, tmp_path, (A, B)))
    try:
        for node in federation.nodes.values():
            await node.start()
        yield federation
    finally:
        for node in federation.nodes.values():
            await node.stop()


async def _tongban(*args: str | Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay.cli", *map(str, args),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(120):
        out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def _mth(hashes: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 Merkle tree hash over leaf hashes."""
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(hashes[:k]) + _mth(hashes[k:])).digest()


def _log_verifies(database: Path) -> int:
    """The size of the latest checkpoint in ``database``, after checking its root
    against the leaves."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT note FROM audit_checkpoints ORDER BY size DESC LIMIT 1")
        note = row.fetchone()[0]
        leaves = [bytes(r[0]) for r in conn.execute("SELECT data FROM audit_leaves ORDER BY idx")]
    finally:
        conn.close()
    origin, size_text, root_b64 = bytes(note).decode().split("\n")[:3]
    assert origin == f"tongban.node/{B}"
    size = int(size_text)
    assert 0 < size <= len(leaves)
    hashes = [hashlib.sha256(b"\x00" + leaf).digest() for leaf in leaves[:size]]
    assert _mth(hashes) == base64.b64decode(root_b64), "the log does not match its checkpoint"
    return size


async def _witness_b(node_a: RunningNode) -> Outcome:
    results = {r.partner: r for r in await node_a.live.witness_round()}
    return results[B].outcome


async def _delivered(node: RunningNode) -> dict[str, tuple[str, list[str]]]:
    """Packet id → (B's receipt, digests of its sealed attachments), as A holds them."""
    outbox = await node.staff().get("/staff/v1/outbox", {"state": "delivered"})
    return {
        i["packet"]["packet_id"]: (i["receipt"], [a["digest"] for a in i["packet"]["attachments"]])
        for i in outbox["items"]
    }


async def _backup_under_load(
    node_a: RunningNode, node_b: RunningNode, out: Path
) -> dict[str, tuple[str, list[str]]]:
    """Run ``tongban backup`` of B while A keeps sending (every third packet with an
    attachment of its own); return what B had acknowledged before the backup began."""
    for n in range(3):
        await node_a.send(B, f"W-{n}")
    stop, backing_up, count = asyncio.Event(), asyncio.Event(), {"sent": 0, "during": 0}

    async def load() -> None:
        async with node_a.staff() as clerk:
            while not stop.is_set():
                files = []
                if count["sent"] % 3 == 0:
                    files = [out.parent / f"scan-{count['sent']}.pdf"]
                    files[0].write_bytes(os.urandom(40_000))
                await clerk.send(
                    {"to": B, "case_id": f"L-{count['sent'] % 7}", "matter":
                     "food-business-licence", "action": "submit", "mode": "proxy_receipt",
                     "content": {"n": count["sent"]}},
                    files,
                )  # fmt: skip
                count["sent"] += 1
                count["during"] += backing_up.is_set()

    loader = asyncio.create_task(load())
    try:
        async with asyncio.timeout(120):
            while len(await _delivered(node_a)) < 3 + 5:  # load packets are arriving
                assert not loader.done(), loader
                await asyncio.sleep(0.05)
        acknowledged = await _delivered(node_a)
        backing_up.set()
        code, said = await _tongban("backup", "--config", node_b.config_path, "--out", out)
        backing_up.clear()
    finally:
        stop.set()
        await loader
    assert code == 0, said
    assert count["during"] > 0, "no packet was sent while the backup ran"
    return acknowledged


async def _destroy_and_restore(node_b: RunningNode, backup: Path, tmp: Path) -> None:
    code, said = await _tongban(
        "restore", "--config", node_b.config_path, "--from", backup, "--replace"
    )
    assert code == 2, said
    assert "running node" in said
    data = node_b.config.data_dir
    await node_b.stop()
    shutil.rmtree(data)
    damaged = tmp / "damaged"
    shutil.copytree(backup, damaged)
    db = bytearray((damaged / "relay.sqlite3").read_bytes())
    db[len(db) // 2] ^= 1
    (damaged / "relay.sqlite3").write_bytes(bytes(db))
    code, said = await _tongban("restore", "--config", node_b.config_path, "--from", damaged)
    assert code == 2, said
    assert "damaged" in said
    assert not data.exists()  # nothing half-written
    code, said = await _tongban("restore", "--config", node_b.config_path, "--from", backup)
    assert code == 0, said


async def test_backup_under_load_destroy_restore(pair: Federation, tmp_path: Path) -> None:
    node_a, node_b = pair[A], pair[B]
    await node_a.send(B, "W-first")
    assert await _witness_b(node_a) is Outcome.COSIGNED  # A has witnessed B before
    witnessed = _log_verifies(node_b.db)
    backup = tmp_path / "backup-b"
    acknowledged = await _backup_under_load(node_a, node_b, backup)

    await _destroy_and_restore(node_b, backup, tmp_path)
    assert _log_verifies(node_b.db) == witnessed  # the restored log matches its checkpoint
    await node_b.start()
    held = {i["packet"]["packet_id"]: i["receipt"] for i in
            (await node_b.staff().get("/staff/v1/inbox"))["items"]}  # fmt: skip
    missing = sorted(set(acknowledged) - set(held))
    assert not missing, f"{len(missing)} acknowledged packets lost, e.g. {missing[:3]}"
    assert all(held[p] == r for p, (r, _) in acknowledged.items()), "a receipt differs"
    blobs = [d for _, digests in acknowledged.values() for d in digests]
    assert blobs, "no attachment was acknowledged before the backup"
    data = node_b.config.data_dir
    for digest in blobs:  # the attachments came back with the database rows naming them
        blob = data / "blobs" / digest[:2] / digest
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == digest
    with_file = next(p for p, (_, digests) in acknowledged.items() if digests)
    opened = await node_b.staff().get(f"/staff/v1/packets/{with_file}")
    assert opened["packet"]["attachments"][0]["digest"] in blobs

    await node_a.send(B, "W-after")  # the restored node works on
    assert await _witness_b(node_a) is Outcome.COSIGNED  # consistent with what A saw
    grown = _log_verifies(node_b.db)
    assert grown > witnessed
    alerts = (await node_a.staff().get("/staff/v1/alerts"))["alerts"]
    assert not [a for a in alerts if a["source"] == "audit"], alerts


async def test_a_partner_that_witnessed_after_the_backup_sees_a_rewritten_log(
    pair: Federation, tmp_path: Path
) -> None:
    node_a, node_b = pair[A], pair[B]
    await node_a.send(B, "W-before")
    backup = tmp_path / "backup-b"
    code, said = await _tongban("backup", "--config", node_b.config_path, "--out", backup)
    assert code == 0, said
    await node_a.send(B, "W-later")  # acknowledged after the backup...
    assert await _witness_b(node_a) is Outcome.COSIGNED  # ...and witnessed by A
    await node_b.stop()
    code, said = await _tongban(
        "restore", "--config", node_b.config_path, "--from", backup, "--replace"
    )
    assert code == 0, said
    await node_b.start()
    await node_a.send(B, "W-after")
    assert await _witness_b(node_a) is Outcome.FORK
