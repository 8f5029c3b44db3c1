"""``tongban agreement``: draft, sign, verify and check multilateral agreements.

- ``draft --template FILE --out FILE [--crypto-profiles default,sm]``: fill catalog
  defaults into a template and write an unsigned signed-agreement file (see
  :mod:`agreements.signed`); ``--crypto-profiles`` sets the cryptographic profiles the
  agreement allows (left out: as the template says; a template without them: any);
- ``sign FILE --node-dir DIR``: add (or replace) this node's party signature;
- ``event FILE --node-dir DIR --kind suspend|resume|withdraw|expire``: append a signed
  lifecycle event;
- ``verify FILE --trust BUNDLE [--at ISO]``: state, parties signed / refused / missing;
  exit 0 only when the agreement is active at that instant;
- ``check FILE... --trust BUNDLE --from --to --matter --action [--at] [--mode]
  [--from-profile P --to-profile P]``: the authorization decision; exit 0 permit,
  1 deny (the profiles of the two nodes are checked only when given).

A malformed document exits 2 with the JSON pointer of the offending field.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from agreements.actions import Action
from agreements.authorize import AgreementIndex, Permit, Request, authorize
from agreements.catalog import Catalog, default_catalog
from agreements.draft import draft_from_template
from agreements.errors import AgreementError, MalformedAgreement, SignatureRefused
from agreements.events import MAX_REASON, Event, EventKind
from agreements.lifecycle import State
from agreements.model import ServiceMode
from agreements.signatures import sign_agreement, sign_event, signer_node_id
from agreements.signed import Evaluation, SignedAgreement
from relay.cli._common import (
    CliError,
    read_bytes,
    seal_signer,
    within_certificate,
    write_output,
)
from signing.certificates import TrustBundle
from signing.errors import SigningError
from signing.keys import Signer
from signing.profiles import Profile, certificate_profile

__all__ = ["register"]


def _at(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise CliError("usage", f"--at {text!r} is not an ISO 8601 date-time") from None
    if when.tzinfo is None:
        raise CliError("usage", f"--at {text!r} needs a UTC offset (e.g. +08:00 or Z)")
    return when


def _malformed(path: str, exc: MalformedAgreement) -> CliError:
    return CliError("malformed-agreement", f"{path}: {exc.pointer or '/'}: {exc.reason}", 2)


def _load(path: str) -> SignedAgreement:
    try:
        return SignedAgreement.from_bytes(read_bytes(path, "agreement file"))
    except MalformedAgreement as exc:
        raise _malformed(path, exc) from None


def _bundle(path: str) -> TrustBundle:
    try:
        return TrustBundle.from_pem(read_bytes(path, "trust bundle"))
    except SigningError as exc:
        raise CliError("trust-bundle", f"{path}: {exc}", 2) from None


def _signer(node_dir: str) -> Signer:
    return seal_signer(node_dir)


def _write(path: str, signed: SignedAgreement) -> None:
    write_output(path, signed.to_bytes())  # whole or not at all: it may be signed in place


def _draft(args: argparse.Namespace) -> int:
    catalog = default_catalog()
    if args.catalog:
        try:
            catalog = Catalog.from_bytes(read_bytes(args.catalog, "catalog"))
        except (MalformedAgreement, ValueError) as exc:
            raise CliError("catalog", f"{args.catalog}: {exc}", 2) from None
    raw = read_bytes(args.template, "template")
    try:
        template = json.loads(raw)
        if args.crypto_profiles is not None and isinstance(template, dict):
            template["crypto_profiles"] = [p.strip() for p in args.crypto_profiles.split(",")]
        agreement = draft_from_template(template, catalog)
    except ValueError as exc:
        raise CliError("malformed-agreement", f"{args.template}: /: not JSON ({exc})", 2) from None
    except MalformedAgreement as exc:
        raise _malformed(args.template, exc) from None
    if Path(args.out).exists() and not args.force:
        raise CliError("file-exists", f"{args.out} exists (use --force to overwrite)")
    _write(args.out, SignedAgreement(agreement))
    print(
        f"drafted {agreement.id} v{agreement.version}: {len(agreement.parties)} parties, "
        f"{len(agreement.clauses)} matters -> {args.out}"
    )
    return 0


def _sign(args: argparse.Namespace) -> int:
    signed = _load(args.file)
    signer = _signer(args.node_dir)
    try:
        sig = sign_agreement(signed.agreement, signer, at=within_certificate(signer, _at(args.at)))
    except SignatureRefused as exc:
        raise CliError("not-a-party", str(exc), 1) from None
    signed = signed.with_signature(sig)
    _write(args.file, signed)
    profile = certificate_profile(signer.leaf)
    if not signed.agreement.allows_profile(profile):
        allowed = ", ".join(sorted(signed.agreement.crypto_profiles or ()))
        print(
            f"warning: the agreement allows the cryptographic profiles [{allowed}] and the "
            f"seal of {sig.party} is in the {profile} profile: {sig.party} can neither send "
            "nor receive packets under it",
            file=sys.stderr,
        )
    have = {s.party for s in signed.signatures}
    print(
        f"{sig.party} signed {signed.agreement.id} v{signed.agreement.version}; "
        f"{len(have)} of {len(signed.agreement.parties)} parties have signature entries"
    )
    return 0


def _event(args: argparse.Namespace) -> int:
    signed = _load(args.file)
    signer = _signer(args.node_dir)
    at = within_certificate(signer, _at(args.at))
    party = signer_node_id(signer)
    if party not in signed.agreement.party_ids:
        raise CliError("not-a-party", f"node {party} is not a party of {signed.agreement.id}", 1)
    if len(args.reason) > MAX_REASON:
        raise CliError("usage", f"--reason is longer than {MAX_REASON} characters")
    event = Event.for_agreement(
        signed.agreement, EventKind(args.kind), party=party, at=at, reason=args.reason
    )
    try:
        token = sign_event(event, signer, at=at)
    except AgreementError as exc:
        raise CliError("event", str(exc), 1) from None
    recorded = signed.with_event(token)
    refused = _refused_event(signed, recorded, Path(args.node_dir))
    if refused is not None:  # what every verifier would refuse is not written
        raise CliError("event", refused, 1)
    _write(args.file, recorded)
    print(f"{party} recorded {args.kind} of {signed.agreement.id} at {at.isoformat()}")
    return 0


def _refused_event(
    original: SignedAgreement, recorded: SignedAgreement, node_dir: Path
) -> str | None:
    """Why recording the event would have an event refused that the file's verifiers
    accept now (the new one: e.g. ``resume`` of an agreement not suspended; or one
    already there, which a back-dated event would come before), judged with every event
    in effect under the node folder's root; None when it would not (or no root is there
    to judge with)."""
    try:
        roots = TrustBundle.from_pem((node_dir / "root.pem").read_bytes())
    except (OSError, SigningError):
        return None
    every = datetime(9000, 1, 1, tzinfo=UTC)  # past every event's time: all in effect
    before = {index for index, _ in original.evaluate(roots, at=every).refused_events}
    after = recorded.evaluate(roots, at=every).refused_events
    return next((why for index, why in after if index not in before), None)


def _report(path: str, ev: Evaluation, at: datetime) -> State:
    ag = ev.status.agreement
    state = ev.lifecycle.state_at(at)
    print(f"agreement: {ag.id} v{ag.version}  {ag.title_zh} / {ag.title_en}")
    print(f"window: {ag.valid_from.isoformat()} .. {ag.valid_until.isoformat()}")
    note = " (validity window not yet begun)" if at < ag.valid_from else ""
    print(f"state at {at.isoformat()}: {state.value}{note}")
    allowed = ", ".join(sorted(ag.crypto_profiles)) if ag.crypto_profiles else "any"
    print(f"cryptographic profiles: {allowed}")
    for p in ag.parties:
        if p.id in ev.status.signed:
            line = f"signed {ev.status.signed[p.id].isoformat()}"
        elif p.id in ev.status.refused:
            line = f"REFUSED: {ev.status.refused[p.id]}"
        else:
            line = "missing"
        print(f"  {p.id} {p.name_zh}: {line}")
    for party, why in sorted(ev.status.refused.items()):
        if party not in ag.party_ids:
            print(f"  {party} (not a party): REFUSED: {why}")
    snap = ev.lifecycle.status_at(at)
    if snap is not None and snap.withdrawn:
        print(f"withdrawn: {', '.join(sorted(snap.withdrawn))}")
    if snap is not None and snap.suspended_by:
        print(f"suspended by: {', '.join(sorted(snap.suspended_by))}")
    for index, why in ev.refused_events:
        print(f"  event {index}: REFUSED: {why}")
    missing = sorted(ev.status.missing)
    print(
        f"signed {len(ev.status.signed)} of {len(ag.parties)}; missing: {', '.join(missing) or '-'}"
    )
    return state


def _verify(args: argparse.Namespace) -> int:
    signed = _load(args.file)
    at = _at(args.at)
    ev = signed.evaluate(_bundle(args.trust), at=at)
    state = _report(args.file, ev, at)
    return 0 if state is State.ACTIVE and at >= signed.agreement.valid_from else 1


def _check(args: argparse.Namespace) -> int:
    at = _at(args.at)
    bundle = _bundle(args.trust)
    lifecycles = [_load(f).evaluate(bundle, at=at).lifecycle for f in args.files]
    mode = None if args.mode is None else ServiceMode(args.mode)
    request = Request(
        args.sender,
        args.recipient,
        args.matter,
        Action(args.action),
        mode,
        None if args.from_profile is None else Profile(args.from_profile),
        None if args.to_profile is None else Profile(args.to_profile),
    )
    decision = authorize(AgreementIndex(lifecycles), request, at)
    if isinstance(decision, Permit):
        c = decision.clause
        print(f"permit: {c.agreement_id} v{c.version} matter {c.matter} as {c.role.value}")
        return 0
    where = f" ({decision.agreement[0]} v{decision.agreement[1]})" if decision.agreement else ""
    print(f"deny: {decision.reason.value}{where}")
    return 1


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "agreement", help="draft, sign, verify and check multilateral agreements"
    )
    sub = parser.add_subparsers(dest="agreement_command", metavar="SUBCOMMAND")
    sub.required = True

    p = sub.add_parser("draft", help="draft an unsigned agreement file from a template")
    p.add_argument("--template", required=True, help="template JSON (tongban-agreement/1)")
    p.add_argument("--out", required=True, help="signed-agreement file to write")
    p.add_argument("--catalog", help="matter catalog JSON (default: the bundled catalog)")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    p.add_argument(
        "--crypto-profiles",
        metavar="LIST",
        help="cryptographic profiles the agreement allows, comma-separated "
        f"({', '.join(p.value for p in Profile)}; default: as the template says, else any)",
    )
    p.set_defaults(handler=_draft)

    p = sub.add_parser("sign", help="add this node's party signature")
    p.add_argument("file")
    p.add_argument("--node-dir", required=True, help="node directory with seal.key/seal.pem")
    p.add_argument("--at", help="signing time, ISO 8601 with offset (default: now)")
    p.set_defaults(handler=_sign)

    p = sub.add_parser("event", help="append a signed lifecycle event")
    p.add_argument("file")
    p.add_argument("--node-dir", required=True)
    p.add_argument(
        "--kind",
        required=True,
        choices=[
            k.value
            for k in (EventKind.SUSPEND, EventKind.RESUME, EventKind.WITHDRAW, EventKind.EXPIRE)
        ],
    )
    p.add_argument("--at", help="effective instant, ISO 8601 with offset (default: now)")
    p.add_argument("--reason", default="")
    p.set_defaults(handler=_event)

    p = sub.add_parser("verify", help="verify signatures; exit 0 only when active")
    p.add_argument("file")
    p.add_argument("--trust", required=True, help="trust bundle (roots and CRLs, PEM)")
    p.add_argument("--at", help="instant to evaluate, ISO 8601 with offset (default: now)")
    p.set_defaults(handler=_verify)

    p = sub.add_parser("check", help="authorization decision; exit 0 permit, 1 deny")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--trust", required=True, help="trust bundle (roots and CRLs, PEM)")
    p.add_argument("--from", dest="sender", required=True, metavar="CODE")
    p.add_argument("--to", dest="recipient", required=True, metavar="CODE")
    p.add_argument("--matter", required=True, metavar="CODE")
    p.add_argument("--action", required=True, choices=[a.value for a in Action])
    p.add_argument("--mode", choices=[m.value for m in ServiceMode])
    p.add_argument("--at", help="instant of the request, ISO 8601 with offset (default: now)")
    profiles = [p.value for p in Profile]
    p.add_argument("--from-profile", choices=profiles, help="cryptographic profile of --from")
    p.add_argument("--to-profile", choices=profiles, help="cryptographic profile of --to")
    p.set_defaults(handler=_check)
