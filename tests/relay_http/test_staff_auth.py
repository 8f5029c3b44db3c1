"""Staff bearer tokens: required, expired, wrong audience, wrong algorithm; the CLI."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from relay_http_support import Pki, client_ssl, serve, write_config

from relay.cli import main
from relay.problem import problem_middleware
from relay.staff_auth import (
    STAFF_KEY,
    StaffRole,
    TokenCache,
    TokenError,
    TokenKeyError,
    issue_token,
    load_or_create_token_key,
    staff_auth_middleware,
    verify_token,
)
from relay.tls import server_context

NODE = "420106"
T0 = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)


def _token(key: Ed25519PrivateKey, *, node: str = NODE, now: datetime = T0, ttl: float = 60) -> str:
    return issue_token(key, node_id=node, subject="王芳", roles=[StaffRole.CLERK], now=now, ttl=ttl)


def test_token_verifies_with_subject_and_roles() -> None:
    key = Ed25519PrivateKey.generate()
    claims = verify_token(_token(key), key.public_key(), node_id=NODE, now=T0)
    assert claims.subject == "王芳"
    assert claims.roles == (StaffRole.CLERK,)
    assert claims.expires_at == T0 + timedelta(seconds=60)


def test_expired_token_is_refused_as_expired() -> None:
    key = Ed25519PrivateKey.generate()
    with pytest.raises(TokenError) as info:
        verify_token(_token(key), key.public_key(), node_id=NODE, now=T0 + timedelta(seconds=60))
    assert info.value.code == "token-expired"


def test_token_for_another_node_is_invalid() -> None:
    key = Ed25519PrivateKey.generate()
    token = _token(key, node="320982")
    with pytest.raises(TokenError) as info:
        verify_token(token, key.public_key(), node_id=NODE, now=T0)
    assert info.value.code == "token-invalid"


def test_token_signed_by_another_key_is_invalid() -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    with pytest.raises(TokenError):
        verify_token(_token(other), key.public_key(), node_id=NODE, now=T0)


def test_hs256_and_none_tokens_are_invalid() -> None:
    key = Ed25519PrivateKey.generate()
    claims = {"iss": f"tongban:{NODE}", "aud": f"tongban-staff:{NODE}", "sub": "x"}
    claims |= {"roles": ["clerk"], "iat": int(T0.timestamp()), "exp": int(T0.timestamp()) + 60}
    claims["jti"] = "j"
    for token in (
        jwt.encode(claims, "k" * 32, algorithm="HS256"),
        jwt.encode(claims, None, algorithm="none"),
    ):
        with pytest.raises(TokenError) as info:
            verify_token(token, key.public_key(), node_id=NODE, now=T0)
        assert info.value.code == "token-invalid"


def test_token_cache_verifies_a_signature_once_and_checks_time_at_every_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    cache = TokenCache(key.public_key(), NODE)
    token = _token(key)
    assert cache.verify(token, T0).subject == "王芳"

    def no_verify(*args: object, **kwargs: object) -> None:
        raise AssertionError("the signature of a known token was verified again")

    monkeypatch.setattr(jwt, "decode", no_verify)
    assert cache.verify(token, T0 + timedelta(seconds=59)).roles == (StaffRole.CLERK,)
    with pytest.raises(TokenError) as info:  # cached, yet expired all the same
        cache.verify(token, T0 + timedelta(seconds=60))
    assert info.value.code == "token-expired"
    monkeypatch.undo()
    for _ in range(2):  # a refused token is never remembered
        with pytest.raises(TokenError) as info:
            cache.verify(_token(other), T0)
        assert info.value.code == "token-invalid"


def test_token_cache_checks_the_issue_time_at_every_use(monkeypatch: pytest.MonkeyPatch) -> None:
    key = Ed25519PrivateKey.generate()
    cache = TokenCache(key.public_key(), NODE)
    token = _token(key, now=T0 + timedelta(minutes=5), ttl=600)  # issued ahead of our clock
    with pytest.raises(TokenError) as info:
        cache.verify(token, T0)
    assert info.value.code == "token-invalid"

    def no_verify(*args: object, **kwargs: object) -> None:
        raise AssertionError("the signature of a known token was verified again")

    monkeypatch.setattr(jwt, "decode", no_verify)
    with pytest.raises(TokenError):  # remembered, and still refused at that time
        cache.verify(token, T0 + timedelta(minutes=3, seconds=59))
    at = T0 + timedelta(minutes=4)  # within the minute of clock skew allowed
    assert cache.verify(token, at).expires_at == T0 + timedelta(minutes=15)


def test_token_key_is_created_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "staff-token.key"
    key = load_or_create_token_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create_token_key(path)
    assert again.public_key().public_bytes_raw() == key.public_key().public_bytes_raw()


def test_token_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "staff-token.key"
    load_or_create_token_key(path)
    path.chmod(0o644)
    with pytest.raises(TokenKeyError, match="chmod 600"):
        load_or_create_token_key(path)


def _app(key: Ed25519PrivateKey, now: datetime) -> web.Application:
    app = web.Application(
        middlewares=[problem_middleware, staff_auth_middleware(key.public_key(), NODE, lambda: now)]
    )

    async def me(request: web.Request) -> web.Response:
        return web.json_response({"sub": request[STAFF_KEY].subject})

    async def spec(request: web.Request) -> web.Response:
        return web.Response(text="openapi: 3.1.0")

    app.router.add_get("/staff/v1/me", me)
    app.router.add_get("/openapi.yaml", spec)
    return app


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "unauthorized"),
        ("Basic dXNlcjpwYXNz", "unauthorized"),
        ("Bearer ", "unauthorized"),
        ("Bearer not-a-jwt", "token-invalid"),
        ("expired", "token-expired"),
        ("other-node", "token-invalid"),
    ],
)
async def test_staff_api_answers_401_problems(
    pki: Pki, authorization: str | None, code: str
) -> None:
    key = Ed25519PrivateKey.generate()
    if authorization == "expired":
        authorization = "Bearer " + _token(key, now=T0 - timedelta(hours=1))
    elif authorization == "other-node":
        authorization = "Bearer " + _token(key, node="320982")
    headers = {"Authorization": authorization} if authorization is not None else {}
    context = server_context(pki.a / "tls.pem", pki.a / "tls.key", None, require_client_cert=False)
    async with serve(_app(key, T0), context) as url, aiohttp.ClientSession() as session:
        resp = await session.get(url + "/staff/v1/me", headers=headers, ssl=client_ssl(pki, None))
        body = await resp.json(content_type=None)
        assert resp.status == 401
        assert body["code"] == code
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        ok = await session.get(
            url + "/staff/v1/me",
            headers={"Authorization": "Bearer " + _token(key)},
            ssl=client_ssl(pki, None),
        )
        assert ok.status == 200
        assert (await ok.json())["sub"] == "王芳"
        spec = await session.get(url + "/openapi.yaml", ssl=client_ssl(pki, None))
        assert spec.status == 200


def test_cli_issues_a_token_the_node_accepts(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "n", pki, pki.a, NODE)
    code = main(["staff", "token", "--config", str(config), "--subject", "李雷", "--ttl", "2h"])
    assert code == 0
    token = capsys.readouterr().out.strip()
    key = load_or_create_token_key(tmp_path / "n" / "data" / "staff-token.key")
    claims = verify_token(token, key.public_key(), node_id=NODE, now=datetime.now(UTC))
    assert claims.subject == "李雷"
    assert claims.expires_at - claims.issued_at == timedelta(hours=2)
    # less than a second is a token that expires as it is issued: refused, as the
    # message always said
    code = main(["staff", "token", "--config", str(config), "--subject", "李雷", "--ttl", "1ms"])
    assert code == 2
    assert "between 1 second and 31 days" in capsys.readouterr().err


def test_cli_reports_config_error_with_file_and_key(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "n", pki, pki.a, NODE, extra="[staff]\ntoken_ttl = 'x'\n")
    code = main(["staff", "token", "--config", str(config), "--subject", "李雷"])
    assert code == 2
    err = capsys.readouterr().err
    assert "tongban: error[config]:" in err
    assert "node.toml: staff.token_ttl: must be a duration" in err
