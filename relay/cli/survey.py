"""``tongban survey verify``: check a sealed survey report against its evidence and media.

Exit 0 when the seal, the evidence chain, the manifest and every media file check out;
1 when anything failed (each failure on stderr as ``tongban: error[CODE]: sentence``);
2 for usage errors and unreadable inputs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from relay.cli._common import CliError, fail, read_bytes
from signing.certificates import TrustBundle
from signing.errors import MalformedInput

__all__ = ["register"]

# A rewritten evidence file can fail thousands of entries the same way; list the first
# few of each kind and count the rest.
_MAX_PER_CODE = 20


class _Causes(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _capture() -> Iterator[_Causes]:
    """Collect the precise cause the signing core logs behind its opaque error."""
    logger = logging.getLogger("tongban.signing")
    handler = _Causes()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _parse_at(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise CliError("usage", f"--at {text!r} is not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise CliError("usage", "--at needs a timezone, e.g. 2026-11-28T09:00:00+08:00")
    return at


def _verify(args: argparse.Namespace) -> int:
    # remote_survey sits beside relay; the CLI shell is the one place that wires it in.
    from remote_survey.errors import SurveyError
    from remote_survey.report import verify_report
    from remote_survey.vault import MediaVault, read_media_key

    token = read_bytes(args.report, "report").decode("ascii", errors="replace").strip()
    try:
        bundle = TrustBundle.from_pem(read_bytes(args.trust, "trust bundle"))
    except MalformedInput as exc:
        raise CliError("bad-trust-bundle", f"{args.trust}: {exc}") from None
    media = Path(args.media)
    if not media.is_dir():
        raise CliError("file-not-found", f"media directory {media} does not exist")
    at = _parse_at(args.at)
    vault = None
    if args.media_key is not None:
        try:
            vault = MediaVault(read_media_key(Path(args.media_key)))
        except SurveyError as exc:
            raise CliError("bad-media-key", str(exc)) from None
    with _capture() as causes:
        result = verify_report(token, bundle, media, at, vault)
    if not result.ok:
        shown: dict[str, int] = {}
        for failure in result.failures:
            shown[failure.code] = shown.get(failure.code, 0) + 1
            if shown[failure.code] > _MAX_PER_CODE:
                continue
            message = failure.message
            if failure.code == "signature" and causes.messages:
                message += f" ({'; '.join(causes.messages)})"
            fail(failure.code, message)
        for code, count in shown.items():
            if count > _MAX_PER_CODE:
                fail(code, f"... and {count - _MAX_PER_CODE} more {code} failures")
        sys.stderr.write(f"{args.report}: INVALID ({len(result.failures)} problems)\n")
        return 1
    report, signer = result.report, result.signer
    if report is None or signer is None:  # pragma: no cover - ok implies both
        raise CliError("internal", "verification returned no report", 2)
    plan, evidence = report.plan, report.evidence
    print(f"{args.report}: VALID")
    print(f"case: {plan.case_id}  matter: {plan.matter}  session: {plan.session_id}")
    print(f"surveyed by node {signer.node_id} ({signer.name}) for node {plan.requesting_office}")
    print(f"outcome: {report.outcome.value}  verdict: {report.verdict.value}")
    for answer in report.answers:
        print(
            f"  {answer.item_id}: {answer.answer.value}{'  ' + answer.note if answer.note else ''}"
        )
    print(
        f"evidence: {evidence.length} entries, head {evidence.head}; "
        f"{len(evidence.segments)} segments, {len(evidence.snapshots)} snapshots, "
        f"{len(evidence.challenges)} challenges, {len(evidence.interruptions)} interruptions"
    )
    print(f"geolocation: {evidence.geolocation.describe()}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    survey = subparsers.add_parser("survey", help="remote site surveys")
    commands = survey.add_subparsers(dest="survey_command", metavar="SUBCOMMAND")
    commands.required = True
    verify = commands.add_parser(
        "verify", help="check a survey report's seal, evidence chain and every media file"
    )
    verify.add_argument("report", metavar="REPORT", help="sealed survey report (compact JWS)")
    verify.add_argument("--media", required=True, metavar="DIR", help="evidence and media dir")
    verify.add_argument("--trust", required=True, metavar="BUNDLE", help="trust bundle (PEM)")
    verify.add_argument("--at", help="verification time, ISO 8601 with zone (default now)")
    verify.add_argument(
        "--media-key",
        metavar="KEY",
        help="the surveying node's survey-media.key, for its own folder (media sealed at rest)",
    )
    verify.set_defaults(handler=_verify)
