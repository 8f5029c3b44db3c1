"""Admission of a partner's sealed survey report: refused with a signed receipt.

A case packet whose survey-report event carries a sealed report (``details.report``
is a compact JWS) is judged inside the relay's receive pipeline (docs/protocol.md §8.5
step 9), next to the case layer's own check (:mod:`relay.cases.admission`), so a
report that cannot be right gets a signed ``rejected`` receipt
``content-refused:<code>`` and never moves the case:

========================== =========================================================
code                       when
========================== =========================================================
``survey-report-invalid``  the seal does not verify against the trust bundle, or the
                           payload is not a survey report
``survey-wrong-signer``    not sealed by the sending node
``survey-wrong-case``      the report's case, surveying or requesting office is not
                           this packet's case, its sender, and us
``survey-wrong-verdict``   ``verdict`` / ``outcome`` differ from the sealed verdict
``survey-files-mismatch``  the attachment names are not exactly ``evidence.jsonl``
                           and the segments and snapshots the sealed manifest lists
========================== =========================================================

The bytes of the media cannot be judged here (their keys travel in the sealed content,
which the check is not shown); the receiving node checks them when it collects the
report (:mod:`relay.http.survey_cases`).

:func:`survey_checked` wraps a core factory so that the content check the case layer
installs is composed with this one (both must accept).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from relay.cases.model import CONTENT_FORMAT
from relay.config import NodeConfig
from relay.core.ports import ContentCheck, OpenedPacket, PeerLink
from relay.node import CoreFactory, CoreHandle, relay_core_factory
from relay.tls import BundleSource
from remote_survey.entries import EVIDENCE_FILE
from remote_survey.errors import SurveyError
from remote_survey.report_model import REPORT_TYP, SurveyReport
from signing.certificates import TrustBundle
from signing.errors import SigningError
from signing.jws import verify_compact

__all__ = [
    "SurveyAdmission",
    "is_sealed_report",
    "judge_report",
    "sealed_report",
    "survey_checked",
]

_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_OUTCOMES = {"pass": "pass", "pass_with_corrections": "pass", "fail": "fail"}


def is_sealed_report(text: str) -> bool:
    """Whether a survey-report's ``report`` is a compact JWS (else a typed-in text)."""
    return _JWS.fullmatch(text) is not None


def sealed_report(body: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    """(sealed report, details) of a survey-report event that carries one; None for any
    other content, and for a survey result typed in by staff (nothing sealed to judge)."""
    if body.get("format") != CONTENT_FORMAT or body.get("event") != "survey-report":
        return None
    details = body.get("details")
    if not isinstance(details, Mapping):
        return None
    token = details.get("report")
    if not isinstance(token, str) or not is_sealed_report(token):
        return None
    return token, details


def judge_report(packet: OpenedPacket, *, me: str, bundle: TrustBundle, at: datetime) -> str | None:
    """The refusal code for a packet's sealed survey report, or None (see the table)."""
    summary = packet.summary
    sealed = sealed_report(packet.body)
    if sealed is None:
        return None
    token, details = sealed
    try:
        verified = verify_compact(token, bundle, at=at, typ=REPORT_TYP)
        report = SurveyReport.from_payload(verified.payload)
    except (SigningError, SurveyError):
        return "survey-report-invalid"
    plan = report.plan
    if verified.signer.node_id != summary.sender:
        return "survey-wrong-signer"
    if (plan.case_id, plan.surveying_office, plan.requesting_office) != (
        summary.case_id,
        summary.sender,
        me,
    ):
        return "survey-wrong-case"
    verdict = report.verdict.value
    if details.get("verdict") != verdict or details.get("outcome") != _OUTCOMES.get(verdict):
        return "survey-wrong-verdict"
    manifest = report.evidence
    expected = [EVIDENCE_FILE, *(s.name for s in manifest.segments)]
    expected += [s.name for s in manifest.snapshots]
    if sorted(a.name for a in summary.attachments) != sorted(expected):
        return "survey-files-mismatch"
    return None


class SurveyAdmission:
    """This node's :class:`~relay.core.ports.ContentCheck` for sealed survey reports."""

    def __init__(self, me: str, bundle: Callable[[], TrustBundle]) -> None:
        self._me = me
        self._bundle = bundle

    def check(
        self, packet: OpenedPacket, *, earlier: Sequence[OpenedPacket], at: datetime
    ) -> str | None:
        if sealed_report(packet.body) is None:  # most packets: no trust bundle read
            return None
        return judge_report(packet, me=self._me, bundle=self._bundle(), at=at)


class _AllOf:
    """Every check must accept; the first refusal is the answer."""

    def __init__(self, checks: Sequence[ContentCheck]) -> None:
        if not checks:
            raise ValueError("an empty AllOf would accept everything")
        self._checks = tuple(checks)

    def check(
        self, packet: OpenedPacket, *, earlier: Sequence[OpenedPacket], at: datetime
    ) -> str | None:
        for c in self._checks:
            code = c.check(packet, earlier=earlier, at=at)
            if code is not None:
                return code
        return None


class _Composing:
    """A relay core whose ``install_content_check`` installs the given check together
    with the survey admission; every other attribute is the wrapped core's."""

    def __init__(self, core: Any, survey: ContentCheck) -> None:
        self._core = core
        self._survey = survey

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)

    def install_content_check(self, check: ContentCheck) -> None:
        self._core.install_content_check(_AllOf([check, self._survey]))


def survey_checked(inner: CoreFactory = relay_core_factory) -> CoreFactory:
    """A core factory like ``inner`` whose content check also judges survey reports:
    ``CaseLayer(inner=survey_checked())``."""

    def factory(
        config: NodeConfig, link: PeerLink, bundle: BundleSource, clock: Callable[[], datetime]
    ) -> CoreHandle:
        handle = inner(config, link, bundle, clock)
        core = _Composing(handle.core, SurveyAdmission(config.node_id, bundle.current))
        return dataclasses.replace(handle, core=core, close=handle.close)

    return factory
