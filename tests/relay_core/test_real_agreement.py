"""The core under the real agreements package (``relay.authorizer``): both nodes check
the same agreement, and the receiver holds the sender to the version it pinned."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from relay_core_support import DAFENG, START, WUCHANG, Federation

from agreements.authorize import AgreementIndex
from agreements.events import document_digest
from agreements.model import ServiceMode
from relay.authorizer import AgreementAuthorizer
from relay.core.ports import AuthorizationRequest
from relay.core.receipts import ReceiptStatus, verify_receipt

sys.path.insert(0, str(Path(__file__).parents[1] / "agreements"))
from agreement_support import active, agreement, clause

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
