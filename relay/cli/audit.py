"""``tongban audit``: checkpoints, partner verification and offline proof bundles.

- ``checkpoint --config node.toml``: sign a checkpoint of the node's log now (the
  latest one again if the log has not grown); prints the signed note.
- ``verify --config node.toml --partner CODE``: every packet exchanged with the partner
  (by digest) must be included in the partner's latest log we cosigned; inclusion
  proofs are fetched over mutual TLS. Exit 0 all included, 1 listing the others.
- ``proof PACKET_ID --config node.toml [--out FILE]``: an offline proof bundle
  (docs/protocol.md §7.6) for our own log's leaf of that packet.
- ``verify-bundle FILE --trust BUNDLE``: check a proof bundle offline. Exit 0 valid,
  1 invalid, 2 unreadable input.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
from datetime import UTC, datetime

from relay.audit.bundle import verify_bundle
from relay.audit.errors import AuditError, BundleError
from relay.audit.service import LeafNotFound
from relay.audit.verify import verify_partner
from relay.cli._common import CliError, read_bytes, write_output
from relay.config import ConfigError, NodeConfig, load_config
from relay.http.audit_node import AuditNode
from signing.certificates import TrustBundle
from signing.errors import SigningError

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = subparsers.add_parser("audit", help="the node's audit log: checkpoints and proofs")
    sub = audit.add_subparsers(dest="audit_command", metavar="SUBCOMMAND")
    sub.required = True

    checkpoint = sub.add_parser("checkpoint", help="sign a checkpoint of the log now")
    checkpoint.add_argument("--config", required=True, help="the node's node.toml")
    checkpoint.set_defaults(handler=_checkpoint)

    verify = sub.add_parser(
        "verify",
        help="check that a partner logged every packet exchanged with it",
        description="Fetch inclusion proofs from the partner for every packet we sent it "
        "(and it accepted) or received from it, under its latest checkpoint we cosigned.",
    )
    verify.add_argument("--config", required=True, help="the node's node.toml")
    verify.add_argument("--partner", required=True, help="the partner's node id")
    verify.set_defaults(handler=_verify)

    proof = sub.add_parser("proof", help="print an offline proof bundle for a packet")
    proof.add_argument("packet_id", metavar="PACKET_ID")
    proof.add_argument("--config", required=True, help="the node's node.toml")
    proof.add_argument("--out", help="write the bundle to this file instead of stdout")
    proof.set_defaults(handler=_proof)

    check = sub.add_parser("verify-bundle", help="verify a proof bundle offline")
    check.add_argument("file", metavar="FILE")
    check.add_argument("--trust", required=True, help="trust bundle (roots and CRLs, PEM)")
    check.set_defaults(handler=_verify_bundle)


def _config(path: str) -> NodeConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise CliError("config", str(exc)) from None


def _audit_node(config: NodeConfig) -> AuditNode:
    if config.database.url is None and not (config.data_dir / "relay.sqlite3").exists():
        raise CliError("no-log", f"node {config.node_id} has no database in {config.data_dir}")
    return AuditNode(config)


def _checkpoint(args: argparse.Namespace) -> int:
    node = _audit_node(_config(args.config))
    try:
        note = node.checkpoint()
    except (AuditError, SigningError, OSError, sqlite3.Error) as exc:
        raise CliError("checkpoint", f"no checkpoint signed: {exc}", 1) from None
    finally:
        asyncio.run(node.close())
    sys.stdout.write(note.decode())
    return 0


def _verify(args: argparse.Namespace) -> int:
    config = _config(args.config)
    if config.partner(args.partner) is None:
        raise CliError("usage", f"{args.partner} is not a partner in {args.config}")
    return asyncio.run(_verify_async(config, args.partner))


async def _verify_async(config: NodeConfig, partner: str) -> int:
    node = _audit_node(config)
    try:
        service = node.service
        report = await verify_partner(
            service.state, partner, node.peers[partner], service.key_of(partner)
        )
    except AuditError as exc:
        raise CliError("verify", str(exc), 1) from None
    finally:
        await node.close()
    for check in report.failures:
        entry = check.entry
        sys.stdout.write(
            f"{check.verdict.value}\t{entry.kind.value}\t{entry.packet_id}\t{entry.digest}"
            f"\t{check.detail}\n"
        )
    total, failed = len(report.checks), len(report.failures)
    summary = (
        f"{total - failed} of {total} packets exchanged with {partner} are included in its"
        f" log of {report.size} leaves we cosigned"
    )
    if failed:
        sys.stderr.write(f"tongban: error[not-included]: {summary}; {failed} are not\n")
        return 1
    sys.stdout.write(summary + "\n")
    return 0


def _proof(args: argparse.Namespace) -> int:
    node = _audit_node(_config(args.config))
    try:
        bundle = node.service.proof_bundle(args.packet_id)
    except LeafNotFound as exc:
        raise CliError("unknown-packet", str(exc), 1) from None
    except (AuditError, SigningError, sqlite3.Error) as exc:
        raise CliError("proof", f"no proof bundle: {exc}", 1) from None
    finally:
        asyncio.run(node.close())
    text = json.dumps(bundle, indent=2) + "\n"
    if args.out:
        write_output(args.out, text.encode())
    else:
        sys.stdout.write(text)
    return 0


def _verify_bundle(args: argparse.Namespace) -> int:
    try:
        trust = TrustBundle.from_pem(read_bytes(args.trust, "trust bundle"))
    except SigningError as exc:
        raise CliError("trust-bundle", f"{args.trust}: {exc}") from None
    data = read_bytes(args.file, "proof bundle")
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError):  # not a bundle at all: bad input, not a verdict
        raise CliError("not-a-bundle", f"{args.file} is not a JSON proof bundle") from None
    if not isinstance(parsed, dict):
        raise CliError("not-a-bundle", f"{args.file} is not a JSON proof bundle object")
    try:
        verified = verify_bundle(data, trust, at=datetime.now(UTC))
    except BundleError as exc:
        raise CliError("invalid-bundle", str(exc), 1) from None
    cosigned = ", ".join(verified.cosigned_by) or "nobody listed"
    sys.stdout.write(
        f"valid: leaf {verified.index} of {verified.checkpoint.origin} at size "
        f"{verified.checkpoint.size}, signed by {verified.signer.node_id} "
        f"({verified.signer.name}); cosigned by {cosigned}\n"
    )
    return 0
