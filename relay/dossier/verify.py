"""Verify a dossier offline with the federation trust bundle and the TSA's trust (pure).

:func:`verify_dossier` returns a :class:`Report`: one :class:`Line` per signature (the
manifest, every packet, receipt and licence, every agreement party signature, every
timestamp token) and one per member, proof or timestamp that fails. The dossier is
valid when every line is. Nothing here reads a clock: ``at`` is the instant the report
speaks for (a signature or token dated after it fails).

A sealed survey report (``surveys/<session>/report.jws``) gets one line: its signature
as below, then (:mod:`relay.dossier.surveys`) that it names this case, is sealed by its
surveying office and is the report ``case.json`` carries, that its evidence chain
matches the sealed manifest, and that every media file present has the manifest's
size and SHA-256.

Per signature (a compact JWS made by ``signing.jws.sign_compact``):

1. *claimed time* = its ``iat``; the chain in ``x5c`` is path-validated against the
   trust roots **at the claimed time** (expiry later does not matter) and the
   signature verified;
2. *proven time*: when its proof (``proofs/<member>.json``) holds — the leaf names the
   member's digest, the inclusion proof verifies under the checkpoint, the checkpoint
   is the node's signed note in ``checkpoints/`` and a timestamp token in
   ``timestamps/`` verifies over that exact note — the signature existed no later than
   the token's ``genTime``; a token older than the claimed time fails the line;
3. *revocation at that time*: every CRL of the issuer (the dossier's frozen ones and
   those of the trust bundle, signature checked) is read; at least one must be in force
   at the claimed time or issued after it. A revocation dated at or before the claimed
   time → ``revoked``; after the proven time → ``good`` (revoked later);
   in between, or after the claimed time with nothing proving the time → ``indeterminate``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from relay.audit.bundle import verify_bundle
from relay.audit.checkpoint import Checkpoint, SignedNote
from relay.audit.errors import AuditError
from relay.dossier.layout import MANIFEST_PATH, MANIFEST_TYP, DossierError, unpack
from relay.dossier.surveys import REPORT_TYP, SURVEYS, case_report_tokens, check_survey
from relay.timestamps.tokens import Stamp, TimestampError, TsaTrust, check_response
from remote_survey.room import REPORT_FILE
from signing import pathcache
from signing._claims import from_numeric
from signing.certificates import TrustBundle
from signing.encoding import b64url_decode, canonical_json
from signing.errors import MalformedInput, SigningError
from signing.jws import verify_compact

__all__ = ["DossierError", "Line", "Report", "Revocation", "verify_dossier"]

_TYPS = {
    "packets/": "tongban-packet+jws",
    "receipts/": "tongban-receipt+jws",
    "licences/": "vc+jwt",
}
_AGREEMENT_TYP = "tongban-agreement+jws"
_SKEW = timedelta(minutes=5)
_TIMESTAMP_PATH = re.compile(r"timestamps/(0|[1-9][0-9]{0,18})\.tsr")


class Revocation(StrEnum):
    GOOD = "good"
    REVOKED = "revoked"
    INDETERMINATE = "indeterminate"
    UNKNOWN = "unknown"  # no revocation data for the time


@dataclass(frozen=True)
class Line:
    """One line of the validation report."""

    kind: str  # manifest, packet, receipt, licence, agreement, survey, timestamp, member
    subject: str  # the member path (and party) it is about
    ok: bool
    signer: str = ""  # node id and name, or the TSA's name
    claimed: datetime | None = None
    proven: datetime | None = None
    proven_by: str = ""  # which timestamp over which checkpoint
    chain: str = ""  # leaf subject → issuer
    revocation: Revocation | None = None
    revocation_detail: str = ""
    revoked_at: datetime | None = None
    code: str = ""  # stable: member-missing, member-changed, signature, proof, ...
    problem: str = ""
    detail: str = ""  # what else was checked (a survey report's evidence and media)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "ok": self.ok,
            "signer": self.signer,
            "claimed": None if self.claimed is None else self.claimed.isoformat(),
            "proven": None if self.proven is None else self.proven.isoformat(),
            "proven_by": self.proven_by,
            "chain": self.chain,
            "revocation": None if self.revocation is None else self.revocation.value,
            "revocation_detail": self.revocation_detail,
            "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat(),
            "code": self.code,
            "problem": self.problem,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Report:
    case: str
    node: str
    at: datetime
    lines: tuple[Line, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return bool(self.lines) and all(line.ok for line in self.lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "tongban-dossier-report/1",
            "case": self.case,
            "node": self.node,
            "at": self.at.isoformat(),
            "valid": self.ok,
            "lines": [line.to_json() for line in self.lines],
        }


def _header(token: str) -> Mapping[str, Any]:
    try:
        header = json.loads(b64url_decode(token.split(".", 1)[0]))
    except (ValueError, SigningError) as exc:
        raise SigningError("not a compact JWS") from exc
    if not isinstance(header, dict):
        raise SigningError("the JWS header is not an object")
    return header


def _claimed(header: Mapping[str, Any]) -> datetime:
    try:
        return from_numeric(header.get("iat"), "iat")
    except MalformedInput:
        raise SigningError("iat missing or out of range") from None


class _Context:
    def __init__(
        self,
        files: Mapping[str, bytes],
        trust: TrustBundle,
        tsa_trust: TsaTrust | None,
        at: datetime,
    ) -> None:
        self.files = files
        self.trust = trust
        self.roots = TrustBundle(trust.roots)
        self.at = at
        self.tsa_trust = tsa_trust
        crls = list(trust.crls)
        for path, data in files.items():
            if path.startswith("validation/") and path.endswith(".der"):
                try:
                    crls.append(x509.load_der_x509_crl(data))
                except ValueError:
                    continue
        self.crls = crls
        self.stamps: dict[int, Stamp | str] = {}
        for path, data in files.items():
            match = _TIMESTAMP_PATH.fullmatch(path)
            if match is not None:
                size = int(match.group(1))
                note = files.get(f"checkpoints/{size}.note")
                if note is None:
                    self.stamps[size] = f"checkpoints/{size}.note is missing"
                elif tsa_trust is None:
                    self.stamps[size] = "no TSA trust given (--tsa-trust)"
                else:
                    try:
                        self.stamps[size] = check_response(data, note, tsa_trust)
                    except TimestampError as exc:
                        self.stamps[size] = str(exc)

    def crls_in_force(self, moment: datetime) -> tuple[x509.CertificateRevocationList, ...]:
        return tuple(
            c
            for c in self.crls
            if c.last_update_utc <= moment
            and (c.next_update_utc is None or moment <= c.next_update_utc)
        )

    def issuer_of(self, chain: Sequence[x509.Certificate]) -> x509.Certificate | None:
        leaf = chain[0]
        for cert in (*chain[1:], *self.trust.roots):
            if cert.subject == leaf.issuer:
                return cert
        return None

    def path_revocation(
        self, chain: Sequence[x509.Certificate], claimed: datetime, proven: datetime | None
    ) -> tuple[Revocation, str, datetime | None]:
        """The revocation status of the signer's path: the leaf's, unless a CA
        certificate above it was revoked, or its status cannot be told (a CA revoked
        before the signature makes every CRL and certificate it signed worthless)."""
        leaf_status: tuple[Revocation, str, datetime | None] | None = None
        for i, cert in enumerate(chain):
            issuer = self.issuer_of(chain[i:])
            if issuer is None:
                if i == 0:
                    return Revocation.UNKNOWN, "the issuer is not in the trust bundle", None
                break  # a CA the trust bundle's roots issued no CRL about: its root is next
            status = self.revocation(cert, issuer, claimed, proven)
            if i == 0:
                leaf_status = status
            elif status[0] is not Revocation.GOOD:
                who = cert.subject.rfc4514_string()
                return status[0], f"CA certificate {who}: {status[1]}", status[2]
            if any(cert.subject == root.subject for root in self.trust.roots):
                break
        assert leaf_status is not None
        return leaf_status

    def revocation(
        self,
        leaf: x509.Certificate,
        issuer: x509.Certificate,
        claimed: datetime,
        proven: datetime | None,
    ) -> tuple[Revocation, str, datetime | None]:
        crls = []
        for crl in self.crls:
            der = crl.public_bytes(Encoding.DER)
            if crl.issuer == issuer.subject and pathcache.crl_signed_by(
                crl, der, issuer
            ):  # SM2 too
                crls.append(crl)
        current = [c for c in crls if c.next_update_utc is None or claimed <= c.next_update_utc]
        if not current:
            return Revocation.UNKNOWN, "no CRL of the issuer in force at the signing time", None
        dates = [
            entry.revocation_date_utc
            for c in crls
            if (entry := c.get_revoked_certificate_by_serial_number(leaf.serial_number))
        ]
        if not dates:
            newest = max(current, key=lambda c: c.last_update_utc)
            return (
                Revocation.GOOD,
                f"not revoked (CRL of {newest.last_update_utc.isoformat()})",
                None,
            )
        revoked = min(dates)
        if revoked <= claimed:
            return (
                Revocation.REVOKED,
                f"revoked {revoked.isoformat()}, before this signature",
                revoked,
            )
        if proven is not None and proven < revoked:
            return (
                Revocation.GOOD,
                f"good when signed; revoked later, {revoked.isoformat()}",
                revoked,
            )
        return (
            Revocation.INDETERMINATE,
            f"revoked {revoked.isoformat()}, after the claimed time but before any proof",
            revoked,
        )

    def proof(self, path: str, digest: str, claimed: datetime) -> tuple[datetime | None, str, str]:
        """(proven time, proven by, problem) of ``path`` from ``proofs/<path>.json``.

        Without a timestamp token the proof still shows the member is in the node's
        log under a checkpoint it signed (chain judged at the claimed time), but it
        proves no time.
        """
        data = self.files.get(f"proofs/{path}.json")
        if data is None:
            return None, "", ""
        try:
            bundle = json.loads(data)
            if not isinstance(bundle, dict):
                raise ValueError("not an object")
            note_text = str(bundle["checkpoint"]).encode()
            checkpoint = Checkpoint.parse(SignedNote.parse(note_text).text)
            signed_note = self.files.get(f"checkpoints/{checkpoint.size}.note")
            if signed_note is None:
                return None, "", f"checkpoints/{checkpoint.size}.note is missing"
            if SignedNote.parse(signed_note).text != SignedNote.parse(note_text).text:
                return None, "", "the proof's checkpoint is not the one in checkpoints/"
            stamp = self.stamps.get(checkpoint.size)
            if isinstance(stamp, str):
                return None, "", f"timestamps/{checkpoint.size}.tsr: {stamp}"
            moment = claimed if stamp is None else stamp.gen_time
            trust = TrustBundle(self.trust.roots, self.crls_in_force(moment))
            origin_only = {**bundle, "cosigners": []}
            verified = verify_bundle(origin_only, trust, at=moment)
            # the stored note (the one stamped) carries the origin's valid signature too
            verify_bundle({**origin_only, "checkpoint": signed_note.decode()}, trust, at=moment)
            try:
                cosigned = verify_bundle(bundle, trust, at=moment).cosigned_by
            except (AuditError, SigningError):
                cosigned = ()
        except (ValueError, KeyError, TypeError, RecursionError, AuditError, SigningError) as exc:
            return None, "", f"proof does not verify: {exc}"
        leaf = verified.leaf
        if not any(
            f'"{key}":"{digest}"'.encode() in leaf
            for key in ("digest", "credential_digest", "report_digest")
        ):
            return None, "", "the proof's leaf is not this member's"
        where = f"checkpoint {checkpoint.size} of {checkpoint.origin}, leaf {verified.index}"
        if cosigned:
            where += f", cosigned by {', '.join(cosigned)}"
        own = self.leaf_stamp(verified.index, leaf)
        if isinstance(own, str):
            return None, "", own
        if own is not None and (stamp is None or own.gen_time <= stamp.gen_time):
            by = f"timestamp {own.serial} ({own.tsa}) over leaf {verified.index} itself, in {where}"
            return own.gen_time, by, ""
        if stamp is None:
            return None, f"{where}; no timestamp", ""
        return stamp.gen_time, f"timestamp {stamp.serial} ({stamp.tsa}) over {where}", ""

    def leaf_stamp(self, index: int, leaf: bytes) -> Stamp | str | None:
        """The token ``timestamps/leaves/<index>.tsr`` over the leaf's bytes (a problem as
        text when it does not verify or is dated after the report's time)."""
        path = f"timestamps/leaves/{index}.tsr"
        data = self.files.get(path)
        if data is None:
            return None
        if self.tsa_trust is None:
            return f"{path}: no TSA trust given (--tsa-trust)"
        try:
            stamp = check_response(data, leaf, self.tsa_trust)
        except TimestampError as exc:
            return f"{path}: {exc}"
        if stamp.gen_time > self.at + _SKEW:
            return f"{path}: dated after {self.at.isoformat()}"
        return stamp

    def signature(
        self,
        kind: str,
        subject: str,
        token: str,
        typ: str,
        *,
        digest_of: bytes | None = None,
        detached: bytes | None = None,
    ) -> Line:
        try:
            header = _header(token)
            claimed = _claimed(header)
            verified = verify_compact(
                token, self.roots, at=claimed, typ=typ, detached_payload=detached
            )
        except SigningError as exc:
            return Line(
                kind, subject, False, code="signature", problem=f"signature does not verify: {exc}"
            )
        signer = verified.signer
        who = f"{signer.node_id} {signer.name}".strip()
        x5c_chain = tuple(
            x509.load_der_x509_certificate(base64.b64decode(c)) for c in header["x5c"]
        )
        issuer = self.issuer_of(x5c_chain)
        chain_text = signer.certificate.subject.rfc4514_string()
        if issuer is not None:
            chain_text += " ← " + issuer.subject.rfc4514_string()
        proven, proven_by, problem, code = (None, "", "", "")
        if digest_of is not None:
            digest = hashlib.sha256(digest_of).hexdigest()
            proven, proven_by, problem = self.proof(subject, digest, claimed)
            code = "proof" if problem else ""
        if proven is not None and proven < claimed - _SKEW:
            problem = "the timestamp is older than the time the signature claims"
            code = "backdated"
        if issuer is None:
            status, detail, revoked_at = (
                Revocation.UNKNOWN,
                "the issuer is not in the trust bundle",
                None,
            )
        else:
            status, detail, revoked_at = self.path_revocation(x5c_chain, claimed, proven)
        if claimed > self.at + _SKEW:
            code, problem = code or "late", problem or f"signed after {self.at.isoformat()}"
        return Line(
            kind,
            subject,
            not problem and status is Revocation.GOOD,
            signer=who,
            claimed=claimed,
            proven=proven,
            proven_by=proven_by or "the signer's own claim (iat) only",
            chain=chain_text,
            revocation=status,
            revocation_detail=detail,
            revoked_at=revoked_at,
            code=code or ("" if status is Revocation.GOOD else f"revocation-{status.value}"),
            problem=problem,
        )


def _members(ctx: _Context, manifest: Mapping[str, Any]) -> list[Line]:
    lines = []
    listed = manifest.get("members")
    if not isinstance(listed, list):
        return [
            Line(
                "member",
                MANIFEST_PATH,
                False,
                code="manifest",
                problem="the manifest lists no members",
            )
        ]
    seen = set()
    for entry in listed:
        if not isinstance(entry, dict):
            lines.append(
                Line("member", "?", False, code="manifest", problem="malformed manifest entry")
            )
            continue
        path = str(entry.get("path"))
        seen.add(path)
        data = ctx.files.get(path)
        if data is None:
            lines.append(
                Line(
                    "member",
                    path,
                    False,
                    code="member-missing",
                    problem="listed in the manifest but missing",
                )
            )
        elif hashlib.sha256(data).hexdigest() != entry.get("sha256") or len(data) != entry.get(
            "size"
        ):
            lines.append(
                Line(
                    "member",
                    path,
                    False,
                    code="member-changed",
                    problem="changed: its SHA-256 differs from the manifest",
                )
            )
    for path in sorted(set(ctx.files) - seen):
        lines.append(
            Line(
                "member",
                path,
                False,
                code="member-unlisted",
                problem="not listed in the signed manifest",
            )
        )
    return lines


def verify_dossier(
    data: bytes, trust: TrustBundle, *, at: datetime, tsa_trust: TsaTrust | None = None
) -> Report:
    """Verify a dossier (see the module docstring); :class:`DossierError` if unreadable."""
    unpacked = unpack(data)
    ctx = _Context(unpacked.files, trust, tsa_trust, at)
    manifest = unpacked.manifest
    lines = [_manifest_line(ctx, unpacked.manifest_token, manifest)]
    lines += _members(ctx, manifest)
    lines.append(_case_binding(unpacked.files, str(manifest.get("case", ""))))
    for size, stamp in sorted(ctx.stamps.items()):
        subject = f"timestamps/{size}.tsr"
        if isinstance(stamp, Stamp):
            late = stamp.gen_time > at + _SKEW
            lines.append(
                Line(
                    "timestamp",
                    subject,
                    not late,
                    signer=stamp.tsa,
                    claimed=stamp.gen_time,
                    proven=stamp.gen_time,
                    proven_by=f"RFC 3161 token {stamp.serial} over checkpoints/{size}.note",
                    chain=stamp.tsa,
                    code="late" if late else "",
                    problem=f"dated after {at.isoformat()}" if late else "",
                )
            )
        else:
            lines.append(Line("timestamp", subject, False, code="timestamp", problem=stamp))
    for path, content in sorted(unpacked.files.items()):
        typ = next((t for p, t in _TYPS.items() if path.startswith(p)), None)
        if typ is not None:
            kind = path.split("/", 1)[0].rstrip("s")
            lines.append(
                ctx.signature(
                    kind, path, content.decode("ascii", "replace"), typ, digest_of=content
                )
            )
        elif path.startswith("agreements/"):
            lines += _agreement(ctx, path, content)
        elif path.startswith(SURVEYS) and path.endswith("/" + REPORT_FILE):
            lines.append(_survey(ctx, path, content, str(manifest.get("case", ""))))
    lines += _agreement_versions(unpacked.files)
    return Report(str(manifest.get("case", "")), str(manifest.get("node", "")), at, tuple(lines))


def _manifest_line(ctx: _Context, token: str, manifest: Mapping[str, Any]) -> Line:
    """The manifest's signature, by the node the manifest names: the report presents
    ``node`` as the exporting office, so another office's seal over it is a forgery of
    that office's dossier."""
    line = ctx.signature("manifest", MANIFEST_PATH, token, MANIFEST_TYP)
    named = str(manifest.get("node", ""))
    if line.ok and line.signer.split(" ", 1)[0] != named:
        return dataclasses.replace(
            line, ok=False, code="wrong-node", problem=f"the manifest names node {named}"
        )
    return line


def _case_binding(files: Mapping[str, bytes], case_id: str) -> Line:
    """``case.json`` and every packet are of the case the manifest names (the report
    presents it as the case; without this a dossier could carry another case's packets
    or a case file that is not one)."""
    problem = ""
    try:
        case = json.loads(files.get("case.json", b"null"))
        if not isinstance(case, dict) or set(case) != {"case", "header", "events"}:
            problem = "case.json is not {case, header, events}"
        elif case["case"] != case_id:
            problem = f"case.json is of case {case['case']!r}"
    except (ValueError, RecursionError):
        problem = "case.json is not JSON"
    for path, content in sorted(files.items()):
        if problem:
            break
        if not path.startswith("packets/"):
            continue
        try:
            payload = json.loads(b64url_decode(content.decode("ascii").split(".")[1]))
            of = payload.get("case") if isinstance(payload, dict) else None
        except (ValueError, IndexError, RecursionError, SigningError):
            continue  # the packet's own line reports it
        if of != case_id:
            problem = f"{path} is a packet of case {of!r}"
    if problem:
        return Line("case", case_id, False, code="wrong-case", problem=problem)
    return Line("case", case_id, True, proven_by="case.json and every packet name it")


def _survey(ctx: _Context, path: str, content: bytes, case_id: str) -> Line:
    """The line of a sealed survey report: its signature (chain, proof, revocation at
    the time) and, when that holds, its binding to the case, its evidence chain and the
    media present (:func:`relay.dossier.surveys.check_survey`)."""
    token = content.decode("ascii", "replace")
    line = ctx.signature("survey", path, token, REPORT_TYP, digest_of=content)
    node = line.signer.split(" ", 1)[0]
    code, problem, detail = check_survey(
        ctx.files,
        path,
        case_id=case_id,
        signer_node=node,
        case_tokens=case_report_tokens(ctx.files.get("case.json")),
    )
    if problem and not line.problem:
        return dataclasses.replace(line, ok=False, code=code, problem=problem)
    return dataclasses.replace(line, detail=detail)


def _agreement_versions(files: Mapping[str, bytes]) -> list[Line]:
    """One line per agreement version the packets name: the dossier must hold exactly
    that document (its canonical JSON's SHA-256 is the packets' ``agreement.digest``)."""
    held: dict[str, str] = {}
    for path, content in files.items():
        if path.startswith("agreements/"):
            try:
                held[
                    hashlib.sha256(canonical_json(json.loads(content)["document"])).hexdigest()
                ] = path
            except (ValueError, KeyError, TypeError, RecursionError, SigningError):
                continue
    named: dict[tuple[str, int, str], str] = {}
    for path, content in sorted(files.items()):
        if not path.startswith("packets/"):
            continue
        try:
            payload = json.loads(b64url_decode(content.decode("ascii").split(".")[1]))
            ref = payload["agreement"]
            named.setdefault((str(ref["id"]), int(ref["version"]), str(ref["digest"])), path)
        except (ValueError, KeyError, TypeError, IndexError, OverflowError, RecursionError,
                SigningError):  # fmt: skip
            continue  # the packet's own line reports it
    lines = []
    for (agreement, version, digest), first in sorted(named.items()):
        subject = f"{agreement} v{version}"
        if digest in held:
            lines.append(Line("agreement-version", subject, True, proven_by=held[digest]))
        else:
            lines.append(
                Line(
                    "agreement-version",
                    subject,
                    False,
                    code="agreement-missing",
                    problem=f"{first} names agreement digest {digest[:12]}…, which no "
                    "agreements/ member holds",
                )
            )
    return lines


def _agreement(ctx: _Context, path: str, content: bytes) -> list[Line]:
    try:
        signed = json.loads(content)
        document = canonical_json(signed["document"])
        signatures = [(str(s["party"]), str(s["jws"])) for s in signed["signatures"]]
    except (ValueError, KeyError, TypeError, RecursionError, SigningError) as exc:
        return [
            Line(
                "agreement", path, False, code="signature", problem=f"not a signed agreement: {exc}"
            )
        ]
    lines = []
    for party, token in signatures:
        line = ctx.signature(
            "agreement", f"{path} ({party})", token, _AGREEMENT_TYP, detached=document
        )
        if line.ok and line.signer.split(" ", 1)[0] != party:
            line = Line(
                line.kind,
                line.subject,
                False,
                signer=line.signer,
                code="wrong-party",
                problem="signed by another node than the party named",
            )
        lines.append(line)
    return lines
