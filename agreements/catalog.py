"""The matter catalog (事项清单): what each matter is, who decides it, and its defaults.

A catalog entry gives the code agreements use, the zh/en names, the competent
department, and the defaults a draft agreement starts from (modes, materials, time
limit in working days, survey and its checklist). An agreement may tighten or change
them; the agreement, once signed, is what binds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any

from agreements.document import parse_material, pointer
from agreements.errors import MalformedAgreement
from agreements.model import Material, ServiceMode

__all__ = ["Catalog", "CatalogEntry", "default_catalog"]


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    code: str
    name_zh: str
    name_en: str
    department_zh: str
    department_en: str
    basis: str
    time_limit_working_days: int
    survey_required: bool
    survey_checklist: tuple[str, ...]
    modes: frozenset[ServiceMode]
    materials: tuple[Material, ...]


def _entry(obj: Any, i: int) -> CatalogEntry:
    path = ("matters", i)
    if not isinstance(obj, dict):
        raise MalformedAgreement(pointer(*path), "must be an object")
    try:
        modes = frozenset(ServiceMode(m) for m in obj["modes"])
        return CatalogEntry(
            code=str(obj["code"]),
            name_zh=str(obj["name_zh"]),
            name_en=str(obj["name_en"]),
            department_zh=str(obj["department_zh"]),
            department_en=str(obj["department_en"]),
            basis=str(obj.get("basis", "")),
            time_limit_working_days=int(obj["time_limit_working_days"]),
            survey_required=bool(obj["survey_required"]),
            survey_checklist=tuple(str(s) for s in obj["survey_checklist"]),
            modes=modes,
            materials=tuple(
                parse_material(m, (*path, "materials", j)) for j, m in enumerate(obj["materials"])
            ),
        )
    except KeyError as exc:
        raise MalformedAgreement(pointer(*path, str(exc.args[0])), "missing field") from None
    except ValueError as exc:
        raise MalformedAgreement(pointer(*path), str(exc)) from None


@dataclass(frozen=True)
class Catalog:
    entries: Mapping[str, CatalogEntry]

    @classmethod
    def from_bytes(cls, data: bytes) -> Catalog:
        obj = json.loads(data)
        if not isinstance(obj, dict) or obj.get("format") != "tongban-catalog/1":
            raise MalformedAgreement("/format", "must be 'tongban-catalog/1'")
        entries: dict[str, CatalogEntry] = {}
        for i, item in enumerate(obj.get("matters", [])):
            entry = _entry(item, i)
            if entry.code in entries:
                raise MalformedAgreement(pointer("matters", i, "code"), "code repeats")
            entries[entry.code] = entry
        return cls(MappingProxyType(entries))

    def __iter__(self) -> Iterator[CatalogEntry]:
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, code: str) -> CatalogEntry | None:
        return self.entries.get(code)


def default_catalog() -> Catalog:
    """The bundled demo catalog (``agreements/data/catalog.json``)."""
    return Catalog.from_bytes(
        resources.files("agreements.data").joinpath("catalog.json").read_bytes()
    )
