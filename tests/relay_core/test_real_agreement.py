"""The core under the real agreements package (``relay.authorizer``): both nodes check
the same agreement, and the receiver holds the sender to the version it pinned."""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from relay_core_support import DAFENG, START, WUCHANG, Federation

from agreements.authorize import AgreementIndex
from agreements.events import EventKind, document_digest
from agreements.lifecycle import Lifecycle, apply, start
from agreements.model import Agreement, ServiceMode
from relay.authorizer import AgreementAuthorizer, AgreementSwitch, unknown_agreement_alerts
from relay.core.model import OutboxState
from relay.core.ports import AuthorizationRequest
from relay.core.receipts import ReceiptStatus, verify_receipt
from relay.http.staff import delivery_alerts

sys.path.insert(0, str(Path(__file__).parents[1] / "agreements"))
from agreement_support import active, agreement, clause, event

MATTER = "food-business-licence"


def authorizer() -> AgreementAuthorizer:
    ag = agreement(
        [WUCHANG, DAFENG],
        [clause(MATTER, handle=[DAFENG], receive_for={WUCHANG: [DAFENG]})],
        aid="hubei-jiangsu-food",
    )
    return AgreementAuthorizer(AgreementIndex([active(ag)]), {ag.ref: document_digest(ag)})


def test_the_sender_gets_the_granting_agreement_and_the_receiver_holds_it_to_it() -> None:
    auth = authorizer()
    ask = AuthorizationRequest(WUCHANG, DAFENG, MATTER, "submit", "proxy_receipt")
    permit = auth(ask, START)
    assert permit.allowed
    assert permit.agreement is not None
    assert permit.agreement.id == "hubei-jiangsu-food"
    assert len(permit.agreement.digest) == 64
    assert auth(replace(ask, agreement=permit.agreement), START).allowed
    other = replace(permit.agreement, digest="0" * 64)
    assert auth(replace(ask, agreement=other), START).reason == "agreement-mismatch"
    assert auth(replace(ask, action="issue-licence"), START).reason == "role-not-granted"
    assert auth(replace(ask, matter="other"), START).reason == "matter-not-covered"
    assert auth(replace(ask, sender=DAFENG, receiver=WUCHANG), START).reason == "role-not-granted"
    assert auth(replace(ask, action="teleport"), START).reason == "unknown-action"
    assert auth(replace(ask, mode=str(ServiceMode.JOINT)), START).reason == "mode-not-allowed"
    assert auth(replace(ask, mode="carrier-pigeon"), START).reason == "mode-not-allowed"


async def test_packets_travel_under_a_real_agreement(federation: Federation) -> None:
    auth = authorizer()
    federation.agreement = auth  # type: ignore[assignment]
    sender = federation.start(WUCHANG)
    receiver = federation.start(DAFENG)
    summary = await sender.create_packet(
        to=DAFENG, case_id="c1", matter=MATTER, action="submit", mode="proxy_receipt",
        content={"form": "申请书"},
    )  # fmt: skip
    await sender.deliver_once()
    [item] = sender.list_outbox()
    receipt = verify_receipt(
        item.receipt or "", federation.pki.bundle, at=federation.clock(), expected_from=DAFENG
    )
    assert receipt.status is ReceiptStatus.ACCEPTED
    assert receiver.read_packet(summary.packet_id).content == {"form": "申请书"}


def _authorizer(*lifecycles: Lifecycle) -> AgreementAuthorizer:
    return AgreementAuthorizer(
        AgreementIndex(lifecycles),
        {lc.agreement.ref: document_digest(lc.agreement) for lc in lifecycles},
    )


def _versions() -> tuple[Agreement, Agreement]:
    terms = [clause(MATTER, handle=[DAFENG], receive_for={WUCHANG: [DAFENG]})]
    v1 = agreement([WUCHANG, DAFENG], terms, aid="hubei-jiangsu-food")
    v2 = agreement([WUCHANG, DAFENG], terms, aid="hubei-jiangsu-food", version=2, supersedes=1)
    return v1, v2


def _proposed(ag: Agreement) -> Lifecycle:
    """Signed by one party only: not in force."""
    at = START - timedelta(days=2)
    lc = start(ag, at)
    return apply(lc, event(ag, EventKind.PROPOSE, sorted(ag.party_ids)[0], at))


def test_a_pinned_version_not_loaded_here_is_unknown_not_denied() -> None:
    v1, v2 = _versions()
    ask = AuthorizationRequest(WUCHANG, DAFENG, MATTER, "submit", "proxy_receipt")
    sent_under = _authorizer(active(v1), active(v2))(ask, START).agreement
    assert sent_under is not None
    assert sent_under.version == 2
    pinned = replace(ask, agreement=sent_under)

    # the receiver holds only version 1, or nothing of this agreement, or version 2
    # still missing a party's signature: it may load it later, the sender retries
    for receiver in (
        _authorizer(active(v1)),
        _authorizer(),
        _authorizer(active(v1), _proposed(v2)),
    ):
        decision = receiver(pinned, START)
        assert (decision.allowed, decision.reason) == (False, "agreement-unknown")
        assert receiver.unknown == {sent_under: (WUCHANG, START)}
    # once it holds version 2 signed, the packet is granted
    assert _authorizer(active(v1), active(v2))(pinned, START).allowed

    # the same version with another document digest is a conflict, not a delay
    other = replace(pinned, agreement=replace(sent_under, digest="0" * 64))
    assert _authorizer(active(v2))(other, START).reason == "agreement-mismatch"
    # a sender still on version 1 when the receiver holds 2 signed is the one behind
    old = _authorizer(active(v1))(ask, START).agreement
    behind = _authorizer(active(v1), active(v2))
    assert behind(replace(ask, agreement=old), START).reason == "agreement-mismatch"
    # a version held and signed but refused for its terms keeps its own reason
    refused = _authorizer(active(v1))(replace(pinned, agreement=old, action="decide"), START)
    assert refused.reason == "role-not-granted"
    assert behind.unknown == {}


async def test_a_packet_under_a_version_the_partner_has_not_loaded_waits_for_it(
    federation: Federation,
) -> None:
    v1, v2 = _versions()
    federation.agreement = _authorizer(active(v1), active(v2))  # type: ignore[assignment]
    sender = federation.start(WUCHANG)
    switch = AgreementSwitch(_authorizer(active(v1)))
    federation.agreement = switch  # type: ignore[assignment]
    federation.start(DAFENG)
    first, second = [
        await sender.create_packet(
            to=DAFENG,
            case_id="c1",
            matter=MATTER,
            action=action,
            mode="proxy_receipt",
            content={"step": action},
        )
        for action in ("submit", "supplement")
    ]
    for _ in range(3):
        await sender.deliver_once()
        federation.clock.advance(minutes=10)
    # both went in one batch and were refused for the agreement; neither is dead
    states = {i.summary.packet_id: (i.state, i.reason) for i in sender.list_outbox()}
    assert states == {
        first.packet_id: (OutboxState.QUEUED, "agreement-unknown"),
        second.packet_id: (OutboxState.QUEUED, "agreement-unknown"),
    }
    now = federation.clock()
    [(peer, (cases, _))] = sender.partners_lacking_agreements().items()
    assert (peer, cases) == (DAFENG, 1)
    [lacks] = delivery_alerts(sender, now)
    assert (lacks.code, lacks.to_json()["peer"]) == ("partner-lacks-agreement", DAFENG)
    [alert] = unknown_agreement_alerts(switch.current, now)
    assert (alert.code, alert.subject, alert.to_json()["peer"]) == (
        "agreement-unknown",
        WUCHANG,
        WUCHANG,
    )

    # the partner loads version 2: both packets go and the alerts end
    switch.install(_authorizer(active(v1), active(v2)), federation.pki.bundle, now)
    for _ in range(3):
        federation.clock.advance(minutes=10)
        await sender.deliver_once()
    assert {i.state for i in sender.list_outbox()} == {OutboxState.DELIVERED}
    assert sender.partners_lacking_agreements() == {}
    assert delivery_alerts(sender, federation.clock()) == []
    assert unknown_agreement_alerts(switch.current, federation.clock()) == []
