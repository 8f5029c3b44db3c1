"""Two nodes in one process on their SQLite files, for kill -9 tests of both.

Usage: ``python pair_process.py PKI_DIR DATA_DIR TOTAL``. Node 420106 creates packets
(50 cases, in order) until its outbox holds TOTAL, delivering to 320982 over a
FakeNetwork as it goes, then drains its outbox and exits 0. Killed at any moment and
started again, it carries on from what its files hold.
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from relay_core_support import DAFENG, START, WUCHANG, FakeAgreement

from relay.core.directory import Directory
from relay.core.fakes import FakeNetwork
from relay.core.service import RelayNode
from relay.core.sqlite_store import SqliteStore
from signing.certificates import TrustBundle
from signing.nodedir import load_node_keys

CASES = 50


async def main(pki_dir: Path, data_dir: Path, total: int) -> None:
    fed = pki_dir / "federation"
    bundle = TrustBundle.from_pem((fed / "root.pem").read_bytes() + (fed / "crl.pem").read_bytes())
    network = FakeNetwork(rng=random.Random())
    nodes = {}
    for node_id in (WUCHANG, DAFENG):
        directory = Directory(bundle)
        for node_json in sorted(pki_dir.glob("[0-9]*/node.json")):
            directory.add(node_json.read_bytes(), at=START)
        nodes[node_id] = RelayNode(
            node_id=node_id,
            keys=load_node_keys(pki_dir / node_id),
            bundle=bundle,
            directory=directory,
            authorizer=FakeAgreement(),
            store=SqliteStore(data_dir / node_id),
            link=network.link(node_id),
            clock=lambda: START,
            rng=random.Random(),
        )
        network.attach(nodes[node_id])
    sender = nodes[WUCHANG]
    made = len(sender.list_outbox())
    while made < total:
        await sender.create_packet(
            to=DAFENG, case_id=f"case-{made % CASES}", matter="food-business-licence",
            action="submit", mode="proxy_receipt", content={"n": made},
        )  # fmt: skip
        made += 1
        if made % 25 == 0:
            await sender.deliver_once()
            print("created", made, flush=True)
    while sender.list_outbox(state=None) and any(
        i.state.value in ("queued", "in_flight") for i in sender.list_outbox()
    ):
        await sender.deliver_once()
        print("drained a pass", flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])))
