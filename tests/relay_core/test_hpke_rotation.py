"""Issue 14: HPKE key rotation with an overlap. A node adds new keys to its descriptor;
packets sealed to the old key while the rotation spreads are still opened; senders that
took the new descriptor seal to the new key; after retirement the old key is gone and a
packet sealed to it is refused."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from relay_core_support import DAFENG, WUCHANG, Federation, drain, send

from certs.hpke_rotation import RETIRE_FILE, read_descriptor, retire_due, rotate_hpke
from relay.core.model import OutboxState
from signing.encoding import b64url_decode
from signing.errors import MalformedInput
from signing.nodedir import load_node_keys


def _sealed_kid(federation: Federation, sender: str, packet_id: str) -> str:
    out = federation.stores[sender].outgoing(packet_id)
    assert out is not None
    payload = json.loads(b64url_decode(out.token.split(".")[1]))
    return str(payload["sealed"]["kid"])


def _outcome(federation: Federation, sender: str) -> dict[str, tuple[OutboxState, str | None]]:
    return {
        i.summary.packet_id: (i.state, i.reason) for i in federation.nodes[sender].list_outbox()
    }


async def test_packets_sealed_to_the_old_key_open_through_the_overlap_and_not_after(
    federation: Federation, tmp_path: Path
) -> None:
    fed = federation
    folder = tmp_path / "dafeng-keys"  # the session's PKI stays as it is
    shutil.copytree(fed.pki.keys[DAFENG].directory, folder)
    old_kids = {k.kid for k in read_descriptor(folder).hpke_keys}

    # queued at WUCHANG, sealed to DAFENG's current keys, while DAFENG is away
    fed.network.down.add(DAFENG)
    [early] = await send(fed, WUCHANG, DAFENG, "before-rotation")
    assert _sealed_kid(fed, WUCHANG, early) in old_kids

    new_kids = rotate_hpke(folder, at=fed.clock(), overlap=timedelta(days=8))
    assert len(new_kids) == len(old_kids)
    assert not set(new_kids) & old_kids
    rotated = read_descriptor(folder)
    assert [k.kid for k in rotated.hpke_keys][: len(new_kids)] == list(new_kids)
    assert old_kids <= {k.kid for k in rotated.hpke_keys}  # both listed in the overlap
    keys = load_node_keys(folder)
    assert keys.hpke_keys[0].public_key().kid == new_kids[0]  # current first
    assert {k.public_key().kid for k in keys.hpke_keys} == old_kids | set(new_kids)

    # DAFENG restarts with both keys; its partners take the new descriptor
    new_descriptor = keys.descriptor_bytes
    directory = fed.directory()
    directory.add(new_descriptor, at=fed.clock())
    fed.start(DAFENG, keys=keys, directory=directory)
    fed.nodes[WUCHANG]._directory.add(new_descriptor, at=fed.clock())
    [late] = await send(fed, WUCHANG, DAFENG, "after-rotation")
    assert _sealed_kid(fed, WUCHANG, late) in new_kids

    fed.network.down.clear()
    await drain(fed, WUCHANG)
    outcome = _outcome(fed, WUCHANG)
    assert outcome[early][0] is OutboxState.DELIVERED  # sealed to the old key, opened
    assert outcome[late][0] is OutboxState.DELIVERED
    assert {i.summary.packet_id for i in fed.nodes[DAFENG].list_inbox()} == {early, late}

    # before the retirement instant nothing is retired
    assert retire_due(folder, at=fed.clock() + timedelta(days=7)) == ()
    fed.clock.advance(days=8)
    assert set(retire_due(folder, at=fed.clock())) == old_kids
    keys = load_node_keys(folder)
    assert {k.public_key().kid for k in keys.hpke_keys} == set(new_kids)
    assert {k.kid for k in read_descriptor(folder).hpke_keys} == set(new_kids)
    assert json.loads((folder / RETIRE_FILE).read_bytes()) == {}
    directory = fed.directory()
    directory.add(keys.descriptor_bytes, at=fed.clock())
    fed.start(DAFENG, keys=keys, directory=directory)

    # a sender still on the old descriptor seals to the retired key: refused
    fed.start(WUCHANG, directory=fed.directory())
    [stale] = await send(fed, WUCHANG, DAFENG, "stale-descriptor")
    assert _sealed_kid(fed, WUCHANG, stale) in old_kids
    await drain(fed, WUCHANG)
    assert _outcome(fed, WUCHANG)[stale] == (OutboxState.REJECTED, "malformed")


def test_retiring_every_key_is_refused_and_the_overlap_must_be_positive(
    federation: Federation, tmp_path: Path
) -> None:
    folder = tmp_path / "keys"
    shutil.copytree(federation.pki.keys[DAFENG].directory, folder)
    with pytest.raises(MalformedInput):
        rotate_hpke(folder, at=federation.clock(), overlap=timedelta(0))
    kids = {k.kid for k in read_descriptor(folder).hpke_keys}
    (folder / RETIRE_FILE).write_text(
        json.dumps({kid: federation.clock().isoformat() for kid in kids})
    )
    with pytest.raises(MalformedInput, match="without a key"):
        retire_due(folder, at=federation.clock())
    assert {k.kid for k in read_descriptor(folder).hpke_keys} == kids  # nothing changed


def test_the_cli_rotates_and_retires_with_clear_errors(
    federation: Federation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from relay.cli import main

    folder = tmp_path / "keys"
    shutil.copytree(federation.pki.keys[DAFENG].directory, folder)
    before = {k.kid for k in read_descriptor(folder).hpke_keys}
    assert main(["pki", "rotate-hpke", "--node-dir", str(folder), "--overlap", "8d"]) == 0
    after = {k.kid for k in read_descriptor(folder).hpke_keys}
    assert before < after
    assert main(["pki", "retire-hpke", "--node-dir", str(folder)]) == 0  # not due yet
    assert "no HPKE key" in capsys.readouterr().out
    assert {k.kid for k in read_descriptor(folder).hpke_keys} == after
    assert main(["pki", "rotate-hpke", "--node-dir", str(folder), "--overlap", "soon"]) == 2
    assert "duration" in capsys.readouterr().err
    # an overlap shorter than a packet's life: packets sealed to the old keys would stay
    # shut once retire-hpke drops them
    assert main(["pki", "rotate-hpke", "--node-dir", str(folder), "--overlap", "1ms"]) == 2
    assert "time to live" in capsys.readouterr().err
    assert {k.kid for k in read_descriptor(folder).hpke_keys} == after
    # a folder that is no node's is said to be so (it was "no key is due", exit 0)
    assert main(["pki", "retire-hpke", "--node-dir", str(tmp_path / "no-such-node")]) == 2
    assert "not a node descriptor" in capsys.readouterr().err


async def test_a_rotated_seal_certificate_is_accepted_and_old_receipts_still_verify(
    federation: Federation, tmp_path: Path
) -> None:
    """A new seal key and certificate under the same federation root: partners verify
    by the x5c chain, so receipts signed with the new seal are accepted and those
    signed with the old one keep verifying."""
    from certs.pki import issue_node
    from relay.core.receipts import ReceiptStatus, verify_receipt

    fed = federation
    [first] = await send(fed, WUCHANG, DAFENG, "before-seal-rotation")
    await drain(fed, WUCHANG)
    [item] = [i for i in fed.nodes[WUCHANG].list_outbox() if i.summary.packet_id == first]
    assert item.state is OutboxState.DELIVERED
    old_receipt = item.receipt
    assert old_receipt is not None

    fed.clock.advance(hours=1)
    folder = tmp_path / "dafeng-new-seal"
    issue_node(fed.pki.federation_dir, DAFENG, "office", "127.0.0.1", folder, now=fed.clock())
    keys = load_node_keys(folder)
    assert keys.seal.chain[0] != fed.pki.keys[DAFENG].seal.chain[0]
    directory = fed.directory()
    directory.add(keys.descriptor_bytes, at=fed.clock())
    fed.start(DAFENG, keys=keys, directory=directory)
    fed.nodes[WUCHANG]._directory.add(keys.descriptor_bytes, at=fed.clock())

    [second] = await send(fed, WUCHANG, DAFENG, "after-seal-rotation")
    await drain(fed, WUCHANG)
    [item] = [i for i in fed.nodes[WUCHANG].list_outbox() if i.summary.packet_id == second]
    assert item.state is OutboxState.DELIVERED  # its receipt, new seal, verified
    assert item.receipt is not None
    bundle = fed.pki.current_bundle()
    new = verify_receipt(item.receipt, bundle, at=fed.clock(), expected_from=DAFENG)
    old = verify_receipt(old_receipt, bundle, at=fed.clock(), expected_from=DAFENG)
    assert (new.status, old.status) == (ReceiptStatus.ACCEPTED, ReceiptStatus.ACCEPTED)
    assert old.packet_id == first
