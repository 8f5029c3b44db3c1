"""The admission check only judges sealed reports: a typed-in survey result (even one
with full stops) travels as before, a sealed one is judged."""

from __future__ import annotations

from datetime import UTC, datetime

from relay.cases.model import CONTENT_FORMAT
from relay.core.model import PacketSummary
from relay.core.ports import OpenedPacket
from relay.http.survey_admission import SurveyAdmission, is_sealed_report, judge_report

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def _packet(report: str) -> OpenedPacket:
    summary = PacketSummary("p-1", "0" * 64, "WC-1", "420106", "320982",
                            "publication-retail-licence", "survey-report", "proxy_receipt", 3,
                            NOW, NOW)  # fmt: skip
    details = {"outcome": "pass", "report": report}
    body = {"format": CONTENT_FORMAT, "event": "survey-report", "details": details}
    return OpenedPacket(summary, body)


def test_a_typed_in_survey_result_is_not_judged_as_a_sealed_report(office_pki) -> None:
    bundle = office_pki.bundle
    text = "经营场所 60㎡. 隔离存放. 防护设施齐全"
    assert not is_sealed_report(text)
    assert judge_report(_packet(text), me="320982", bundle=bundle, at=NOW) is None


def test_something_shaped_like_a_jws_that_does_not_verify_is_refused(office_pki) -> None:
    assert is_sealed_report("eyJh.eyJi.c2ln")
    code = judge_report(_packet("eyJh.eyJi.c2ln"), me="320982", bundle=office_pki.bundle, at=NOW)
    assert code == "survey-report-invalid"


def test_only_a_sealed_report_makes_the_check_read_the_trust_bundle(office_pki) -> None:
    """The check runs on every accepted packet of every batch; the bundle in force is a
    file the node looks at (a stat, a lock): read only for what needs it."""
    reads = []

    def bundle():
        reads.append(1)
        return office_pki.bundle

    check = SurveyAdmission("320982", bundle)
    other = OpenedPacket(_packet("").summary, {"format": CONTENT_FORMAT, "event": "submitted"})
    assert check.check(other, earlier=(), at=NOW) is None
    assert check.check(_packet("经营场所 60㎡. 隔离存放"), earlier=(), at=NOW) is None
    assert reads == []
    assert check.check(_packet("eyJh.eyJi.c2ln"), earlier=(), at=NOW) == "survey-report-invalid"
    assert reads == [1]
