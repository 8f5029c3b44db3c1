"""Helpers for tests: make a staff account in a node's data dir and sign someone in.

    from relay.signin.testing import add_account, sign_in, sign_in_page

    add_account(config.data_dir, "wang.li", "a-long-password", ["approver"])
    async with cookie_session() as http:                 # aiohttp, cookies for 127.0.0.1
        me = await sign_in(http, staff_url, "wang.li", "a-long-password", ssl=ctx)
        await http.post(staff_url + "/staff/v1/cases/X/events", json=...,
                        headers={"X-CSRF-Token": me["csrf"]}, ssl=ctx)
    await sign_in_page(page, staff_url, "wang.li", "a-long-password")  # Playwright page

The account is written straight into the staff directory (the node may be running);
:func:`sign_in` goes through ``POST /console/v1/session`` like the console does.
"""

from __future__ import annotations

import ssl as ssl_module
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from relay.signin.passwords import hash_password
from relay.signin.store import StaffStore
from relay.signin.totp import new_secret
from relay.signin.web import CSRF_HEADER
from relay.staff_auth import StaffRole

__all__ = ["CSRF_HEADER", "add_account", "cookie_session", "sign_in", "sign_in_page"]


def add_account(
    directory: Path | StaffStore,
    name: str,
    password: str,
    roles: Iterable[str | StaffRole],
    *,
    display_name: str | None = None,
    totp: bool = False,
    must_change: bool = False,
) -> str | None:
    """Create an enabled account; returns its TOTP secret when ``totp`` (else ``None``).
    ``must_change``: the password is a handed-out one (as ``tongban staff user add``
    makes), to be replaced at the first sign-in. ``directory`` is a data dir (its
    ``staff.sqlite``) or an open store (left open)."""
    store = directory if isinstance(directory, StaffStore) else StaffStore(directory)
    try:
        granted = tuple(StaffRole(r) for r in roles)
        now = datetime.now(UTC).timestamp()
        hashed = hash_password(password)
        if not store.add_account(
            name, display_name or name, granted, hashed, now, must_change=must_change
        ):
            raise ValueError(f"account {name!r} exists")
        secret = new_secret() if totp else None
        if secret is not None:
            store.set_totp(name, secret)
        return secret
    finally:
        if store is not directory:
            store.close()


def cookie_session(**kwargs: Any) -> aiohttp.ClientSession:
    """An aiohttp session whose cookie jar keeps cookies of IP-address hosts (127.0.0.1)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), **kwargs)


async def sign_in(
    http: aiohttp.ClientSession,
    staff_url: str,
    name: str,
    password: str,
    *,
    ssl: ssl_module.SSLContext | bool = True,
    totp: str | None = None,
) -> dict[str, Any]:
    """Sign in through ``POST /console/v1/session``; the session cookie lands in
    ``http``'s jar. Returns the answer (``csrf`` is the token for unsafe requests)."""
    body: dict[str, Any] = {"user": name, "password": password}
    if totp is not None:
        body["totp"] = totp
    async with http.post(f"{staff_url}/console/v1/session", json=body, ssl=ssl) as response:
        answer: dict[str, Any] = await response.json(content_type=None)
        if response.status != 201:
            raise AssertionError(f"sign-in of {name} refused: {response.status} {answer}")
        return answer


async def sign_in_page(page: Any, staff_url: str, name: str, password: str) -> None:
    """Sign a Playwright (async API) page in through the ``/login`` page; returns once
    the browser has left it. The browser context must trust the staff certificate
    (``ignore_https_errors=True`` for the development PKI)."""
    await page.goto(f"{staff_url}/login")
    await page.fill("#user", name)
    await page.fill("#password", password)
    await page.click("#submit")
    await page.wait_for_url(lambda url: "/login" not in url)
