"""Role-scoped join links for a survey, single use per device.

A join token is a JWT (RFC 7519) signed with the node's survey key (Ed25519, EdDSA),
header ``{"alg": "EdDSA", "typ": "tongban-survey-join+jwt"}``, with the claims:

``aud``  ``"tongban-survey:<node id>"``   the node that runs the survey
``sub``  participant (person) id          who the link was made for
``session`` survey session id
``role`` ``inspector`` | ``site`` | ``observer``
``nbf``, ``exp`` integer seconds          validity window (no leeway)
``jti``  random token id (≥ 128 bits, b64url)

:func:`check_join_token` refuses, with a stable :class:`JoinRefused` reason, any token
whose header algorithm is not EdDSA (``none`` and ``HS*`` included: the algorithm
is bound to the key, never taken from the token), whose signature fails, whose audience
is another node's, that is not yet valid or expired at the given time, that is for
another session, or that does not carry the role asked for. :class:`JoinLedger` then
binds each ``jti`` to the first device that redeems it: the same device may rejoin
(after a dropped connection) with the same link; any other device is refused.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from remote_survey.errors import JoinRefused
from remote_survey.session import Participant, Role, SurveyPlan

__all__ = [
    "JOIN_TYP",
    "JoinClaims",
    "JoinLedger",
    "admit",
    "audience_for",
    "check_join_token",
    "issue_join_token",
    "new_jti",
    "participant_for",
]

JOIN_TYP = "tongban-survey-join+jwt"
_ALG = "EdDSA"
_DEVICE_MAX = 128


def audience_for(node_id: str) -> str:
    return f"tongban-survey:{node_id}"


def new_jti() -> str:
    """A fresh random token id (the shell's source of randomness)."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True)
class JoinClaims:
    session_id: str
    role: Role
    subject: str
    jti: str
    not_before: datetime
    expires: datetime


def _seconds(at: datetime) -> int:
    if at.tzinfo is None:
        raise ValueError("join tokens need timezone-aware times")
    return int(at.timestamp())


def issue_join_token(
    key: Ed25519PrivateKey,
    *,
    node_id: str,
    session_id: str,
    role: Role,
    subject: str,
    not_before: datetime,
    expires: datetime,
    jti: str,
) -> str:
    """Sign a join token; ``jti`` comes from :func:`new_jti` (randomness is an argument)."""
    if expires <= not_before:
        raise ValueError("a join token must expire after it becomes valid")
    if len(jti) < 16:
        raise ValueError("jti must carry at least 128 bits")
    claims = {
        "aud": audience_for(node_id),
        "sub": subject,
        "session": session_id,
        "role": Role(role).value,
        "nbf": _seconds(not_before),
        "exp": _seconds(expires),
        "jti": jti,
    }
    return jwt.encode(claims, key, algorithm=_ALG, headers={"typ": JOIN_TYP})


def _refuse(reason: str, message: str) -> JoinRefused:
    return JoinRefused(reason, message)


def _decode(token: str, key: Ed25519PublicKey) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise _refuse("bad-token", "the join link is not a JWT") from None
    if header.get("alg") != _ALG:
        raise _refuse("bad-token", f"algorithm {header.get('alg')!r} is not accepted")
    if header.get("typ") != JOIN_TYP or "crit" in header:
        raise _refuse("bad-token", "the token is not a tongban survey join token")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[_ALG],
            options={
                "verify_signature": True,
                "verify_aud": False,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_iss": False,
                "verify_sub": False,
                "verify_jti": False,
            },
        )
    except jwt.PyJWTError:
        raise _refuse("bad-token", "the join link's signature does not verify") from None
    return claims


def _claim(claims: dict[str, Any], name: str, kind: type) -> Any:
    value = claims.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) or value == "":
        raise _refuse("bad-token", f"claim {name!r} is missing or malformed")
    return value


def check_join_token(
    token: str,
    key: Ed25519PublicKey,
    *,
    node_id: str,
    session_id: str,
    role: Role,
    at: datetime,
) -> JoinClaims:
    """Verify ``token`` for joining ``session_id`` as ``role`` at ``at``; raise JoinRefused."""
    claims = _decode(token, key)
    if claims.get("aud") != audience_for(node_id):
        raise _refuse("wrong-audience", f"the link is not for node {node_id}")
    nbf = _claim(claims, "nbf", int)
    exp = _claim(claims, "exp", int)
    now = _seconds(at)
    if now < nbf:
        raise _refuse("not-yet-valid", "the join link is not valid yet")
    if now >= exp:
        raise _refuse("expired", "the join link has expired")
    if _claim(claims, "session", str) != session_id:
        raise _refuse("wrong-session", "the join link is for another survey")
    try:
        granted = Role(_claim(claims, "role", str))
    except ValueError:
        raise _refuse("bad-token", "claim 'role' is not a survey role") from None
    if granted is not Role(role):
        raise _refuse("role-not-granted", f"the join link does not grant the role {role}")
    jti = _claim(claims, "jti", str)
    if len(jti) < 16:
        raise _refuse("bad-token", "claim 'jti' is too short")
    return JoinClaims(
        session_id=session_id,
        role=granted,
        subject=_claim(claims, "sub", str),
        jti=jti,
        not_before=datetime.fromtimestamp(nbf, UTC),
        expires=datetime.fromtimestamp(exp, UTC),
    )


def participant_for(plan: SurveyPlan, claims: JoinClaims) -> Participant:
    """The participant of ``plan`` a checked token was made for, in the role it grants.

    Refuses (``not-a-participant``) a token whose subject is not, or no longer, in the
    plan under that role, e.g. an inspector removed after the links were sent.
    """
    if claims.session_id != plan.session_id:
        raise _refuse("wrong-session", "the join link is for another survey")
    people = {
        Role.INSPECTOR: plan.inspectors,
        Role.SITE: (plan.site_party,),
        Role.OBSERVER: plan.observers,
    }[claims.role]
    for person in people:
        if person.person_id == claims.subject:
            return person
    raise _refuse("not-a-participant", f"{claims.subject} is not a {claims.role} of this survey")


@dataclass(frozen=True)
class _Binding:
    device_id: str
    expires: datetime


@dataclass(frozen=True)
class JoinLedger:
    """Which device redeemed which join token; immutable, each redeem returns a new one."""

    bindings: MappingProxyType[str, _Binding] = field(default_factory=lambda: MappingProxyType({}))

    def device_for(self, jti: str) -> str | None:
        binding = self.bindings.get(jti)
        return binding.device_id if binding else None

    def redeem(self, claims: JoinClaims, device_id: str) -> JoinLedger:
        """Bind ``claims.jti`` to ``device_id``, or accept the same device again."""
        if not isinstance(device_id, str) or not 0 < len(device_id) <= _DEVICE_MAX:
            raise _refuse("bad-token", "the device id must be 1-128 characters")
        bound = self.bindings.get(claims.jti)
        if bound is not None:
            if bound.device_id != device_id:
                raise _refuse("used-on-other-device", "the join link was used on another device")
            return self
        updated = dict(self.bindings)
        updated[claims.jti] = _Binding(device_id, claims.expires)
        return JoinLedger(MappingProxyType(updated))

    def prune(self, at: datetime) -> JoinLedger:
        """Forget bindings of tokens that have expired at ``at`` (they cannot be used)."""
        kept = {jti: b for jti, b in self.bindings.items() if b.expires > at}
        return JoinLedger(MappingProxyType(kept))


def admit(
    token: str,
    key: Ed25519PublicKey,
    ledger: JoinLedger,
    *,
    node_id: str,
    session_id: str,
    role: Role,
    device_id: str,
    at: datetime,
) -> tuple[JoinClaims, JoinLedger]:
    """Check the token and redeem it for ``device_id``: the whole join decision."""
    claims = check_join_token(token, key, node_id=node_id, session_id=session_id, role=role, at=at)
    return claims, ledger.redeem(claims, device_id)
