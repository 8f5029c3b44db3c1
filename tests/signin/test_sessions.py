"""Console sessions on the staff listener over real TLS: cookie, CSRF, expiry, lockout."""

from __future__ import annotations

from datetime import timedelta
from http.cookies import SimpleCookie
from typing import Any

import pyotp
from signin_kit import NODE, SETTINGS, Desk

from relay.signin.store import session_hash
from relay.signin.testing import add_account, cookie_session, sign_in
from relay.signin.web import COOKIE, CSRF_HEADER
from relay.staff_auth import StaffRole, issue_token

PASSWORD = "correct horse battery"
PACKET = {
    "to": "320982", "case_id": "C-2026-0001", "matter": "business-licence",
    "action": "submit", "mode": "proxy_receipt", "content": {"applicant": "张三"},
}  # fmt: skip


async def _post_signin(desk: Desk, body: dict[str, Any]) -> tuple[int, dict[str, Any], Any]:
    async with desk.http.post(f"{desk.url}/console/v1/session", json=body, ssl=desk.ssl) as resp:
        return resp.status, await resp.json(content_type=None), resp


async def _get(desk: Desk, path: str, **kw: Any) -> tuple[int, dict[str, Any]]:
    async with desk.http.get(desk.url + path, ssl=desk.ssl, **kw) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_signin_sets_a_strict_cookie_and_the_session_opens_the_staff_api(
    desk: Desk,
) -> None:
    add_account(desk.store, "wang.fang", PASSWORD, ["clerk"], display_name="王芳")
    assert (await _get(desk, "/staff/v1/outbox"))[0] == 401
    body = {"user": "wang.fang", "password": PASSWORD}
    async with desk.http.post(
        f"{desk.url}/console/v1/session", json=body, ssl=desk.ssl,
        headers={"Origin": "https://evil.example"},
    ) as resp:  # fmt: skip
        assert resp.status == 403  # a sign-in posted from another site (login CSRF)
    assert not desk.http.cookie_jar.filter_cookies(desk.url)
    status, answer, resp = await _post_signin(desk, body)
    assert status == 201, answer
    assert answer["name"] == "wang.fang"
    assert answer["display_name"] == "王芳"
    assert answer["roles"] == ["clerk"]
    assert len(answer["csrf"]) >= 40
    [header] = resp.headers.getall("Set-Cookie")
    cookie = SimpleCookie(header)[COOKIE]
    assert cookie["httponly"] is True
    assert cookie["secure"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/"
    assert not cookie["max-age"]
    assert not cookie["expires"]
    assert desk.store.session(cookie.value) is None  # the id itself is not stored
    assert desk.store.session(session_hash(cookie.value)) is not None  # its hash is

    status, outbox = await _get(desk, "/staff/v1/outbox")
    assert (status, outbox) == (200, {"items": []})
    status, me = await _get(desk, "/console/v1/me")
    assert status == 200
    assert (me["name"], me["credential"], me["csrf"]) == ("wang.fang", "session", answer["csrf"])
    assert "receive" in me["actions"]
    assert "licence" not in me["actions"]


async def test_an_unsafe_request_with_the_cookie_needs_the_sessions_csrf_token(
    desk: Desk,
) -> None:
    add_account(desk.store, "li.na", PASSWORD, ["clerk"])
    me = await sign_in(desk.http, desk.url, "li.na", PASSWORD, ssl=desk.ssl)
    url = f"{desk.url}/staff/v1/packets"
    for headers in ({}, {CSRF_HEADER: "not-the-token"}, {CSRF_HEADER: me["csrf"] + "x"}):
        async with desk.http.post(url, json=PACKET, headers=headers, ssl=desk.ssl) as resp:
            assert resp.status == 403
            assert (await resp.json())["code"] == "csrf-failed"
    foreign = {CSRF_HEADER: me["csrf"], "Origin": "https://evil.example"}
    async with desk.http.post(url, json=PACKET, headers=foreign, ssl=desk.ssl) as resp:
        assert resp.status == 403
    assert desk.core.created == []  # nothing refused was done
    own = {CSRF_HEADER: me["csrf"], "Origin": desk.url}
    async with desk.http.post(url, json=PACKET, headers=own, ssl=desk.ssl) as resp:
        assert resp.status == 201, await resp.text()
    assert len(desk.core.created) == 1
    # the journal names the person behind the request
    [entry] = [e for e in desk.store.journal_entries(name="li.na") if e.event == "request"]
    assert entry.detail == {
        "method": "POST", "path": "/staff/v1/packets", "status": 201, "credential": "session",
    }  # fmt: skip


async def test_a_session_ends_when_idle_and_at_its_lifetime(desk: Desk) -> None:
    add_account(desk.store, "zhao.lei", PASSWORD, ["clerk"])
    await sign_in(desk.http, desk.url, "zhao.lei", PASSWORD, ssl=desk.ssl)
    desk.clock.advance(seconds=SETTINGS.session_idle_timeout - 1)
    assert (await _get(desk, "/staff/v1/inbox"))[0] == 200  # used in time: stays
    desk.clock.advance(seconds=SETTINGS.session_idle_timeout + 1)
    status, problem = await _get(desk, "/staff/v1/inbox")
    assert (status, problem["code"]) == (401, "session-expired")

    await sign_in(desk.http, desk.url, "zhao.lei", PASSWORD, ssl=desk.ssl)
    used = timedelta(0)
    step = timedelta(seconds=SETTINGS.session_idle_timeout / 2)
    while used + step < timedelta(seconds=SETTINGS.session_lifetime):
        desk.clock.advance(seconds=step.total_seconds())
        used += step
        assert (await _get(desk, "/staff/v1/inbox"))[0] == 200
    desk.clock.advance(seconds=step.total_seconds())
    status, problem = await _get(desk, "/staff/v1/inbox")
    assert (status, problem["code"]) == (401, "session-expired")
    events = [e.event for e in desk.store.journal_entries(name="zhao.lei")]
    assert events.count("session-expired") == 2


async def test_lockout_after_repeated_failures_says_when_to_retry(desk: Desk) -> None:
    add_account(desk.store, "sun.li", PASSWORD, ["approver"])
    wrong = {"user": "sun.li", "password": "not the password"}
    for _ in range(SETTINGS.lockout_threshold - 1):
        status, problem, _resp = await _post_signin(desk, wrong)
        assert (status, problem["code"]) == (401, "signin-failed")
    status, problem, resp = await _post_signin(desk, wrong)
    assert (status, problem["code"]) == (429, "account-locked")
    assert int(resp.headers["Retry-After"]) == int(SETTINGS.lockout_duration)
    assert problem["retry_after"] == int(SETTINGS.lockout_duration)
    reader = issue_token(
        desk.token_key, node_id=NODE, subject="monitor", roles=[StaffRole.READER],
        now=desk.clock(), ttl=3600,
    )  # fmt: skip
    alerts_url = "/staff/v1/alerts"
    auth = {"Authorization": f"Bearer {reader}"}

    async def signin_alerts() -> list[dict[str, Any]]:
        alerts = (await _get(desk, alerts_url, headers=auth))[1]["alerts"]
        return [a for a in alerts if a["source"] == "signin"]  # the fake core has no outbox

    [alert] = await signin_alerts()
    assert (alert["id"], alert["code"], alert["subject"]) == (
        "signin:locked:sun.li", "account-locked", "sun.li",
    )  # fmt: skip
    assert "锁定" in alert["title"]["zh"]
    # even the right password is not checked while locked
    right = {"user": "sun.li", "password": PASSWORD}
    desk.clock.advance(seconds=SETTINGS.lockout_duration - 60)
    status, problem, resp = await _post_signin(desk, right)
    assert (status, problem["code"], resp.headers["Retry-After"]) == (429, "account-locked", "60")
    desk.clock.advance(seconds=61)
    assert (await _post_signin(desk, right))[0] == 201
    assert await signin_alerts() == []
    events = [e.event for e in desk.store.journal_entries(name="sun.li")]
    assert events == ["signin-failed", "signin-failed", "lockout", "signin-locked", "signin"]


async def test_failures_from_one_address_are_throttled_whatever_the_name(desk: Desk) -> None:
    add_account(desk.store, "qian.yu", PASSWORD, ["clerk"])
    for index in range(SETTINGS.signin_address_limit):
        body = {"user": f"guess-{index}", "password": "123456789012"}
        assert (await _post_signin(desk, body))[0] == 401
    right = {"user": "qian.yu", "password": PASSWORD}
    status, problem, resp = await _post_signin(desk, right)
    assert (status, problem["code"]) == (429, "signin-throttled")
    assert 0 < int(resp.headers["Retry-After"]) <= SETTINGS.signin_address_window
    desk.clock.advance(seconds=SETTINGS.signin_address_window + 1)
    assert (await _post_signin(desk, right))[0] == 201


async def test_sign_out_and_disabling_end_the_session(desk: Desk) -> None:
    add_account(desk.store, "he.ping", PASSWORD, ["clerk"])
    me = await sign_in(desk.http, desk.url, "he.ping", PASSWORD, ssl=desk.ssl)
    url = f"{desk.url}/console/v1/session"
    async with desk.http.delete(url, ssl=desk.ssl) as resp:
        assert resp.status == 403  # no CSRF token
    async with desk.http.delete(url, headers={CSRF_HEADER: me["csrf"]}, ssl=desk.ssl) as resp:
        assert resp.status == 204
    assert (await _get(desk, "/staff/v1/inbox"))[0] == 401

    await sign_in(desk.http, desk.url, "he.ping", PASSWORD, ssl=desk.ssl)
    assert (await _get(desk, "/staff/v1/inbox"))[0] == 200
    desk.store.set_enabled("he.ping", False)
    assert (await _get(desk, "/staff/v1/inbox"))[0] == 401
    status, problem, _ = await _post_signin(desk, {"user": "he.ping", "password": PASSWORD})
    assert (status, problem["code"]) == (401, "signin-failed")  # says nothing more


async def test_totp_is_asked_for_checked_and_never_accepted_twice(desk: Desk) -> None:
    secret = add_account(desk.store, "zhou.min", PASSWORD, ["clerk"], totp=True)
    assert secret is not None
    body: dict[str, Any] = {"user": "zhou.min", "password": PASSWORD}
    status, problem, _ = await _post_signin(desk, body)
    assert (status, problem["code"]) == (401, "totp-required")
    code = pyotp.TOTP(secret).at(desk.clock())
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    status, problem, _ = await _post_signin(desk, {**body, "totp": wrong})
    assert (status, problem["code"]) == (401, "signin-failed")
    assert (await _post_signin(desk, {**body, "totp": code}))[0] == 201
    replay = {**body, "totp": code}  # someone who saw the code
    async with (
        cookie_session() as other,
        other.post(f"{desk.url}/console/v1/session", json=replay, ssl=desk.ssl) as resp,
    ):
        assert resp.status == 401
    desk.clock.advance(seconds=30)
    later = pyotp.TOTP(secret).at(desk.clock())
    assert (await _post_signin(desk, {**body, "totp": later}))[0] == 201


async def test_bearer_tokens_keep_working_beside_sessions(desk: Desk) -> None:
    token = issue_token(
        desk.token_key, node_id=NODE, subject="office-system", roles=[StaffRole.CLERK],
        now=desk.clock(), ttl=600,
    )  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"}
    status, me = await _get(desk, "/console/v1/me", headers=headers)
    assert (status, me["name"], me["credential"], me["csrf"]) == (
        200, "office-system", "token", None,
    )  # fmt: skip
    assert "licence" in me["actions"]
    assert "accounts" not in me["actions"]
    async with desk.http.post(
        f"{desk.url}/staff/v1/packets", json=PACKET, headers=headers, ssl=desk.ssl
    ) as resp:
        assert resp.status == 201  # no CSRF token needed with a bearer token


async def test_a_hash_with_older_parameters_is_renewed_at_sign_in(desk: Desk) -> None:
    from argon2 import PasswordHasher
    from argon2.profiles import RFC_9106_LOW_MEMORY

    old = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY).hash(PASSWORD)
    desk.store.add_account("old.hand", "老王", (StaffRole.CLERK,), old, desk.clock().timestamp())
    await sign_in(desk.http, desk.url, "old.hand", PASSWORD, ssl=desk.ssl)
    account = desk.store.account("old.hand")
    assert account is not None
    assert account.password_hash != old
    assert account.password_hash is not None
    assert "m=19456,t=2,p=1" in account.password_hash
    assert (await _get(desk, "/staff/v1/inbox"))[0] == 200  # the session stays


async def test_an_unwritable_journal_never_turns_an_accepted_request_into_a_refusal(
    desk: Desk, monkeypatch, caplog
) -> None:
    """Found by tests/chaos/test_full_disk: on a full disk the journal line failed after
    the packet was stored, the caller was told 503 and the packet went out anyway."""
    import sqlite3

    add_account(desk.store, "ma.li", PASSWORD, ["clerk"])
    me = await sign_in(desk.http, desk.url, "ma.li", PASSWORD, ssl=desk.ssl)

    def full(*args: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(desk.store, "journal", full)
    monkeypatch.setattr(desk.store, "journal_many", full)
    monkeypatch.setattr(desk.store, "touch_session", full)
    async with desk.http.get(f"{desk.url}/staff/v1/outbox", ssl=desk.ssl) as resp:
        assert resp.status == 200  # people can still read (alerts!) on a full disk
    async with desk.http.post(
        f"{desk.url}/staff/v1/packets", json=PACKET, headers={CSRF_HEADER: me["csrf"]},
        ssl=desk.ssl,
    ) as resp:  # fmt: skip
        assert resp.status == 201
    assert len(desk.core.created) == 1
    assert "staff journal unwritable" in caplog.text
    assert "ma.li" in caplog.text


async def test_a_handed_out_password_signs_in_once_with_the_persons_own(desk: Desk) -> None:
    handed = "handed-out-0123"
    add_account(desk.store, "tang.yi", handed, ["clerk"], must_change=True)
    body: dict[str, Any] = {"user": "tang.yi", "password": handed}
    status, problem, _ = await _post_signin(desk, body)
    assert (status, problem["code"]) == (403, "password-change-required")
    assert not desk.http.cookie_jar.filter_cookies(desk.url)  # no session yet
    for weak in ("short", handed):
        status, problem, _ = await _post_signin(desk, {**body, "new_password": weak})
        assert (status, problem["code"]) == (400, "weak-password")
    status, answer, _ = await _post_signin(desk, {**body, "new_password": PASSWORD})
    assert status == 201
    assert answer["name"] == "tang.yi"
    account = desk.store.account("tang.yi")
    assert account is not None
    assert account.must_change is False
    assert (await _post_signin(desk, body))[0] == 401  # the handed-out one is spent
    assert (await _post_signin(desk, {"user": "tang.yi", "password": PASSWORD}))[0] == 201
    events = [e.event for e in desk.store.journal_entries(name="tang.yi")]
    assert events == ["password-chosen", "signin", "signin-failed", "signin"]
