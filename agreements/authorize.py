"""The authorization decision: may ``from`` send ``action`` on ``matter`` to ``to`` now?

Deny by default. :func:`authorize` looks up, in an :class:`AgreementIndex`, only the
agreements that name both ``from`` and ``to`` as parties (a hash lookup on the ordered
pair), then only the clause for ``matter`` in each (a hash lookup on the matter code).
The work per decision therefore depends on how many agreements bind that pair, not on
how many agreements or matters the index holds.

For each candidate agreement the checks run in this order; the first that fails gives
that agreement's reason:

1. ``agreement-not-signed`` — at ``at`` the lifecycle is draft or proposed;
2. ``not-yet-active`` — before ``valid_from`` (or before the lifecycle started);
3. ``expired`` — at or after ``valid_until``, or the lifecycle expired;
   ``superseded`` — a supersede event, or a successor version in the same index (same
   id, ``supersedes`` naming this version) that is fully signed: from the later of its
   activation and its ``valid_from`` on;
4. ``party-withdrawn`` — ``from`` or ``to`` withdrew at or before ``at`` (a bilateral
   agreement that a party left has ended with this reason too);
5. ``suspended`` — suspended at ``at``;
6. ``matter-not-covered`` — no clause for the matter;
7. ``mode-not-allowed`` — the request's mode is not in the clause, or none of the
   clause's modes may carry the action;
8. ``role-not-granted`` — no relation of the action holds (see :mod:`agreements.actions`);
9. ``profile-not-allowed`` — the agreement names ``crypto_profiles`` and the
   cryptographic profile of ``from`` or of ``to`` (:mod:`signing.profiles`) is not
   among them. The relay always names both profiles (the sending node its own and the
   recipient's descriptor's, the receiving node the packet signer's and its own), so
   the one decision holds on both sides; a request that names none (the case layer
   asking what the roles grant, ``tongban agreement check`` without profiles) skips
   this check, and an agreement without ``crypto_profiles`` allows every profile.

The first agreement (in index order) that permits gives a :class:`Permit` naming the
clause and the relation. If none permits, the :class:`Deny` carries the reason of the
candidate that got furthest down the list (ties: the first in index order); with no
candidate at all the reason is ``no-agreement``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType

from agreements.actions import ACTION_RULES, Action, Relation, relation_holds
from agreements.lifecycle import Lifecycle, State
from agreements.model import Agreement, ServiceMode
from signing.profiles import Profile

__all__ = [
    "AgreementIndex",
    "ClauseRef",
    "Decision",
    "Deny",
    "Permit",
    "Reason",
    "Request",
    "authorize",
]


class Reason(StrEnum):
    NO_AGREEMENT = "no-agreement"
    AGREEMENT_NOT_SIGNED = "agreement-not-signed"
    NOT_YET_ACTIVE = "not-yet-active"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"
    PARTY_WITHDRAWN = "party-withdrawn"
    SUSPENDED = "suspended"
    MATTER_NOT_COVERED = "matter-not-covered"
    MODE_NOT_ALLOWED = "mode-not-allowed"
    ROLE_NOT_GRANTED = "role-not-granted"
    PROFILE_NOT_ALLOWED = "profile-not-allowed"


_RANK = {reason: i for i, reason in enumerate(Reason)}
_RANK[Reason.SUPERSEDED] = _RANK[Reason.EXPIRED]


@dataclass(frozen=True, slots=True)
class Request:
    sender: str  # "from" node id
    recipient: str  # "to" node id
    matter: str
    action: Action
    mode: ServiceMode | None = None  # None: any mode the clause allows
    # cryptographic profiles of ``from`` and ``to``; None: not checked (step 9)
    sender_profile: Profile | None = None
    recipient_profile: Profile | None = None


@dataclass(frozen=True, slots=True)
class ClauseRef:
    agreement_id: str
    version: int
    matter: str
    role: Relation


@dataclass(frozen=True, slots=True)
class Permit:
    clause: ClauseRef

    @property
    def permitted(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Deny:
    reason: Reason
    agreement: tuple[str, int] | None = None  # the candidate that gave the reason

    @property
    def permitted(self) -> bool:
        return False


Decision = Permit | Deny


class AgreementIndex:
    """Lifecycles indexed by ordered party pair ``(from, to)``.

    Building costs one entry per ordered pair of parties per agreement (a 46-party
    agreement adds 2,070 entries, independent of its number of matters); clauses are
    not copied: each agreement's own ``matter -> clause`` mapping is used.
    """

    __slots__ = ("_by_pair", "_count", "_signed_at", "_superseded_at")

    def __init__(self, lifecycles: Iterable[Lifecycle] = ()) -> None:
        by_pair: dict[tuple[str, str], list[Lifecycle]] = {}
        superseded_at: dict[tuple[str, int], datetime] = {}
        signed_at: dict[tuple[str, int], datetime] = {}
        count = 0
        for lc in lifecycles:
            count += 1
            ag = lc.agreement
            activated = lc.activated_at
            if activated is not None:
                signed_at[ag.ref] = min(activated, signed_at.get(ag.ref, activated))
            if ag.supersedes is not None and activated is not None:
                # a successor supersedes once fully signed and in its window
                when = max(activated, ag.valid_from)
                key = (ag.id, ag.supersedes)
                superseded_at[key] = min(when, superseded_at.get(key, when))
            ids = sorted(lc.agreement.party_ids)
            for a in ids:
                for b in ids:
                    if a != b:
                        by_pair.setdefault((a, b), []).append(lc)
        self._by_pair: Mapping[tuple[str, str], tuple[Lifecycle, ...]] = MappingProxyType(
            {k: tuple(v) for k, v in by_pair.items()}
        )
        self._superseded_at: Mapping[tuple[str, int], datetime] = MappingProxyType(superseded_at)
        self._signed_at: Mapping[tuple[str, int], datetime] = MappingProxyType(signed_at)
        self._count = count

    def __len__(self) -> int:
        return self._count

    def candidates(self, sender: str, recipient: str) -> tuple[Lifecycle, ...]:
        return self._by_pair.get((sender, recipient), ())

    @property
    def has_successors(self) -> bool:
        return bool(self._superseded_at)

    def superseded_at(self, agreement_id: str, version: int) -> datetime | None:
        """When a fully signed successor in this index replaced that version, if one did."""
        return self._superseded_at.get((agreement_id, version))

    def signed_at(self, agreement_id: str, version: int) -> datetime | None:
        """When that version became fully signed (active) here, if it did."""
        return self._signed_at.get((agreement_id, version))

    def signed_versions(self, agreement_id: str, at: datetime) -> list[int]:
        """The versions of that agreement fully signed here at ``at``."""
        return [v for (a, v), t in self._signed_at.items() if a == agreement_id and t <= at]


def _status_reason(
    index: AgreementIndex, lc: Lifecycle, request: Request, at: datetime
) -> Reason | None:
    snap = lc.status_at(at)
    ag = lc.agreement
    if snap is None or snap.state in (State.DRAFT, State.PROPOSED):
        return Reason.AGREEMENT_NOT_SIGNED
    if at < ag.valid_from:
        return Reason.NOT_YET_ACTIVE
    if at >= ag.valid_until or snap.state is State.EXPIRED:
        return Reason.EXPIRED
    replaced = index.superseded_at(ag.id, ag.version) if index.has_successors else None
    if snap.state is State.SUPERSEDED or (replaced is not None and at >= replaced):
        return Reason.SUPERSEDED
    gone = snap.withdrawn
    if snap.state is State.WITHDRAWN or (
        gone and (request.sender in gone or request.recipient in gone)
    ):
        return Reason.PARTY_WITHDRAWN
    if snap.state is State.SUSPENDED:
        return Reason.SUSPENDED
    return None


def _evaluate(
    index: AgreementIndex, lc: Lifecycle, request: Request, at: datetime
) -> Permit | Reason:
    status = _status_reason(index, lc, request, at)
    if status is not None:
        return status
    clause = lc.agreement.clauses.get(request.matter)
    if clause is None:
        return Reason.MATTER_NOT_COVERED
    rule = ACTION_RULES[request.action]
    if request.mode is not None:
        if request.mode not in clause.modes:
            return Reason.MODE_NOT_ALLOWED
        modes = frozenset({request.mode})
    else:
        modes = clause.modes
    modes = modes & rule.modes
    if not modes:
        return Reason.MODE_NOT_ALLOWED
    for relation in rule.relations:
        if relation_holds(relation, clause.roles, request.sender, request.recipient, modes):
            ag = lc.agreement
            if not _profiles_allowed(ag, request):
                return Reason.PROFILE_NOT_ALLOWED
            return Permit(ClauseRef(ag.id, ag.version, request.matter, relation))
    return Reason.ROLE_NOT_GRANTED


def _profiles_allowed(agreement: Agreement, request: Request) -> bool:
    return all(
        profile is None or agreement.allows_profile(profile)
        for profile in (request.sender_profile, request.recipient_profile)
    )


def authorize(index: AgreementIndex, request: Request, at: datetime) -> Decision:
    """Permit with the granting clause, or deny with a stable reason code."""
    best: Deny = Deny(Reason.NO_AGREEMENT)
    for lc in index.candidates(request.sender, request.recipient):
        outcome = _evaluate(index, lc, request, at)
        if isinstance(outcome, Permit):
            return outcome
        if _RANK[outcome] > _RANK[best.reason]:
            best = Deny(outcome, lc.agreement.ref)
    return best
