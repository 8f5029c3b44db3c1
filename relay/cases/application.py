"""The case content an applicant hands in, its JSON Schema per matter, and the data rules.

An *application* is the structured content of a case (docs/protocol.md §11.6), carried
by the ``submit`` event in ``details.application``. Its top-level keys are **data
categories**; each category holds one part of the applicant's data::

    {"applicant-identity": {"name": "江城餐饮有限公司", "id_type": "unified-social-credit-code",
                            "id_number": "91420106MA4K000000", "phone": "027-88886666"},
     "business-premises":  {"address": "武汉市武昌区中北路 1 号", "area_m2": 120},
     "case-materials":     [{"material": "营业执照", "digest": "<sha256 hex>"}]}

:func:`application_schema` generates the JSON Schema (2020-12) for one matter from the
agreement's clause (the material list, which starts from the matter catalog) and the
categories the agreement lists: a category the agreement does not list is not in the
schema at all. An office's platform maps its forms to this schema once.

:func:`check_application` is the rule both offices apply (at hand-in and on receipt):

1. every key of the application is a data category the agreement lists
   (``data-category-not-agreed``), and a packet with attachments needs
   ``case-materials`` (attachments are case materials);
2. the application validates against the matter's schema (``content-schema``, with
   the JSON pointer of the first error).

Pure: the agreement's terms in, an error or nothing out. Validation uses the
``jsonschema`` library (Draft 2020-12), the schema is plain data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jsonschema

from agreements.model import Material
from relay.cases.errors import CaseError

__all__ = [
    "APPLICANT_ID",
    "KNOWN_CATEGORIES",
    "ContentRefused",
    "applicant_key",
    "application_schema",
    "check_application",
]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

_TEXT = {"type": "string", "minLength": 1, "maxLength": 200}
_CATEGORY_SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "applicant-identity": {
        "title": "申请人身份 / Applicant identity",
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "id_type", "id_number"],
        "properties": {
            "name": {**_TEXT, "title": "申请人名称 / Applicant name"},
            "id_type": {
                "title": "证件类型 / Identity document type",
                "enum": ["resident-id", "unified-social-credit-code", "passport", "other"],
            },
            "id_number": {
                "title": "证件号码 / Identity document number",
                "type": "string",
                "pattern": "^[0-9A-Za-z-]{4,40}$",
            },
            "phone": {
                "title": "联系电话 / Phone",
                "type": "string",
                "pattern": "^[0-9+ -]{5,20}$",
            },
            "contact": {**_TEXT, "title": "联系人 / Contact person"},
        },
    },
    "business-premises": {
        "title": "经营场所 / Business premises",
        "type": "object",
        "additionalProperties": False,
        "required": ["address"],
        "properties": {
            "address": {**_TEXT, "title": "地址 / Address"},
            "area_m2": {
                "title": "面积（平方米）/ Area (m²)",
                "type": "number",
                "exclusiveMinimum": 0,
            },
            "use": {**_TEXT, "title": "用途 / Use"},
        },
    },
}
KNOWN_CATEGORIES = frozenset({*_CATEGORY_SCHEMAS, "case-materials"})
"""The categories an application can carry (``licence-data`` comes with the licence)."""

APPLICANT_ID = ("applicant-identity", "id_number")
"""Where an application names its applicant (the key of per-applicant reports)."""


class ContentRefused(CaseError):
    """The case content breaks the agreement's data rules or the matter's schema
    (``code``: ``data-category-not-agreed`` or ``content-schema``)."""

    code = "content-schema"


def _materials_schema(materials: Iterable[Material]) -> dict[str, Any]:
    names = [{"const": m.name_zh, "title": m.name_en} for m in materials]
    return {
        "title": "申请材料 / Case materials",
        "type": "array",
        "maxItems": 100,
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["material"],
            "properties": {
                "material": {"title": "材料名称 / Material", "oneOf": names},
                "digest": {
                    "title": "附件 SHA-256 / Attachment SHA-256",
                    "type": "string",
                    "pattern": "^[0-9a-f]{64}$",
                },
                "pages": {"title": "页数 / Pages", "type": "integer", "minimum": 1},
            },
        },
    }


def application_schema(
    matter: str, materials: Iterable[Material], categories: Iterable[str]
) -> dict[str, Any]:
    """The JSON Schema of a ``matter``'s application under an agreement that lists
    ``categories`` and the clause's ``materials``."""
    agreed = frozenset(categories)
    properties: dict[str, Any] = {}
    for category in sorted(agreed & KNOWN_CATEGORIES):
        if category == "case-materials":
            properties[category] = _materials_schema(materials)
        else:
            properties[category] = dict(_CATEGORY_SCHEMAS[category])
    required = ["applicant-identity"] if "applicant-identity" in properties else []
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"urn:tongban:application:{matter}",
        "title": f"tongban application: {matter}",
        "type": "object",
        "additionalProperties": False,
        "required": required,
        "properties": properties,
    }


def check_application(
    application: Mapping[str, Any] | None,
    *,
    matter: str,
    materials: Iterable[Material],
    categories: Iterable[str],
    attachments: int = 0,
) -> None:
    """Raise :class:`ContentRefused` unless the content keeps the agreement's data rules
    (see the module note); ``application`` None is a case without structured content."""
    agreed = frozenset(categories)
    if attachments and "case-materials" not in agreed:
        raise ContentRefused(
            "attachments are case materials, which the agreement does not list",
            code="data-category-not-agreed",
        )
    if application is None:
        return
    outside = sorted(set(application) - agreed)
    if outside:
        raise ContentRefused(
            f"data categories not listed by the agreement: {', '.join(outside)}",
            code="data-category-not-agreed",
        )
    schema = application_schema(matter, materials, agreed)
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(_plain(application)))
    if error is not None:
        where = "/" + "/".join(str(p) for p in error.absolute_path)
        raise ContentRefused(f"{where}: {error.message}", code="content-schema")


def applicant_key(application: Mapping[str, Any] | None) -> str | None:
    """The applicant's identity document number, when the application carries one."""
    if application is None:
        return None
    identity = application.get(APPLICANT_ID[0])
    if not isinstance(identity, Mapping):
        return None
    number = identity.get(APPLICANT_ID[1])
    return number if isinstance(number, str) else None


def _plain(value: Any) -> Any:
    """Frozen event details (mapping proxies, tuples) back to JSON types for validation."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
