"""The authorization decision: the action table, every reason code, and the timing of
suspension and withdrawal."""

from __future__ import annotations

from datetime import timedelta

import pytest
from agreement_support import T0, T_END, active, agreement, clause, event

from agreements.actions import Action, Relation
from agreements.authorize import AgreementIndex, Deny, Permit, Reason, Request, authorize
from agreements.events import EventKind
from agreements.lifecycle import apply, start
from agreements.model import ServiceMode
from signing.profiles import Profile

A, B, C, D = "420106", "320982", "371422", "420981"
NOW = T0 + timedelta(days=100)

FOOD = clause(
    "food",
    handle=[B, C],
    receive_for={A: [B, C], D: [B]},
    survey_for={A: [B]},
    issue=[B],
    modes=[ServiceMode.PROXY_RECEIPT, ServiceMode.JOINT],
)
ONLINE_ONLY = clause("online-matter", handle=[B], issue=[B], modes=[ServiceMode.ONLINE])
BASE = agreement([A, B, C, D], [FOOD, ONLINE_ONLY])


def decide(index: AgreementIndex, sender: str, recipient: str, action: Action, **kw: object):
    matter = kw.pop("matter", "food")
    at = kw.pop("at", NOW)
    return authorize(index, Request(sender, recipient, matter, action, **kw), at)  # type: ignore[arg-type]


@pytest.fixture
def index() -> AgreementIndex:
    return AgreementIndex([active(BASE)])


@pytest.mark.parametrize(
    ("sender", "recipient", "action", "relation"),
    [
        (A, B, Action.SUBMIT, Relation.RECEIVER_TO_HANDLER),
        (A, C, Action.SUPPLEMENT, Relation.RECEIVER_TO_HANDLER),
        (D, B, Action.WITHDRAW, Relation.RECEIVER_TO_HANDLER),
        (B, A, Action.ACCEPT, Relation.HANDLER_TO_RECEIVER),
        (C, A, Action.REJECT, Relation.HANDLER_TO_RECEIVER),
        (B, D, Action.REQUEST_CORRECTION, Relation.HANDLER_TO_RECEIVER),
        (B, A, Action.DECIDE, Relation.HANDLER_TO_RECEIVER),
        (B, A, Action.ISSUE_LICENCE, Relation.ISSUER_TO_RECEIVER),
        (B, A, Action.REQUEST_SURVEY, Relation.HANDLER_TO_SURVEYOR),
        (A, B, Action.SURVEY_REPORT, Relation.SURVEYOR_TO_HANDLER),
        (A, B, Action.DELIVER, Relation.RECEIVER_TO_HANDLER),
        (B, A, Action.STATUS_UPDATE, Relation.HANDLER_TO_RECEIVER),
        (A, B, Action.RATING, Relation.RECEIVER_TO_HANDLER),
        (A, C, Action.COMPLAINT, Relation.RECEIVER_TO_HANDLER),
        (B, C, Action.SUBMIT, Relation.CO_HANDLERS),
        (C, B, Action.STATUS_UPDATE, Relation.CO_HANDLERS),
    ],
)
def test_action_table_permits_the_granted_relation(
    index: AgreementIndex, sender: str, recipient: str, action: Action, relation: Relation
) -> None:
    decision = decide(index, sender, recipient, action)
    assert isinstance(decision, Permit)
    assert decision.clause.role is relation
    assert (decision.clause.agreement_id, decision.clause.version) == BASE.ref
    assert decision.clause.matter == "food"


@pytest.mark.parametrize(
    ("sender", "recipient", "action"),
    [
        (B, A, Action.SUBMIT),  # handler does not receive for the receiver
        (D, C, Action.SUBMIT),  # D receives for B only
        (A, B, Action.ACCEPT),  # A does not handle
        (C, A, Action.ISSUE_LICENCE),  # C handles but does not issue
        (C, A, Action.REQUEST_SURVEY),  # A surveys for B, not for C
        (A, C, Action.SURVEY_REPORT),
        (B, A, Action.RATING),  # ratings travel from the receiving office
        (B, C, Action.DECIDE),  # a decision goes back to a receiver, not a co-handler
        (A, D, Action.STATUS_UPDATE),  # two receivers share no relation
    ],
)
def test_action_table_denies_roles_not_granted(
    index: AgreementIndex, sender: str, recipient: str, action: Action
) -> None:
    assert decide(index, sender, recipient, action) == Deny(Reason.ROLE_NOT_GRANTED, BASE.ref)


def test_co_handlers_need_the_joint_mode(index: AgreementIndex) -> None:
    assert isinstance(decide(index, B, C, Action.SUBMIT, mode=ServiceMode.JOINT), Permit)
    denied = decide(index, B, C, Action.SUBMIT, mode=ServiceMode.PROXY_RECEIPT)
    assert denied == Deny(Reason.ROLE_NOT_GRANTED, BASE.ref)


def _reason(index: AgreementIndex, request: Request, at=NOW) -> Reason | None:
    decision = authorize(index, request, at)
    return decision.reason if isinstance(decision, Deny) else None


def test_every_reason_code_is_reachable() -> None:
    reached: set[Reason] = set()
    submit = Request(A, B, "food", Action.SUBMIT)
    index = AgreementIndex([active(BASE)])

    reached.add(_reason(index, Request(A, "110101", "food", Action.SUBMIT)))  # no-agreement
    unsigned = start(BASE, T0)
    unsigned = apply(unsigned, event(BASE, EventKind.PROPOSE, A, T0))
    reached.add(_reason(AgreementIndex([unsigned]), submit))  # agreement-not-signed
    reached.add(_reason(index, submit, T0 - timedelta(seconds=1)))  # not-yet-active
    reached.add(_reason(index, submit, T_END))  # expired
    suspended = apply(active(BASE), event(BASE, EventKind.SUSPEND, C, NOW))
    reached.add(_reason(AgreementIndex([suspended]), submit))  # suspended
    left = apply(active(BASE), event(BASE, EventKind.WITHDRAW, B, NOW))
    reached.add(_reason(AgreementIndex([left]), submit))  # party-withdrawn
    reached.add(_reason(index, Request(A, B, "nothing", Action.SUBMIT)))  # matter-not-covered
    reached.add(
        _reason(index, Request(A, B, "food", Action.SUBMIT, ServiceMode.ONLINE))
    )  # mode-not-allowed (mode not in clause)
    reached.add(_reason(index, Request(A, B, "online-matter", Action.SUBMIT)))  # action vs mode
    reached.add(_reason(index, Request(B, A, "food", Action.SUBMIT)))  # role-not-granted
    v2 = agreement([A, B, C, D], [FOOD], version=2, supersedes=1)
    superseded = apply(
        active(BASE), event(BASE, EventKind.SUPERSEDE, A, NOW, superseded_by=v2.version)
    )
    reached.add(_reason(AgreementIndex([superseded]), submit))  # superseded
    only_sm = agreement([A, B, C, D], [FOOD], aid="sm-only", crypto_profiles=["sm"])
    request = Request(A, B, "food", Action.SUBMIT, None, Profile.DEFAULT, Profile.SM)
    reached.add(_reason(AgreementIndex([active(only_sm)]), request))  # profile-not-allowed
    assert reached == set(Reason)


def test_denial_reports_the_candidate_closest_to_permitting() -> None:
    expired = agreement(
        [A, B],
        [FOOD.__class__(**{**_fields(FOOD), "matter": "other"})],
        aid="old",
        valid_until=T0 + timedelta(days=10),
    )
    index = AgreementIndex([active(expired), active(BASE)])
    assert _reason(index, Request(B, A, "food", Action.SUBMIT)) is Reason.ROLE_NOT_GRANTED
    only_expired = AgreementIndex([active(expired)])
    assert _reason(only_expired, Request(A, B, "food", Action.SUBMIT)) is Reason.EXPIRED


def _fields(c):
    return {f: getattr(c, f) for f in c.__slots__}


def test_multilateral_agreement_continues_among_the_rest_after_a_withdrawal() -> None:
    lc = apply(active(BASE), event(BASE, EventKind.WITHDRAW, D, NOW))
    index = AgreementIndex([lc])
    later = NOW + timedelta(hours=1)
    assert isinstance(decide(index, A, B, Action.SUBMIT, at=later), Permit)
    assert decide(index, D, B, Action.SUBMIT, at=later) == Deny(Reason.PARTY_WITHDRAWN, BASE.ref)
    assert decide(index, B, D, Action.ACCEPT, at=later) == Deny(Reason.PARTY_WITHDRAWN, BASE.ref)


def test_bilateral_agreement_ends_when_one_party_withdraws() -> None:
    bi = agreement([A, B], [clause("food", handle=[B], receive_for={A: [B]})], aid="bi")
    lc = apply(active(bi), event(bi, EventKind.WITHDRAW, A, NOW))
    assert lc.state.value == "withdrawn"
    assert decide(AgreementIndex([lc]), A, B, Action.SUBMIT, at=NOW) == Deny(
        Reason.PARTY_WITHDRAWN, bi.ref
    )


def test_resumed_agreement_permits_again_only_when_every_suspender_resumed() -> None:
    t1, t2, t3, t4 = (NOW + timedelta(hours=h) for h in (1, 2, 3, 4))
    lc = active(BASE)
    lc = apply(lc, event(BASE, EventKind.SUSPEND, A, t1))
    lc = apply(lc, event(BASE, EventKind.SUSPEND, C, t2))
    lc = apply(lc, event(BASE, EventKind.RESUME, A, t3))
    lc = apply(lc, event(BASE, EventKind.RESUME, C, t4))
    index = AgreementIndex([lc])
    kinds = [
        type(decide(index, A, B, Action.SUBMIT, at=t)).__name__
        for t in (NOW, t1, t2, t3, t4 - timedelta(seconds=1), t4)
    ]
    assert kinds == ["Permit", "Deny", "Deny", "Deny", "Deny", "Permit"]


def test_a_sender_cannot_address_itself(index: AgreementIndex) -> None:
    assert decide(index, B, B, Action.STATUS_UPDATE) == Deny(Reason.NO_AGREEMENT)


def test_new_version_supersedes_only_once_fully_signed() -> None:
    v2 = agreement(
        [A, B, C, D], [clause("food", handle=[C], receive_for={A: [C]})], version=2, supersedes=1
    )
    proposed = apply(start(v2, T0), event(v2, EventKind.PROPOSE, A, NOW))
    index = AgreementIndex([active(BASE), proposed])
    assert isinstance(decide(index, A, B, Action.SUBMIT, at=NOW + timedelta(days=1)), Permit)

    signed_at = NOW + timedelta(days=2)
    v2_active = apply(proposed, event(v2, EventKind.ACTIVATE, D, signed_at), signed_by=v2.party_ids)
    index = AgreementIndex([active(BASE), v2_active])
    before = signed_at - timedelta(seconds=1)
    assert isinstance(decide(index, A, B, Action.SUBMIT, at=before), Permit)  # v1 still rules
    # v1 is superseded; v2 does not let A submit to B any more, but to C
    assert decide(index, A, B, Action.SUBMIT, at=signed_at) == Deny(Reason.ROLE_NOT_GRANTED, v2.ref)
    permit = decide(index, A, C, Action.SUBMIT, at=signed_at)
    assert isinstance(permit, Permit)
    assert permit.clause.version == 2
    only_v1 = AgreementIndex([active(BASE), v2_active]).candidates(D, B)
    assert [lc.agreement.version for lc in only_v1] == [1, 2]
    assert decide(index, D, B, Action.SUBMIT, at=signed_at) == Deny(Reason.ROLE_NOT_GRANTED, v2.ref)
    assert decide(index, B, D, Action.ACCEPT, at=signed_at, matter="online-matter") == Deny(
        Reason.MATTER_NOT_COVERED, v2.ref
    )
