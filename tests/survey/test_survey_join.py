"""Join links: role-scoped, time-bound, bound to one session and one device."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from remote_survey.errors import JoinRefused
from remote_survey.join import (
    JOIN_TYP,
    JoinLedger,
    admit,
    check_join_token,
    issue_join_token,
    new_jti,
    participant_for,
)
from remote_survey.session import Role

NODE = "420106"
SESSION = "sv-2026-0001"
T = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _token(key: Ed25519PrivateKey, **over: object) -> str:
    args: dict[str, object] = {
        "node_id": NODE,
        "session_id": SESSION,
        "role": Role.SITE,
        "subject": "site-1",
        "not_before": T,
        "expires": T + timedelta(hours=2),
        "jti": "jti-0123456789abcdef",
    }
    args.update(over)
    return issue_join_token(key, **args)  # type: ignore[arg-type]


def _check(key: Ed25519PrivateKey, token: str, **over: object) -> object:
    args: dict[str, object] = {
        "node_id": NODE,
        "session_id": SESSION,
        "role": Role.SITE,
        "at": T + timedelta(minutes=10),
    }
    args.update(over)
    return check_join_token(token, key.public_key(), **args)  # type: ignore[arg-type]


def _reason(key: Ed25519PrivateKey, token: str, **over: object) -> str:
    with pytest.raises(JoinRefused) as info:
        _check(key, token, **over)
    return info.value.reason


def test_valid_link_yields_claims(key: Ed25519PrivateKey) -> None:
    claims = _check(key, _token(key))
    assert claims.session_id == SESSION  # type: ignore[attr-defined]
    assert claims.role is Role.SITE  # type: ignore[attr-defined]
    assert claims.subject == "site-1"  # type: ignore[attr-defined]
    assert claims.expires == T + timedelta(hours=2)  # type: ignore[attr-defined]


def test_token_shape_is_as_documented(key: Ed25519PrivateKey) -> None:
    token = _token(key)
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "typ": JOIN_TYP}
    claims = jwt.decode(token, options={"verify_signature": False})
    assert set(claims) == {"aud", "sub", "session", "role", "nbf", "exp", "jti"}
    assert claims["aud"] == "tongban-survey:420106"


def test_expired_link_is_refused(key: Ed25519PrivateKey) -> None:
    token = _token(key)
    assert _reason(key, token, at=T + timedelta(hours=2)) == "expired"
    assert _reason(key, token, at=T + timedelta(days=3)) == "expired"


def test_link_before_not_before_is_refused(key: Ed25519PrivateKey) -> None:
    assert _reason(key, _token(key), at=T - timedelta(seconds=1)) == "not-yet-valid"


def test_link_for_another_session_is_refused(key: Ed25519PrivateKey) -> None:
    assert _reason(key, _token(key), session_id="sv-2026-0002") == "wrong-session"


@pytest.mark.parametrize("asked", [Role.INSPECTOR, Role.OBSERVER])
def test_link_does_not_grant_another_role(key: Ed25519PrivateKey, asked: Role) -> None:
    assert _reason(key, _token(key), role=asked) == "role-not-granted"


def test_observer_link_cannot_act_as_inspector(key: Ed25519PrivateKey) -> None:
    token = _token(key, role=Role.OBSERVER)
    assert _check(key, token, role=Role.OBSERVER).role is Role.OBSERVER  # type: ignore[attr-defined]
    assert _reason(key, token, role=Role.INSPECTOR) == "role-not-granted"


def test_link_for_another_node_is_refused(key: Ed25519PrivateKey) -> None:
    assert _reason(key, _token(key, node_id="320982")) == "wrong-audience"


def test_link_signed_by_another_key_is_refused(key: Ed25519PrivateKey) -> None:
    other = Ed25519PrivateKey.generate()
    assert _reason(key, _token(other)) == "bad-token"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(header: dict[str, object], claims: dict[str, object], signature: bytes) -> str:
    head = _b64(json.dumps(header).encode())
    body = _b64(json.dumps(claims).encode())
    return f"{head}.{body}.{_b64(signature)}"


def _claims() -> dict[str, object]:
    return {
        "aud": "tongban-survey:420106",
        "sub": "site-1",
        "session": SESSION,
        "role": "inspector",
        "nbf": int(T.timestamp()),
        "exp": int((T + timedelta(hours=2)).timestamp()),
        "jti": "jti-0123456789abcdef",
    }


def test_alg_none_is_refused(key: Ed25519PrivateKey) -> None:
    token = _forge({"alg": "none", "typ": JOIN_TYP}, _claims(), b"")
    assert _reason(key, token, role=Role.INSPECTOR) == "bad-token"


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_with_the_public_key_as_secret_is_refused(key: Ed25519PrivateKey, alg: str) -> None:
    secret = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    header = {"alg": alg, "typ": JOIN_TYP}
    head = _b64(json.dumps(header).encode())
    body = _b64(json.dumps(_claims()).encode())
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    sig = hmac.new(secret, f"{head}.{body}".encode(), digest).digest()
    assert _reason(key, f"{head}.{body}.{_b64(sig)}", role=Role.INSPECTOR) == "bad-token"


def test_token_with_another_typ_is_refused(key: Ed25519PrivateKey) -> None:
    token = jwt.encode(_claims(), key, algorithm="EdDSA", headers={"typ": "JWT"})
    assert _reason(key, token, role=Role.INSPECTOR) == "bad-token"


def test_token_without_jti_is_refused(key: Ed25519PrivateKey) -> None:
    claims = _claims()
    del claims["jti"]
    token = jwt.encode(claims, key, algorithm="EdDSA", headers={"typ": JOIN_TYP})
    assert _reason(key, token, role=Role.INSPECTOR) == "bad-token"


def test_garbage_is_refused(key: Ed25519PrivateKey) -> None:
    assert _reason(key, "not-a-token") == "bad-token"


def test_single_use_per_device_and_same_device_rejoin(key: Ed25519PrivateKey) -> None:
    token = _token(key)
    at = T + timedelta(minutes=10)
    args = {"node_id": NODE, "session_id": SESSION, "role": Role.SITE}
    empty = JoinLedger()
    claims, ledger = admit(token, key.public_key(), empty, device_id="phone-A", at=at, **args)
    assert ledger.device_for(claims.jti) == "phone-A"
    assert empty.device_for(claims.jti) is None  # ledgers are immutable values
    # the connection drops; the same phone rejoins with the same link
    _, again = admit(
        token, key.public_key(), ledger, device_id="phone-A", at=at + timedelta(minutes=5), **args
    )
    assert again == ledger
    # the link forwarded to another phone is refused
    with pytest.raises(JoinRefused) as info:
        admit(token, key.public_key(), ledger, device_id="phone-B", at=at, **args)
    assert info.value.reason == "used-on-other-device"


def test_distinct_links_bind_independently(key: Ed25519PrivateKey) -> None:
    at = T + timedelta(minutes=10)
    args = {"node_id": NODE, "session_id": SESSION, "role": Role.SITE}
    ledger = JoinLedger()
    for device in ("phone-A", "phone-B"):
        token = _token(key, jti=new_jti())
        _, ledger = admit(token, key.public_key(), ledger, device_id=device, at=at, **args)
    assert len(ledger.bindings) == 2


def test_prune_forgets_only_expired_links(key: Ed25519PrivateKey) -> None:
    at = T + timedelta(minutes=10)
    args = {"node_id": NODE, "session_id": SESSION, "role": Role.SITE}
    short = _token(key, jti="short-link-0123456", expires=T + timedelta(minutes=30))
    long = _token(key, jti="long-link-01234567", expires=T + timedelta(hours=5))
    ledger = JoinLedger()
    for token in (short, long):
        _, ledger = admit(token, key.public_key(), ledger, device_id="phone-A", at=at, **args)
    pruned = ledger.prune(T + timedelta(hours=1))
    assert set(pruned.bindings) == {"long-link-01234567"}


def test_issuer_refuses_inverted_validity(key: Ed25519PrivateKey) -> None:
    with pytest.raises(ValueError, match="expire"):
        _token(key, expires=T - timedelta(seconds=1))


def test_participant_for_checks_the_plan(key: Ed25519PrivateKey) -> None:
    from survey_support import make_plan

    plan = make_plan(T - timedelta(hours=1), session_id=SESSION)
    claims = _check(key, _token(key))
    assert participant_for(plan, claims).name == "张店主"  # type: ignore[arg-type]
    stranger = _check(key, _token(key, subject="site-9"))
    with pytest.raises(JoinRefused) as info:
        participant_for(plan, stranger)  # type: ignore[arg-type]
    assert info.value.reason == "not-a-participant"
    inspector_as_observer = _check(
        key, _token(key, role=Role.OBSERVER, subject="insp-1"), role=Role.OBSERVER
    )
    with pytest.raises(JoinRefused) as info:
        participant_for(plan, inspector_as_observer)  # type: ignore[arg-type]
    assert info.value.reason == "not-a-participant"
