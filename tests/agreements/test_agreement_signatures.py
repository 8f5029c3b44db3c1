"""Party signatures with seals from a generated federation (certs.pki): a 46-party
agreement signs, verifies and decides; bad signatures are refused."""

from __future__ import annotations

from datetime import timedelta

import pytest
from agreement_support import PARTY_IDS_46, PKI_NOW, agreement, clause

from agreements.actions import Action
from agreements.authorize import AgreementIndex, Deny, Permit, Reason, Request, authorize
from agreements.errors import SignatureRefused
from agreements.events import Event, EventKind
from agreements.lifecycle import State, from_signatures
from agreements.signatures import (
    AGREEMENT_TYP,
    PartySignature,
    sign_agreement,
    sign_event,
    signing_status,
    verify_event,
    verify_party_signature,
)
from agreements.signed import SignedAgreement
from signing.jws import sign_compact

HANDLER = PARTY_IDS_46[0]
RECEIVERS = PARTY_IDS_46[1:]
BIG = agreement(
    PARTY_IDS_46,
    [
        clause(
            "food-business-licence",
            handle=[HANDLER],
            receive_for={r: [HANDLER] for r in RECEIVERS},
            issue=[HANDLER],
        ),
        clause("construction-permit", handle=[HANDLER], receive_for={RECEIVERS[0]: [HANDLER]}),
    ],
    aid="big-46",
    valid_from=PKI_NOW,
    valid_until=PKI_NOW + timedelta(days=365),
)
SIGN_AT = PKI_NOW + timedelta(hours=1)


def _sign_all(federation, ag, parties, at=SIGN_AT):
    return [
        sign_agreement(ag, federation.signers[p], at=at + timedelta(seconds=i))
        for i, p in enumerate(parties)
    ]


def test_46_party_agreement_signs_verifies_and_decides(federation) -> None:
    sigs = _sign_all(federation, BIG, PARTY_IDS_46)
    status = signing_status(BIG, sigs, federation.bundle)
    assert status.complete
    assert status.refused == {}
    assert status.completed_at == SIGN_AT + timedelta(seconds=45)
    lc = from_signatures(BIG, status.signed)
    assert lc.state is State.ACTIVE
    index = AgreementIndex([lc])
    now = SIGN_AT + timedelta(days=1)
    for receiver in RECEIVERS:
        permit = authorize(
            index, Request(receiver, HANDLER, "food-business-licence", Action.SUBMIT), now
        )
        assert isinstance(permit, Permit)
        back = authorize(
            index, Request(HANDLER, receiver, "food-business-licence", Action.ISSUE_LICENCE), now
        )
        assert isinstance(back, Permit)
    assert isinstance(
        authorize(index, Request(RECEIVERS[0], HANDLER, "construction-permit", Action.SUBMIT), now),
        Permit,
    )
    denied = authorize(
        index, Request(RECEIVERS[1], HANDLER, "construction-permit", Action.SUBMIT), now
    )
    assert denied == Deny(Reason.ROLE_NOT_GRANTED, BIG.ref)
    assert authorize(
        index, Request(RECEIVERS[1], RECEIVERS[2], "food-business-licence", Action.SUBMIT), now
    ) == Deny(Reason.ROLE_NOT_GRANTED, BIG.ref)
    before = authorize(
        index,
        Request(RECEIVERS[0], HANDLER, "food-business-licence", Action.SUBMIT),
        status.completed_at - timedelta(seconds=1),
    )
    assert before == Deny(Reason.AGREEMENT_NOT_SIGNED, BIG.ref)


def test_partial_signing_shows_who_is_missing(federation) -> None:
    sigs = _sign_all(federation, BIG, PARTY_IDS_46[:40])
    status = signing_status(BIG, sigs, federation.bundle)
    assert not status.complete
    assert status.missing == set(PARTY_IDS_46[40:])
    assert set(status.signed) == set(PARTY_IDS_46[:40])
    lc = from_signatures(BIG, status.signed)
    assert lc.state is State.PROPOSED
    decision = authorize(
        AgreementIndex([lc]),
        Request(RECEIVERS[0], HANDLER, "food-business-licence", Action.SUBMIT),
        SIGN_AT + timedelta(days=1),
    )
    assert decision == Deny(Reason.AGREEMENT_NOT_SIGNED, BIG.ref)


SMALL_PARTIES = (PARTY_IDS_46[0], PARTY_IDS_46[1])


def test_non_party_cannot_sign(federation) -> None:
    small = agreement(SMALL_PARTIES, [clause("m", handle=[SMALL_PARTIES[0]])], aid="small")
    with pytest.raises(SignatureRefused):
        sign_agreement(small, federation.signers[federation.outsider], at=SIGN_AT)
    # an outsider's seal claiming to be a party, and an outsider naming itself
    token = sign_compact(
        small.document_bytes(),
        federation.signers[federation.outsider],
        typ=AGREEMENT_TYP,
        at=SIGN_AT,
        detached=True,
    )
    for claimed in (SMALL_PARTIES[1], federation.outsider):
        with pytest.raises(SignatureRefused):
            verify_party_signature(small, PartySignature(claimed, token), federation.bundle)
    status = signing_status(small, [PartySignature(SMALL_PARTIES[1], token)], federation.bundle)
    assert SMALL_PARTIES[1] in status.refused
    assert SMALL_PARTIES[1] in status.missing


def test_revoked_seal_is_refused(federation) -> None:
    parties = (SMALL_PARTIES[0], federation.revoked)
    ag = agreement(parties, [clause("m", handle=[parties[0]])], aid="with-revoked")
    sigs = _sign_all(federation, ag, parties)
    status = signing_status(ag, sigs, federation.bundle)
    assert set(status.signed) == {parties[0]}
    assert federation.revoked in status.refused
    assert not status.complete


def test_signature_over_other_bytes_is_refused(federation) -> None:
    ag = agreement(SMALL_PARTIES, [clause("m", handle=[SMALL_PARTIES[0]])], aid="small")
    other = agreement(SMALL_PARTIES, [clause("m", handle=[SMALL_PARTIES[1]])], aid="small")
    sig = sign_agreement(other, federation.signers[SMALL_PARTIES[0]], at=SIGN_AT)
    with pytest.raises(SignatureRefused):
        verify_party_signature(ag, sig, federation.bundle)
    verify_party_signature(other, sig, federation.bundle)  # the control: it is a good signature


def test_signature_made_after_the_verification_instant_does_not_count(federation) -> None:
    ag = agreement(SMALL_PARTIES, [clause("m", handle=[SMALL_PARTIES[0]])], aid="small")
    sig = sign_agreement(ag, federation.signers[SMALL_PARTIES[0]], at=SIGN_AT)
    with pytest.raises(SignatureRefused):
        verify_party_signature(ag, sig, federation.bundle, at=SIGN_AT - timedelta(seconds=1))
    assert verify_party_signature(ag, sig, federation.bundle, at=SIGN_AT) == SIGN_AT


def test_signed_events_are_checked_and_applied_in_the_file(federation) -> None:
    ag = agreement(
        (*SMALL_PARTIES, PARTY_IDS_46[2]),
        [
            clause(
                "m", handle=[SMALL_PARTIES[0]], receive_for={SMALL_PARTIES[1]: [SMALL_PARTIES[0]]}
            )
        ],
        aid="evented",
        valid_from=PKI_NOW,
    )
    sa = SignedAgreement(ag)
    for i, p in enumerate(ag.party_ids):
        sa = sa.with_signature(
            sign_agreement(ag, federation.signers[p], at=SIGN_AT + timedelta(seconds=i))
        )
    suspend_at = SIGN_AT + timedelta(days=2)
    ev = Event.for_agreement(ag, EventKind.SUSPEND, party=PARTY_IDS_46[2], at=suspend_at)
    token = sign_event(ev, federation.signers[PARTY_IDS_46[2]], at=SIGN_AT + timedelta(days=1))
    assert verify_event(token, ag, federation.bundle) == ev
    forged = sign_compact(
        ev.payload(),
        federation.signers[SMALL_PARTIES[0]],
        typ="tongban-agreement-event+jws",
        at=SIGN_AT,
    )
    with pytest.raises(SignatureRefused):
        verify_event(forged, ag, federation.bundle)  # signed by someone other than the actor
    sa = sa.with_event(token).with_event(forged)
    again = SignedAgreement.from_bytes(sa.to_bytes())
    ev_result = again.evaluate(federation.bundle)
    assert ev_result.lifecycle.state is State.SUSPENDED
    assert [i for i, _ in ev_result.refused_events] == [1]
    index = AgreementIndex([ev_result.lifecycle])
    req = Request(SMALL_PARTIES[1], SMALL_PARTIES[0], "m", Action.SUBMIT)
    assert isinstance(authorize(index, req, suspend_at - timedelta(seconds=1)), Permit)
    assert authorize(index, req, suspend_at) == Deny(Reason.SUSPENDED, ag.ref)
