"""``tongban licence``: issue, verify and revoke/suspend e-licences (offline).

- ``issue``: seal a licence with the node's seal key; write the ``vc+jwt`` token and,
  from the node's ``node.json``, the compact form's verify URL (``--url-out``), its
  QR images (the QR holds the URL: version 12 or less for a typical licence) and the
  A4 and card print views (``--print PREFIX``, :mod:`relay.licence_print`).
- ``verify``: check a licence — a ``vc+jwt``, a compact credential or its verify URL,
  inline or in a file — with a trust bundle, the issuers' node descriptors or a trust
  list (``--issuer``, for the compact form), status list files and optionally an
  agreement; exit 0 valid, 1 invalid (the failed check's code on stderr), 2 usage.
- ``status set`` / ``status show``: maintain a node's signed status list file.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from relay.cli._common import (
    CliError,
    read_bytes,
    seal_signer,
    whole_number,
    within_certificate,
    write_output,
)
from signing.certificates import TrustBundle
from signing.encoding import b64url_decode
from signing.errors import MalformedInput
from signing.keys import Signer
from signing.licence import Entitlement, Licence, StatusEntry, issue_licence, verify_licence
from signing.licence_compact import (
    Issuer,
    IssuerList,
    issue_compact_licence,
    licence_url,
    verify_compact_licence,
)
from signing.licence_report import LicenceReport
from signing.qr import render_url_qr
from signing.status_list import (
    MIN_BITS,
    StatusList,
    StatusListCredential,
    StatusPurpose,
    parse_status_list,
    sign_status_list,
)

__all__ = ["register"]

_FAILURE_SENTENCES = {
    "malformed": "this is not a tongban licence",
    "signature": "the issuing office's seal does not verify: the licence was altered or forged",
    "chain": "the seal certificate is not valid under the trust bundle",
    "not-yet-valid": "the licence is not valid yet",
    "expired": "the licence has expired",
    "revoked": "the licence has been revoked by its issuer",
    "suspended": "the licence is suspended by its issuer",
    "issuer-not-entitled": "the agreement does not entitle the issuing office to issue this type",
    "status-unavailable": "the licence's revocation/suspension status could not be established",
    "unknown-issuer": "no certificate of the issuing office was given: pass its node.json or "
    "the federation's trust list with --issuer",
}


def _time(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC).replace(microsecond=0)
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise CliError("usage", f"--at {text!r} is not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise CliError("usage", f"--at {text!r} needs a time zone, e.g. 2026-03-01T08:00:00Z")
    return at.astimezone(UTC).replace(microsecond=0)


def _signer(node_dir: str) -> Signer:
    return seal_signer(node_dir)


def _subject(signer: Signer, oid: x509.ObjectIdentifier) -> str:
    values = signer.chain[0].subject.get_attributes_for_oid(oid)
    return str(values[0].value) if values else ""


def _write(path: str, data: bytes) -> None:
    write_output(path, data)


def _issue(args: argparse.Namespace) -> int:
    signer = _signer(args.node_dir)
    at = within_certificate(signer, _time(args.at))
    node = _subject(signer, x509.NameOID.COMMON_NAME)
    office = _subject(signer, x509.NameOID.ORGANIZATION_NAME)
    base = args.status_url.rstrip("/")
    try:
        licence = Licence(
            issuer_node=node,
            number=args.number,
            licence_type=args.type,
            holder_id=args.holder_id,
            holder_name=args.holder_name,
            scope=args.scope,
            department_zh=args.department_zh or office,
            department_en=args.department_en or args.department_zh or office,
            issued_at=at,
            valid_from=at,
            valid_until=at + timedelta(days=args.valid_days),
            status=(
                StatusEntry(StatusPurpose.REVOCATION, args.status_index, f"{base}/revocation"),
                StatusEntry(StatusPurpose.SUSPENSION, args.status_index, f"{base}/suspension"),
            ),
        )
        token = issue_licence(licence, signer, at=at)
    except MalformedInput as exc:
        raise CliError("usage", str(exc)) from None
    _write(args.out, token.encode() + b"\n")
    print(f"licence {licence.number} issued by {node} ({len(token)} characters) -> {args.out}")
    if not (args.qr_png or args.qr_svg or args.url_out or args.print_to):
        return 0
    issuer = _own_issuer(Path(args.node_dir))
    try:
        url = licence_url(issuer.public_base, issue_compact_licence(licence, signer, issuer))
    except MalformedInput as exc:
        raise CliError("node-dir", f"{args.node_dir}/node.json: {exc}") from None
    print(f"verify URL ({len(url)} characters): {url}")
    if args.url_out:
        _write(args.url_out, url.encode() + b"\n")
    if args.print_to:
        from relay.licence_print import PrintSize, print_view

        for size in PrintSize:
            page = print_view(licence, url, size=size, lang=args.print_lang)
            _write(f"{args.print_to}-{size.value}.html", page.encode("utf-8"))
        print(f"print views -> {args.print_to}-a4.html, {args.print_to}-card.html")
    if args.qr_png or args.qr_svg:
        qr = render_url_qr(url, scale=args.qr_scale)
        if args.qr_png:
            _write(args.qr_png, qr.png)
        if args.qr_svg:
            _write(args.qr_svg, qr.svg)
        print(
            f"QR version {qr.version}, level {qr.error}, {qr.modules}x{qr.modules} modules, "
            f"{qr.printed_width_mm(0.5):.0f} mm wide at 0.5 mm per module"
        )
    return 0


def _own_issuer(node_dir: Path) -> Issuer:
    """This node as verifiers resolve it: its own ``node.json`` (names, public base)."""
    from signing.descriptor import NodeDescriptor

    data = read_bytes(node_dir / "node.json", "node descriptor")
    try:
        token = json.loads(data.decode("utf-8"))["descriptor"]
        payload = json.loads(b64url_decode(token.split(".")[1]).decode("utf-8"))
        return Issuer.from_descriptor(NodeDescriptor.from_json(payload))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, MalformedInput):
        raise CliError("node-dir", f"{node_dir}/node.json is not a node descriptor") from None


_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def _is_file(arg: str) -> bool:
    try:
        return Path(arg).is_file()
    except OSError:  # e.g. a name longer than the file system allows
        return False


def _read_token(arg: str) -> str:
    """A token, compact credential or verify URL given inline, else a file holding one."""
    text = arg.strip()
    if _JWS.fullmatch(text) or text.lower().startswith(("https://", "http://")):
        return text
    if text.isascii() and text.isdigit() and not _is_file(arg):
        return text  # a bare compact credential (decimal digits)
    return read_bytes(arg, "licence file").decode("ascii", "replace").strip()


def _issuers(paths: list[str], bundle: TrustBundle, at: datetime) -> IssuerList:
    """Issuers from ``node.json`` files or trust lists ``{"descriptors": [<JWS>, …]}``,
    each descriptor verified against the trust bundle."""
    from signing.errors import SigningError

    documents: list[bytes] = []
    for path in paths:
        data = read_bytes(path, "issuer descriptor")
        try:
            obj = json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise CliError("issuer", f"{path} is not JSON") from None
        if isinstance(obj, dict) and isinstance(obj.get("descriptors"), list):
            documents += [json.dumps({"descriptor": d}).encode() for d in obj["descriptors"]]
        else:
            documents.append(data)
    try:
        return IssuerList.from_descriptors(documents, bundle, at=at)
    except SigningError as exc:
        raise CliError("issuer", f"an issuer descriptor does not verify: {exc}") from None


def _status_sources(paths: list[str]) -> dict[str, str]:
    lists: dict[str, str] = {}
    for path in paths:
        token = read_bytes(path, "status list").decode("ascii", "replace").strip()
        try:
            url = parse_status_list(token).url
        except MalformedInput as exc:
            raise CliError(
                "status-list", f"{path} is not a status list credential: {exc}"
            ) from None
        lists[url] = token
    return lists


def _agreement_entitlement(path: str, bundle: TrustBundle) -> Entitlement:
    """The entitlement callback read from a signed-agreement file (agreements package)."""
    from relay.cli._licence_agreement import entitlement_from_agreement

    return entitlement_from_agreement(read_bytes(path, "agreement"), bundle, path)


def _print_report(report: LicenceReport, out: Callable[[str], object]) -> None:
    if report.licence is not None:
        lic = report.licence
        out(f"licence {lic.number} ({lic.licence_type}) for {lic.holder_name} [{lic.holder_id}]")
        out(f"  issued by {lic.issuer_node} {lic.department_zh} / {lic.department_en}")
        out(f"  scope: {lic.scope}")
    for r in report.checks:
        code = f" [{r.code}]" if r.code else ""
        out(f"  {r.check:<12} {r.outcome}{code}  {r.detail}".rstrip())
    if report.valid:
        missing = ", ".join(str(c) for c in report.unchecked)
        out("VALID" + (f" (not checked: {missing})" if missing else ""))
    else:
        out("INVALID")


def _verify(args: argparse.Namespace) -> int:
    token = _read_token(args.licence)
    try:
        bundle = TrustBundle.from_pem(read_bytes(args.trust, "trust bundle"))
    except MalformedInput as exc:
        raise CliError("trust-bundle", f"{args.trust}: {exc}") from None
    lists = _status_sources(args.status_list) if args.status_list else None
    entitled = _agreement_entitlement(args.agreement, bundle) if args.agreement else None
    at = _time(args.at)
    if _JWS.fullmatch(token):
        report = verify_licence(token, bundle, at=at, status_lists=lists, entitled=entitled)
    else:
        issuers = _issuers(args.issuer, bundle, at)
        report = verify_compact_licence(
            token, bundle, issuers, at=at, status_lists=lists, entitled=entitled
        )
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        _print_report(report, print)
    if report.failure is not None:
        code = str(report.failure)
        raise CliError(code, _FAILURE_SENTENCES[code], 1)
    return 0


def _load_list(path: Path) -> StatusListCredential | None:
    if not path.exists():
        return None
    token = read_bytes(path, "status list").decode("ascii", "replace").strip()
    try:
        return parse_status_list(token)
    except MalformedInput as exc:
        raise CliError("status-list", f"{path} is not a status list credential: {exc}") from None


def _status_set(args: argparse.Namespace) -> int:
    signer = _signer(args.node_dir)
    node = _subject(signer, x509.NameOID.COMMON_NAME)
    at = _time(args.at)
    purpose = StatusPurpose(args.purpose)
    current = _load_list(Path(args.list))
    if current is None:
        if not args.url:
            raise CliError("usage", f"{args.list} does not exist; give --url to create it")
        try:
            url, lst = args.url, StatusList.empty(purpose, args.size)
        except MalformedInput as exc:
            raise CliError("usage", f"--size: {exc}") from None
    else:
        if current.issuer_node != node:
            raise CliError("status-list", f"{args.list} belongs to node {current.issuer_node}")
        if args.url and args.url != current.url:
            raise CliError("usage", f"{args.list} is the list at {current.url}, not {args.url}")
        url, lst = current.url, current.status_list
    if lst.purpose is not purpose:
        raise CliError("usage", f"{args.list} is a {lst.purpose} list, not {purpose}")
    try:
        if purpose is StatusPurpose.REVOCATION and not args.value and lst.get(args.index):
            raise CliError("irreversible", "revocation cannot be undone; issue a new licence", 1)
        lst = lst.with_bit(args.index, bool(args.value))
        credential = StatusListCredential(
            issuer_node=node,
            url=url,
            status_list=lst,
            issued_at=at,
            valid_from=at,
            valid_until=at + timedelta(days=args.valid_days),
        )
        token = sign_status_list(credential, signer, at=at)
    except MalformedInput as exc:
        raise CliError("usage", str(exc)) from None
    _write(args.list, token.encode() + b"\n")
    print(
        f"{purpose} list {url}: index {args.index} = {args.value}; valid until "
        f"{credential.valid_until.isoformat()} -> {args.list}"
    )
    return 0


def _status_show(args: argparse.Namespace) -> int:
    credential = _load_list(Path(args.list))
    if credential is None:
        raise CliError("file-not-found", f"status list {args.list} does not exist")
    lst = credential.status_list
    print(f"{credential.purpose} list {credential.url} of node {credential.issuer_node}")
    print(
        f"  published {credential.issued_at.isoformat()}, valid until "
        f"{credential.valid_until.isoformat()}, {lst.size} entries"
    )
    if args.index is not None:
        try:
            print(f"  index {args.index}: {int(lst.get(args.index))}")
        except MalformedInput as exc:
            raise CliError("usage", str(exc)) from None
    else:
        print(f"  set: {', '.join(map(str, lst.set_indices())) or '(none)'}")
    return 0


def _non_negative(text: str) -> int:
    value = whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def _status_index(text: str) -> int:
    """An index inside a status list of the size tongban publishes (else the licence's
    status could never be set: its bit would lie outside the list)."""
    value = _non_negative(text)
    if value >= MIN_BITS:
        raise argparse.ArgumentTypeError(f"{text!r} is outside the lists' 0..{MIN_BITS - 1}")
    return value


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    top = subparsers.add_parser("licence", help="issue and verify e-licences (电子证照)")
    sub = top.add_subparsers(dest="licence_command", metavar="LICENCE_COMMAND")
    sub.required = True

    issue = sub.add_parser("issue", help="seal a licence with this node's seal")
    issue.add_argument("--node-dir", required=True, help="node directory (seal.key, seal.pem)")
    issue.add_argument("--type", required=True, help="licence type: the matter code")
    issue.add_argument("--number", required=True, help="licence number")
    issue.add_argument("--holder-id", required=True, help="holder id, e.g. the USCC")
    issue.add_argument("--holder-name", required=True, help="holder name")
    issue.add_argument("--scope", required=True, help="licensed scope")
    issue.add_argument("--valid-days", required=True, type=_positive, help="validity in days")
    issue.add_argument(
        "--status-index",
        required=True,
        type=_status_index,
        help=f"this licence's index in the status lists (0..{MIN_BITS - 1})",
    )
    issue.add_argument(
        "--status-url",
        required=True,
        help="status list base URL (lists at BASE/revocation, BASE/suspension)",
    )
    issue.add_argument("--department-zh", help="issuing department (default: seal certificate O)")
    issue.add_argument("--department-en", help="issuing department in English")
    issue.add_argument("--at", help="issuance time, ISO 8601 with zone (default: now)")
    issue.add_argument("--out", required=True, help="file to write the token to")
    issue.add_argument("--url-out", help="write the compact form's verify URL (from node.json)")
    issue.add_argument("--qr-png", help="write the QR code of the verify URL as PNG")
    issue.add_argument("--qr-svg", help="write the QR code of the verify URL as SVG")
    issue.add_argument("--qr-scale", type=_positive, default=4, help="pixels per module")
    issue.add_argument(
        "--print",
        dest="print_to",
        metavar="PREFIX",
        help="write the print views PREFIX-a4.html and PREFIX-card.html",
    )
    issue.add_argument("--print-lang", choices=["zh", "en"], default="zh")
    issue.set_defaults(handler=_issue)

    verify = sub.add_parser("verify", help="verify a licence offline")
    verify.add_argument(
        "licence",
        metavar="LICENCE|FILE",
        help="a vc+jwt, a compact credential or its verify URL (https://…/v#…), or a file",
    )
    verify.add_argument("--trust", required=True, help="trust bundle (roots and CRLs, PEM)")
    verify.add_argument(
        "--issuer",
        action="append",
        default=[],
        metavar="FILE",
        help='an issuing office\'s node.json, or a trust list {"descriptors": [...]} '
        "(repeatable; the compact form names its issuer by key id only)",
    )
    verify.add_argument(
        "--status-list",
        action="append",
        default=[],
        metavar="FILE",
        help="a status list credential file (repeatable)",
    )
    verify.add_argument("--agreement", help="agreement file: check the issuer is entitled")
    verify.add_argument("--at", help="verification time, ISO 8601 with zone (default: now)")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.set_defaults(handler=_verify)

    status = sub.add_parser("status", help="maintain this node's status list files")
    status_sub = status.add_subparsers(dest="status_command", metavar="STATUS_COMMAND")
    status_sub.required = True
    setter = status_sub.add_parser("set", help="set or clear one bit and re-sign the list")
    setter.add_argument("--node-dir", required=True, help="node directory (seal.key, seal.pem)")
    setter.add_argument("--list", required=True, help="status list file (created if absent)")
    setter.add_argument("--index", required=True, type=_non_negative, help="licence index")
    setter.add_argument("--purpose", required=True, choices=[p.value for p in StatusPurpose])
    setter.add_argument("--value", required=True, type=whole_number, choices=[0, 1])
    setter.add_argument("--url", help="the list's published URL (required to create it)")
    setter.add_argument("--size", type=_positive, default=131_072, help="entries (new list)")
    setter.add_argument(
        "--valid-days",
        type=_positive,
        default=7,
        help="how long verifiers may rely on this publication",
    )
    setter.add_argument("--at", help="signing time, ISO 8601 with zone (default: now)")
    setter.set_defaults(handler=_status_set)
    show = status_sub.add_parser("show", help="print a status list file")
    show.add_argument("--list", required=True, help="status list file")
    show.add_argument("--index", type=_non_negative, help="print only this entry")
    show.set_defaults(handler=_status_show)
