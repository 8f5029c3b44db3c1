"""The agreement document: frozen data, enums and its canonical bytes.

An :class:`Agreement` is one version of a multilateral mutual-authorization agreement:
who the parties are, when it is valid, and per matter (:class:`MatterClause`) which
service modes are allowed, which party may receive for which others, which handle,
which may survey on behalf of which, which issue licences, and the agreed standard
(materials, time limit in working days, site survey).

Objects here are only built valid: :func:`agreements.document.parse_agreement` is the
single door from JSON, and the constructors keep to the same invariants. Sets are held
as ``frozenset`` and written out sorted, so one meaning has one byte string:
:meth:`Agreement.document_bytes` (canonical JSON of :meth:`Agreement.document`) is what
every party signs.

``crypto_profiles`` names the cryptographic profiles (:class:`signing.profiles.Profile`)
of the nodes that may exchange packets under the agreement. It is optional: absent
(``None``) means any profile, as for every agreement written before the field existed,
and an absent field is not written, so the bytes (and the digest) of such an agreement
are unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import cached_property
from types import MappingProxyType
from typing import Any

from signing.encoding import canonical_json
from signing.profiles import Profile

__all__ = [
    "FORMAT",
    "Agreement",
    "Material",
    "MaterialCopy",
    "MaterialForm",
    "MatterClause",
    "Party",
    "Roles",
    "ServiceMode",
    "epoch",
    "from_epoch",
]

FORMAT = "tongban-agreement/1"


class ServiceMode(StrEnum):
    """How a matter may be handled across offices."""

    ONLINE = "online"  # 全程网办
    PROXY_RECEIPT = "proxy_receipt"  # 异地代收代办
    JOINT = "joint"  # 多地联办


class MaterialForm(StrEnum):
    """In which form a material is handed in."""

    PAPER = "paper"
    ELECTRONIC = "electronic"
    PAPER_OR_ELECTRONIC = "paper_or_electronic"


class MaterialCopy(StrEnum):
    """Whether the original, an electronic copy (e-licence / scan) or a photocopy is needed."""

    ORIGINAL = "original"
    ECOPY = "ecopy"
    PHOTOCOPY = "photocopy"


def epoch(at: datetime) -> int:
    """Seconds since the Unix epoch of an aware datetime."""
    if at.tzinfo is None:
        raise ValueError("naive datetime: agreements take aware datetimes only")
    return int(at.timestamp())


def from_epoch(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


@dataclass(frozen=True, slots=True)
class Party:
    id: str  # 6-digit division code (node id)
    name_zh: str
    name_en: str
    province: str  # province name in Chinese, e.g. 湖北省

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name_en": self.name_en,
            "name_zh": self.name_zh,
            "province": self.province,
        }


@dataclass(frozen=True, slots=True)
class Material:
    name_zh: str
    name_en: str
    form: MaterialForm
    original_or_ecopy: MaterialCopy

    def to_json(self) -> dict[str, Any]:
        return {
            "form": self.form.value,
            "name_en": self.name_en,
            "name_zh": self.name_zh,
            "original_or_ecopy": self.original_or_ecopy.value,
        }


def _freeze(relation: Mapping[str, frozenset[str]]) -> Mapping[str, frozenset[str]]:
    return MappingProxyType({k: frozenset(v) for k, v in relation.items() if v})


def _relation_json(relation: Mapping[str, frozenset[str]]) -> dict[str, list[str]]:
    return {k: sorted(relation[k]) for k in sorted(relation)}


@dataclass(frozen=True, slots=True)
class Roles:
    """Who does what for one matter.

    ``receive_for[r]`` is the set of handling parties party ``r`` may receive cases
    for; ``survey_for[s]`` the set of handling parties ``s`` may survey on behalf of.
    """

    receive_for: Mapping[str, frozenset[str]]
    handle: frozenset[str]
    survey_for: Mapping[str, frozenset[str]]
    issue: frozenset[str]

    @classmethod
    def build(
        cls,
        *,
        receive_for: Mapping[str, frozenset[str]],
        handle: frozenset[str],
        survey_for: Mapping[str, frozenset[str]],
        issue: frozenset[str],
    ) -> Roles:
        return cls(_freeze(receive_for), frozenset(handle), _freeze(survey_for), frozenset(issue))

    def handles(self, party: str) -> bool:
        return party in self.handle

    def issues(self, party: str) -> bool:
        return party in self.issue

    def receives_for(self, receiver: str, handler: str) -> bool:
        return handler in self.receive_for.get(receiver, frozenset())

    def surveys_for(self, surveyor: str, handler: str) -> bool:
        return handler in self.survey_for.get(surveyor, frozenset())

    def parties(self) -> frozenset[str]:
        """Every party named by any role."""
        named = set(self.handle) | set(self.issue)
        for relation in (self.receive_for, self.survey_for):
            for key, values in relation.items():
                named.add(key)
                named.update(values)
        return frozenset(named)

    def to_json(self) -> dict[str, Any]:
        return {
            "handle": sorted(self.handle),
            "issue": sorted(self.issue),
            "receive_for": _relation_json(self.receive_for),
            "survey_for": _relation_json(self.survey_for),
        }


@dataclass(frozen=True, slots=True)
class MatterClause:
    """What the parties agreed for one matter."""

    matter: str
    modes: frozenset[ServiceMode]
    roles: Roles
    materials: tuple[Material, ...]
    time_limit_working_days: int
    survey_required: bool
    survey_checklist: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "materials": [m.to_json() for m in self.materials],
            "matter": self.matter,
            "modes": sorted(m.value for m in self.modes),
            "roles": self.roles.to_json(),
            "survey_checklist": list(self.survey_checklist),
            "survey_required": self.survey_required,
            "time_limit_working_days": self.time_limit_working_days,
        }


@dataclass(frozen=True)
class Agreement:
    """One version of an agreement. ``valid_until`` is exclusive."""

    id: str
    version: int
    title_zh: str
    title_en: str
    parties: tuple[Party, ...]  # sorted by id
    valid_from: datetime
    valid_until: datetime
    clauses: Mapping[str, MatterClause]  # matter code -> clause, read-only
    data_categories: frozenset[str]
    retention_years: int
    supersedes: int | None = None  # earlier version of the same id that this replaces
    crypto_profiles: frozenset[Profile] | None = None  # None: any profile (field absent)
    party_ids: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parties", tuple(sorted(self.parties, key=lambda p: p.id)))
        if not isinstance(self.clauses, MappingProxyType):
            object.__setattr__(self, "clauses", MappingProxyType(dict(self.clauses)))
        object.__setattr__(self, "party_ids", frozenset(p.id for p in self.parties))
        if self.crypto_profiles is not None:
            profiles = frozenset(Profile(p) for p in self.crypto_profiles)
            if not profiles:
                raise ValueError("crypto_profiles names at least one profile (None: any)")
            object.__setattr__(self, "crypto_profiles", profiles)

    @property
    def ref(self) -> tuple[str, int]:
        return (self.id, self.version)

    @property
    def is_bilateral(self) -> bool:
        return len(self.parties) == 2

    def allows_profile(self, profile: Profile) -> bool:
        """Whether a node of ``profile`` may exchange packets under this agreement."""
        return self.crypto_profiles is None or profile in self.crypto_profiles

    def party(self, party_id: str) -> Party | None:
        for p in self.parties:
            if p.id == party_id:
                return p
        return None

    def document(self) -> dict[str, Any]:
        """The JSON document, normalized (sets sorted, matters sorted by code);
        ``crypto_profiles`` only when the agreement names profiles."""
        doc: dict[str, Any] = {
            "data_categories": sorted(self.data_categories),
            "format": FORMAT,
            "id": self.id,
            "matters": [self.clauses[m].to_json() for m in sorted(self.clauses)],
            "parties": [p.to_json() for p in self.parties],
            "retention_years": self.retention_years,
            "supersedes": self.supersedes,
            "title": {"en": self.title_en, "zh": self.title_zh},
            "valid_from": epoch(self.valid_from),
            "valid_until": epoch(self.valid_until),
            "version": self.version,
        }
        if self.crypto_profiles is not None:
            doc["crypto_profiles"] = sorted(p.value for p in self.crypto_profiles)
        return doc

    def document_bytes(self) -> bytes:
        """The exact bytes every party signs: canonical JSON of :meth:`document`."""
        return self._document_bytes

    @cached_property
    def _document_bytes(self) -> bytes:
        return canonical_json(self.document())
