"""``tongban dossier``: export a case's evidence as one file, verify it offline.

- ``export CASE --config node.toml [--out FILE] [--with-media]``: the case dossier
  (docs/dossier.md) as this office holds it; signs a checkpoint and catches up timestamp
  tokens first; ``--with-media`` adds the survey segments and snapshots (plaintext).
  Exit 0 written, 1 unknown case.
- ``verify FILE --trust BUNDLE [--tsa-trust PEM] [--at TIME] [--report-html FILE]
  [--report-json FILE]``: verify everything offline as of ``TIME`` (ISO 8601, default
  now) and write the validation report. Exit 0 valid, 1 not valid, 2 unreadable input.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from relay.audit.errors import AuditError
from relay.cli._common import CliError, read_bytes, write_output
from relay.config import ConfigError, NodeConfig, load_config
from relay.db.migrations import SchemaBehind, SchemaTooNew
from relay.db.open import storage_errors
from relay.dossier.export import UnknownCase, export_case
from relay.dossier.layout import DossierError
from relay.dossier.report import render_html, render_json
from relay.dossier.verify import verify_dossier
from relay.http.audit_node import AuditNode
from relay.timestamps.tokens import TimestampError, TsaTrust
from remote_survey.errors import SurveyError
from signing.certificates import TrustBundle
from signing.errors import SigningError

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dossier = subparsers.add_parser(
        "dossier", help="case dossiers: export a case's evidence, verify it offline"
    )
    sub = dossier.add_subparsers(dest="dossier_command", metavar="SUBCOMMAND")
    sub.required = True

    export = sub.add_parser("export", help="write the dossier of a case (one ZIP file)")
    export.add_argument("case", metavar="CASE")
    export.add_argument("--config", required=True, help="the node's node.toml")
    export.add_argument("--out", help="file to write (default CASE.dossier.zip)")
    export.add_argument(
        "--with-media",
        action="store_true",
        help="include the survey media (segments, snapshots; opened from the vault)",
    )
    export.set_defaults(handler=_export)

    verify = sub.add_parser("verify", help="verify a dossier offline and write the report")
    verify.add_argument("file", metavar="FILE")
    verify.add_argument("--trust", required=True, help="federation trust bundle (PEM)")
    verify.add_argument("--tsa-trust", help="the TSA's root certificate(s) (PEM)")
    verify.add_argument("--at", help="verify as of this time (ISO 8601; default now)")
    verify.add_argument("--report-html", help="write the HTML report (zh/en) here")
    verify.add_argument("--report-json", help="write the JSON report here")
    verify.set_defaults(handler=_verify)


def _export_errors() -> tuple[type[Exception], ...]:
    return storage_errors(AuditError, SigningError, TimestampError, SurveyError)


def _export(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise CliError("config", str(exc)) from None
    if config.database.url is None and not (config.data_dir / "relay.sqlite3").exists():
        raise CliError("no-log", f"node {config.node_id} has no database in {config.data_dir}")
    out = Path(args.out or f"{args.case}.dossier.zip")
    data = asyncio.run(_export_async(config, args.case, args.with_media))
    write_output(out, data)
    sys.stdout.write(f"wrote {out} ({len(data)} bytes)\n")
    return 0


async def _export_async(config: NodeConfig, case: str, with_media: bool = False) -> bytes:
    audit = AuditNode(config)
    try:
        return await export_case(
            config,
            case,
            service=audit.service,
            keys=audit.partner_keys,
            stamper=audit.stamper,
            now=datetime.now(UTC),
            with_media=with_media,
        )
    except UnknownCase as exc:
        raise CliError("unknown-case", str(exc), 1) from None
    except SchemaBehind as exc:
        raise CliError("schema-behind", f"no dossier written: {exc}", 1) from None
    except SchemaTooNew as exc:
        raise CliError("schema-too-new", f"no dossier written: {exc}", 1) from None
    except _export_errors() as exc:
        raise CliError("export", f"no dossier written: {exc}", 1) from None
    finally:
        await audit.close()


def _at(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise CliError("usage", f"--at {text!r} is not an ISO 8601 time") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _verify(args: argparse.Namespace) -> int:
    try:
        trust = TrustBundle.from_pem(read_bytes(args.trust, "trust bundle"))
    except SigningError as exc:
        raise CliError("trust-bundle", f"{args.trust}: {exc}") from None
    tsa_trust = None
    if args.tsa_trust:
        try:
            tsa_trust = TsaTrust.from_pem(read_bytes(args.tsa_trust, "TSA trust"))
        except TimestampError as exc:
            raise CliError("tsa-trust", f"{args.tsa_trust}: {exc}") from None
    data = read_bytes(args.file, "dossier")
    try:
        report = verify_dossier(data, trust, at=_at(args.at), tsa_trust=tsa_trust)
    except DossierError as exc:
        raise CliError("not-a-dossier", f"{args.file}: {exc}") from None
    for path, text in ((args.report_html, render_html), (args.report_json, render_json)):
        if path:
            write_output(path, text(report).encode())
    for line in report.lines:
        mark = "ok " if line.ok else "BAD"
        when = "" if line.proven is None else f" proven by {line.proven.isoformat()}"
        status = "" if line.revocation is None else f" [{line.revocation.value}]"
        sys.stdout.write(
            f"{mark} {line.kind}\t{line.subject}\t{line.signer}{when}{status}\t{line.problem}\n"
        )
    if not report.ok:
        failed = sum(not line.ok for line in report.lines)
        sys.stderr.write(f"tongban: error[invalid-dossier]: {failed} lines do not verify\n")
        return 1
    sys.stdout.write(f"valid: {len(report.lines)} lines verified as of {report.at.isoformat()}\n")
    return 0
