"""Parsing agreement documents from JSON, strictly.

:func:`parse_agreement` is the only way from JSON to an :class:`~agreements.model.Agreement`.
Every refusal is a :class:`~agreements.errors.MalformedAgreement` carrying the JSON
pointer (RFC 6901) of the offending field, e.g. ``/matters/3/roles/receive_for/420106/0``.
Unknown fields are refused (a field a party did not understand must not be signed).
Set-valued arrays (modes, handle, issue, receive_for values, ...) may come in any order
but must not repeat; the model writes them back sorted. Every member is required except
``crypto_profiles`` (absent: any cryptographic profile; present: a non-empty set of
profile names, :class:`signing.profiles.Profile`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from agreements.errors import MalformedAgreement
from agreements.model import (
    FORMAT,
    Agreement,
    Material,
    MaterialCopy,
    MaterialForm,
    MatterClause,
    Party,
    Roles,
    ServiceMode,
    from_epoch,
)
from signing.certificates import is_node_id as _is_node_id
from signing.profiles import Profile

__all__ = [
    "is_node_id",
    "load_json",
    "parse_agreement",
    "parse_agreement_bytes",
    "parse_material",
    "pointer",
]

_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_MATTER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_TOKEN = re.compile(r"[a-z][a-z0-9-]{0,63}")
_MAX_EPOCH = 253402300799  # 9999-12-31T23:59:59Z


def is_node_id(text: object) -> bool:
    """Exactly 6 ASCII digits, not ``000000`` (:func:`signing.certificates.is_node_id`)."""
    return isinstance(text, str) and _is_node_id(text)


def pointer(*parts: str | int) -> str:
    """Build an RFC 6901 pointer from path parts (escaping ``~`` and ``/``)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise MalformedAgreement("", f"duplicate object key {key!r}")
        out[key] = value
    return out


def _no_float(text: str) -> Any:
    raise MalformedAgreement("", f"floating-point number {text} is not allowed")


def load_json(data: bytes) -> Any:
    """Decode UTF-8 JSON strictly: no duplicate keys, no floats, no NaN."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedAgreement("", "not UTF-8") from None
    try:
        return json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_float=_no_float,
            parse_constant=_no_float,
        )
    except json.JSONDecodeError as exc:
        raise MalformedAgreement("", f"not JSON: {exc.msg} at line {exc.lineno}") from None


class _Obj:
    """A JSON object under validation, remembering its pointer and used keys."""

    def __init__(
        self,
        value: Any,
        path: tuple[str | int, ...],
        keys: set[str],
        optional: frozenset[str] = frozenset(),
    ) -> None:
        if not isinstance(value, dict):
            raise MalformedAgreement(pointer(*path), "must be an object")
        for key in value:
            if key not in keys and key not in optional:
                raise MalformedAgreement(pointer(*path, key), "unknown field")
        for key in sorted(keys):
            if key not in value:
                raise MalformedAgreement(pointer(*path, key), "missing field")
        self.value: dict[str, Any] = value
        self.path = path

    def at(self, key: str) -> tuple[Any, tuple[str | int, ...]]:
        return self.value[key], (*self.path, key)

    def has(self, key: str) -> bool:
        return key in self.value


def _str(value: Any, path: tuple[str | int, ...], limit: int = 500) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MalformedAgreement(pointer(*path), "must be a non-empty string")
    if len(value) > limit:
        raise MalformedAgreement(pointer(*path), f"longer than {limit} characters")
    return value


def _int(value: Any, path: tuple[str | int, ...], low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedAgreement(pointer(*path), "must be an integer")
    if not low <= value <= high:
        raise MalformedAgreement(pointer(*path), f"must be between {low} and {high}")
    return value


def _list(
    value: Any, path: tuple[str | int, ...], *, min_len: int = 0
) -> Iterator[tuple[Any, tuple[str | int, ...]]]:
    if not isinstance(value, list):
        raise MalformedAgreement(pointer(*path), "must be an array")
    if len(value) < min_len:
        raise MalformedAgreement(pointer(*path), f"must hold at least {min_len} item(s)")
    for i, item in enumerate(value):
        yield item, (*path, i)


def _party_set(
    value: Any, path: tuple[str | int, ...], allowed: frozenset[str], what: str, *, min_len: int
) -> frozenset[str]:
    seen: set[str] = set()
    for item, p in _list(value, path, min_len=min_len):
        if not isinstance(item, str) or item not in allowed:
            raise MalformedAgreement(pointer(*p), f"must be the id of a {what}")
        if item in seen:
            raise MalformedAgreement(pointer(*p), f"repeats {item}")
        seen.add(item)
    return frozenset(seen)


def _relation(
    value: Any,
    path: tuple[str | int, ...],
    parties: frozenset[str],
    handlers: frozenset[str],
) -> dict[str, frozenset[str]]:
    if not isinstance(value, dict):
        raise MalformedAgreement(pointer(*path), "must be an object")
    out: dict[str, frozenset[str]] = {}
    for key, targets in value.items():
        if key not in parties:
            raise MalformedAgreement(pointer(*path, key), "key must be the id of a party")
        got = _party_set(targets, (*path, key), handlers, "handling party", min_len=1)
        if key in got:
            where = targets.index(key)
            raise MalformedAgreement(pointer(*path, key, where), "a party cannot act for itself")
        out[key] = got
    return out


def _parse_roles(value: Any, path: tuple[str | int, ...], parties: frozenset[str]) -> Roles:
    obj = _Obj(value, path, {"receive_for", "handle", "survey_for", "issue"})
    handle = _party_set(*obj.at("handle"), parties, "party", min_len=1)
    issue = _party_set(*obj.at("issue"), handle, "handling party", min_len=0)
    receive_for = _relation(*obj.at("receive_for"), parties, handle)
    survey_for = _relation(*obj.at("survey_for"), parties, handle)
    return Roles.build(receive_for=receive_for, handle=handle, survey_for=survey_for, issue=issue)


def parse_material(value: Any, path: tuple[str | int, ...]) -> Material:
    obj = _Obj(value, path, {"name_zh", "name_en", "form", "original_or_ecopy"})
    form, fp = obj.at("form")
    copy, cp = obj.at("original_or_ecopy")
    if form not in {f.value for f in MaterialForm}:
        raise MalformedAgreement(
            pointer(*fp), f"must be one of {sorted(f.value for f in MaterialForm)}"
        )
    if copy not in {c.value for c in MaterialCopy}:
        raise MalformedAgreement(
            pointer(*cp), f"must be one of {sorted(c.value for c in MaterialCopy)}"
        )
    return Material(
        name_zh=_str(*obj.at("name_zh")),
        name_en=_str(*obj.at("name_en")),
        form=MaterialForm(form),
        original_or_ecopy=MaterialCopy(copy),
    )


def _parse_clause(value: Any, path: tuple[str | int, ...], parties: frozenset[str]) -> MatterClause:
    obj = _Obj(
        value,
        path,
        {
            "matter",
            "modes",
            "roles",
            "materials",
            "time_limit_working_days",
            "survey_required",
            "survey_checklist",
        },
    )
    matter, mp = obj.at("matter")
    if not isinstance(matter, str) or not _MATTER.fullmatch(matter):
        raise MalformedAgreement(pointer(*mp), "must be a matter code [A-Za-z0-9._-], 1-64")
    modes: set[ServiceMode] = set()
    for item, p in _list(*obj.at("modes"), min_len=1):
        if item not in {m.value for m in ServiceMode}:
            raise MalformedAgreement(
                pointer(*p), f"must be one of {sorted(m.value for m in ServiceMode)}"
            )
        if ServiceMode(item) in modes:
            raise MalformedAgreement(pointer(*p), f"repeats {item}")
        modes.add(ServiceMode(item))
    roles = _parse_roles(*obj.at("roles"), parties)
    if ServiceMode.PROXY_RECEIPT in modes and not roles.receive_for:
        raise MalformedAgreement(
            pointer(*path, "roles", "receive_for"), "proxy_receipt needs at least one receiver"
        )
    if ServiceMode.JOINT in modes and len(roles.handle) < 2:
        raise MalformedAgreement(pointer(*path, "roles", "handle"), "joint needs two handlers")
    materials = tuple(parse_material(v, p) for v, p in _list(*obj.at("materials")))
    limit = _int(*obj.at("time_limit_working_days"), 1, 1000)
    survey_required, sp = obj.at("survey_required")
    if not isinstance(survey_required, bool):
        raise MalformedAgreement(pointer(*sp), "must be true or false")
    checklist = tuple(_str(v, p) for v, p in _list(*obj.at("survey_checklist")))
    if survey_required and not checklist:
        raise MalformedAgreement(
            pointer(*path, "survey_checklist"), "a required survey needs a checklist"
        )
    return MatterClause(
        matter=matter,
        modes=frozenset(modes),
        roles=roles,
        materials=materials,
        time_limit_working_days=limit,
        survey_required=survey_required,
        survey_checklist=checklist,
    )


def _parse_party(value: Any, path: tuple[str | int, ...]) -> Party:
    obj = _Obj(value, path, {"id", "name_zh", "name_en", "province"})
    pid, pp = obj.at("id")
    if not is_node_id(pid):
        raise MalformedAgreement(pointer(*pp), "must be a 6-digit division code")
    return Party(
        id=pid,
        name_zh=_str(*obj.at("name_zh")),
        name_en=_str(*obj.at("name_en")),
        province=_str(*obj.at("province")),
    )


_TOP = {
    "format",
    "id",
    "version",
    "supersedes",
    "title",
    "parties",
    "valid_from",
    "valid_until",
    "matters",
    "data_categories",
    "retention_years",
}
_OPTIONAL_TOP = frozenset({"crypto_profiles"})
_PROFILE_NAMES = sorted(p.value for p in Profile)


def _parse_profiles(value: Any, path: tuple[str | int, ...]) -> frozenset[Profile]:
    """``crypto_profiles``: a non-empty set of known profile names."""
    seen: set[Profile] = set()
    for item, p in _list(value, path, min_len=1):
        if item not in _PROFILE_NAMES:
            raise MalformedAgreement(
                pointer(*p), f"must be a cryptographic profile, one of {_PROFILE_NAMES}"
            )
        if Profile(item) in seen:
            raise MalformedAgreement(pointer(*p), f"repeats {item}")
        seen.add(Profile(item))
    return frozenset(seen)


def parse_agreement(value: Any) -> Agreement:
    """Validate a decoded JSON document and build the agreement (or raise with a pointer)."""
    obj = _Obj(value, (), _TOP, _OPTIONAL_TOP)
    fmt, fp = obj.at("format")
    if fmt != FORMAT:
        raise MalformedAgreement(pointer(*fp), f"must be {FORMAT!r}")
    aid, ap = obj.at("id")
    if not isinstance(aid, str) or not _ID.fullmatch(aid):
        raise MalformedAgreement(pointer(*ap), "must match [a-z0-9][a-z0-9._-]{0,63}")
    version = _int(*obj.at("version"), 1, 2**31)
    supersedes, sp = obj.at("supersedes")
    if supersedes is not None:
        if version == 1:
            raise MalformedAgreement(pointer(*sp), "version 1 supersedes nothing")
        supersedes = _int(supersedes, sp, 1, version - 1)
    title = _Obj(*obj.at("title"), {"zh", "en"})
    parties: list[Party] = []
    for item, p in _list(*obj.at("parties"), min_len=2):
        party = _parse_party(item, p)
        if any(q.id == party.id for q in parties):
            raise MalformedAgreement(pointer(*p, "id"), f"party {party.id} appears twice")
        parties.append(party)
    party_ids = frozenset(p.id for p in parties)
    valid_from = _int(*obj.at("valid_from"), 0, _MAX_EPOCH)
    valid_until = _int(*obj.at("valid_until"), 0, _MAX_EPOCH)
    if valid_until <= valid_from:
        raise MalformedAgreement("/valid_until", "must be after valid_from")
    clauses: dict[str, MatterClause] = {}
    for item, p in _list(*obj.at("matters"), min_len=1):
        clause = _parse_clause(item, p, party_ids)
        if clause.matter in clauses:
            raise MalformedAgreement(pointer(*p, "matter"), f"matter {clause.matter} repeats")
        clauses[clause.matter] = clause
    categories: set[str] = set()
    for item, p in _list(*obj.at("data_categories"), min_len=1):
        if not isinstance(item, str) or not _TOKEN.fullmatch(item) or item in categories:
            raise MalformedAgreement(pointer(*p), "must be a unique lowercase token")
        categories.add(item)
    profiles = _parse_profiles(*obj.at("crypto_profiles")) if obj.has("crypto_profiles") else None
    return Agreement(
        id=aid,
        version=version,
        title_zh=_str(*title.at("zh")),
        title_en=_str(*title.at("en")),
        parties=tuple(parties),
        valid_from=from_epoch(valid_from),
        valid_until=from_epoch(valid_until),
        clauses=clauses,
        data_categories=frozenset(categories),
        retention_years=_int(*obj.at("retention_years"), 1, 100),
        supersedes=supersedes,
        crypto_profiles=profiles,
    )


def parse_agreement_bytes(data: bytes) -> Agreement:
    """Decode and parse in one step."""
    return parse_agreement(load_json(data))
