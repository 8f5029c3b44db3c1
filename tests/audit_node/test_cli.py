"""``tongban audit``: checkpoint, verify --partner, proof and verify-bundle on real nodes."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
from audit_node_support import IDS, Federation, base_leaves, rewrite_log
from cryptography import x509

from relay.audit.checkpoint import NoteKey, open_checkpoint, origin_for
from relay.audit.service import Outcome
from relay.cli import main

A, B, _ = IDS


async def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(argv))  # the CLI runs its own event loop
    out, err = capsys.readouterr()
    return code, out, err


async def test_verify_partner_passes_when_everything_is_in_its_cosigned_log_and_fails_otherwise(
    pair: Federation, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = pair[A], pair[B]
    await a.send(B, "CASE-1")
    await a.send(B, "CASE-2")
    received = await b.send(A, "CASE-3")
    verify = ("audit", "verify", "--config", str(a.config_path), "--partner", B)

    # nothing cosigned yet: nothing can be proved
    code, _, err = await _cli(capsys, *verify)
    assert code == 1
    assert "no checkpoint of node 320982 has been cosigned yet" in err

    assert [r.outcome for r in await a.live.witness_round()] == [Outcome.COSIGNED]
    code, out, _ = await _cli(capsys, *verify)
    assert code == 0
    n = 6 + base_leaves(pair)
    expected = f"3 of 3 packets exchanged with 320982 are included in its log of {n} leaves"
    assert expected in out

    # a packet sent after the checkpoint A cosigned is not (yet) provable
    late = await a.send(B, "CASE-4")
    code, out, err = await _cli(capsys, *verify)
    assert code == 1
    assert [line.split("\t")[:3] for line in out.splitlines()] == [["missing", "packet-sent", late]]
    assert "3 of 4 packets" in err
    assert [r.outcome for r in await a.live.witness_round()] == [Outcome.COSIGNED]
    assert (await _cli(capsys, *verify))[0] == 0

    # B rewrites an old leaf: its proofs no longer match the root A cosigned
    await b.stop()
    rewrite_log(b.db, change=0)
    await b.start()
    code, out, _ = await _cli(capsys, *verify)
    assert code == 1
    verdicts = {tuple(line.split("\t")[:3]) for line in out.splitlines()}
    assert ("bad-proof", "packet-received", received) in verdicts
    assert {v[0] for v in verdicts} == {"bad-proof"}
    assert len(verdicts) == 4


async def test_proof_bundle_verifies_offline_with_only_the_trust_bundle(
    pair: Federation, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    a, b = pair[A], pair[B]
    packet = await a.send(B, "CASE-1")
    await b.live.witness_round()  # B cosigns A's checkpoint and hands it back
    out_file = tmp_path / "proof.json"
    code, _, _ = await _cli(
        capsys, "audit", "proof", packet, "--config", str(a.config_path), "--out", str(out_file)
    )
    assert code == 0
    bundle = json.loads(out_file.read_text())
    assert bundle["format"] == "tongban-audit-proof/1"
    assert json.loads(base64.b64decode(bundle["leaf"]))["packet"]["id"] == packet
    # stop both nodes: verification needs nothing but the file and the trust bundle
    await a.stop()
    await b.stop()
    trust = str(pair.pki.bundle_path)
    code, out, _ = await _cli(capsys, "audit", "verify-bundle", str(out_file), "--trust", trust)
    assert code == 0
    assert f"of tongban.node/{A}" in out
    assert f"cosigned by {B}" in out

    tampered = dict(bundle, index=bundle["index"] + 1)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(tampered))
    code, _, err = await _cli(capsys, "audit", "verify-bundle", str(bad), "--trust", trust)
    assert code == 1
    assert "error[invalid-bundle]" in err
    code, _, err = await _cli(
        capsys, "audit", "verify-bundle", str(tmp_path / "none.json"), "--trust", trust
    )
    assert code == 2
    (tmp_path / "garbage.json").write_bytes(b"\xff not json")
    code, _, err = await _cli(
        capsys, "audit", "verify-bundle", str(tmp_path / "garbage.json"), "--trust", trust
    )
    assert code == 2  # bad input; a bundle that does not verify is exit 1
    assert "error[not-a-bundle]" in err
    code, _, err = await _cli(capsys, "audit", "proof", "nope", "--config", str(a.config_path))
    assert code == 1
    assert "error[unknown-packet]" in err


async def test_checkpoint_on_demand_from_the_cli_and_the_staff_api(
    pair: Federation, capsys: pytest.CaptureFixture[str]
) -> None:
    a = pair[A]
    await a.send(B, "CASE-1")
    status, body = await a.staff_request(pair.pki, "POST", "/staff/v1/audit/checkpoint")
    assert status == 201
    cert = x509.load_pem_x509_certificate((pair.pki.dirs[A] / "seal.pem").read_bytes())
    key = NoteKey.from_certificate(origin_for(A), cert)
    signed = open_checkpoint(body["checkpoint"].encode(), key)
    assert signed.checkpoint.size == a.live.service.state.log.size() == 2 + base_leaves(pair)
    # the log has not grown: the CLI answers the same checkpoint
    code, out, _ = await _cli(capsys, "audit", "checkpoint", "--config", str(a.config_path))
    assert code == 0
    assert out == body["checkpoint"]
    await a.send(B, "CASE-2")
    code, out, _ = await _cli(capsys, "audit", "checkpoint", "--config", str(a.config_path))
    assert code == 0
    assert open_checkpoint(out.encode(), key).checkpoint.size == 4 + base_leaves(pair)
