"""The ID token checks and the state binding of OpenID Connect sign-in (no provider)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from conftest import Desk
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from relay.config import OidcSettings
from relay.signin.oidc import OidcError, pkce_challenge, roles_from_claims, verify_id_token
from relay.staff_auth import StaffRole

ISSUER = "https://idp.example.gov.cn"
SETTINGS = OidcSettings(
    issuer=ISSUER, client_id="tongban-420106", client_secret="s", role_claim="groups",
    roles={"approvers": ("approver",), "desk": ("clerk", "licence_officer")},
)  # fmt: skip
NOW = datetime.now(UTC).replace(microsecond=0)
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwks(*keys: Any, kid: str = "k1") -> jwt.PyJWKSet:
    entries = []
    for key in keys:
        entry = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        entries.append({**entry, "kid": kid, "use": "sig"})
    return jwt.PyJWKSet.from_dict({"keys": entries})


def _token(key: Any = KEY, alg: str = "RS256", kid: str = "k1", **claims: Any) -> str:
    body = {
        "iss": ISSUER, "aud": "tongban-420106", "sub": "u-1", "nonce": "n-1",
        "iat": int(NOW.timestamp()), "exp": int((NOW + timedelta(minutes=5)).timestamp()),
        **claims,
    }  # fmt: skip
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


def _verify(token: str, *, nonce: str = "n-1", now: datetime = NOW) -> dict[str, Any]:
    return verify_id_token(token, _jwks(KEY), SETTINGS, nonce=nonce, now=now)


def test_a_good_id_token_verifies() -> None:
    assert _verify(_token())["sub"] == "u-1"


@pytest.mark.parametrize(
    ("token", "nonce", "now"),
    [
        pytest.param(_token(nonce="other"), "n-1", NOW, id="another nonce"),
        pytest.param(_token(nonce=None), "n-1", NOW, id="no nonce"),
        pytest.param(_token(aud="someone-else"), "n-1", NOW, id="another audience"),
        pytest.param(_token(iss="https://evil.example"), "n-1", NOW, id="another issuer"),
        pytest.param(_token(), "n-1", NOW + timedelta(minutes=7), id="expired"),
        pytest.param(_token(), "n-1", NOW - timedelta(minutes=2), id="issued in the future"),
        pytest.param(
            _token(aud=["tongban-420106", "other"]), "n-1", NOW, id="several audiences, no azp"
        ),
        pytest.param(
            _token(key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            "n-1",
            NOW,
            id="signed by another key",
        ),
        pytest.param(
            _token(key="a shared secret of thirty-two bytes!", alg="HS256"), "n-1", NOW, id="HMAC"
        ),
        pytest.param("not.a.jwt", "n-1", NOW, id="not a JWT"),
    ],
)
def test_a_bad_id_token_is_refused(token: str, nonce: str, now: datetime) -> None:
    with pytest.raises(OidcError):
        _verify(token, nonce=nonce, now=now)


def test_the_algorithm_is_the_keys_never_the_tokens() -> None:
    header = base64.urlsafe_b64encode(b'{"alg":"none","kid":"k1"}').rstrip(b"=")
    payload = base64.urlsafe_b64encode(json.dumps({"sub": "u-1"}).encode()).rstrip(b"=")
    with pytest.raises(OidcError):
        _verify(f"{header.decode()}.{payload.decode()}.")
    ec_token = _token(key=ec.generate_private_key(ec.SECP256R1()), alg="ES256")
    with pytest.raises(OidcError):
        _verify(ec_token)  # ES256 header, but k1 is an RSA key


def test_an_unknown_kid_asks_for_fresh_keys() -> None:
    with pytest.raises(KeyError):
        _verify(_token(kid="rotated"))


def test_roles_come_from_mapped_claim_values_only() -> None:
    assert roles_from_claims({"groups": ["desk", "approvers", "band"]}, SETTINGS) == (
        StaffRole.CLERK, StaffRole.LICENCE_OFFICER, StaffRole.APPROVER,
    )  # fmt: skip
    assert roles_from_claims({"groups": "approvers"}, SETTINGS) == (StaffRole.APPROVER,)
    assert roles_from_claims({"groups": ["administrators"]}, SETTINGS) == ()
    assert roles_from_claims({"roles": ["approvers"]}, SETTINGS) == ()  # another claim
    assert roles_from_claims({"groups": {"approvers": True}}, SETTINGS) == ()


def test_pkce_challenge_is_rfc_7636_s256() -> None:
    # RFC 7636 appendix B
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


async def test_a_callback_without_its_state_or_browser_is_refused(desk: Desk) -> None:
    """Unknown state, or a state started by another browser: back to /login, journaled."""
    url = f"{desk.url}/login/oidc/callback?state=made-up&code=stolen"
    async with desk.http.get(url, ssl=desk.ssl, allow_redirects=False) as resp:
        assert resp.status == 303
        assert resp.headers["Location"] == "/login?error=oidc"
    [entry] = list(desk.store.journal_entries())
    assert (entry.event, entry.detail["reason"]) == ("signin-failed", "oidc-state")


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ('issuer = "http://idp.example"\nclient_id = "c"\nclient_secret = "s"\n'
         '[staff.oidc.roles]\na = "clerk"\n', "staff.oidc.issuer"),
        ('issuer = "https://idp.example"\nclient_id = "c"\nclient_secret = "s"\n'
         '[staff.oidc.roles]\na = "superuser"\n', "staff.oidc.roles.a"),
        ('issuer = "https://idp.example"\nclient_id = "c"\nclient_secret = "s"\n',
         "staff.oidc.roles"),
        ('issuer = "https://idp.example"\nclient_id = "c"\nclient_secret = "s"\n'
         'scopes = "profile"\n[staff.oidc.roles]\na = "clerk"\n', "staff.oidc.scopes"),
    ],
)  # fmt: skip
def test_bad_oidc_settings_name_the_key(pki, tmp_path, table: str, key: str) -> None:
    from relay_http_support import write_config

    from relay.config import ConfigError, load_config

    path = write_config(tmp_path, pki, pki.a, "420106", extra="[staff.oidc]\n" + table)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == key


def test_oidc_settings_are_read(pki, tmp_path) -> None:
    from relay_http_support import write_config

    from relay.config import load_config

    table = (
        '[staff.oidc]\nissuer = "https://idp.example/"\nclient_id = "c"\nclient_secret = "s"\n'
        'role_claim = "groups"\n[staff.oidc.roles]\nadmins = ["administrator", "approver"]\n'
    )
    oidc = load_config(write_config(tmp_path, pki, pki.a, "420106", extra=table)).staff.oidc
    assert oidc is not None
    assert (oidc.issuer, oidc.role_claim, oidc.scopes) == (
        "https://idp.example", "groups", "openid profile",
    )  # fmt: skip
    assert dict(oidc.roles) == {"admins": ("administrator", "approver")}
