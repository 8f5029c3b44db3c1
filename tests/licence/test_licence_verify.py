"""verify_licence: each outcome reported with its stable code, offline."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from licence_support import (
    ISSUER,
    OTHER,
    PESTICIDE,
    REV_URL,
    SUS_URL,
    T0,
    Federation,
    lists_for,
    make_federation,
    make_licence,
    publish,
)

from certs.pki import revoke as revoke_certificate
from signing.certificates import TrustBundle
from signing.encoding import b64url, b64url_decode, canonical_json
from signing.errors import MalformedInput
from signing.jws import sign_compact
from signing.licence import Licence, StatusEntry, issue_licence, parse_licence, verify_licence
from signing.licence_report import Check, Failure, Outcome
from signing.status_list import StatusPurpose

AT = T0 + timedelta(days=3)


class _EntitledOnly:
    """An entitlement callback: only ``node`` may issue ``licence_type``; records calls."""

    def __init__(self, node: str, licence_type: str) -> None:
        self.allowed = (node, licence_type)
        self.calls: list[tuple[str, str, datetime]] = []

    def __call__(self, issuer: str, kind: str, at: datetime) -> bool:
        self.calls.append((issuer, kind, at))
        return (issuer, kind) == self.allowed


@pytest.fixture(scope="module")
def token(fed: Federation) -> str:
    return issue_licence(make_licence(), fed.signer(ISSUER), at=T0 + timedelta(hours=1))


def test_valid_licence_passes_every_check(fed: Federation, token: str) -> None:
    entitled = _EntitledOnly(ISSUER, PESTICIDE)
    report = verify_licence(
        token, fed.bundle, at=AT, status_lists=lists_for(fed.signer(ISSUER)), entitled=entitled
    )
    assert report.valid
    assert report.failure is None
    assert [r.outcome for r in report.checks] == [Outcome.PASSED] * 6
    assert report.licence == make_licence()
    assert report.signer is not None
    assert report.signer.node_id == ISSUER
    # entitlement is asked about the issuance time, not the verification time
    assert entitled.calls == [(ISSUER, PESTICIDE, T0 + timedelta(hours=1))]


def test_claims_are_the_documented_vc_jwt_shape(token: str) -> None:
    header = b64url_decode(token.split(".")[0])
    assert b'"typ":"vc+jwt"' in header
    assert b'"alg":"EdDSA"' in header
    claims = parse_licence(token).to_claims()
    assert claims["iss"] == "urn:tongban:node:320982"
    assert claims["sub"] == "91320982MA1XY2Z3Q4"
    assert claims["jti"] == "苏农药零售2026第0042号"
    assert claims["vc"]["type"] == ["VerifiableCredential", "TongbanLicence"]
    assert claims["vc"]["credentialSubject"]["lt"] == PESTICIDE
    assert claims["vc"]["credentialStatus"][0] == {
        "type": "BitstringStatusListEntry",
        "statusPurpose": "revocation",
        "statusListIndex": "42",
        "statusListCredential": REV_URL,
    }
    assert Licence.from_claims(claims) == make_licence()


def test_without_lists_or_agreement_those_checks_are_skipped_not_passed(
    fed: Federation, token: str
) -> None:
    report = verify_licence(token, fed.bundle, at=AT)
    assert report.valid
    assert report.unchecked == (Check.REVOCATION, Check.SUSPENSION, Check.ENTITLEMENT)


def _tamper_payload(token: str) -> str:
    head, _payload, sig = token.split(".")
    claims = parse_licence(token).to_claims()
    claims["vc"]["credentialSubject"]["sc"] = "农药零售（含限制使用农药）"
    return f"{head}.{b64url(canonical_json(claims))}.{sig}"


def _tamper_signature(token: str) -> str:
    head, payload, sig = token.split(".")
    raw = bytearray(b64url_decode(sig))
    raw[10] ^= 0x01
    return f"{head}.{payload}.{b64url(bytes(raw))}"


@pytest.mark.parametrize("tamper", [_tamper_payload, _tamper_signature])
def test_tampered_licence_fails_the_signature_check(fed: Federation, token: str, tamper) -> None:  # type: ignore[no-untyped-def]
    report = verify_licence(
        tamper(token), fed.bundle, at=AT, status_lists=lists_for(fed.signer(ISSUER))
    )
    assert not report.valid
    assert report.failure is Failure.SIGNATURE
    assert report.result(Check.CHAIN).outcome is Outcome.PASSED
    assert report.result(Check.VALIDITY).outcome is Outcome.SKIPPED
    assert report.licence is None


@pytest.mark.parametrize(
    ("at", "failure"),
    [
        (T0 + timedelta(days=365), Failure.EXPIRED),  # exp is exclusive
        (T0 + timedelta(days=400), Failure.EXPIRED),
    ],
)
def test_expired_licence(fed: Federation, token: str, at: datetime, failure: Failure) -> None:
    # the CRL in the bundle is valid 30 days; renew it for a late check
    report = verify_licence(token, _bundle_at(fed, at), at=at)
    assert report.failure is failure
    assert report.result(Check.SIGNATURE).outcome is Outcome.PASSED


def _bundle_at(fed: Federation, at: datetime) -> TrustBundle:
    del at
    return TrustBundle(roots=fed.bundle.roots)  # roots only: no CRL to go stale


def test_licence_not_yet_valid(fed: Federation) -> None:
    future = make_licence(valid_from=T0 + timedelta(days=10))
    token = issue_licence(future, fed.signer(ISSUER), at=T0 + timedelta(hours=1))
    report = verify_licence(token, fed.bundle, at=AT)
    assert report.failure is Failure.NOT_YET_VALID
    later = verify_licence(token, fed.bundle, at=T0 + timedelta(days=10))
    assert later.valid


def test_revoked_licence(fed: Federation, token: str) -> None:
    lists = lists_for(fed.signer(ISSUER), revoked=[41, 42])
    report = verify_licence(token, fed.bundle, at=AT, status_lists=lists)
    assert report.failure is Failure.REVOKED
    assert report.result(Check.SUSPENSION).outcome is Outcome.PASSED
    others = lists_for(fed.signer(ISSUER), revoked=[41, 43])  # neighbours do not matter
    assert verify_licence(token, fed.bundle, at=AT, status_lists=others).valid


def test_suspended_then_reinstated(fed: Federation, token: str) -> None:
    signer = fed.signer(ISSUER)
    suspended = lists_for(signer, suspended=[42])
    report = verify_licence(token, fed.bundle, at=AT, status_lists=suspended)
    assert report.failure is Failure.SUSPENDED
    assert report.result(Check.REVOCATION).outcome is Outcome.PASSED
    later = AT + timedelta(days=2)
    reinstated = {
        REV_URL: publish(signer, StatusPurpose.REVOCATION, at=later - timedelta(hours=1)),
        SUS_URL: publish(signer, StatusPurpose.SUSPENSION, at=later - timedelta(hours=1)),
    }
    assert verify_licence(token, fed.bundle, at=later, status_lists=reinstated).valid


def test_office_not_entitled_to_the_licence_type(fed: Federation) -> None:
    # 420106 seals a pesticide licence, but the agreement entitles only 320982 to issue it
    licence = make_licence(issuer_node=OTHER, status=())
    token = issue_licence(licence, fed.signer(OTHER), at=T0 + timedelta(hours=1))
    entitled = _EntitledOnly(ISSUER, PESTICIDE)
    report = verify_licence(token, fed.bundle, at=AT, entitled=entitled)
    assert report.failure is Failure.ISSUER_NOT_ENTITLED
    assert report.result(Check.SIGNATURE).outcome is Outcome.PASSED
    assert entitled.calls == [(OTHER, PESTICIDE, T0 + timedelta(hours=1))]


def test_missing_or_foreign_status_lists_are_status_unavailable(
    fed: Federation, token: str
) -> None:
    signer = fed.signer(ISSUER)
    cases = {
        "missing": {REV_URL: publish(signer, StatusPurpose.REVOCATION)},
        "other office": {
            **lists_for(signer),
            SUS_URL: publish(fed.signer(OTHER), StatusPurpose.SUSPENSION, issuer=OTHER),
        },
        "stale": {
            **lists_for(signer),
            REV_URL: publish(signer, StatusPurpose.REVOCATION, at=AT - timedelta(days=8)),
        },
        "wrong purpose": {
            **lists_for(signer),
            REV_URL: publish(signer, StatusPurpose.SUSPENSION, url=REV_URL),
        },
        "wrong url": {
            **lists_for(signer),
            REV_URL: publish(signer, StatusPurpose.REVOCATION, url=REV_URL + "x"),
        },
        "garbage": {**lists_for(signer), SUS_URL: "not.a.token"},
    }
    for name, lists in cases.items():
        report = verify_licence(token, fed.bundle, at=AT, status_lists=lists)
        assert report.failure is Failure.STATUS_UNAVAILABLE, name


def test_status_lists_through_a_resolver(fed: Federation, token: str) -> None:
    lists = lists_for(fed.signer(ISSUER), revoked=[42])
    asked: list[str] = []

    def resolve(url: str) -> str | None:
        asked.append(url)
        return lists.get(url)

    report = verify_licence(token, fed.bundle, at=AT, status_lists=resolve)
    assert report.failure is Failure.REVOKED
    assert asked == [REV_URL, SUS_URL]
    none = verify_licence(token, fed.bundle, at=AT, status_lists=lambda url: None)
    assert none.failure is Failure.STATUS_UNAVAILABLE


def test_seal_from_an_untrusted_federation_fails_the_chain(
    fed: Federation, rogue: Federation
) -> None:
    token = issue_licence(make_licence(), rogue.signer(ISSUER), at=T0 + timedelta(hours=1))
    report = verify_licence(token, fed.bundle, at=AT)
    assert report.failure is Failure.CHAIN
    assert "untrusted-root" in report.result(Check.CHAIN).detail
    assert report.result(Check.SIGNATURE).outcome is Outcome.SKIPPED


def test_licence_naming_another_issuer_fails_the_chain(fed: Federation) -> None:
    # 420106's seal over claims that say 320982 issued them
    claims = make_licence().to_claims()
    token = sign_compact(
        canonical_json(claims), fed.signer(OTHER), typ="vc+jwt", at=T0 + timedelta(hours=1)
    )
    report = verify_licence(token, fed.bundle, at=AT)
    assert report.failure is Failure.CHAIN
    assert "wrong-node" in report.result(Check.CHAIN).detail
    with pytest.raises(MalformedInput):
        issue_licence(make_licence(), fed.signer(OTHER), at=T0)


def test_revoked_seal_certificate_fails_the_chain(tmp_path: Path) -> None:
    own = make_federation(tmp_path, "Own", [(ISSUER, "审批局")])
    tok = issue_licence(make_licence(), own.signer(ISSUER), at=T0 + timedelta(hours=1))
    assert verify_licence(tok, own.bundle, at=AT).valid
    revoke_certificate(own.directory, (own.nodes[ISSUER] / "seal.pem").read_bytes(), now=AT)
    report = verify_licence(tok, own.bundle, at=AT + timedelta(hours=1))
    assert report.failure is Failure.CHAIN
    assert "revoked" in report.result(Check.CHAIN).detail


@pytest.mark.parametrize("junk", ["", "abc", "a.b.c", "e30.e30.", "x" * 5000])
def test_malformed_tokens_are_reported_not_raised(fed: Federation, junk: str) -> None:
    report = verify_licence(junk, fed.bundle, at=AT)
    assert report.failure is Failure.MALFORMED
    assert report.to_json()["failure"] == "malformed"


@pytest.mark.parametrize("where", ["exp", "nbf", "iat", "header-iat"])
def test_a_time_beyond_year_9999_is_malformed_not_an_error(fed: Federation, where: str) -> None:
    """Unsigned or signed, a NumericDate no date can hold is reported (the public verify
    route answered such an edited token with a 500)."""
    claims = make_licence().to_claims()
    if where != "header-iat":
        claims[where] = 10**12
    token = sign_compact(canonical_json(claims), fed.signer(ISSUER), typ="vc+jwt", at=T0)
    if where == "header-iat":
        head, payload, signature = token.split(".")
        header = json.loads(b64url_decode(head))
        token = f"{b64url(canonical_json({**header, 'iat': 10**12}))}.{payload}.{signature}"
    else:
        with pytest.raises(MalformedInput):
            parse_licence(token)
    report = verify_licence(token, fed.bundle, at=AT)
    assert report.failure in (Failure.MALFORMED, Failure.SIGNATURE)


def test_signed_jwt_that_is_not_a_licence(fed: Federation) -> None:
    claims = make_licence().to_claims()
    del claims["vc"]["credentialSubject"]["lt"]
    token = sign_compact(canonical_json(claims), fed.signer(ISSUER), typ="vc+jwt", at=T0)
    assert verify_licence(token, fed.bundle, at=AT).failure is Failure.MALFORMED


def test_report_json_lists_every_check_in_order(fed: Federation, token: str) -> None:
    lists = lists_for(fed.signer(ISSUER), revoked=[42], suspended=[42])
    doc = verify_licence(token, fed.bundle, at=AT, status_lists=lists).to_json()
    assert [c["check"] for c in doc["checks"]] == [
        "signature", "chain", "validity", "revocation", "suspension", "entitlement",
    ]  # fmt: skip
    assert doc["valid"] is False
    assert doc["failure"] == "revoked"
    assert [c["code"] for c in doc["checks"]] == [None, None, None, "revoked", "suspended", None]
    assert doc["licence"]["holder_name"] == "盐城市丰收农资经营部"


def test_verifying_before_the_seal_was_made_says_so(fed: Federation, token: str) -> None:
    report = verify_licence(token, fed.bundle, at=T0 + timedelta(minutes=10))
    assert report.failure is Failure.SIGNATURE
    assert "after the verification time" in report.result(Check.SIGNATURE).detail


@pytest.mark.parametrize(
    "where", ["vc", "credentialSubject", "dept", "entry"], ids=lambda w: f"extra-in-{w}"
)
def test_unknown_members_inside_the_credential_are_refused(where: str) -> None:
    claims = make_licence().to_claims()
    target = {
        "vc": claims["vc"],
        "credentialSubject": claims["vc"]["credentialSubject"],
        "dept": claims["vc"]["dept"],
        "entry": claims["vc"]["credentialStatus"][0],
    }[where]
    target["extra"] = "x"
    with pytest.raises(MalformedInput, match="unknown member"):
        Licence.from_claims(claims)
    claims = make_licence().to_claims()
    claims["extra"] = "top-level claims are ignored"
    assert Licence.from_claims(claims) == make_licence()


_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40
).filter(str.strip)


@settings(max_examples=60, deadline=None)
@given(
    number=_TEXT,
    holder=_TEXT,
    scope=_TEXT,
    index=st.integers(min_value=0, max_value=2**20),
    days=st.integers(min_value=1, max_value=3650),
)
def test_any_licence_round_trips_through_its_claims(
    number: str, holder: str, scope: str, index: int, days: int
) -> None:
    licence = make_licence(
        number=number,
        holder_name=holder,
        scope=scope,
        valid_until=T0 + timedelta(days=days, hours=2),
        status=(StatusEntry(StatusPurpose.SUSPENSION, index, SUS_URL),),
    )
    claims = json.loads(canonical_json(licence.to_claims()))
    assert Licence.from_claims(claims) == licence
