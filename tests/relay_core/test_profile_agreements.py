"""Agreements that name cryptographic profiles, enforced by the core on both sides
(issue 19; docs/protocol.md §6.6 step 9, §8.5 step 5): Hubei in the default profile,
Jiangsu in the SM profile.

- The sending node refuses to create a packet when the agreement excludes its own
  profile or the recipient's (``NotAuthorized('profile-not-allowed')``, nothing queued).
- The receiving node refuses a packet whose sender's profile, or its own, the agreement
  excludes: a signed ``rejected`` receipt ``agreement-denied:profile-not-allowed``,
  which the sender takes as final for that packet only.

The receiving side is shown where the two nodes hold different agreement sets: the
sender still holds v1 (both profiles), the receiver already holds v2, which supersedes
it and allows the default profile only.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from relay_core_support import DAFENG, START, WUCHANG, FakeClock, Federation, mixed_pki

from agreements.authorize import AgreementIndex
from agreements.events import document_digest
from agreements.lifecycle import Lifecycle
from agreements.model import Agreement
from relay.authorizer import AgreementAuthorizer
from relay.core.errors import NotAuthorized
from relay.core.fakes import FakeNetwork
from relay.core.model import OutboxState, PacketSummary
from relay.core.outbox import OutboxPolicy
from relay.core.receipts import ReceiptStatus, verify_receipt
from relay.core.service import RelayNode
from relay.http.staff import delivery_alerts
from signing.profiles import Profile

sys.path.insert(0, str(Path(__file__).parents[1] / "agreements"))
from agreement_support import active, agreement, clause

MATTER = "food-business-licence"
HUBEI, JIANGSU = WUCHANG, DAFENG  # default profile, SM profile
BOTH = frozenset({"default", "sm"})


def _agreement(profiles: frozenset[str] | None, *, version: int = 1) -> Agreement:
    """Each node receives for the other and handles: packets go both ways."""
    return agreement(
        [HUBEI, JIANGSU],
        [clause(MATTER, handle=[HUBEI, JIANGSU], receive_for={HUBEI: [JIANGSU], JIANGSU: [HUBEI]})],
        aid="hubei-jiangsu-food",
        version=version,
        supersedes=None if version == 1 else version - 1,
        valid_from=START - timedelta(days=30),
        crypto_profiles=profiles,
    )


def _authorizer(*agreements: Agreement) -> AgreementAuthorizer:
    lifecycles: list[Lifecycle] = [active(ag, START - timedelta(days=31)) for ag in agreements]
    return AgreementAuthorizer(
        AgreementIndex(lifecycles), {ag.ref: document_digest(ag) for ag in agreements}
    )


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[Federation]:
    pki = mixed_pki(tmp_path / "pki")
    (tmp_path / "nodes").mkdir()
    federation = Federation(
        pki=pki,
        root=tmp_path / "nodes",
        clock=FakeClock(),
        agreement=_authorizer(_agreement(None)),  # type: ignore[arg-type]
        network=FakeNetwork(rng=random.Random(7)),
        policy=OutboxPolicy(batch_size=16),
    )
    try:
        yield federation
    finally:
        federation.close()


def _start(fed: Federation, node: str, auth: AgreementAuthorizer) -> RelayNode:
    fed.agreement = auth  # type: ignore[assignment]  # each node keeps the one it started with
    return fed.start(node)


async def _create(node: RelayNode, to: str, case: str) -> PacketSummary:
    return await node.create_packet(
        to=to, case_id=case, matter=MATTER, action="submit", mode="proxy_receipt",
        content={"申请人": "张三"},
    )  # fmt: skip


def test_each_node_knows_its_own_and_its_partners_profile(fed: Federation) -> None:
    hubei = _start(fed, HUBEI, _authorizer(_agreement(None)))
    jiangsu = _start(fed, JIANGSU, _authorizer(_agreement(None)))
    assert (hubei.profile, jiangsu.profile) == (Profile.DEFAULT, Profile.SM)
    directory = fed.directory()
    assert directory.profile(JIANGSU) is Profile.SM
    assert directory.profile(HUBEI) is Profile.DEFAULT


@pytest.mark.parametrize(
    ("profiles", "refused"),
    [
        (frozenset({"default"}), {HUBEI, JIANGSU}),  # Jiangsu's own; Hubei's recipient's
        (frozenset({"sm"}), {HUBEI, JIANGSU}),  # Hubei's own; Jiangsu's recipient's
        (BOTH, set()),
        (None, set()),  # an agreement naming no profiles allows any
    ],
)
async def test_the_sender_refuses_to_create_outside_the_allowed_profiles(
    fed: Federation, profiles: frozenset[str] | None, refused: set[str]
) -> None:
    auth = _authorizer(_agreement(profiles))
    nodes = {HUBEI: _start(fed, HUBEI, auth), JIANGSU: _start(fed, JIANGSU, auth)}
    for me, partner in ((HUBEI, JIANGSU), (JIANGSU, HUBEI)):
        if me in refused:
            with pytest.raises(NotAuthorized) as err:
                await _create(nodes[me], partner, f"case-{me}")
            assert err.value.reason == "profile-not-allowed"
            assert err.value.detail is not None
            assert f"allows the cryptographic profiles [{', '.join(sorted(profiles or ()))}]" in (
                err.value.detail
            )
            assert f"node {JIANGSU}" in err.value.detail
            assert "sm profile" in err.value.detail
            assert nodes[me].list_outbox() == []  # nothing queued, nothing half-written
        else:
            await _create(nodes[me], partner, f"case-{me}")
            assert len(nodes[me].list_outbox()) == 1


@pytest.mark.parametrize(("sender", "receiver"), [(JIANGSU, HUBEI), (HUBEI, JIANGSU)])
async def test_the_receiver_refuses_a_packet_outside_the_allowed_profiles(
    fed: Federation, sender: str, receiver: str
) -> None:
    """Jiangsu -> Hubei: the sender's profile is excluded; Hubei -> Jiangsu: the
    receiver's own. Either way every packet gets a final rejected receipt with the
    reason, and none waits behind another."""
    v1, v2 = _agreement(BOTH), _agreement(frozenset({"default"}), version=2)
    nodes = {
        sender: _start(fed, sender, _authorizer(v1)),  # has not taken v2 yet
        receiver: _start(fed, receiver, _authorizer(v1, v2)),
    }
    first = await _create(nodes[sender], receiver, "case-1")
    second = await _create(nodes[sender], receiver, "case-2")
    await nodes[sender].deliver_once()
    items = {i.summary.packet_id: i for i in nodes[sender].list_outbox()}
    for packet in (first, second):
        item = items[packet.packet_id]
        assert item.state is OutboxState.REJECTED
        assert item.reason == "agreement-denied:profile-not-allowed"
        receipt = verify_receipt(
            item.receipt or "", fed.pki.bundle, at=fed.clock(), expected_from=receiver
        )
        assert receipt.status is ReceiptStatus.REJECTED
        assert receipt.reason == "agreement-denied:profile-not-allowed"
    assert nodes[receiver].list_inbox() == []  # nothing stored on the refusing side
    alerts = {a.subject: a for a in delivery_alerts(nodes[sender], fed.clock())}
    assert set(alerts) == {first.packet_id, second.packet_id}
    assert alerts[first.packet_id].code == "profile-not-allowed"
    assert "agreement-denied:profile-not-allowed" in alerts[first.packet_id].detail
    # the receiver back on v1 (both profiles): the resent step is accepted and its
    # alert goes; the other case's stands until it is resent too
    nodes[receiver] = _start(fed, receiver, _authorizer(v1))
    again = await nodes[sender].resend(first.packet_id)
    await nodes[sender].deliver_once()
    [item] = [i for i in nodes[sender].list_outbox() if i.summary.packet_id == again.packet_id]
    assert item.state is OutboxState.DELIVERED
    assert [a.subject for a in delivery_alerts(nodes[sender], fed.clock())] == [second.packet_id]
