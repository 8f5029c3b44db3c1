"""Survey reports in a dossier: collect them from a node's folders, check them offline.

Members (docs/dossier.md §4), per survey-report event of the case whose details carry
a sealed report (``details.report``, typ ``tongban-survey-report+jws``):

- ``surveys/<session>/report.jws``: the sealed report exactly as the case event carries
  it; its evidence manifest (``evidence`` of the payload) names every segment and
  snapshot with size and SHA-256;
- ``surveys/<session>/evidence.jsonl``: the evidence chain the manifest is derived from;
- ``surveys/<session>/media/<name>``: with ``--with-media``, every segment and snapshot
  the chain names, as **plaintext** (the surveying node keeps them sealed at rest under
  its ``survey-media.key`` (:mod:`remote_survey.vault`); they are opened on export).

The dossier's signed manifest covers these members like any other; the report's own
seal covers the evidence manifest, which pins the media by digest.

:func:`collect_surveys` is the I/O shell (export); :func:`check_survey` is pure.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from relay.config import NodeConfig
from remote_survey.entries import EVIDENCE_FILE, Segment, Snapshot
from remote_survey.errors import MalformedEvidence, MalformedReport, SurveyError
from remote_survey.evidence import parse_evidence, verify_chain
from remote_survey.manifest import manifest_from_chain
from remote_survey.report_model import REPORT_TYP, SurveyReport
from remote_survey.room import REPORT_FILE
from remote_survey.vault import MAGIC, MEDIA_KEY_FILE, MediaVault, read_media_key
from signing.encoding import b64url_decode
from signing.errors import SigningError

__all__ = [
    "REPORT_TYP",
    "SURVEYS",
    "case_report_tokens",
    "check_survey",
    "collect_surveys",
    "report_of",
]

SURVEYS = "surveys/"
_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")  # survey_admission
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_REPORTS_DIR = "survey-reports"  # relay.http.survey_cases.REPORTS_DIR
_MEDIA_DIR = "survey"  # remote_survey.nodehub: <data dir>/survey/<session>


def report_of(token: str) -> SurveyReport:
    """The report a sealed token carries (payload read, signature not checked here)."""
    try:
        payload = b64url_decode(token.strip().split(".")[1])
    except (IndexError, SigningError) as exc:
        raise MalformedReport("not a compact JWS") from exc
    return SurveyReport.from_payload(payload)


def _reports(case: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(folder name, token) of every sealed report the case's events carry."""
    found: list[tuple[str, str]] = []
    for n, event in enumerate(case.get("events") or []):
        if not isinstance(event, dict) or event.get("event") != "survey-report":
            continue
        details = event.get("details")
        token = details.get("report") if isinstance(details, dict) else None
        if not isinstance(token, str) or not _JWS.fullmatch(token.strip()):
            continue  # a survey result typed in by staff: nothing sealed
        try:
            session = report_of(token).plan.session_id
        except MalformedReport:
            session = ""
        name = session if _SEGMENT.fullmatch(session) else f"event-{n}"
        if any(name == other for other, _ in found):
            name = f"{name}-{n}"
        found.append((name, token))
    return found


def _folder(config: NodeConfig, case_id: str, token: str) -> Path | None:
    """The node's folder of that report: the surveying node's session folder or the
    requesting node's verified copy; the one whose ``report.jws`` is ``token``."""
    try:
        session = report_of(token).plan.session_id
    except MalformedReport:
        session = ""
    candidates = []
    if _SEGMENT.fullmatch(session):
        candidates.append(config.data_dir / _MEDIA_DIR / session)
    copies = config.data_dir / _REPORTS_DIR / case_id
    if copies.is_dir():
        candidates += sorted(p for p in copies.iterdir() if p.is_dir())
    for folder in candidates:
        try:
            if (folder / REPORT_FILE).read_text(encoding="ascii").strip() == token.strip():
                return folder
        except (OSError, UnicodeDecodeError):
            continue
    return None


def _plain(path: Path, vault: MediaVault | None) -> bytes:
    with path.open("rb") as f:
        sealed = f.read(len(MAGIC)) == MAGIC
    if not sealed:
        return path.read_bytes()
    if vault is None:
        raise SurveyError(f"{path} is sealed at rest and the node has no {MEDIA_KEY_FILE}")
    return b"".join(vault.open_chunks(path))


def collect_surveys(
    config: NodeConfig, case_id: str, case: Mapping[str, Any], *, with_media: bool
) -> tuple[dict[str, bytes], list[str]]:
    """The ``surveys/`` members of the case and the paths of the sealed reports in them.

    Raises :class:`SurveyError` when a media file cannot be read or opened.
    """
    members: dict[str, bytes] = {}
    reports = []
    key_file = config.key_dir / MEDIA_KEY_FILE
    vault = MediaVault(read_media_key(key_file)) if with_media and key_file.exists() else None
    for name, token in _reports(case):
        base = f"{SURVEYS}{name}/"
        members[base + REPORT_FILE] = token.strip().encode("ascii")
        reports.append(base + REPORT_FILE)
        folder = _folder(config, case_id, token)
        if folder is None or not (folder / EVIDENCE_FILE).is_file():
            continue  # the verifier reports the evidence missing
        evidence = (folder / EVIDENCE_FILE).read_bytes()
        members[base + EVIDENCE_FILE] = evidence
        if not with_media:
            continue
        try:
            entries = parse_evidence(evidence)
        except MalformedEvidence as exc:
            raise SurveyError(f"{folder / EVIDENCE_FILE}: {exc}") from None
        for entry in entries:
            if isinstance(entry.body, Segment | Snapshot) and _SEGMENT.fullmatch(entry.body.name):
                try:
                    members[f"{base}media/{entry.body.name}"] = _plain(
                        folder / entry.body.name, vault
                    )
                except OSError as exc:
                    raise SurveyError(f"cannot read {folder / entry.body.name}: {exc}") from None
    return members, reports


def check_survey(
    files: Mapping[str, bytes],
    path: str,
    *,
    case_id: str,
    signer_node: str,
    case_tokens: Sequence[str],
) -> tuple[str, str, str]:
    """(code, problem, detail) of the report member ``path`` beyond its signature: bound
    to the case (it names ``case_id``, is sealed by the surveying office and is the
    report the case's events carry), its evidence chain matches the sealed manifest,
    and every media file present has the size and SHA-256 the manifest states."""
    token = files[path].decode("ascii", "replace").strip()
    try:
        report = report_of(token)
    except MalformedReport as exc:
        return "survey-report", f"not a survey report: {exc}", ""
    plan = report.plan
    if plan.case_id != case_id:
        return "survey-case", f"the report is about case {plan.case_id}, not {case_id}", ""
    if token not in case_tokens:
        return "survey-case", "case.json carries no survey-report event with this report", ""
    if signer_node and signer_node != plan.surveying_office:
        return (
            "survey-case",
            f"sealed by node {signer_node}, not by the surveying office {plan.surveying_office}",
            "",
        )
    base = path.removesuffix(REPORT_FILE)
    evidence = files.get(base + EVIDENCE_FILE)
    if evidence is None:
        return "survey-evidence", f"{base}{EVIDENCE_FILE} is missing", ""
    manifest = report.evidence
    try:
        entries = parse_evidence(evidence)
    except MalformedEvidence as exc:
        return "survey-evidence", f"{base}{EVIDENCE_FILE}: {exc}", ""
    chain = verify_chain(
        entries, session_id=plan.session_id, head=manifest.head, length=manifest.length
    )
    if chain.problems:
        return "survey-evidence", "; ".join(p.message for p in chain.problems), ""
    recomputed = manifest_from_chain(
        entries,
        start_ms=report.start_ms,
        end_ms=report.end_ms,
        radius_mm=manifest.geolocation.radius_mm,
        max_fix_age_ms=manifest.geolocation.max_fix_age_ms,
    )
    differ = manifest.differences(recomputed)
    if differ:
        return "survey-evidence", f"the report's {', '.join(differ)} differ from the chain", ""
    named = [(s.name, s.size, s.sha256) for s in manifest.segments] + [
        (s.name, s.size, s.sha256) for s in manifest.snapshots
    ]
    present, bad = 0, []
    for name, size, sha256 in named:
        data = files.get(f"{base}media/{name}")
        if data is None:
            continue
        present += 1
        if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
            bad.append(name)
    if bad:
        return "survey-media", f"media differ from the sealed manifest: {', '.join(bad)}", ""
    detail = (
        f"{plan.session_id}: verdict {report.verdict.value}, evidence chain of "
        f"{manifest.length} entries, {present} of {len(named)} media files included and "
        "matching"
    )
    return "", "", detail


def case_report_tokens(case_json: bytes | None) -> list[str]:
    """The sealed reports the case's events carry (``case.json`` of the dossier)."""
    if case_json is None:
        return []
    try:
        case = json.loads(case_json)
    except ValueError:
        return []
    return [token.strip() for _, token in _reports(case)] if isinstance(case, dict) else []
