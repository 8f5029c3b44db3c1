"""``crypto_profiles``: the cryptographic profiles an agreement allows (issue 19).

Parsing and its refusals, the signed bytes (unchanged when the field is absent, a
vector made before the field existed), drafting, the decision's step 9
``profile-not-allowed``."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from agreement_support import PKI_NOW, T0, active, agreement, clause

from agreements.actions import Action
from agreements.authorize import AgreementIndex, Deny, Permit, Reason, Request, authorize
from agreements.catalog import default_catalog
from agreements.document import parse_agreement
from agreements.draft import draft_from_template, reciprocal_template
from agreements.errors import MalformedAgreement
from agreements.events import document_digest
from agreements.model import Agreement, ServiceMode
from agreements.signatures import sign_agreement
from signing.profiles import Profile

VECTOR = Path(__file__).parents[1] / "vectors" / "agreements" / "without_crypto_profiles.json"
A, B = "420106", "320982"
NOW = T0 + timedelta(days=100)
DEFAULT, SM = Profile.DEFAULT, Profile.SM


def _vector() -> dict[str, Any]:
    return json.loads(VECTOR.read_text("utf-8"))


def _document(**extra: Any) -> dict[str, Any]:
    doc = copy.deepcopy(_vector()["document"])
    doc.update(extra)
    return doc


def test_an_agreement_without_the_field_keeps_its_bytes_and_digest() -> None:
    vector = _vector()
    ag = parse_agreement(vector["document"])
    assert ag.crypto_profiles is None
    assert "crypto_profiles" not in ag.document()
    assert document_digest(ag) == vector["document_sha256"]
    assert ag.allows_profile(DEFAULT)
    assert ag.allows_profile(SM)


def test_named_profiles_round_trip_sorted_and_are_signed_bytes() -> None:
    ag = parse_agreement(_document(crypto_profiles=["sm", "default"]))
    assert ag.crypto_profiles == {DEFAULT, SM}
    assert ag.document()["crypto_profiles"] == ["default", "sm"]
    assert b'"crypto_profiles":["default","sm"]' in ag.document_bytes()
    assert parse_agreement(json.loads(ag.document_bytes())) == ag
    only_default = parse_agreement(_document(crypto_profiles=["default"]))
    without = parse_agreement(_document())
    digests = {document_digest(x) for x in (ag, only_default, without)}
    assert len(digests) == 3  # the field is part of what the parties sign
    assert only_default.allows_profile(DEFAULT)
    assert not only_default.allows_profile(SM)


@pytest.mark.parametrize(
    ("value", "pointer", "message"),
    [
        ([], "/crypto_profiles", "must hold at least 1 item(s)"),
        (None, "/crypto_profiles", "must be an array"),
        ("sm", "/crypto_profiles", "must be an array"),
        (["default", "rsa"], "/crypto_profiles/1", "must be a cryptographic profile"),
        (["SM"], "/crypto_profiles/0", "must be a cryptographic profile"),
        ([["sm"]], "/crypto_profiles/0", "must be a cryptographic profile"),
        (["sm", "default", "sm"], "/crypto_profiles/2", "repeats sm"),
    ],
)
def test_a_bad_profile_list_is_refused_with_its_pointer(
    value: Any, pointer: str, message: str
) -> None:
    with pytest.raises(MalformedAgreement) as err:
        parse_agreement(_document(crypto_profiles=value))
    assert err.value.pointer == pointer
    assert message in err.value.reason


def test_the_model_refuses_an_empty_set_and_unknown_names() -> None:
    base = parse_agreement(_document())
    fields = {k: getattr(base, k) for k in Agreement.__dataclass_fields__ if k != "party_ids"}
    with pytest.raises(ValueError, match="at least one profile"):
        Agreement(**{**fields, "crypto_profiles": frozenset()})
    with pytest.raises(ValueError, match="rsa"):
        Agreement(**{**fields, "crypto_profiles": frozenset({"rsa"})})  # type: ignore[arg-type]


def test_drafts_carry_the_profiles_they_are_given() -> None:
    catalog = default_catalog()
    both = reciprocal_template([A, B], agreement_id="x", title_zh="协议", title_en="Agreement",
                               crypto_profiles=["default", "sm"])  # fmt: skip
    assert draft_from_template(both, catalog).crypto_profiles == {DEFAULT, SM}
    plain = reciprocal_template([A, B], agreement_id="x", title_zh="协议", title_en="Agreement")
    assert "crypto_profiles" not in plain
    assert draft_from_template(plain, catalog).crypto_profiles is None
    plain["crypto_profiles"] = ["sm", "sm"]
    with pytest.raises(MalformedAgreement, match="/crypto_profiles/1: repeats sm"):
        draft_from_template(plain, catalog)


FOOD = clause("food", handle=[B], receive_for={A: [B]}, issue=[B])


def _index(*agreements: Agreement) -> AgreementIndex:
    return AgreementIndex([active(ag) for ag in agreements])


def _submit(sender_profile: Profile | None, recipient_profile: Profile | None) -> Request:
    return Request(A, B, "food", Action.SUBMIT, None, sender_profile, recipient_profile)


@pytest.mark.parametrize(
    ("allowed", "sender", "recipient", "permitted"),
    [
        (None, SM, DEFAULT, True),  # field absent: any profile
        (None, SM, SM, True),
        ({DEFAULT, SM}, SM, DEFAULT, True),
        ({DEFAULT}, DEFAULT, DEFAULT, True),
        ({DEFAULT}, SM, DEFAULT, False),  # the sender's profile is excluded
        ({DEFAULT}, DEFAULT, SM, False),  # the recipient's profile is excluded
        ({SM}, SM, DEFAULT, False),
        ({SM}, SM, SM, True),
        ({DEFAULT}, None, None, True),  # a request naming no profiles skips step 9
        ({DEFAULT}, None, SM, False),  # each named profile is checked
    ],
)
def test_the_decision_checks_both_profiles(
    allowed: set[Profile] | None,
    sender: Profile | None,
    recipient: Profile | None,
    permitted: bool,
) -> None:
    ag = agreement([A, B], [FOOD], crypto_profiles=allowed)
    decision = authorize(_index(ag), _submit(sender, recipient), NOW)
    if permitted:
        assert isinstance(decision, Permit)
    else:
        assert decision == Deny(Reason.PROFILE_NOT_ALLOWED, ag.ref)


def test_profile_refusal_is_the_reason_of_the_candidate_closest_to_permitting() -> None:
    """Step 9 comes after every other check: another agreement that does not cover the
    matter loses to the one that grants everything but the profile; an agreement that
    allows the profile permits."""
    narrow = agreement([A, B], [FOOD], aid="only-default", crypto_profiles={DEFAULT})
    other = agreement([A, B], [clause("other", handle=[B], receive_for={A: [B]})], aid="other")
    assert authorize(_index(other, narrow), _submit(SM, DEFAULT), NOW) == Deny(
        Reason.PROFILE_NOT_ALLOWED, narrow.ref
    )
    both = agreement([A, B], [FOOD], aid="both", crypto_profiles={DEFAULT, SM})
    decision = authorize(_index(narrow, both), _submit(SM, DEFAULT), NOW)
    assert isinstance(decision, Permit)
    assert decision.clause.agreement_id == "both"
    # a mode outside the clause still reads as mode-not-allowed, not as the profile
    request = Request(A, B, "food", Action.SUBMIT, ServiceMode.ONLINE, SM, DEFAULT)
    assert authorize(_index(narrow), request, NOW) == Deny(Reason.MODE_NOT_ALLOWED, narrow.ref)


def test_a_party_may_sign_an_agreement_excluding_its_own_profile(federation) -> None:
    """Signing is not refused (the party then cannot act under it: the decision refuses
    every packet of that party, step 9); ``tongban agreement sign`` warns."""
    signer = federation.signers[A]  # a default-profile seal (Ed25519)
    only_sm = agreement([A, B], [FOOD], crypto_profiles={SM})
    assert sign_agreement(only_sm, signer, at=PKI_NOW).party == A
