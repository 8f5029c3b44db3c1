"""Fixtures for the console sign-in tests: a staff listener over TLS with sign-in on.

Helpers shared with other suites come from tests/relay_http (PKI, TLS, fake core) and
tests/cases (two case offices); the sign-in helpers themselves are the product's
:mod:`relay.signin.testing`, which other suites (the console) use as well.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "relay_http"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "cases"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import casekit_offices
from dbkit import Database, database  # noqa: F401 - the fixture, on SQLite and PostgreSQL
from relay_http_fake_core import FakeCore
from relay_http_support import Pki, client_ssl, make_pki, serve
from signin_kit import NODE, OIDC, SETTINGS, Clock, Desk

from relay.config import Limits
from relay.http.staff import staff_app
from relay.signin.oidc import OidcSignIn
from relay.signin.store import StaffStore
from relay.signin.testing import cookie_session
from relay.signin.web import SignIn
from relay.tls import server_context


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("signin-pki"))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def desk(
    pki: Pki,
    tmp_path: Path,
    clock: Clock,
    database: Database,  # noqa: F811 - the fixture imported above
) -> AsyncIterator[Desk]:
    """The staff listener with sign-in, its directory on SQLite and on PostgreSQL."""
    data_dir = tmp_path / "data"
    store = (
        StaffStore(data_dir, connect=lambda: database.connect("staff"))
        if database.postgresql
        else StaffStore(data_dir)
    )
    core = FakeCore(tmp_path)
    key = Ed25519PrivateKey.generate()
    signin = SignIn(store, SETTINGS, clock)
    OidcSignIn(OIDC, signin)  # a provider nobody answers for: only local checks run
    app = staff_app(
        core, node_id=NODE, token_key=key.public_key(), clock=clock,
        limits=Limits(max_body_bytes=4096), signin=signin,
    )  # fmt: skip
    context = server_context(pki.a / "tls.pem", pki.a / "tls.key", None, require_client_cert=False)
    tls = client_ssl(pki, None)
    async with serve(app, context) as url, cookie_session() as http:
        yield Desk(url, http, data_dir, store, clock, key, core, tls)
    store.close()


@pytest.fixture(scope="session")
def office_pki(tmp_path_factory: pytest.TempPathFactory) -> casekit_offices.Pki:
    return casekit_offices.make_pki(tmp_path_factory.mktemp("signin-offices"))


@pytest.fixture
def offices(office_pki: casekit_offices.Pki, tmp_path: Path) -> Iterator[casekit_offices.Offices]:
    pair = casekit_offices.make_offices(office_pki, tmp_path, casekit_offices.Clock())
    yield pair
    pair.close()
