"""The agreed terms of a case: time limit and site-survey duty from the agreement clause.

Both offices take these from their own verified copy of the agreement that grants the
``submit`` (receiving → handling) for the matter; the handling office refuses a
``submit`` whose header disagrees with what it finds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import agreements.lifecycle as lifecycle_states
from agreements.actions import Action
from agreements.authorize import AgreementIndex, Deny, Request, authorize
from agreements.errors import AgreementError
from agreements.lifecycle import Lifecycle
from agreements.model import Material, ServiceMode
from agreements.signed import SignedAgreement
from relay.cases.errors import CaseError
from signing.certificates import TrustBundle

if TYPE_CHECKING:  # the console's reads (relay.console)
    from agreements.model import Agreement, MatterClause

_ACTIVE = lifecycle_states.State.ACTIVE

__all__ = ["AgreementTerms", "CaseTerms", "NoTerms", "TermsSource", "load_terms"]


class NoTerms(CaseError):
    """No agreement grants this case (``code`` is the agreement's deny reason)."""


@dataclass(frozen=True)
class CaseTerms:
    time_limit_working_days: int
    survey_required: bool
    agreement_id: str
    agreement_version: int
    # the data rules of the agreement (relay.cases.application) and the clause's materials
    data_categories: frozenset[str] = frozenset()
    retention_years: int = 30
    materials: tuple[Material, ...] = ()


class TermsSource(Protocol):
    def __call__(
        self, receiving: str, handling: str, matter: str, mode: str, at: datetime
    ) -> CaseTerms: ...


class AgreementTerms:
    """Terms looked up in an :class:`~agreements.authorize.AgreementIndex`."""

    def __init__(self, lifecycles: Sequence[Lifecycle]) -> None:
        self._lifecycles = tuple(lifecycles)
        self._index = AgreementIndex(self._lifecycles)

    def entitled(self, issuer: str, licence_type: str, at: datetime) -> bool:
        """Whether an agreement lets ``issuer`` issue licences of ``licence_type`` at
        ``at`` (``issue-licence`` on that matter to some other party is permitted)."""
        for lc in self._lifecycles:
            for party in lc.agreement.party_ids - {issuer}:
                request = Request(issuer, party, licence_type, Action.ISSUE_LICENCE)
                if authorize(self._index, request, at).permitted:
                    return True
        return False

    def active(self, at: datetime) -> list[Agreement]:
        """The agreements in force at ``at`` (for showing parties, matters, standards)."""
        out = []
        for lc in self._lifecycles:
            if lc.state_at(at) is _ACTIVE:
                out.append(lc.agreement)
        return out

    def clause(
        self, receiving: str, handling: str, matter: str, at: datetime
    ) -> MatterClause | None:
        """The clause of the agreement in force between the two offices for ``matter``."""
        for lc in self._index.candidates(receiving, handling):
            if lc.state_at(at) is _ACTIVE and matter in lc.agreement.clauses:
                return lc.agreement.clauses[matter]
        return None

    def permits(
        self, sender: str, recipient: str, matter: str, action: Action, mode: str, at: datetime
    ) -> bool:
        """Whether an agreement grants ``sender`` this ``action`` to ``recipient`` now."""
        try:
            service_mode = ServiceMode(mode)
        except ValueError:
            return False
        request = Request(sender, recipient, matter, action, service_mode)
        return authorize(self._index, request, at).permitted

    def __call__(
        self, receiving: str, handling: str, matter: str, mode: str, at: datetime
    ) -> CaseTerms:
        try:
            service_mode = ServiceMode(mode)
        except ValueError:
            raise NoTerms(f"unknown service mode {mode!r}", code="mode-not-allowed") from None
        request = Request(receiving, handling, matter, Action.SUBMIT, service_mode)
        decision = authorize(self._index, request, at)
        if isinstance(decision, Deny):
            raise NoTerms(
                f"no agreement grants this case ({decision.reason})", code=decision.reason
            )
        for lc in self._index.candidates(receiving, handling):
            agreement = lc.agreement
            if agreement.ref == (decision.clause.agreement_id, decision.clause.version):
                clause = agreement.clauses[matter]
                return CaseTerms(
                    clause.time_limit_working_days,
                    clause.survey_required,
                    agreement.id,
                    agreement.version,
                    agreement.data_categories,
                    agreement.retention_years,
                    clause.materials,
                )
        raise NoTerms("the granting agreement vanished from the index", code="no-agreement")


def load_terms(paths: Sequence[Path], bundle: TrustBundle, *, at: datetime) -> AgreementTerms:
    """Read and verify the agreement files at ``paths`` (as ``relay.authorizer`` does)."""
    lifecycles = []
    for path in paths:
        try:
            signed = SignedAgreement.from_bytes(path.read_bytes())
        except (OSError, AgreementError) as exc:
            raise NoTerms(f"{path}: {exc}", code="agreement-unreadable") from None
        lifecycles.append(signed.evaluate(bundle, at=at).lifecycle)
    return AgreementTerms(lifecycles)
