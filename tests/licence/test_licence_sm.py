"""E-licences in the SM profile (issue 19): a licence and its status lists sealed
``SM2SM3`` by an office of an SM-profile federation verify offline, and a revocation
bit in its SM2-signed status list is seen."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from licence_support import ISSUER, T0, Federation, lists_for, make_licence

from certs.pki import init_federation, issue_node
from signing.encoding import b64url_decode
from signing.licence import issue_licence, verify_licence


def _sm_federation(base: Path) -> Federation:
    init_federation(base / "fed", "Jiangsu", now=T0, profile="sm")
    issue_node(base / "fed", ISSUER, "盐城市大丰区行政审批局", "127.0.0.1", base / ISSUER, now=T0)
    return Federation(base / "fed", {ISSUER: base / ISSUER})


def test_sm2_sealed_licence_verifies_and_its_revocation_is_seen(tmp_path: Path) -> None:
    fed = _sm_federation(tmp_path)
    signer = fed.signer(ISSUER)
    token = issue_licence(make_licence(), signer, at=T0 + timedelta(hours=1))
    assert json.loads(b64url_decode(token.split(".")[0]))["alg"] == "SM2SM3"
    at = T0 + timedelta(days=1)
    report = verify_licence(token, fed.bundle, at=at, status_lists=lists_for(signer))
    assert report.valid, report
    revoked = lists_for(signer, revoked=[42])
    assert not verify_licence(token, fed.bundle, at=at, status_lists=revoked).valid
