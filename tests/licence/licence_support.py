"""Helpers for the e-licence tests: a federation with two offices, generated in tmp dirs.

Everything runs at fixed instants around ``T0`` (the PKI is issued at ``T0``; its CRL is
valid 30 days), so the tests never depend on the wall clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from certs.pki import init_federation, issue_node
from signing.certificates import TrustBundle
from signing.keys import Signer
from signing.licence import Licence, StatusEntry
from signing.status_list import (
    StatusList,
    StatusListCredential,
    StatusPurpose,
    sign_status_list,
)

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
ISSUER = "320982"  # 大丰区行政审批局 (the handling office that issues)
OTHER = "420106"  # 武昌区政务服务中心 (the receiving office; not entitled to issue)
BASE_URL = "https://320982.tongban.example/status/1"
REV_URL = BASE_URL + "/revocation"
SUS_URL = BASE_URL + "/suspension"
PESTICIDE = "370110001000"  # a matter code: pesticide retail business licence


@dataclass(frozen=True)
class Federation:
    directory: Path
    nodes: dict[str, Path]

    @property
    def bundle_pem(self) -> bytes:
        return (self.directory / "root.pem").read_bytes() + (
            self.directory / "crl.pem"
        ).read_bytes()

    @property
    def bundle(self) -> TrustBundle:
        return TrustBundle.from_pem(self.bundle_pem)

    def signer(self, node: str) -> Signer:
        d = self.nodes[node]
        return Signer.from_pem((d / "seal.key").read_bytes(), (d / "seal.pem").read_bytes())


def make_federation(base: Path, name: str, nodes: Iterable[tuple[str, str]]) -> Federation:
    init_federation(base / "fed", name, now=T0)
    out = {}
    for code, office in nodes:
        issue_node(base / "fed", code, office, "127.0.0.1", base / code, now=T0)
        out[code] = base / code
    return Federation(base / "fed", out)


def make_licence(**changes: object) -> Licence:
    fields: dict[str, object] = {
        "issuer_node": ISSUER,
        "number": "苏农药零售2026第0042号",
        "licence_type": PESTICIDE,
        "holder_id": "91320982MA1XY2Z3Q4",
        "holder_name": "盐城市丰收农资经营部",
        "scope": "农药零售（不含限制使用农药）",
        "department_zh": "盐城市大丰区行政审批局",
        "department_en": "Dafeng District Administrative Approval Bureau, Yancheng",
        "issued_at": T0 + timedelta(hours=1),
        "valid_from": T0 + timedelta(hours=1),
        "valid_until": T0 + timedelta(days=365),
        "status": (
            StatusEntry(StatusPurpose.REVOCATION, 42, REV_URL),
            StatusEntry(StatusPurpose.SUSPENSION, 42, SUS_URL),
        ),
    }
    fields.update(changes)
    return Licence(**fields)  # type: ignore[arg-type]


def publish(
    signer: Signer,
    purpose: StatusPurpose,
    *,
    set_bits: Iterable[int] = (),
    at: datetime = T0 + timedelta(hours=2),
    days: int = 7,
    url: str | None = None,
    issuer: str = ISSUER,
) -> str:
    lst = StatusList.empty(purpose)
    for i in set_bits:
        lst = lst.with_bit(i, True)
    default = REV_URL if purpose is StatusPurpose.REVOCATION else SUS_URL
    credential = StatusListCredential(
        issuer_node=issuer,
        url=url or default,
        status_list=lst,
        issued_at=at,
        valid_from=at,
        valid_until=at + timedelta(days=days),
    )
    return sign_status_list(credential, signer, at=at)


def lists_for(
    signer: Signer, *, revoked: Iterable[int] = (), suspended: Iterable[int] = ()
) -> dict[str, str]:
    return {
        REV_URL: publish(signer, StatusPurpose.REVOCATION, set_bits=revoked),
        SUS_URL: publish(signer, StatusPurpose.SUSPENSION, set_bits=suspended),
    }
