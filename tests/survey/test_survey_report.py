"""The sealed survey report: signature, chain and every file checked, every failure listed."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from joserfc import jws
from joserfc.errors import BadSignatureError
from joserfc.jwk import OKPKey
from joserfc.registry import HeaderParameter
from survey_support import REQUESTER, SURVEYOR, FinishedSurvey, Pki, make_pki, run_survey

from remote_survey.entries import GeoFix, Snapshot
from remote_survey.errors import MalformedReport
from remote_survey.evidence import EVIDENCE_FILE, EvidenceChain
from remote_survey.report import (
    REPORT_TYP,
    Answer,
    ChecklistAnswer,
    SurveyReport,
    Verdict,
    build_report,
    sign_report,
    verify_report,
)
from remote_survey.session import Event, schedule, transition
from signing.encoding import b64url, b64url_decode, canonical_json
from signing.jws import sign_compact


def _verify(survey: FinishedSurvey, pki: Pki, token: str | None = None) -> set[str]:
    result = verify_report(token or survey.token, pki.bundle, survey.media, survey.verify_at)
    assert result.ok == (not result.failures)
    return {f.code for f in result.failures}


def test_report_verifies(survey: FinishedSurvey, pki: Pki) -> None:
    result = verify_report(survey.token, pki.bundle, survey.media, survey.verify_at)
    assert result.ok, result.failures
    assert result.signer is not None
    assert result.signer.node_id == SURVEYOR
    assert result.report == survey.report
    geo = result.report.evidence.geolocation
    assert geo.describe() == "within 20 m for 83.3% of the session (50 of 60 s live, 12 fixes)"
    assert [c.result for c in result.report.evidence.challenges] == ["confirmed"]
    assert len(result.report.evidence.interruptions) == 1


def _jose_registry() -> jws.JWSRegistry:
    """joserfc's registry taught our ``iat`` header member and x5c-sized headers."""
    registry = jws.JWSRegistry(
        header_registry={"iat": HeaderParameter("signing time", "int")}, algorithms=["EdDSA"]
    )
    registry.max_header_length = 8192
    return registry


# joserfc warns that "EdDSA" is deprecated by RFC 9864 in favour of "Ed25519"; protocol v1
# still writes "EdDSA" (docs/protocol.md section 2).
@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")
def test_independent_joserfc_verifies_the_seal(survey: FinishedSurvey, pki: Pki) -> None:
    leaf_key = pki.seal(SURVEYOR).leaf.public_key()
    assert isinstance(leaf_key, Ed25519PublicKey)
    key = OKPKey.import_key(leaf_key)
    obj = jws.deserialize_compact(
        survey.token, key, algorithms=["EdDSA"], registry=_jose_registry()
    )
    assert obj.protected["typ"] == REPORT_TYP
    assert obj.protected["alg"] == "EdDSA"
    assert obj.payload == survey.report.payload()
    payload = json.loads(obj.payload)
    assert payload["type"] == "tongban-survey-report"
    assert payload["evidence"]["chain"]["head"] == survey.chain.head
    other = OKPKey.generate_key("Ed25519")
    with pytest.raises(BadSignatureError):
        jws.deserialize_compact(
            survey.token, other, algorithms=["EdDSA"], registry=_jose_registry()
        )


def test_payload_round_trips_canonically(survey: FinishedSurvey) -> None:
    payload = survey.report.payload()
    assert SurveyReport.from_payload(payload) == survey.report
    loose = json.dumps(json.loads(payload), indent=1).encode()
    with pytest.raises(MalformedReport, match="canonical"):
        SurveyReport.from_payload(loose)


def test_altered_segment_is_reported(survey: FinishedSurvey, pki: Pki) -> None:
    path = survey.media / "seg-0003.webm"
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))
    assert _verify(survey, pki) == {"media-digest-mismatch"}


def test_every_failure_is_listed_at_once(survey: FinishedSurvey, pki: Pki) -> None:
    (survey.media / "snap-0001.jpg").unlink()
    (survey.media / "seg-0000.webm").write_bytes(b"replaced")
    result = verify_report(survey.token, pki.bundle, survey.media, survey.verify_at)
    assert [(f.code, f.message.split()[0]) for f in result.failures] == [
        ("media-size-mismatch", "seg-0000.webm"),
        ("media-missing", "snap-0001.jpg"),
    ]


def test_reordered_evidence_lines_are_reported(survey: FinishedSurvey, pki: Pki) -> None:
    path = survey.media / EVIDENCE_FILE
    lines = path.read_bytes().splitlines(keepends=True)
    lines[3], lines[4] = lines[4], lines[3]
    path.write_bytes(b"".join(lines))
    assert "chain-broken-link" in _verify(survey, pki)


def test_removed_evidence_line_is_reported(survey: FinishedSurvey, pki: Pki) -> None:
    path = survey.media / EVIDENCE_FILE
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:5] + lines[6:]))
    codes = _verify(survey, pki)
    assert {"chain-broken-link", "chain-bad-sequence", "chain-length-mismatch"} <= codes


def test_rewritten_chain_is_caught_by_the_signed_head(survey: FinishedSurvey, pki: Pki) -> None:
    chain = EvidenceChain(survey.plan.session_id)
    for e in survey.chain.entries:
        body = e.body
        if isinstance(body, GeoFix) and body.distance_mm > 20_000:
            body = replace(body, lat_e7=305_428_000, lon_e7=1_143_162_000, distance_mm=0)
        chain = chain.append(body, e.t_ms)
    (survey.media / EVIDENCE_FILE).write_bytes(chain.to_jsonl())
    codes = _verify(survey, pki)
    assert "chain-head-mismatch" in codes
    assert "manifest-mismatch" in codes  # the geolocation summary no longer matches


def test_missing_evidence_file_is_reported(survey: FinishedSurvey, pki: Pki) -> None:
    (survey.media / EVIDENCE_FILE).unlink()
    assert _verify(survey, pki) == {"evidence-missing"}


def test_tampered_payload_fails_the_signature_but_files_are_still_checked(
    survey: FinishedSurvey, pki: Pki
) -> None:
    head, payload, sig = survey.token.split(".")
    obj = json.loads(b64url_decode(payload))
    obj["verdict"] = "pass"
    obj["checklist"][1]["answer"] = "pass"
    obj["checklist"][1]["note"] = ""
    forged = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    (survey.media / "seg-0001.webm").unlink()
    token = f"{head}.{b64url(forged.encode())}.{sig}"
    assert _verify(survey, pki, token) == {"signature", "media-missing"}


def test_report_sealed_by_another_office_is_refused(
    base: datetime, tmp_path: Path, pki: Pki
) -> None:
    survey = run_survey(base, tmp_path / "media", pki, seal_node=REQUESTER)
    result = verify_report(survey.token, pki.bundle, survey.media, survey.verify_at)
    assert [f.code for f in result.failures] == ["wrong-signer"]


def test_report_under_an_untrusted_root_is_refused(
    survey: FinishedSurvey, base: datetime, tmp_path: Path
) -> None:
    stranger = make_pki(tmp_path / "other-federation", base)
    assert _verify(survey, stranger) == {"signature"}


def test_not_a_jws_is_refused(survey: FinishedSurvey, pki: Pki) -> None:
    result = verify_report("garbage", pki.bundle, survey.media, survey.verify_at)
    assert [f.code for f in result.failures] == ["signature"]
    assert result.report is None


def test_manifest_that_misstates_the_chain_is_reported(survey: FinishedSurvey, pki: Pki) -> None:
    report = survey.report
    boasted = replace(report.evidence.geolocation, within_ms=report.evidence.geolocation.live_ms)
    lie = replace(report, evidence=replace(report.evidence, geolocation=boasted))
    token = sign_report(lie, pki.seal(SURVEYOR), at=survey.verify_at - timedelta(minutes=1))
    result = verify_report(token, pki.bundle, survey.media, survey.verify_at)
    assert [(f.code, f.message) for f in result.failures] == [
        ("manifest-mismatch", "the report's geolocation differ from the evidence chain")
    ]


def test_misstated_geofix_distance_is_reported(survey: FinishedSurvey, pki: Pki) -> None:
    chain = EvidenceChain(survey.plan.session_id)
    for e in survey.chain.entries:
        body = e.body
        if isinstance(body, GeoFix) and body.distance_mm > 20_000:
            body = replace(body, distance_mm=1_000)  # the fix itself is 30 m away
        chain = chain.append(body, e.t_ms)
    (survey.media / EVIDENCE_FILE).write_bytes(chain.to_jsonl())
    report = build_report(
        survey.session,
        chain,
        survey.report.answers,
        Verdict.PASS_WITH_CORRECTIONS,
        radius_mm=20_000,
        at=survey.verify_at - timedelta(minutes=1),
    )
    token = sign_report(report, pki.seal(SURVEYOR), at=survey.verify_at - timedelta(minutes=1))
    codes = [
        f.code for f in verify_report(token, pki.bundle, survey.media, survey.verify_at).failures
    ]
    assert codes == ["geofix-distance", "geofix-distance"]


def _build(survey: FinishedSurvey, answers: object, verdict: Verdict = Verdict.PASS) -> None:
    build_report(
        survey.session,
        survey.chain,
        answers,  # type: ignore[arg-type]
        verdict,
        radius_mm=20_000,
        at=survey.verify_at,
    )


def test_builder_refuses_incomplete_or_inconsistent_answers(survey: FinishedSurvey) -> None:
    ok = ChecklistAnswer("kitchen-layout", Answer.PASS)
    with pytest.raises(MalformedReport, match="every checklist item"):
        _build(survey, (ok,))
    with pytest.raises(MalformedReport, match="every checklist item"):
        _build(survey, (ok, ok))
    failed = ChecklistAnswer("fire-exit", Answer.FAIL, "通道被堵")
    with pytest.raises(MalformedReport, match="pass verdict"):
        _build(survey, (ok, failed), Verdict.PASS)
    _build(survey, (ok, failed), Verdict.FAIL)
    unknown = ChecklistAnswer("kitchen-layout", Answer.PASS, snapshots=("ab" * 32,))
    with pytest.raises(MalformedReport, match="unknown snapshots"):
        _build(survey, (unknown, failed), Verdict.FAIL)
    outside = ChecklistAnswer("kitchen-layout", Answer.PASS, "", (), 0, 1)
    with pytest.raises(MalformedReport, match="outside the session"):
        _build(survey, (outside, failed), Verdict.FAIL)
    with pytest.raises(MalformedReport, match="needs a note"):
        ChecklistAnswer("fire-exit", Answer.FAIL)


def test_no_report_for_an_abandoned_session(survey: FinishedSurvey) -> None:
    plan = survey.plan
    at = plan.window.start + timedelta(minutes=1)
    session, _ = transition(schedule(plan), Event.ABANDON, at)
    with pytest.raises(MalformedReport, match="abandoned"):
        build_report(session, EvidenceChain(plan.session_id), (), Verdict.FAIL, radius_mm=1, at=at)


def test_converted_session_reports_convert_to_onsite(survey: FinishedSurvey) -> None:
    plan = survey.plan
    at = plan.window.start + timedelta(minutes=1)
    session, _ = transition(schedule(plan), Event.START, at)
    session, _ = transition(session, Event.CONVERT, at + timedelta(minutes=2))
    answers = (
        ChecklistAnswer("kitchen-layout", Answer.NOTE, "光线不足, 无法远程判断"),
        ChecklistAnswer("fire-exit", Answer.NOTE, "未查看"),
    )
    chain = EvidenceChain(plan.session_id)
    with pytest.raises(MalformedReport, match="converted"):
        build_report(session, chain, answers, Verdict.FAIL, radius_mm=20_000, at=at)
    report = build_report(
        session,
        chain,
        answers,
        Verdict.CONVERT_TO_ONSITE,
        radius_mm=20_000,
        at=at + timedelta(minutes=3),
    )
    assert report.outcome.value == "converted_to_onsite"
    assert SurveyReport.from_payload(report.payload()) == report


def _resign(survey: FinishedSurvey, pki: Pki, obj: object) -> str:
    payload = canonical_json(obj)
    return sign_compact(payload, pki.seal(SURVEYOR), typ=REPORT_TYP, at=survey.verify_at)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o.pop("verdict"),
        lambda o: o.update(verdict="maybe"),
        lambda o: o.update(extra=1),
        lambda o: o.update(v=2),
        lambda o: o["checklist"].pop(),
        lambda o: o["checklist"][0].update(answer="perhaps"),
        lambda o: o["checklist"][0].update(snapshots="f" * 64),
        lambda o: o["survey"].update(outcome="abandoned"),
        lambda o: o["survey"].update(surveying_office="4201"),
        lambda o: o["survey"]["site"].update(lat_e7=900_000_001),
        lambda o: o["evidence"]["chain"].update(head="XYZ"),
        lambda o: o["evidence"]["geolocation"].update(within_permille=999),
        lambda o: o["evidence"]["segments"][0].update(name="../../etc/passwd"),
        lambda o: o.update(issued_ms=True),
    ],
)
def test_sealed_but_malformed_reports_are_refused(
    survey: FinishedSurvey, pki: Pki, mutate: object
) -> None:
    obj = survey.report.to_json()
    mutate(obj)  # type: ignore[operator]
    result = verify_report(_resign(survey, pki, obj), pki.bundle, survey.media, survey.verify_at)
    assert [f.code for f in result.failures] == ["report-malformed"]
    assert result.report is None


def test_resigned_untouched_report_verifies(survey: FinishedSurvey, pki: Pki) -> None:
    token = _resign(survey, pki, survey.report.to_json())
    assert verify_report(token, pki.bundle, survey.media, survey.verify_at).ok


def test_snapshot_by_an_observer_is_reported(survey: FinishedSurvey, pki: Pki) -> None:
    chain = EvidenceChain(survey.plan.session_id)
    for e in survey.chain.entries:
        body = e.body
        if isinstance(body, Snapshot):
            body = replace(body, by="obs-1")
        chain = chain.append(body, e.t_ms)
    (survey.media / EVIDENCE_FILE).write_bytes(chain.to_jsonl())
    at = survey.verify_at - timedelta(minutes=1)
    report = build_report(
        survey.session,
        chain,
        survey.report.answers,
        Verdict.PASS_WITH_CORRECTIONS,
        radius_mm=20_000,
        at=at,
    )
    token = sign_report(report, pki.seal(SURVEYOR), at=at)
    result = verify_report(token, pki.bundle, survey.media, survey.verify_at)
    assert [f.code for f in result.failures] == ["wrong-participant"]
    assert "by obs-1, not an inspector" in result.failures[0].message
