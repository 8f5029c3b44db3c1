"""Status list credentials: sealed by the issuer, checked for issuer, URL, purpose, time."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from licence_support import ISSUER, OTHER, REV_URL, SUS_URL, T0, Federation, publish

from signing.encoding import b64url, canonical_json
from signing.errors import MalformedInput
from signing.status_list import (
    StatusListCredential,
    StatusListRejected,
    StatusPurpose,
    parse_status_list,
    verify_status_list,
)

REV = StatusPurpose.REVOCATION
PUBLISHED = T0 + timedelta(hours=2)
AT = PUBLISHED + timedelta(days=1)


def _verify(fed: Federation, token: str, **changes: object) -> StatusListCredential:
    kwargs: dict[str, object] = {
        "at": AT, "issuer_node": ISSUER, "url": REV_URL, "purpose": REV,
    }  # fmt: skip
    kwargs.update(changes)
    return verify_status_list(token, fed.bundle, **kwargs)  # type: ignore[arg-type]


def test_published_list_verifies_and_carries_its_bits(fed: Federation) -> None:
    token = publish(fed.signer(ISSUER), REV, set_bits=[0, 42])
    credential = _verify(fed, token)
    assert credential.status_list.set_indices() == (0, 42)
    assert credential.url == REV_URL
    assert credential.issued_at == PUBLISHED
    assert credential.valid_until == PUBLISHED + timedelta(days=7)
    assert parse_status_list(token) == credential


def test_list_claims_follow_the_spec_shape(fed: Federation) -> None:
    claims = parse_status_list(publish(fed.signer(ISSUER), REV)).to_claims()
    assert claims["iss"] == "urn:tongban:node:320982"
    assert claims["jti"] == REV_URL
    subject = claims["vc"]["credentialSubject"]
    assert subject["id"] == REV_URL + "#list"
    assert subject["type"] == "BitstringStatusList"
    assert subject["statusPurpose"] == "revocation"
    assert subject["encodedList"].startswith("uH4sI")  # multibase u + GZIP magic


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"issuer_node": OTHER}, "issuer-mismatch"),
        ({"url": SUS_URL}, "url-mismatch"),
        ({"purpose": StatusPurpose.SUSPENSION}, "purpose-mismatch"),
        ({"at": PUBLISHED - timedelta(minutes=1)}, "not-yet-valid"),
        ({"at": PUBLISHED + timedelta(days=7)}, "expired"),
    ],
)
def test_list_rejections_have_stable_reasons(
    fed: Federation, changes: dict[str, object], reason: str
) -> None:
    token = publish(fed.signer(ISSUER), REV)
    with pytest.raises(StatusListRejected) as caught:
        _verify(fed, token, **changes)
    assert caught.value.reason == reason


def test_list_sealed_by_another_office_naming_the_issuer_is_refused(fed: Federation) -> None:
    # 420106 signs a list that claims to be 320982's
    forged = publish(fed.signer(OTHER), REV, issuer=ISSUER)
    with pytest.raises(StatusListRejected) as caught:
        _verify(fed, forged)
    assert caught.value.reason == "issuer-mismatch"


def test_list_with_cleared_bits_but_old_signature_is_refused(fed: Federation) -> None:
    token = publish(fed.signer(ISSUER), REV, set_bits=[42])
    head, _payload, sig = token.split(".")
    claims = parse_status_list(token).to_claims()
    claims["vc"]["credentialSubject"]["encodedList"] = parse_status_list(
        publish(fed.signer(ISSUER), REV)
    ).status_list.encode()
    with pytest.raises(StatusListRejected) as caught:
        _verify(fed, f"{head}.{b64url(canonical_json(claims))}.{sig}")
    assert caught.value.reason == "signature"


def test_list_payload_variants_are_malformed(fed: Federation) -> None:
    claims = parse_status_list(publish(fed.signer(ISSUER), REV)).to_claims()
    for mutate in (
        lambda c: c["vc"].update(type=["VerifiableCredential"]),
        lambda c: c["vc"]["credentialSubject"].update(id=REV_URL),
        lambda c: c["vc"]["credentialSubject"].update(statusPurpose="refresh"),
        lambda c: c["vc"]["credentialSubject"].update(encodedList="H4sI"),
        lambda c: c.update(iss="did:web:example.org"),
        lambda c: c.update(exp="never"),
    ):
        doc = json.loads(canonical_json(claims))
        mutate(doc)
        with pytest.raises(MalformedInput):
            StatusListCredential.from_claims(doc)


def test_list_sealed_under_an_untrusted_root_is_a_chain_rejection(
    fed: Federation, rogue: Federation
) -> None:
    token = publish(rogue.signer(ISSUER), REV)
    with pytest.raises(StatusListRejected) as caught:
        _verify(fed, token)
    assert caught.value.reason == "chain"
    assert "untrusted-root" in str(caught.value)
