"""The crypto helper process (relay.core.helper): a real child process that verifies
and opens incoming batches and seals new packets for a node, with the same results as
the node's own code, the trust bundle in force, a fallback when it is gone, and no life
of its own after the node's."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from relay_core_support import (
    ACTION,
    DAFENG,
    MATTER,
    MODE,
    OUTSIDER,
    START,
    WUCHANG,
    FakeAgreement,
    FakeClock,
    Federation,
    Pki,
    drain,
    facts,
    forge,
    make_pki,
    mixed_pki,
    send,
    stage,
)

import relay.core.helper as helper_module
from certs.pki import revoke
from relay.core.fakes import FakeNetwork
from relay.core.fields import micros_time, time_micros
from relay.core.helper import CryptoHelper
from relay.core.helper_worker import frame, sign_outer
from relay.core.model import OutboxState
from relay.core.outbox import OutboxPolicy
from relay.core.packets import AttachmentRef, RoutingFacts, SealedContent, key_ring
from relay.core.ports import AgreementRef
from relay.core.receipts import ReceiptStatus, verify_receipt
from relay.core.receiver import Examined, examine
from signing.encoding import b64url, b64url_decode


def _federation(pki: Pki, root: Path) -> Federation:
    return Federation(
        pki=pki, root=root, clock=FakeClock(), agreement=FakeAgreement(),
        network=FakeNetwork(rng=random.Random(3)), policy=OutboxPolicy(batch_size=16),
    )  # fmt: skip


def _tampered(token: str) -> str:
    head, payload, sig = token.split(".")
    raw = bytearray(b64url_decode(sig))
    raw[0] ^= 1
    return f"{head}.{payload}.{b64url(bytes(raw))}"


def _same(a: Examined, b: Examined) -> bool:
    if isinstance(a.packet, str) or isinstance(b.packet, str):
        return a.packet == b.packet and a.content == b.content and a.body == b.body
    return (
        a.packet.token == b.packet.token
        and a.packet.digest == b.packet.digest
        and a.packet.facts == b.packet.facts
        and a.packet.signer == b.packet.signer
        and (a.content, a.body) == (b.content, b.body)
    )


async def test_the_helper_examines_a_batch_as_the_thread_does(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    fed = _federation(pki, tmp_path)
    good = [
        forge(fed, pki.keys[WUCHANG], DAFENG, facts(fed, WUCHANG, DAFENG, case=f"c{i}"),
              body={"applicant": "张三", "i": i})
        for i in range(5)
    ]  # fmt: skip
    batch = [
        *good,
        _tampered(good[0]),  # bad-signature
        forge(fed, pki.keys[WUCHANG], WUCHANG, facts(fed, WUCHANG, WUCHANG)),  # not-for-me
        forge(fed, pki.keys[OUTSIDER], DAFENG, facts(fed, OUTSIDER, DAFENG)),  # sender-mismatch
        "不是包裹",  # malformed (not ASCII)
    ]
    ring = key_ring(pki.keys[DAFENG].hpke_keys)
    local = [examine(t, pki.bundle, ring, at=START, peer_id=WUCHANG, me=DAFENG) for t in batch]
    helper = CryptoHelper(pki.keys[DAFENG].hpke_keys, DAFENG, pki.keys[DAFENG].seal)
    try:
        remote = await helper.examine(batch, pki.bundle, at=START, peer_id=WUCHANG)
        assert remote is not None, "the helper did not answer"
        assert helper.answered["examine"] == 1
    finally:
        await helper.aclose()
    assert [isinstance(e.packet, str) for e in remote] == [False] * 5 + [True] * 4
    assert [e.packet for e in remote[5:]] == [
        "bad-signature", "not-for-me", "sender-mismatch", "malformed",
    ]  # fmt: skip
    assert all(_same(x, y) for x, y in zip(local, remote, strict=True))
    assert remote[2].body == {"applicant": "张三", "i": 2}


async def test_an_interrupt_for_the_terminal_leaves_the_helper_to_its_node(
    tmp_path: Path,
) -> None:
    """Ctrl-C reaches a terminal's whole process group: the helper ignores SIGINT (its
    node ends it by closing its stdin) and keeps answering."""
    pki = make_pki(tmp_path / "pki")
    fed = _federation(pki, tmp_path)
    token = forge(fed, pki.keys[WUCHANG], DAFENG, facts(fed, WUCHANG, DAFENG))
    helper = CryptoHelper(pki.keys[DAFENG].hpke_keys, DAFENG, pki.keys[DAFENG].seal)
    try:
        assert await helper.examine([token], pki.bundle, at=START, peer_id=WUCHANG)
        pid = helper.pid
        assert pid is not None
        os.kill(pid, signal.SIGINT)
        await asyncio.sleep(0.2)
        assert await helper.examine([token], pki.bundle, at=START, peer_id=WUCHANG)
        assert helper.pid == pid
        assert helper.answered["examine"] == 2
    finally:
        await helper.aclose()


async def test_batches_in_flight_come_back_in_their_own_time(tmp_path: Path) -> None:
    """Several batches queued at once: each is answered when the helper has examined it,
    not when the last one is (a sender waiting for the whole queue would stall the
    pipeline of lanes)."""
    pki = make_pki(tmp_path / "pki")
    fed = _federation(pki, tmp_path)
    tokens = [
        forge(fed, pki.keys[WUCHANG], DAFENG, facts(fed, WUCHANG, DAFENG, case=f"c{i}"))
        for i in range(4 * 40)
    ]
    helper = CryptoHelper(pki.keys[DAFENG].hpke_keys, DAFENG, pki.keys[DAFENG].seal)
    try:
        assert await helper.examine(tokens[:1], pki.bundle, at=START, peer_id=WUCHANG)
        done: list[int] = []

        async def batch(k: int) -> None:
            part = tokens[k * 40 : (k + 1) * 40]
            assert await helper.examine(part, pki.bundle, at=START, peer_id=WUCHANG)
            done.append(k)

        first = asyncio.ensure_future(batch(0))
        rest = asyncio.ensure_future(asyncio.gather(*(batch(k) for k in (1, 2, 3))))
        await first
        assert done == [0], "the first batch waited for the batches queued after it"
        await rest
    finally:
        await helper.aclose()


async def test_a_revoked_sender_is_refused_by_the_helper_from_the_next_batch(
    tmp_path: Path,
) -> None:
    pki = make_pki(tmp_path / "pki")
    fed = _federation(pki, tmp_path)
    fed.agreement.parties.add(OUTSIDER)
    receiver = fed.start(DAFENG, bundle=pki.current_bundle, crypto_helper=True)
    try:
        keys = pki.keys[OUTSIDER]
        first = forge(fed, keys, DAFENG, facts(fed, OUTSIDER, DAFENG, case="r"))
        [ok] = await receiver.receive_batch(OUTSIDER, [first])
        assert verify_receipt(ok, pki.bundle, at=START, expected_from=DAFENG).status is (
            ReceiptStatus.ACCEPTED
        )
        revoke(pki.federation_dir, (keys.directory / "seal.pem").read_bytes(), now=START)
        second = forge(fed, keys, DAFENG, facts(fed, OUTSIDER, DAFENG, case="s"))
        [refused] = await receiver.receive_batch(OUTSIDER, [second])
        assert verify_receipt(refused, pki.bundle, at=START, expected_from=DAFENG).reason == (
            "bad-signature"
        )
        assert receiver.helper is not None
        assert receiver.helper.answered["examine"] == 2, "the helper did not examine both"
        assert len(receiver.list_inbox()) == 1
    finally:
        await receiver.aclose()
        fed.close()


async def _until(check: Callable[[], bool], what: str) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"waited 5 s for {what}")


@pytest.mark.parametrize("failure", ["killed", "hung"])
async def test_a_node_whose_helper_failed_examines_itself_then_starts_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """The helper killed (SIGKILL), or hung (SIGSTOP: no answer within ANSWER_WITHIN, so
    the node kills it): the batch meanwhile is examined in a thread and delivered all
    the same; RESTART_AFTER later the node starts another helper."""
    pki = make_pki(tmp_path / "pki")
    fed = _federation(pki, tmp_path)
    sender = fed.start(WUCHANG)
    receiver = fed.start(DAFENG, crypto_helper=True)
    helper = receiver.helper
    assert helper is not None
    try:
        await send(fed, WUCHANG, DAFENG, "before")
        await drain(fed, WUCHANG)  # the helper started and answered
        first = helper.pid
        assert first is not None
        assert helper.answered["examine"] == 1
        if failure == "killed":
            os.kill(first, signal.SIGKILL)
            await _until(lambda: helper.pid is None, "the node to notice the helper's end")
        else:
            monkeypatch.setattr(helper_module, "ANSWER_WITHIN", 0.5)
            os.kill(first, signal.SIGSTOP)
        await send(fed, WUCHANG, DAFENG, "meanwhile")
        started = time.monotonic()
        await drain(fed, WUCHANG)  # examined in a thread
        assert time.monotonic() - started < 10
        assert helper.answered["examine"] == 1
        assert helper.fallbacks["examine"] == 1
        await _until(lambda: not _alive(first), "the failed helper to be gone")
        monkeypatch.setattr(helper_module, "RESTART_AFTER", 0.0)
        monkeypatch.setattr(helper_module, "ANSWER_WITHIN", 30.0)  # a new one starts up
        helper._down_until = 0.0  # the wait is over
        await send(fed, WUCHANG, DAFENG, "after")
        await drain(fed, WUCHANG)
        assert helper.pid not in (None, first)
        assert helper.answered["examine"] == 2
        cases = {item.summary.case_id for item in receiver.list_inbox()}
        assert cases == {"before", "meanwhile", "after"}
        assert [i.state for i in sender.list_outbox()] == [OutboxState.DELIVERED] * 3
    finally:
        await receiver.aclose()
        fed.close()


@pytest.mark.parametrize("profile", ["default", "sm"])
async def test_packets_sealed_by_the_helper_open_at_the_partner_and_at_home(
    tmp_path: Path, profile: str
) -> None:
    """The helper signs the inner JWS with the node's seal (Ed25519, or SM2 on an
    SM-profile node), seals it to the recipient and seals the node's own copy (AES or
    SM4 at rest): the partner opens the packet, its attachment included, and the sender
    reads its own copy."""
    pki = make_pki(tmp_path / "pki") if profile == "default" else mixed_pki(tmp_path / "pki")
    fed = _federation(pki, tmp_path)
    sender = fed.start(DAFENG, crypto_helper=True)  # SM2 seal in the mixed federation
    receiver = fed.start(WUCHANG)
    try:
        digest = await stage(sender, "营业执照".encode() * 1000)
        ids = [
            (
                await sender.create_packet(
                    to=WUCHANG,
                    case_id="c1",
                    matter=MATTER,
                    action=ACTION,
                    mode=MODE,
                    content={"step": i, "applicant": "张三"},
                    attachments=[digest] if i == 0 else [],
                )
            ).packet_id
            for i in range(3)
        ]
        assert sender.helper is not None
        assert sender.helper.answered["seal"] == 3, "the helper did not seal them"
        await drain(fed, DAFENG)
        for i, packet_id in enumerate(ids):
            there, home = receiver.read_packet(packet_id), sender.read_packet(packet_id)
            assert there.content == home.content == {"step": i, "applicant": "张三"}
            assert there.content_jws == home.content_jws
        assert len(receiver.read_packet(ids[0]).summary.attachments) == 1
        assert [i.state for i in sender.list_outbox()] == [OutboxState.DELIVERED] * 3
    finally:
        await sender.aclose()
        fed.close()


async def test_a_node_whose_helper_was_killed_seals_its_packets_itself(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    fed = _federation(pki, tmp_path)
    sender = fed.start(WUCHANG, crypto_helper=True)
    receiver = fed.start(DAFENG)
    helper = sender.helper
    assert helper is not None
    try:
        [before] = await send(fed, WUCHANG, DAFENG, "c")
        pid = helper.pid
        assert pid is not None
        assert helper.answered["seal"] == 1
        os.kill(pid, signal.SIGKILL)
        await _until(lambda: helper.pid is None, "the node to notice the helper's end")
        [after] = await send(fed, WUCHANG, DAFENG, "c")
        assert helper.answered["seal"] == 1
        await drain(fed, WUCHANG)
        assert receiver.read_packet(after).content == sender.read_packet(after).content
        assert receiver.read_packet(before).summary.seq == 1
        assert receiver.read_packet(after).summary.seq == 2
    finally:
        await sender.aclose()
        fed.close()


def test_a_helper_whose_node_died_mid_answer_ends_quietly(tmp_path: Path) -> None:
    """The node killed while its helper works: the answer meets a closed pipe, and the
    helper ends with status 0 and nothing on stderr (a node's log stays free of
    tracebacks that are not faults)."""
    pki = make_pki(tmp_path / "pki")
    fed = _federation(pki, tmp_path)
    keys = pki.keys[DAFENG]
    tokens = [forge(fed, pki.keys[WUCHANG], DAFENG, facts(fed, WUCHANG, DAFENG))] * 200
    hello = (DAFENG, [(k.suite.value, k.secret) for k in keys.hpke_keys], keys.seal.to_pem())
    request = ("examine", pki.bundle.fingerprint, pki.bundle.to_pem(), tokens, START, WUCHANG)
    with subprocess.Popen(
        [sys.executable, "-m", "relay.core.helper_worker"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as helper:  # fmt: skip
        assert helper.stdin is not None
        assert helper.stdout is not None
        assert helper.stderr is not None
        helper.stdout.close()  # the node is gone before the answer comes
        helper.stdin.write(frame(hello) + frame(request))
        helper.stdin.close()
        assert helper.wait(timeout=60) == 0
        said = helper.stderr.read().decode()
    assert "Traceback" not in said
    assert said == ""


_PARENT = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {kit!r})
    from relay_core_support import DAFENG, make_pki
    from pathlib import Path
    from relay.core.helper import CryptoHelper

    async def main():
        pki = make_pki(Path({pki!r}))
        helper = CryptoHelper(pki.keys[DAFENG].hpke_keys, DAFENG, pki.keys[DAFENG].seal)
        await helper.start()
        print(helper.pid, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_helper_ends_when_its_node_is_killed(tmp_path: Path) -> None:
    kit = str(Path(__file__).parent)
    code = _PARENT.format(kit=kit, pki=str(tmp_path / "pki"))
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as node:
        try:
            assert node.stdout is not None
            helper = int(node.stdout.readline())
            assert _alive(helper)
        finally:
            node.kill()  # kill -9: no cleanup runs in the node
        node.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(helper) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(helper), "the helper outlived its node"


def _wuchang_with_helper(tmp_path: Path) -> tuple[Federation, Any, CryptoHelper]:
    """Wuchang with a crypto helper, Dafeng without."""
    fed = _federation(make_pki(tmp_path / "pki"), tmp_path)
    sender = fed.start(WUCHANG, crypto_helper=True)
    fed.start(DAFENG)
    assert sender.helper is not None
    return fed, sender, sender.helper


async def test_a_lone_creation_is_sealed_in_the_node_a_crowd_in_the_helper(
    tmp_path: Path,
) -> None:
    """The helper's round trip only pays under load: with at most ``seal_inline_up_to``
    creations in progress the node seals itself, with more the helper takes them."""
    fed, sender, helper = _wuchang_with_helper(tmp_path)
    sender.seal_inline_up_to = 4  # (the default is 0: every seal in the helper)
    try:
        for i in range(3):
            await send(fed, WUCHANG, DAFENG, f"alone-{i}")
        assert helper.answered["seal"] == 0
        await asyncio.gather(*(send(fed, WUCHANG, DAFENG, f"crowd-{i}") for i in range(12)))
        assert helper.answered["seal"] >= 8  # all but the first four of the crowd
        assert helper.fallbacks["seal"] == 0
        await drain(fed, WUCHANG)
        assert len(fed.nodes[DAFENG].list_inbox()) == 15
    finally:
        await sender.aclose()
        fed.close()


async def test_creations_sealing_in_the_helper_share_one_commit(tmp_path: Path) -> None:
    """A group waits for the creations the helper is still sealing (see
    ``relay.core.group_commit``): a crowd sealed there commits once, not once per
    answer of the helper. (The linger is long here, so that a slow machine gives the
    same answer: the wait ends when the last seal has come back.)"""
    fed, sender, helper = _wuchang_with_helper(tmp_path)
    sender.seal_inline_up_to = 0  # every creation through the helper
    sender._commits._linger = 30
    try:
        await send(fed, WUCHANG, DAFENG, "warm")  # the helper runs
        before = sender._commits.commits
        async with asyncio.timeout(60):
            await asyncio.gather(*(send(fed, WUCHANG, DAFENG, f"crowd-{i}") for i in range(12)))
        assert helper.answered["seal"] == 13
        assert sender._commits.commits - before == 1
        await drain(fed, WUCHANG)
        assert len(fed.nodes[DAFENG].list_inbox()) == 13
    finally:
        await sender.aclose()
        fed.close()


async def test_the_helper_signs_new_cases_ahead_and_their_signatures_are_kept(
    tmp_path: Path,
) -> None:
    """A packet sealed in the helper is signed there too, for the number and ``prev`` its
    case is expected to get: the first of a new case, the one after the last this node
    queued in a case it knows. The commit allots those, the helper's signature is kept
    (the node signs nothing itself), and the partner accepts every packet in order."""
    fed, sender, helper = _wuchang_with_helper(tmp_path)
    try:
        await asyncio.gather(*(send(fed, WUCHANG, DAFENG, f"new-{i}") for i in range(12)))
        for _ in range(3):  # one after the other: each expected after the last
            await send(fed, WUCHANG, DAFENG, "new-0")
        assert helper.answered["seal"] == 15
        assert helper.presigned == {"kept": 15, "signed_again": 0}
        # the very bytes the node signs itself: the same facts, header and signature
        out = fed.stores[WUCHANG].outgoing(sender.list_outbox()[0].summary.packet_id)
        assert out is not None
        obj = json.loads(b64url_decode(out.token.split(".")[1]))
        sealed = obj.pop("sealed")
        token, *_ = sign_outer(obj, sealed, fed.pki.keys[WUCHANG].seal, WUCHANG, fed.clock())
        assert token == out.token
        await drain(fed, WUCHANG)
        assert [i.state for i in sender.list_outbox()] == [OutboxState.DELIVERED] * 15
        inbox = fed.nodes[DAFENG].list_inbox()
        assert sorted(i.summary.seq for i in inbox if i.summary.case_id == "new-0") == [1, 2, 3, 4]
    finally:
        await sender.aclose()
        fed.close()


async def test_creations_the_commit_numbers_otherwise_are_signed_again_and_stay_in_order(
    tmp_path: Path,
) -> None:
    """Six creations in one case at once all expect to be its first packet; the commit
    gives them 1 to 6, so all but one are signed again by the node with the number and
    ``prev`` they got, and the partner accepts the six in order (a wrong ``prev`` would
    be refused as out of order)."""
    fed, sender, helper = _wuchang_with_helper(tmp_path)
    try:
        await asyncio.gather(*(send(fed, WUCHANG, DAFENG, "busy") for _ in range(6)))
        assert helper.presigned["kept"] + helper.presigned["signed_again"] == 6
        assert helper.presigned["signed_again"] >= 1
        await drain(fed, WUCHANG)
        assert [i.state for i in sender.list_outbox()] == [OutboxState.DELIVERED] * 6
        seqs = sorted(i.summary.seq for i in fed.nodes[DAFENG].list_inbox())
        assert seqs == [1, 2, 3, 4, 5, 6]
    finally:
        await sender.aclose()
        fed.close()


async def test_a_case_the_node_no_longer_remembers_is_signed_again_after_its_last_packet(
    tmp_path: Path,
) -> None:
    """After a restart the node remembers no case: the next packet of an old case is
    expected to be its first, signed ahead so, and signed again as its third."""
    fed, sender, _ = _wuchang_with_helper(tmp_path)
    await send(fed, WUCHANG, DAFENG, "old", n=2)
    await sender.aclose()
    sender = fed.start(WUCHANG, crypto_helper=True)
    try:
        await send(fed, WUCHANG, DAFENG, "old")
        assert sender.helper is not None
        assert sender.helper.presigned == {"kept": 0, "signed_again": 1}
        await drain(fed, WUCHANG)
        assert [i.summary.seq for i in fed.nodes[DAFENG].list_inbox()] == [1, 2, 3]
    finally:
        await sender.aclose()
        fed.close()


def test_routing_facts_and_times_cross_the_pipe_unchanged() -> None:
    """What crosses to and from the helper comes back equal: routing facts (pickled as
    plain values, their attachments and sealed content included), a whole-second time
    as the facts hold it and any other time as itself, and the requests' ``at`` to the
    microsecond."""
    at = datetime(2026, 12, 6, 8, 30, 15, 123456, tzinfo=UTC)
    for created in (at.replace(microsecond=0), at, at.astimezone(timezone(timedelta(hours=8)))):
        routing = RoutingFacts(
            "p-1", "case-1", WUCHANG, DAFENG, MATTER, ACTION, MODE,
            AgreementRef("agreement", 3, "d" * 64), 2, "e" * 64, created,
            created + timedelta(days=1),
            (AttachmentRef("a" * 64, 10, "application/pdf", "plan.pdf"),),
            SealedContent("suite", "kid", b"\x00ct"),
        )  # fmt: skip
        again = pickle.loads(frame(routing)[4:])
        assert again == routing
        assert again.created.utcoffset() == created.utcoffset()
    for moment in (at, at.replace(microsecond=0), datetime(1970, 1, 1, tzinfo=UTC)):
        assert micros_time(time_micros(moment)) == moment
    assert time_micros(at) == 1796545815123456


async def test_answers_are_read_whole_however_the_pipe_cuts_them() -> None:
    """The helper's stdout arrives in chunks of any size: an answer cut anywhere, several
    in one chunk, or one byte at a time, each is handed over once, whole, in order."""
    answers = [("first", b"\x00" * 300), ("second", list(range(50))), ("third", None)]
    stream = b"".join(frame(a) for a in answers)
    cuts = [[stream], [stream[:1], stream[1:]], [bytes([b]) for b in stream]]
    cuts += [[stream[:k], stream[k:]] for k in range(2, len(stream), 37)]
    for chunks in cuts:
        got: list[object] = []
        pipes = helper_module._Pipes(got.append, lambda pipes, why: None)
        for chunk in chunks:
            pipes.pipe_data_received(1, chunk)
        pipes.pipe_data_received(2, b"not stdout")
        assert got == answers, f"cut into {len(chunks)} chunks"


async def test_an_answer_that_does_not_read_ends_the_helper_instead_of_the_reading(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A garbled frame on the helper's stdout (never written by our helper): nothing is
    handed over from there on, no exception escapes the pipe's callback, and the helper
    is killed (its end then falls every pending request back to the node)."""
    got: list[object] = []
    pipes = helper_module._Pipes(got.append, lambda pipes, why: None)
    killed: list[bool] = []
    pipes.kill = lambda: killed.append(True)  # type: ignore[method-assign]
    pipes.pipe_data_received(1, frame("first") + b"\x00\x00\x00\x03xyz" + frame("after"))
    pipes.pipe_data_received(1, frame("later"))
    assert got == ["first"]
    assert killed == [True]
    assert "does not read" in caplog.text
