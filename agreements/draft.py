"""Drafting an agreement from a template and the matter catalog.

A template is an agreement document (``tongban-agreement/1``) with two conveniences:

- ``valid_from`` / ``valid_until`` may be ISO 8601 strings with a UTC offset;
- in a matter entry, ``modes``, ``materials``, ``time_limit_working_days``,
  ``survey_required`` and ``survey_checklist`` may be left out and are then taken from
  the catalog entry for that matter code (a matter unknown to the catalog must spell
  them out);
- ``crypto_profiles`` (optional, as in the document) is kept as written: a template
  without it drafts an agreement that allows any cryptographic profile.

The result is checked exactly like any agreement (:func:`parse_agreement`), so a bad
template is refused with the JSON pointer of the offending field.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from agreements.catalog import Catalog, CatalogEntry
from agreements.document import parse_agreement, pointer
from agreements.errors import MalformedAgreement
from agreements.model import Agreement, epoch

__all__ = ["draft_from_template", "reciprocal_template"]


def _defaults(entry: CatalogEntry) -> dict[str, Any]:
    return {
        "modes": sorted(m.value for m in entry.modes),
        "materials": [m.to_json() for m in entry.materials],
        "time_limit_working_days": entry.time_limit_working_days,
        "survey_required": entry.survey_required,
        "survey_checklist": list(entry.survey_checklist),
    }


def draft_from_template(template: Any, catalog: Catalog) -> Agreement:
    """Fill catalog defaults and ISO times into ``template`` and parse the result."""
    if not isinstance(template, dict):
        raise MalformedAgreement("", "must be an object")
    doc = copy.deepcopy(template)
    for key in ("valid_from", "valid_until"):
        value = doc.get(key)
        if isinstance(value, str):
            try:
                when = datetime.fromisoformat(value)
            except ValueError:
                raise MalformedAgreement(pointer(key), "not an ISO 8601 date-time") from None
            if when.tzinfo is None:
                raise MalformedAgreement(pointer(key), "needs a UTC offset")
            doc[key] = epoch(when)
    matters = doc.get("matters")
    if isinstance(matters, list):
        for item in matters:
            if not isinstance(item, dict):
                continue
            entry = (
                catalog.get(item.get("matter", "")) if isinstance(item.get("matter"), str) else None
            )
            if entry is None:
                continue
            for key, value in _defaults(entry).items():
                item.setdefault(key, value)
    return parse_agreement(doc)


def reciprocal_template(
    party_ids: Sequence[str],
    *,
    agreement_id: str,
    title_zh: str,
    title_en: str,
    matters: Sequence[str] = ("food-business-licence",),
    province: str = "湖北省",
    valid_from: str = "2026-01-01T00:00:00+08:00",
    valid_until: str = "2029-01-01T00:00:00+08:00",
    crypto_profiles: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A template in which every party receives for every other, handles and issues.

    The simplest full-trust agreement among ``party_ids``, for local federations (tests,
    benchmarks); matter details come from the catalog when drafted. ``crypto_profiles``
    names the cryptographic profiles it allows (None: the field is left out, any).
    """
    ids = sorted(party_ids)
    roles = {
        "receive_for": {i: [j for j in ids if j != i] for i in ids},
        "handle": list(ids),
        "survey_for": {},
        "issue": list(ids),
    }
    template: dict[str, Any] = {
        "format": "tongban-agreement/1",
        "id": agreement_id,
        "version": 1,
        "supersedes": None,
        "title": {"zh": title_zh, "en": title_en},
        "parties": [
            {"id": i, "name_zh": f"办公室{i}", "name_en": f"Office {i}", "province": province}
            for i in ids
        ],
        "valid_from": valid_from,
        "valid_until": valid_until,
        "matters": [{"matter": m, "roles": copy.deepcopy(roles)} for m in matters],
        "data_categories": ["case-materials"],
        "retention_years": 30,
    }
    if crypto_profiles is not None:
        template["crypto_profiles"] = list(crypto_profiles)
    return template
