"""A receiving node in its own process, for kill -9 tests.

Usage: ``python receiver_process.py PKI_DIR DATA_DIR NODE_ID``. Reads one JSON request
per line on stdin (``{"peer": id, "packets": [token, ...]}``), answers one JSON line
(the receipts) on stdout. Time is fixed at ``relay_core_support.START``.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from relay_core_support import START, FakeAgreement

from relay.core.directory import Directory
from relay.core.fakes import FakeNetwork
from relay.core.service import RelayNode
from relay.core.sqlite_store import SqliteStore
from signing.certificates import TrustBundle
from signing.nodedir import load_node_keys


async def main(pki_dir: Path, data_dir: Path, node_id: str) -> None:
    fed = pki_dir / "federation"
    bundle = TrustBundle.from_pem((fed / "root.pem").read_bytes() + (fed / "crl.pem").read_bytes())
    directory = Directory(bundle)
    for node_json in sorted(pki_dir.glob("[0-9]*/node.json")):
        directory.add(node_json.read_bytes(), at=START)
    node = RelayNode(
        node_id=node_id,
        keys=load_node_keys(pki_dir / node_id),
        bundle=bundle,
        directory=directory,
        authorizer=FakeAgreement(),
        store=SqliteStore(data_dir),
        link=FakeNetwork(rng=random.Random(0)).link(node_id),  # never sends
        clock=lambda: START,
        rng=random.Random(0),
    )
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        receipts = await node.receive_batch(request["peer"], request["packets"])
        print(json.dumps(receipts), flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]))
