"""Property (issue 11): whatever a partner answers and however often the sender
restarts, the outbox converges to delivered or parked-with-reason (with a staff alert),
keeps per-case order and delivers nothing twice."""

from __future__ import annotations

import asyncio
import hashlib
import random
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from relay_core_support import (
    ACTION,
    DAFENG,
    MATTER,
    MODE,
    WUCHANG,
    FakeAgreement,
    FakeClock,
    Federation,
    Pki,
    chunks_of,
    drain,
    make_pki,
)

from relay.core.errors import PeerRefused, PeerUnavailable
from relay.core.fakes import FakeNetwork
from relay.core.model import OutboxState
from relay.core.outbox import OutboxPolicy, Refusal, classify_refusal
from relay.core.ports import OpenAt
from relay.http.staff import delivery_alerts

STATUSES = (400, 403, 404, 405, 408, 409, 413, 415, 422, 429, 500, 502, 503, 504)
ANSWER = st.one_of(
    st.just("ok"),
    st.just("timeout"),
    st.just("garbage"),
    st.sampled_from(STATUSES),
)
STEP = st.tuples(ANSWER, st.booleans())  # (answer to the next request, restart after it)


class Scripted:
    """A link answering requests from a script, then passing them to the fake network.

    A scripted refusal that the table calls permanent (or 413 to a batch) *sticks*: the
    packet (first of the batch) or blob it met is refused that way from then on, like a
    packet that can never be delivered; every other answer is one-off."""

    def __init__(self, inner: object, script: list[object], poisoned: dict[str, int]) -> None:
        self._inner = inner
        self._script = script
        self._poisoned = poisoned

    def _next(self, kind: str, subject: str) -> None:
        if subject in self._poisoned:
            status = self._poisoned[subject]
            raise PeerRefused(f"answered {status}", status=status, kind=kind, code=f"c{status}")
        if not self._script:
            return
        answer = self._script.pop(0)
        if answer == "ok":
            return
        if answer == "timeout":
            raise PeerUnavailable("timed out")
        if answer == "garbage":
            raise PeerUnavailable("malformed answer")
        assert isinstance(answer, int)
        if classify_refusal(kind, answer) is not Refusal.RETRY:
            self._poisoned[subject] = answer
        raise PeerRefused(f"answered {answer}", status=answer, kind=kind, code=f"c{answer}")

    async def deliver(self, peer: str, packets: Sequence[str]) -> list[str]:
        for token in packets[1:]:
            if token in self._poisoned:
                self._next("batch", token)
        self._next("batch", packets[0])
        return await self._inner.deliver(peer, packets)  # type: ignore[attr-defined,no-any-return]

    async def upload_attachment(self, peer: str, digest: str, size: int, open_at: OpenAt) -> None:
        self._next("blob-upload", digest)
        await self._inner.upload_attachment(peer, digest, size, open_at)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """One PKI for every example (made once: hypothesis runs the test many times), in
    pytest's temporary folder, which pytest removes in later runs."""
    return make_pki(tmp_path_factory.mktemp("outbox-pki"))


async def _scenario(
    pki: Pki, cases: list[int], steps: list[tuple[object, bool]], root: Path
) -> None:
    fed = Federation(
        pki=pki,
        root=root,
        clock=FakeClock(),
        agreement=FakeAgreement(),
        network=FakeNetwork(rng=random.Random(1)),
        policy=OutboxPolicy(batch_size=4),
    )
    for node in (WUCHANG, DAFENG):
        fed.start(node)
    script = [answer for answer, _ in steps]
    poisoned: dict[str, int] = {}
    restarts = [i for i, (_, restart) in enumerate(steps) if restart]
    try:
        sender = fed.nodes[WUCHANG]
        data = b"attachment" * 100
        digest = hashlib.sha256(data).hexdigest()
        await sender.write_attachment(digest, len(data), 0, chunks_of(data))
        for n, count in enumerate(cases):
            for i in range(count):
                await sender.create_packet(
                    to=DAFENG, case_id=f"case-{n}", matter=MATTER, action=ACTION, mode=MODE,
                    content={"step": i}, attachments=[digest] if i == 0 and n == 0 else [],
                )  # fmt: skip
        sender._sender._link = Scripted(sender._sender._link, script, poisoned)  # type: ignore[assignment]
        passes = 0
        while script:
            before = len(script)
            await fed.nodes[WUCHANG].deliver_once()
            fed.clock.advance(seconds=fed.policy.max_delay.total_seconds())
            passes += 1
            if restarts and passes >= restarts[0]:
                restarts.pop(0)
                node = fed.start(WUCHANG)
                node._sender._link = Scripted(node._sender._link, script, poisoned)  # type: ignore[assignment]
            if len(script) == before and not fed.stores[WUCHANG].open_rows():
                break
        await drain(fed, WUCHANG)  # the partner now answers: everything settles

        sender = fed.nodes[WUCHANG]
        outbox = sender.list_outbox()
        alerts = {a.subject for a in delivery_alerts(sender, fed.clock())}
        for item in outbox:
            assert item.state in (OutboxState.DELIVERED, OutboxState.DEAD), item
            if item.state is OutboxState.DEAD:
                assert item.reason
                assert item.summary.packet_id in alerts
        inbox = [i.summary for i in fed.nodes[DAFENG].list_inbox()]
        ids = [s.packet_id for s in inbox]
        assert len(ids) == len(set(ids))  # nothing delivered twice
        delivered = {i.summary.packet_id for i in outbox if i.state is OutboxState.DELIVERED}
        assert set(ids) == delivered
        for n in range(len(cases)):
            mine = sorted(
                (i for i in outbox if i.summary.case_id == f"case-{n}"), key=lambda i: i.summary.seq
            )
            states = [i.state for i in mine]
            # per-case order: delivered packets form a prefix; nothing after a parked one
            first_dead = states.index(OutboxState.DEAD) if OutboxState.DEAD in states else None
            if first_dead is not None:
                assert OutboxState.DELIVERED not in states[first_dead:]
            seqs = [s.seq for s in inbox if s.case_id == f"case-{n}"]
            assert seqs == sorted(seqs)
    finally:
        fed.close()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    cases=st.lists(st.integers(1, 3), min_size=1, max_size=4),
    steps=st.lists(STEP, max_size=20),
)
def test_the_outbox_converges_for_any_partner_answers(
    pki: Pki, cases: list[int], steps: list[tuple[object, bool]]
) -> None:
    root = Path(tempfile.mkdtemp(prefix="pt-outbox-prop-"))
    try:
        asyncio.run(_scenario(pki, cases, steps, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
