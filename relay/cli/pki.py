"""``tongban pki``: the development PKI (federation roots, node certificates, CRLs)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from certs.pki import PROFILES, PkiError, init_federation, issue_node, renew_crl, revoke
from relay.cli._common import CliError, read_bytes

__all__ = ["register"]


def _now() -> datetime:
    return datetime.now(UTC)


def _init_federation(args: argparse.Namespace) -> int:
    try:
        cert = init_federation(Path(args.out), args.name, now=_now(), profile=args.profile)
    except PkiError as exc:
        raise CliError("pki", str(exc), 2) from None
    print(f"federation root {cert.subject.rfc4514_string()} written to {args.out}")
    return 0


def _issue_node(args: argparse.Namespace) -> int:
    endpoints = None
    if args.federation_url or args.public_url:
        if not (args.federation_url and args.public_url):
            raise CliError("usage", "give both --federation-url and --public-url, or neither")
        endpoints = {"federation": args.federation_url, "public": args.public_url}
    try:
        files = issue_node(
            Path(args.federation),
            args.node,
            args.name,
            args.host,
            Path(args.out),
            now=_now(),
            name_en=args.name_en,
            endpoints=endpoints,
        )
    except PkiError as exc:
        raise CliError("pki", str(exc), 2) from None
    print(
        f"node {args.node} issued into {files.directory} "
        f"(tls serial {files.tls_serial:x}, seal serial {files.seal_serial:x})"
    )
    return 0


def _revoke(args: argparse.Namespace) -> int:
    pem = read_bytes(args.cert, "certificate")
    try:
        crl = revoke(Path(args.federation), pem, now=_now())
    except PkiError as exc:
        raise CliError("pki", str(exc), 2) from None
    print(f"{args.federation}/crl.pem re-issued with {len(list(crl))} revoked certificate(s)")
    return 0


def _renew_crl(args: argparse.Namespace) -> int:
    try:
        crl = renew_crl(Path(args.federation), now=_now())
    except PkiError as exc:
        raise CliError("pki", str(exc), 2) from None
    print(f"{args.federation}/crl.pem re-issued, next update {crl.next_update_utc}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pki = subparsers.add_parser("pki", help="development PKI: roots, node certificates, CRLs")
    sub = pki.add_subparsers(dest="pki_command", metavar="PKI_COMMAND")
    sub.required = True

    init = sub.add_parser("init-federation", help="create a federation root and empty CRL")
    init.add_argument("--out", required=True, help="new federation directory")
    init.add_argument("--name", required=True, help="federation name, e.g. Hubei")
    init.add_argument(
        "--profile",
        choices=PROFILES,
        default="default",
        help="cryptographic profile: default (P-256 root, Ed25519 seals) or sm (SM2/SM3)",
    )
    init.set_defaults(handler=_init_federation)

    node = sub.add_parser("issue-node", help="issue a node's certificates and keys")
    node.add_argument("--federation", required=True, help="federation directory")
    node.add_argument("--node", required=True, help="6-digit division code, e.g. 420106")
    node.add_argument("--name", required=True, help="office name (Chinese)")
    node.add_argument("--name-en", help="office name in English")
    node.add_argument("--host", required=True, help="DNS name or IP of the node")
    node.add_argument("--out", required=True, help="new node directory")
    node.add_argument("--federation-url", help="federation endpoint URL")
    node.add_argument("--public-url", help="public endpoint URL")
    node.set_defaults(handler=_issue_node)

    rev = sub.add_parser("revoke", help="revoke a certificate and re-issue the CRL")
    rev.add_argument("--federation", required=True, help="federation directory")
    rev.add_argument("--cert", required=True, help="PEM certificate to revoke")
    rev.set_defaults(handler=_revoke)

    renew = sub.add_parser("renew-crl", help="re-issue the CRL with a fresh next update")
    renew.add_argument("--federation", required=True, help="federation directory")
    renew.set_defaults(handler=_renew_crl)
