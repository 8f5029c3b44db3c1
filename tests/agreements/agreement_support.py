"""Builders shared by the agreements tests (agreements, clauses, lifecycles, federation)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agreements.events import Event, EventKind
from agreements.lifecycle import Lifecycle, apply, start
from agreements.model import (
    Agreement,
    Material,
    MaterialCopy,
    MaterialForm,
    MatterClause,
    Party,
    Roles,
    ServiceMode,
)
from signing.certificates import TrustBundle
from signing.keys import Signer

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T_END = datetime(2029, 1, 1, tzinfo=UTC)
PKI_NOW = datetime(2026, 3, 2, tzinfo=UTC)

MATERIAL = Material(
    "申请书", "Application form", MaterialForm.PAPER_OR_ELECTRONIC, MaterialCopy.ORIGINAL
)


def party(pid: str) -> Party:
    return Party(pid, f"办公室{pid}", f"Office {pid}", "湖北省")


def clause(
    matter: str,
    *,
    handle: Iterable[str],
    receive_for: Mapping[str, Iterable[str]] | None = None,
    survey_for: Mapping[str, Iterable[str]] | None = None,
    issue: Iterable[str] = (),
    modes: Iterable[ServiceMode] = (ServiceMode.PROXY_RECEIPT,),
    limit: int = 20,
) -> MatterClause:
    return MatterClause(
        matter=matter,
        modes=frozenset(modes),
        roles=Roles.build(
            receive_for={k: frozenset(v) for k, v in (receive_for or {}).items()},
            handle=frozenset(handle),
            survey_for={k: frozenset(v) for k, v in (survey_for or {}).items()},
            issue=frozenset(issue),
        ),
        materials=(MATERIAL,),
        time_limit_working_days=limit,
        survey_required=False,
        survey_checklist=(),
    )


def agreement(
    parties: Iterable[str],
    clauses: Iterable[MatterClause],
    *,
    aid: str = "test-agreement",
    version: int = 1,
    valid_from: datetime = T0,
    valid_until: datetime = T_END,
    supersedes: int | None = None,
    crypto_profiles: Iterable[str] | None = None,
) -> Agreement:
    return Agreement(
        id=aid,
        version=version,
        title_zh="测试协议",
        title_en="Test agreement",
        parties=tuple(party(p) for p in parties),
        valid_from=valid_from,
        valid_until=valid_until,
        clauses={c.matter: c for c in clauses},
        data_categories=frozenset({"case-materials"}),
        retention_years=30,
        supersedes=supersedes,
        crypto_profiles=None if crypto_profiles is None else frozenset(crypto_profiles),  # type: ignore[arg-type]
    )


def event(ag: Agreement, kind: EventKind, party_id: str, at: datetime, **kw: object) -> Event:
    return Event.for_agreement(ag, kind, party=party_id, at=at, **kw)  # type: ignore[arg-type]


def active(ag: Agreement, at: datetime = T0 - timedelta(days=1)) -> Lifecycle:
    """A lifecycle proposed and activated (fully signed) at ``at``."""
    first = sorted(ag.party_ids)[0]
    lc = start(ag, at)
    lc = apply(lc, event(ag, EventKind.PROPOSE, first, at))
    return apply(lc, event(ag, EventKind.ACTIVATE, first, at), signed_by=ag.party_ids)


@dataclass(frozen=True)
class Federation:
    directory: Path
    bundle: TrustBundle
    bundle_path: Path
    signers: Mapping[str, Signer]  # node id -> seal signer
    node_dirs: Mapping[str, Path]
    revoked: str  # node id whose seal certificate is revoked
    outsider: str  # node id that is never a party


PARTY_IDS_46 = tuple(f"{code:06d}" for code in range(420101, 420147))
REVOKED_ID = "530102"
OUTSIDER_ID = "650102"
