"""Collect one case from a node's database into a dossier (I/O shell).

What goes in (member names are normative, docs/dossier.md §2):

- ``case.json``: this office's copy of the case (header and events);
- ``packets/<packet id>.jws`` and ``receipts/<packet id>.jws``: every packet of the
  case this node sent (outbox) or received (inbox), and the receipt of each;
- ``licences/<n>.jwt``: every licence credential the case's events carry;
- ``agreements/<agreement id>-v<version>.json``: each signed agreement version the
  packets name (by document digest), with every party's signature;
- ``proofs/<member>.json``: for each signed member our log holds a leaf of (packets,
  receipts, licences), an audit proof bundle (docs/protocol.md §7.6) to the smallest
  checkpoint covering it that has a timestamp token (else the latest covering one);
- ``checkpoints/<size>.note`` and ``timestamps/<size>.tsr``: those checkpoints as signed
  and their RFC 3161 answers; ``timestamps/leaves/<index>.tsr``: the token over a
  survey-report or licence-event leaf itself, when the node has one;
- ``validation/crl-<n>.der``: the CRLs of the node's trust bundle, frozen now;
- ``surveys/<session>/...``: every sealed survey report the case's events carry, its
  evidence chain and, with ``with_media``, its media as plaintext
  (:mod:`relay.dossier.surveys`); the report gets a proof to its ``survey-report`` leaf.

Before collecting, the node signs a checkpoint (if its log grew) and, with
``[timestamps]`` configured, catches up the tokens, so a fresh case is covered.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from relay.audit.bundle import bundle_from_store
from relay.audit.checkpoint import Checkpoint, SignedNote, node_id_of_origin
from relay.audit.errors import AuditError
from relay.audit.service import AuditService, PartnerKeys
from relay.cases.sqlite_store import MIGRATIONS as CASE_MIGRATIONS
from relay.config import NodeConfig
from relay.core.packets import peek_facts
from relay.core.sqlite_schema import MIGRATIONS as RELAY_MIGRATIONS
from relay.db.migrations import Connection, dialect_of, require_current
from relay.db.open import open_connection
from relay.dossier.layout import pack
from relay.dossier.surveys import collect_surveys
from relay.timestamps.stamper import Stamper
from relay.timestamps.store import TimestampStore
from signing.certificates import TrustBundle
from signing.encoding import canonical_json
from signing.nodedir import load_node_keys

__all__ = ["UnknownCase", "export_case"]


class UnknownCase(Exception):
    """This node holds no case with that id."""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_LEAF_WITH = {
    "sqlite": "SELECT idx FROM audit_leaves WHERE idx >= ? AND instr(data, ?) > 0"
    " ORDER BY idx LIMIT 1",
    "postgresql": "SELECT idx FROM audit_leaves WHERE idx >= ? AND position(? in data) > 0"
    " ORDER BY idx LIMIT 1",
}


def _leaf_of(conn: Connection, key: str, digest: str, start: int = 0) -> int | None:
    """Index of the first leaf from ``start`` on whose canonical JSON has
    ``"key":"digest"`` (a walk of the log from there: ``start`` keeps it to the leaves
    since the case began, not the node's whole history)."""
    needle = f'"{key}":"{digest}"'.encode()
    row = conn.execute(_LEAF_WITH[dialect_of(conn)], (start, needle)).fetchone()
    return None if row is None else int(row[0])


def _case_rows(conn: Connection, case_id: str) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    rows = conn.execute(  # one statement: the header and the events of one write
        "SELECT c.header, e.content FROM cases AS c"
        " LEFT JOIN case_events AS e ON e.case_id = c.case_id WHERE c.case_id = ? ORDER BY e.n",
        (case_id,),
    ).fetchall()
    row = rows[0] if rows else None
    events = [json.loads(r[1]) for r in rows if r[1] is not None]
    packets = [
        (str(p), str(t), str(r))
        for p, t, r in conn.execute(
            "SELECT packet_id, token, receipt FROM outbox JOIN outbox_bodies USING (ord)"
            " WHERE case_id = ? AND receipt IS NOT NULL"
            " UNION ALL SELECT packet_id, token, receipt FROM inbox WHERE case_id = ?",
            (case_id, case_id),
        )
    ]
    if row is None and not packets:
        raise UnknownCase(f"this node holds no case {case_id}")
    case: dict[str, Any] = {"case": case_id, "header": None, "events": []}
    if row is not None:
        case = {"case": case_id, "header": json.loads(row[0]), "events": events}
    return case, packets


async def export_case(
    config: NodeConfig,
    case_id: str,
    *,
    service: AuditService,
    keys: PartnerKeys,
    stamper: Stamper | None,
    now: datetime,
    with_media: bool = False,
) -> bytes:
    """The dossier of ``case_id`` as this node holds it (see the module docstring).

    ``service`` is the node's audit service, ``keys`` gives the seal chains of the
    witnesses whose cosignatures go into the proofs, ``stamper`` (if any) catches up
    the timestamp tokens first; ``with_media`` adds the survey media. Raises
    :class:`remote_survey.errors.SurveyError` when survey media cannot be read.
    """
    conn = open_connection(config, "dossier")
    try:
        # read, never migrated here: a node of the release before may still run on it
        require_current(conn, "relay", RELAY_MIGRATIONS)
        require_current(conn, "cases", CASE_MIGRATIONS)
        case, packets = _case_rows(conn, case_id)
    finally:
        conn.close()
    service.checkpoint()
    if stamper is not None:
        await stamper.catch_up()  # never raises for a TSA failure: what is stamped goes
    members: dict[str, bytes] = {"case.json": canonical_json(case)}
    signed: list[tuple[str, str, str]] = []  # (member path, leaf key, digest)
    agreement_digests: set[str] = set()  # the versions the packets were sent under
    for packet_id, token, receipt in packets:
        members[f"packets/{packet_id}.jws"] = token.encode()
        members[f"receipts/{packet_id}.jws"] = receipt.encode()
        signed.append((f"packets/{packet_id}.jws", "digest", _sha(token.encode())))
        signed.append((f"receipts/{packet_id}.jws", "digest", _sha(receipt.encode())))
        facts = peek_facts(token)
        agreement = facts.get("agreement") if facts is not None else None
        if isinstance(agreement, dict) and isinstance(agreement.get("digest"), str):
            agreement_digests.add(agreement["digest"])
    for n, event in enumerate(case["events"] or []):
        licence = event.get("details", {}).get("licence") if isinstance(event, dict) else None
        if isinstance(licence, str):
            path = f"licences/{n}.jwt"
            members[path] = licence.encode()
            signed.append((path, "credential_digest", _sha(licence.encode())))
    surveys, reports = collect_surveys(config, case_id, case, with_media=with_media)
    members.update(surveys)
    signed += [(path, "report_digest", _sha(surveys[path])) for path in reports]
    for file in config.agreements:  # every version a packet names (a later one held too
        data = file.read_bytes()  # took the place of the one the case was sent under)
        document = json.loads(data).get("document", {})
        if isinstance(document, dict) and _sha(canonical_json(document)) in agreement_digests:
            members[f"agreements/{document.get('id')}-v{document.get('version')}.json"] = data
    trust = TrustBundle.from_pem(config.trust_bundle.read_bytes())
    for n, crl in enumerate(trust.crls):
        members[f"validation/crl-{n}.der"] = crl.public_bytes(Encoding.DER)
    _add_proofs(config, service, keys, signed, members)
    seal = load_node_keys(config.key_dir).seal
    return pack(members, case=case_id, node=config.node_id, seal=seal, at=now)


def _add_proofs(
    config: NodeConfig,
    service: AuditService,
    keys: PartnerKeys,
    signed: list[tuple[str, str, str]],
    members: dict[str, bytes],
) -> None:
    state = service.state
    stamps = TimestampStore(open_connection(config, "timestamps"))
    conn = open_connection(config, "dossier")
    try:
        # a packet's leaf through the packet index (by digest); the leaves of the case's
        # other items (receipts, licences, reports) come after its first packet's leaf
        indexed = {
            digest: entries[0].index
            for _, key, digest in signed
            if key == "digest" and (entries := state.packets_by_digest(digest))
        }
        start = min(indexed.values(), default=0)
        for path, key, digest in signed:
            index = indexed.get(digest) if key == "digest" else None
            if index is None:
                index = _leaf_of(conn, key, digest, start)
            if index is None:
                continue
            stamped = stamps.stamped_covering(index)
            if stamped is not None:
                size, note, response = stamped
                members[f"timestamps/{size}.tsr"] = response
            else:
                latest = state.checkpoint_covering(index)
                if latest is None:
                    continue
                note = latest
                size = Checkpoint.parse(SignedNote.parse(note).text).size
            members[f"checkpoints/{size}.note"] = note
            leaf_token = stamps.leaf_response(index)
            if leaf_token is not None:
                members[f"timestamps/leaves/{index}.tsr"] = leaf_token
            signed_note = SignedNote.parse(note)
            chains = []
            for witness, cosigned in sorted(state.cosignatures(size).items()):
                theirs = [s for s in SignedNote.parse(cosigned).signatures if s.name == witness]
                try:
                    chains.append(keys.seal_chain(node_id_of_origin(witness)))
                except AuditError:  # no valid seal key for that witness now: left out
                    continue
                signed_note = signed_note.with_signatures(*theirs)
            own = service.chain_of(note)  # the chain it was signed under, before any rotation
            bundle = bundle_from_store(state.log, index, signed_note.to_bytes(), own, chains)
            members[f"proofs/{path}.json"] = json.dumps(bundle, indent=1).encode()
    finally:
        conn.close()
        stamps.close()
