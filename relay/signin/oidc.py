"""Console sign-in through the office's OpenID Connect provider (authorization code + PKCE).

Routes (staff listener, open: they are how a person gets a session)::

    GET /login/oidc[?next=/path]   start: redirect to the provider's authorization endpoint
    GET /login/oidc/callback       the provider sends the browser back here

The flow, and what is checked:

1. ``/login/oidc`` reads the provider's discovery document
   (``<issuer>/.well-known/openid-configuration``, whose ``issuer`` must be the configured
   one), makes a random ``state``, ``nonce`` and PKCE ``code_verifier`` (S256), keeps them
   server side for 10 minutes under the state, binds them to this browser with a cookie
   ``__Host-tongban-oidc`` (random; only its SHA-256 is kept; SameSite=Lax so it comes
   back on the provider's redirect) and sends the browser to the provider.
2. ``/login/oidc/callback`` needs a known, unexpired ``state`` whose binding cookie
   matches (else: someone else's or a replayed response), an ``iss`` parameter equal to
   the issuer when present (RFC 9207), then redeems the ``code`` at the token endpoint
   (client_secret_basic, with the ``code_verifier``).
3. The ID token is verified with pyjwt against the provider's JWKS (refetched once for
   an unknown ``kid``): the algorithm is the *key's* (RS/PS/ES/EdDSA only; never the
   token's ``alg``, never HMAC or ``none``), ``iss``, ``aud`` (and ``azp`` when there
   are several audiences), ``exp`` and ``iat`` against the node's clock (60 s leeway),
   and ``nonce`` equal to the one sent.
4. Roles come from the claim ``role_claim`` (a string or a list of strings) through the
   configured map; claim values not in the map are ignored; no role at all refuses the
   sign-in. The person's name is the ``name_claim`` (``preferred_username``) when it is
   a valid account name, else ``sub``; the display name is ``name``.

A success opens a console session (``via: oidc``; roles fixed at sign-in) and answers a
small page that moves on to ``next``: a plain redirect would not do, because a browser
does not send the SameSite=Strict session cookie on a navigation whose redirect chain
began at another site. A failure sends the browser to ``/login?error=oidc`` (or
``oidc-role``) and is written to the staff journal with the reason.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import logging
import secrets
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import jwt
from aiohttp import web

from relay.config import OidcSettings
from relay.signin.policy import check_account_name
from relay.signin.web import SignIn
from relay.staff_auth import StaffRole

__all__ = ["OidcError", "OidcSignIn", "pkce_challenge", "roles_from_claims", "verify_id_token"]

_log = logging.getLogger("tongban.relay.signin.oidc")
STATE_COOKIE = "__Host-tongban-oidc"
_PENDING_TTL = 600.0
_MAX_PENDING = 10_000
_LEEWAY = 60
_ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_METADATA_TTL = 3600.0


class OidcError(Exception):
    """A sign-in through the provider that must not succeed; ``reason`` is for the journal."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def pkce_challenge(verifier: str) -> str:
    """The S256 ``code_challenge`` of ``verifier`` (RFC 7636)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def roles_from_claims(claims: Mapping[str, Any], settings: OidcSettings) -> tuple[StaffRole, ...]:
    """The console roles granted by the ID token's role claim (mapped values only)."""
    value = claims.get(settings.role_claim)
    values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    granted: dict[StaffRole, None] = {}
    for item in values:
        if isinstance(item, str):
            for role in settings.roles.get(item, ()):
                granted[StaffRole(role)] = None
    return tuple(granted)


def verify_id_token(
    token: str,
    keys: jwt.PyJWKSet,
    settings: OidcSettings,
    *,
    nonce: str,
    now: datetime,
) -> dict[str, Any]:
    """The claims of a valid ID token; raises :class:`OidcError` (``KeyError`` when the
    token's ``kid`` is not in ``keys``, so the caller may refetch them once)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise OidcError("oidc-token", "the ID token is not a JWT") from None
    kid = header.get("kid")
    candidates = [k for k in keys.keys if kid is None or k.key_id == kid]
    if not candidates:
        raise KeyError(kid)
    key = candidates[0]
    algorithm = key.algorithm_name
    if algorithm not in _ASYMMETRIC:
        raise OidcError("oidc-token", f"the provider's key has algorithm {algorithm}")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=[algorithm],
            audience=settings.client_id,
            issuer=settings.issuer,
            options={
                "require": ["iss", "aud", "exp", "iat", "sub", "nonce"],
                "verify_exp": False,  # checked below against the node's clock
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.PyJWTError as exc:
        raise OidcError("oidc-token", f"the ID token does not verify: {exc}") from None
    stamp = now.timestamp()
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or stamp >= exp + _LEEWAY:
        raise OidcError("oidc-token", "the ID token has expired")
    if not isinstance(iat, int | float) or iat > stamp + _LEEWAY:
        raise OidcError("oidc-token", "the ID token is issued in the future")
    if not isinstance(claims.get("nonce"), str) or not hmac.compare_digest(claims["nonce"], nonce):
        raise OidcError("oidc-token", "the ID token's nonce is not the one sent")
    audience = claims["aud"]
    if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != settings.client_id:
        raise OidcError("oidc-token", "the ID token is for several parties, not authorized to us")
    return claims


@dataclass(frozen=True)
class _Pending:
    nonce: str
    verifier: str
    binding: str  # SHA-256 of the state cookie
    next: str
    redirect_uri: str
    created: float


def _safe_next(value: str | None) -> str:
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    return value


class OidcSignIn:
    """The two OpenID Connect routes of one node's staff listener."""

    def __init__(
        self,
        settings: OidcSettings,
        signin: SignIn,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.signin = signin
        self._monotonic = monotonic
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._keys: jwt.PyJWKSet | None = None
        self._http: aiohttp.ClientSession | None = None
        signin.oidc_enabled = True
        signin.open_paths = signin.open_paths | {"/login/oidc", "/login/oidc/callback"}
        signin.route_hooks.append(self.add_routes)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/login/oidc", self._start)
        app.router.add_get("/login/oidc/callback", self._callback)
        app.on_cleanup.append(self._close)

    async def _close(self, _app: web.Application) -> None:
        if self._http is not None:
            await self._http.close()

    # -- talking to the provider --------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None:
            context = ssl.create_default_context(
                cafile=str(self.settings.ca_file) if self.settings.ca_file else None
            )
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=context),
                timeout=aiohttp.ClientTimeout(total=15),
            )
        return self._http

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with self._client().get(url, headers={"Accept": "application/json"}) as resp:
                if resp.status != 200:
                    raise OidcError("oidc-provider", f"{url} answered {resp.status}")
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise OidcError("oidc-provider", f"{url} cannot be read: {exc}") from None
        if not isinstance(body, dict):
            raise OidcError("oidc-provider", f"{url} is not a JSON object")
        return body

    async def _discover(self) -> dict[str, Any]:
        if self._metadata is None or self._monotonic() - self._metadata_at > _METADATA_TTL:
            metadata = await self._get_json(
                f"{self.settings.issuer}/.well-known/openid-configuration"
            )
            if metadata.get("issuer") != self.settings.issuer:
                raise OidcError("oidc-provider", "the discovery document names another issuer")
            for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(metadata.get(name), str):
                    raise OidcError("oidc-provider", f"the discovery document lacks {name}")
            methods = metadata.get("code_challenge_methods_supported")
            if isinstance(methods, list) and "S256" not in methods:
                raise OidcError("oidc-provider", "the provider does not support PKCE S256")
            self._metadata, self._metadata_at, self._keys = metadata, self._monotonic(), None
        return self._metadata

    async def _jwks(self, refresh: bool = False) -> jwt.PyJWKSet:
        if self._keys is None or refresh:
            metadata = await self._discover()
            try:
                self._keys = jwt.PyJWKSet.from_dict(await self._get_json(metadata["jwks_uri"]))
            except jwt.PyJWTError as exc:
                raise OidcError(
                    "oidc-provider", f"the provider's JWKS is unusable: {exc}"
                ) from None
        return self._keys

    async def _redeem(self, code: str, pending: _Pending) -> str:
        metadata = await self._discover()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": pending.redirect_uri,
            "code_verifier": pending.verifier,
        }
        client, secret = self.settings.client_id, self.settings.client_secret
        pair = f"{quote(client, safe='')}:{quote(secret, safe='')}"
        auth = "Basic " + base64.b64encode(pair.encode()).decode("ascii")  # RFC 6749 2.3.1
        try:
            async with self._client().post(
                metadata["token_endpoint"], data=form,
                headers={"Accept": "application/json", "Authorization": auth},
            ) as resp:  # fmt: skip
                body = await resp.json(content_type=None)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise OidcError(
                "oidc-provider", f"the token endpoint cannot be reached: {exc}"
            ) from None
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("id_token"), str):
            error = body.get("error") if isinstance(body, dict) else None
            raise OidcError("oidc-code", f"the code was not redeemed ({status} {error})")
        return str(body["id_token"])

    # -- the routes -----------------------------------------------------------------------

    def _redirect_uri(self, request: web.Request) -> str:
        return (
            self.settings.redirect_uri or f"{request.scheme}://{request.host}/login/oidc/callback"
        )

    def _remember(self, state: str, pending: _Pending) -> None:
        now = self._monotonic()
        while self._pending:
            oldest = next(iter(self._pending.values()))
            if now - oldest.created <= _PENDING_TTL and len(self._pending) < _MAX_PENDING:
                break
            self._pending.popitem(last=False)
        self._pending[state] = pending

    async def _start(self, request: web.Request) -> web.StreamResponse:
        try:
            metadata = await self._discover()
        except OidcError as exc:
            _log.warning("OpenID Connect sign-in unavailable: %s", exc)
            return self._back_to_login(request, "-", exc)
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier, binding = secrets.token_urlsafe(48), secrets.token_urlsafe(32)
        redirect_uri = self._redirect_uri(request)
        self._remember(
            state,
            _Pending(
                nonce=nonce,
                verifier=verifier,
                binding=hashlib.sha256(binding.encode()).hexdigest(),
                next=_safe_next(request.query.get("next")),
                redirect_uri=redirect_uri,
                created=self._monotonic(),
            ),
        )
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.settings.client_id,
                "redirect_uri": redirect_uri,
                "scope": self.settings.scopes,
                "state": state,
                "nonce": nonce,
                "code_challenge": pkce_challenge(verifier),
                "code_challenge_method": "S256",
            }
        )
        endpoint = metadata["authorization_endpoint"]
        separator = "&" if "?" in endpoint else "?"
        response = web.Response(
            status=303,
            headers={"Location": f"{endpoint}{separator}{query}", "Cache-Control": "no-store"},
        )
        response.set_cookie(
            STATE_COOKIE, binding, path="/", secure=True, httponly=True, samesite="Lax",
            max_age=int(_PENDING_TTL),
        )  # fmt: skip
        return response

    def _back_to_login(
        self, request: web.Request, who: str, exc: OidcError, pending: _Pending | None = None
    ) -> web.StreamResponse:
        self.signin.store.journal(
            self.signin.clock(), who, "signin-failed", request.remote or "-",
            {"via": "oidc", "reason": exc.reason, "detail": str(exc)[:300]},
        )  # fmt: skip
        _log.info("OpenID Connect sign-in refused (%s): %s", exc.reason, exc)
        error = "oidc-role" if exc.reason == "oidc-no-role" else "oidc"
        target = f"/login?error={error}"
        if pending is not None and pending.next != "/":
            target += "&next=" + quote(pending.next, safe="/")
        response = web.Response(
            status=303, headers={"Location": target, "Cache-Control": "no-store"}
        )
        response.del_cookie(STATE_COOKIE, path="/", secure=True, httponly=True, samesite="Lax")
        return response

    def _take_pending(self, request: web.Request) -> _Pending:
        state = request.query.get("state", "")
        pending = self._pending.pop(state, None)
        if pending is None or self._monotonic() - pending.created > _PENDING_TTL:
            raise OidcError("oidc-state", "unknown or expired state")
        binding = request.cookies.get(STATE_COOKIE, "")
        if not hmac.compare_digest(hashlib.sha256(binding.encode()).hexdigest(), pending.binding):
            raise OidcError("oidc-state", "the state belongs to another browser")
        return pending

    async def _callback(self, request: web.Request) -> web.StreamResponse:
        pending: _Pending | None = None
        who = "-"
        try:
            pending = self._take_pending(request)
            issuer = request.query.get("iss")
            if issuer is not None and issuer != self.settings.issuer:
                raise OidcError("oidc-issuer", "the response comes from another issuer")
            if "error" in request.query:
                raise OidcError("oidc-denied", f"the provider said {request.query['error']}")
            code = request.query.get("code")
            if not code:
                raise OidcError("oidc-code", "the response carries no code")
            token = await self._redeem(code, pending)
            claims = await self._verify(token, pending.nonce)
            who = self._name(claims)
            roles = roles_from_claims(claims, self.settings)
            if not roles:
                raise OidcError(
                    "oidc-no-role", f"the {self.settings.role_claim} claim grants no role"
                )
        except OidcError as exc:
            return self._back_to_login(request, who, exc, pending)
        display = claims.get("name") if isinstance(claims.get("name"), str) else who
        session_id, _ = self.signin.open_session(who, str(display)[:100], roles, "oidc")
        self.signin.store.journal(
            self.signin.clock(), who, "signin", request.remote or "-",
            {"via": "oidc", "issuer": self.settings.issuer, "sub": str(claims["sub"])[:255],
             "roles": [r.value for r in roles]},
        )  # fmt: skip
        target = html.escape(pending.next, quote=True)
        page = (
            '<!doctype html><html lang="zh-CN"><meta charset="utf-8">'
            f'<meta http-equiv="refresh" content="0;url={target}">'
            f'<title>通办</title><a href="{target}">继续 / Continue</a></html>'
        )
        response = web.Response(
            text=page,
            content_type="text/html",
            headers={
                "Cache-Control": "no-store",
                "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
                "Referrer-Policy": "no-referrer",
            },
        )
        self.signin.set_cookie(response, session_id)
        response.del_cookie(STATE_COOKIE, path="/", secure=True, httponly=True, samesite="Lax")
        return response

    async def _verify(self, token: str, nonce: str) -> dict[str, Any]:
        now = self.signin.clock()
        try:
            return verify_id_token(token, await self._jwks(), self.settings, nonce=nonce, now=now)
        except KeyError:
            keys = await self._jwks(refresh=True)
            try:
                return verify_id_token(token, keys, self.settings, nonce=nonce, now=now)
            except KeyError:
                raise OidcError("oidc-token", "the ID token's key is not in the JWKS") from None

    def _name(self, claims: Mapping[str, Any]) -> str:
        for value in (claims.get(self.settings.name_claim), claims.get("sub")):
            if isinstance(value, str):
                try:
                    return check_account_name(value)
                except ValueError:
                    continue
        raise OidcError("oidc-name", "neither the name claim nor sub is a usable account name")
