"""The evidence hash chain: any altered, removed, inserted or reordered entry is found."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from survey_support import FinishedSurvey

from remote_survey.entries import (
    ChallengeShown,
    Gap,
    GeoFix,
    Note,
    Segment,
    Snapshot,
)
from remote_survey.errors import MalformedEvidence
from remote_survey.evidence import (
    GENESIS,
    Entry,
    EvidenceChain,
    parse_evidence,
    verify_chain,
)
from signing.encoding import canonical_json


def _codes(entries: list[Entry] | tuple[Entry, ...], **kw: object) -> set[str]:
    return {p.code for p in verify_chain(entries, **kw).problems}  # type: ignore[arg-type]


def test_untouched_chain_verifies(survey: FinishedSurvey) -> None:
    entries = survey.chain.entries
    result = verify_chain(entries, session_id=survey.plan.session_id, head=survey.chain.head)
    assert result.ok, result.problems
    assert result.length == len(entries) == 24
    assert entries[0].prev == GENESIS


def test_hash_is_sha256_of_canonical_entry_with_prev(survey: FinishedSurvey) -> None:
    """Recompute by hand from the wire form, without the project's Entry class."""
    prev = GENESIS
    for line in survey.chain.to_jsonl().splitlines():
        obj = json.loads(line)
        declared = obj.pop("hash")
        assert obj["prev"] == prev
        body = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(body.encode()).hexdigest() == declared
        prev = declared
    assert prev == survey.chain.head


def test_altered_entry_is_detected(survey: FinishedSurvey) -> None:
    entries = list(survey.chain.entries)
    seg = entries[3]
    assert isinstance(seg.body, Segment)
    entries[3] = replace(seg, body=replace(seg.body, size=seg.body.size + 1))
    assert "hash-mismatch" in _codes(entries)


def test_altered_entry_with_recomputed_hash_breaks_the_next_link(survey: FinishedSurvey) -> None:
    entries = list(survey.chain.entries)
    fix = entries[0]
    assert isinstance(fix.body, GeoFix)
    forged = replace(fix, body=replace(fix.body, distance_mm=0, accuracy_mm=1))
    entries[0] = replace(forged, hash=forged.computed_hash())
    problems = verify_chain(entries).problems
    assert [(p.index, p.code) for p in problems] == [(1, "broken-link")]


def test_rewriting_every_later_hash_changes_the_head(survey: FinishedSurvey) -> None:
    """A forger who re-links the whole tail still cannot match the signed head."""
    chain = EvidenceChain(survey.plan.session_id)
    for i, e in enumerate(survey.chain.entries):
        body = e.body
        if i == 5 and isinstance(body, GeoFix):
            body = replace(body, distance_mm=1_000, accuracy_mm=1_000)
        chain = chain.append(body, e.t_ms)
    assert verify_chain(chain.entries).ok
    codes = _codes(chain.entries, head=survey.chain.head, length=len(survey.chain.entries))
    assert codes == {"head-mismatch"}


@pytest.mark.parametrize("index", [0, 7, 23])
def test_removed_entry_is_detected(survey: FinishedSurvey, index: int) -> None:
    entries = list(survey.chain.entries)
    del entries[index]
    codes = _codes(entries, head=survey.chain.head, length=24)
    assert codes & {"broken-link", "head-mismatch", "length-mismatch"}
    if index < 23:
        assert "broken-link" in codes


def test_truncated_tail_is_detected_only_against_the_pinned_head(
    survey: FinishedSurvey,
) -> None:
    entries = list(survey.chain.entries)[:-2]
    assert verify_chain(entries).ok  # a prefix is a valid chain on its own...
    assert _codes(entries, head=survey.chain.head, length=24) == {
        "head-mismatch",
        "length-mismatch",
    }  # ...but not the one the report pins


def test_inserted_entry_is_detected(survey: FinishedSurvey) -> None:
    entries = list(survey.chain.entries)
    before = entries[10]
    extra = Entry(
        before.session, 11, before.t_ms, Note("插入的说明", "insp-1"), before.hash, GENESIS
    )
    extra = replace(extra, hash=extra.computed_hash())
    entries.insert(11, extra)
    codes = _codes(entries)
    assert "broken-link" in codes
    assert "bad-sequence" in codes


def test_reordered_entries_are_detected(survey: FinishedSurvey) -> None:
    entries = list(survey.chain.entries)
    entries[4], entries[5] = entries[5], entries[4]
    problems = verify_chain(entries).problems
    assert {p.index for p in problems if p.code == "broken-link"} >= {4, 5}


def test_entry_from_another_session_is_detected(survey: FinishedSurvey) -> None:
    entries = list(survey.chain.entries)
    moved = replace(entries[2], session="sv-other")
    entries[2] = replace(moved, hash=moved.computed_hash())
    assert "wrong-session" in _codes(entries, session_id=survey.plan.session_id)


def test_evidence_file_round_trips(survey: FinishedSurvey) -> None:
    data = (survey.media / "evidence.jsonl").read_bytes()
    assert parse_evidence(data) == survey.chain.entries
    assert data == survey.chain.to_jsonl()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b[:-1], "line feed"),
        (lambda b: b.replace(b'{"data"', b'{ "data"', 1), "canonical"),
        (lambda b: b"[1,2]\n" + b, "exactly the members"),
        (lambda b: b.replace(b'"kind":"geofix"', b'"kind":"teleport"', 1), "unknown entry kind"),
        (lambda b: b"{nope\n" + b, "not JSON"),
    ],
)
def test_malformed_evidence_files_are_refused(
    survey: FinishedSurvey, mutate: object, message: str
) -> None:
    data = survey.chain.to_jsonl()
    with pytest.raises(MalformedEvidence, match=message):
        parse_evidence(mutate(data))  # type: ignore[operator]


def test_path_traversal_names_cannot_be_recorded() -> None:
    for name in ("../etc/passwd", "/abs.webm", ".hidden", "a/b.webm", "evidence.jsonl", ""):
        with pytest.raises(MalformedEvidence):
            Segment(name, 1, "0" * 64, 0, 1)


def test_append_refuses_inconsistent_entries() -> None:
    chain = EvidenceChain("sv-1").append(Note("开始", "insp-1"), 1_000)
    with pytest.raises(MalformedEvidence, match="before the previous"):
        chain.append(Note("倒退", "insp-1"), 999)
    with pytest.raises(MalformedEvidence, match="never issued"):
        chain.append(ChallengeShown("ch-9", "site-1"), 2_000)
    snap = Snapshot("a.jpg", 1, "0" * 64, "insp-1")
    with pytest.raises(MalformedEvidence, match="twice"):
        chain.append(snap, 2_000).append(snap, 3_000)
    with pytest.raises(MalformedEvidence, match="ends after"):
        chain.append(Gap(1_000, 5_000), 4_000)


def test_wire_entry_hash_covers_every_member(survey: FinishedSurvey) -> None:
    entry = survey.chain.entries[0]
    obj = entry.to_json()
    assert set(obj) == {"v", "session", "seq", "t_ms", "kind", "data", "prev", "hash"}
    without = {k: v for k, v in obj.items() if k != "hash"}
    assert hashlib.sha256(canonical_json(without)).hexdigest() == entry.hash


def test_empty_chain_head_is_genesis(tmp_path: Path) -> None:
    assert EvidenceChain("sv-1").head == GENESIS
    assert parse_evidence(b"") == ()


def test_chain_cannot_be_built_from_tampered_entries(survey: FinishedSurvey) -> None:
    entries = list(survey.chain.entries)
    assert EvidenceChain(survey.plan.session_id, tuple(entries)) == survey.chain
    entries[1], entries[2] = entries[2], entries[1]
    with pytest.raises(MalformedEvidence, match="not a valid chain"):
        EvidenceChain(survey.plan.session_id, tuple(entries))


def _small_chain(n: int) -> EvidenceChain:
    return EvidenceChain("sv-prop").extend(
        (Note(f"记录 {i}", "insp-1"), 1_000 * (i // 2)) for i in range(n)
    )


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_single_edit_is_detected_against_the_pinned_head(data: st.DataObject) -> None:
    n = data.draw(st.integers(min_value=2, max_value=12), label="length")
    chain = _small_chain(n)
    entries = list(chain.entries)
    i = data.draw(st.integers(min_value=0, max_value=n - 1), label="i")
    j = data.draw(st.integers(min_value=0, max_value=n - 1).filter(lambda x: x != i), label="j")
    edit = data.draw(st.sampled_from(["remove", "swap", "duplicate", "alter", "move"]))
    if edit == "remove":
        del entries[i]
    elif edit == "swap":
        entries[i], entries[j] = entries[j], entries[i]
    elif edit == "duplicate":
        entries.insert(j, entries[i])
    elif edit == "move":
        entries.insert(j, entries.pop(i))
    else:
        entries[i] = replace(entries[i], t_ms=entries[i].t_ms + 1)
    result = verify_chain(entries, session_id="sv-prop", head=chain.head, length=n)
    assert not result.ok, (edit, i, j)
