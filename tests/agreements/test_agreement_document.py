"""Agreement documents: the bundled template drafts, canonical bytes are stable, and a
malformed document is refused with the JSON pointer of the offending field."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import pytest

from agreements.catalog import default_catalog
from agreements.document import load_json, parse_agreement
from agreements.draft import draft_from_template
from agreements.errors import MalformedAgreement
from agreements.model import ServiceMode


def template() -> dict[str, Any]:
    data = resources.files("agreements.data").joinpath("template.json").read_bytes()
    return json.loads(data)


def document() -> dict[str, Any]:
    return draft_from_template(template(), default_catalog()).document()


def test_template_drafts_with_catalog_defaults() -> None:
    ag = draft_from_template(template(), default_catalog())
    assert len(ag.parties) == 4
    food = ag.clauses["food-business-licence"]
    assert food.time_limit_working_days == 10  # from the catalog
    assert food.survey_required
    assert food.survey_checklist
    assert ag.clauses["pesticide-retail-licence"].time_limit_working_days == 15  # overridden
    assert ag.clauses["pesticide-retail-licence"].modes == {ServiceMode.PROXY_RECEIPT}


def test_document_round_trips_to_the_same_bytes() -> None:
    ag = parse_agreement(document())
    again = parse_agreement(json.loads(json.dumps(ag.document())))
    assert again.document_bytes() == ag.document_bytes()
    assert again == ag


def test_set_order_in_the_input_does_not_change_the_signed_bytes() -> None:
    doc = document()
    shuffled = copy.deepcopy(doc)
    shuffled["parties"].reverse()
    shuffled["matters"].reverse()
    for m in shuffled["matters"]:
        m["roles"]["handle"].reverse()
    assert parse_agreement(shuffled).document_bytes() == parse_agreement(doc).document_bytes()


def test_changing_any_value_changes_the_signed_bytes() -> None:
    doc = document()
    other = copy.deepcopy(doc)
    other["matters"][0]["time_limit_working_days"] += 1
    assert parse_agreement(other).document_bytes() != parse_agreement(doc).document_bytes()


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    parts = path.strip("/").split("/")
    target: Any = doc
    for p in parts[:-1]:
        target = target[int(p)] if isinstance(target, list) else target[p]
    last: Any = int(parts[-1]) if isinstance(target, list) else parts[-1]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "pointer"),
    [
        ("/format", "tongban-agreement/2", "/format"),
        ("/id", "Has Spaces", "/id"),
        ("/version", 0, "/version"),
        ("/version", True, "/version"),
        ("/supersedes", 1, "/supersedes"),
        ("/title/zh", "", "/title/zh"),
        ("/title/fr", "titre", "/title/fr"),
        ("/parties/1/id", "000000", "/parties/1/id"),
        ("/parties/2/id", "42010", "/parties/2/id"),
        ("/parties/3/id", "320982", "/parties/3/id"),  # duplicate party (sorted: 420981 -> 320982)
        ("/parties/0/province", _DELETE, "/parties/0/province"),
        ("/valid_until", 0, "/valid_until"),
        ("/matters/0/modes/0", "by-fax", "/matters/0/modes/0"),
        ("/matters/0/modes", [], "/matters/0/modes"),
        ("/matters/1/roles/handle/0", "999999", "/matters/1/roles/handle/0"),
        (
            "/matters/0/roles/receive_for/420106",
            ["420106"],
            "/matters/0/roles/receive_for/420106/0",
        ),
        ("/matters/0/roles/receive_for/999999", ["320982"], "/matters/0/roles/receive_for/999999"),
        ("/matters/0/roles/issue/0", "420981", "/matters/0/roles/issue/0"),
        ("/matters/0/materials/1/form", "carrier-pigeon", "/matters/0/materials/1/form"),
        (
            "/matters/0/materials/0/original_or_ecopy",
            "copy",
            "/matters/0/materials/0/original_or_ecopy",
        ),
        ("/matters/2/time_limit_working_days", 0, "/matters/2/time_limit_working_days"),
        ("/matters/0/survey_required", "yes", "/matters/0/survey_required"),
        ("/matters/0/survey_checklist", [], "/matters/0/survey_checklist"),
        ("/matters/0/extra", 1, "/matters/0/extra"),
        ("/data_categories/0", "Not A Token", "/data_categories/0"),
        ("/retention_years", 0, "/retention_years"),
        ("/surprise", {}, "/surprise"),
    ],
)
def test_malformed_field_is_refused_with_its_pointer(path: str, value: Any, pointer: str) -> None:
    doc = document()
    _set(doc, path, value)
    with pytest.raises(MalformedAgreement) as err:
        parse_agreement(doc)
    assert err.value.pointer == pointer


def test_pointer_escapes_slash_and_tilde_in_keys() -> None:
    doc = document()
    doc["matters"][0]["roles"]["receive_for"]["a/b~c"] = ["320982"]
    with pytest.raises(MalformedAgreement) as err:
        parse_agreement(doc)
    assert err.value.pointer == "/matters/0/roles/receive_for/a~1b~0c"


def test_proxy_receipt_without_receivers_is_refused() -> None:
    doc = document()
    doc["matters"][0]["roles"]["receive_for"] = {}
    with pytest.raises(MalformedAgreement) as err:
        parse_agreement(doc)
    assert err.value.pointer == "/matters/0/roles/receive_for"


@pytest.mark.parametrize("raw", [b'{"a": 1, "a": 2}', b'{"a": 1.5}', b'{"a": NaN}', b"\xff", b"{"])
def test_strict_json_refuses_duplicates_floats_and_garbage(raw: bytes) -> None:
    with pytest.raises(MalformedAgreement):
        load_json(raw)


def test_template_with_unknown_matter_must_spell_out_the_standard() -> None:
    t = template()
    t["matters"][0]["matter"] = "not-in-catalog"
    with pytest.raises(MalformedAgreement) as err:
        draft_from_template(t, default_catalog())
    assert err.value.pointer == "/matters/0/materials"


def test_template_times_need_an_offset() -> None:
    t = template()
    t["valid_from"] = "2026-01-01T00:00:00"
    with pytest.raises(MalformedAgreement) as err:
        draft_from_template(t, default_catalog())
    assert err.value.pointer == "/valid_from"
