"""``tongban pki``: the development PKI (federation roots, node certificates, CRLs) and
the federation directory (``directory-key``, ``sign-directory``), HPKE key rotation
(``rotate-hpke``, ``retire-hpke``)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from certs.pki import (
    PROFILES,
    PkiError,
    init_federation,
    issue_directory_key,
    issue_node,
    renew_crl,
    revoke,
)
from relay.cli._common import CliError, read_bytes, whole_number, write_output
from relay.config import parse_duration
from relay.core.outbox import OutboxPolicy

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
        urls = (("--federation-url", args.federation_url), ("--public-url", args.public_url))
        for flag, url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("https", "http") or not parts.hostname:
                # a directory would leave the node out (protocol.md §1.6)
                raise CliError("usage", f"{flag} {url!r} is not an http(s) URL with a host")
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


def _directory_key(args: argparse.Namespace) -> int:
    try:
        cert = issue_directory_key(Path(args.federation), Path(args.out), now=_now())
    except PkiError as exc:
        raise CliError("pki", str(exc), 2) from None
    print(f"directory key {cert.subject.rfc4514_string()} written to {args.out}")
    return 0


def _sign_directory(args: argparse.Namespace) -> int:
    from relay.federation.publish import PublishError, publish_directory

    try:
        valid_for = parse_duration(args.valid_for)
    except ValueError as exc:
        raise CliError("usage", f"--valid-for {exc}") from None
    try:
        signed = publish_directory(
            key_dir=Path(args.key_dir),
            trust_bundle=Path(args.trust),
            federation=args.federation_name,
            node_files=[Path(n) for n in args.node],
            out=Path(args.out),
            now=_now(),
            valid_for=valid_for,
            max_body_bytes=args.max_body_bytes,
            max_batch_size=args.max_batch_size,
        )
    except PublishError as exc:
        raise CliError("directory", str(exc), 2) from None
    d = signed.directory
    print(
        f"directory {d.federation} serial {d.serial} with {len(d.entries)} node(s) "
        f"written to {args.out}, valid until {d.expires_at.isoformat()}"
    )
    return 0


def _csr(args: argparse.Namespace) -> int:
    from certs.renewal import make_csr

    try:
        pem = make_csr(Path(args.node_dir))
    except PkiError as exc:
        raise CliError("pki", str(exc), 2) from None
    try:
        write_output(args.out, pem)
    except CliError:  # the request is lost: so is its key, or every retry says "pending"
        (Path(args.node_dir) / "tls.key.next").unlink(missing_ok=True)
        raise
    print(f"new key {args.node_dir}/tls.key.next; certificate request written to {args.out}")
    return 0


def _sign_csr(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.serialization import Encoding

    from certs.renewal import sign_csr

    try:
        cert = sign_csr(Path(args.federation), read_bytes(args.csr, "CSR"), now=_now())
    except PkiError as exc:
        raise CliError("pki", str(exc), 2) from None
    Path(args.out).write_bytes(cert.public_bytes(Encoding.PEM))
    print(f"certificate serial {cert.serial_number:x} written to {args.out}")
    return 0


def _install(args: argparse.Namespace) -> int:
    from certs.renewal import install_certificate
    from signing.certificates import TrustBundle
    from signing.errors import MalformedInput

    try:
        bundle = TrustBundle.from_pem(read_bytes(args.trust, "trust bundle"))
    except MalformedInput as exc:
        raise CliError("pki", f"{args.trust}: {exc}", 2) from None
    try:
        leaf = install_certificate(
            Path(args.node_dir), read_bytes(args.cert, "certificate"), bundle, now=_now()
        )
    except PkiError as exc:
        raise CliError("pki", str(exc), 2) from None
    print(
        f"installed tls.pem serial {leaf.serial_number:x} (until "
        f"{leaf.not_valid_after_utc.isoformat()}) in {args.node_dir}; node.json re-signed; "
        "reload the node (SIGHUP or POST /staff/v1/reload)"
    )
    return 0


_PACKET_LIFETIME = OutboxPolicy().default_ttl
"""A packet's time to live: old HPKE keys must outlast it."""


def _rotate_hpke(args: argparse.Namespace) -> int:
    from certs.hpke_rotation import rotate_hpke
    from signing.errors import MalformedInput

    try:
        overlap = timedelta(seconds=parse_duration(args.overlap))
    except (ValueError, OverflowError) as exc:
        raise CliError("usage", f"--overlap: {exc}") from None
    if overlap <= _PACKET_LIFETIME:  # the old keys must open every packet sealed to them
        raise CliError(
            "usage",
            f"--overlap {args.overlap} is not longer than a packet's time to live "
            f"({_PACKET_LIFETIME.days} days): packets sealed to the old keys could not be opened",
        )
    try:
        kids = rotate_hpke(Path(args.node_dir), at=_now(), overlap=overlap)
    except (MalformedInput, ValueError, OSError) as exc:
        raise CliError("pki", f"{args.node_dir}: {exc}", 2) from None
    print(
        f"new HPKE keys {', '.join(kids)} in {args.node_dir}; node.json re-signed (new keys "
        f"first, the old ones retire in {args.overlap}); restart the node, have the province "
        "sign the directory with the new node.json, and run `tongban pki retire-hpke` after "
        "the overlap"
    )
    return 0


def _retire_hpke(args: argparse.Namespace) -> int:
    from certs.hpke_rotation import retire_due
    from signing.errors import MalformedInput

    try:
        kids = retire_due(Path(args.node_dir), at=_now())
    except (MalformedInput, ValueError, OSError) as exc:
        raise CliError("pki", f"{args.node_dir}: {exc}", 2) from None
    if not kids:
        print(f"no HPKE key of {args.node_dir} is due for retirement")
        return 0
    print(
        f"retired HPKE keys {', '.join(kids)} (private keys deleted, node.json re-signed); "
        "restart the node and have the province sign the directory with the new node.json"
    )
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

    for command, shown in (("crl", True), ("renew-crl", False)):
        renew = sub.add_parser(
            command,
            help="re-issue the CRL with a fresh next update"
            if shown
            else "old name of `tongban pki crl`",
        )
        renew.add_argument("--federation", required=True, help="federation directory")
        renew.set_defaults(handler=_renew_crl)

    dkey = sub.add_parser("directory-key", help="create the federation's directory-signing key")
    dkey.add_argument("--federation", required=True, help="federation directory (its root)")
    dkey.add_argument("--out", required=True, help="new folder for directory.key/.pem")
    dkey.set_defaults(handler=_directory_key)

    sdir = sub.add_parser("sign-directory", help="sign (publish) the federation directory")
    sdir.add_argument("--key-dir", required=True, help="folder made by pki directory-key")
    sdir.add_argument("--trust", required=True, help="trust bundle the result is checked with")
    sdir.add_argument("--federation-name", required=True, help="e.g. Hubei")
    sdir.add_argument(
        "--node", action="append", required=True, help="a member's node.json (repeat)"
    )
    sdir.add_argument("--out", required=True, help="directory file to write (replaced)")
    sdir.add_argument("--valid-for", default="7d", help="validity (default 7d)")
    sdir.add_argument("--max-body-bytes", type=whole_number, default=1024 * 1024)
    sdir.add_argument("--max-batch-size", type=whole_number, default=100)
    sdir.set_defaults(handler=_sign_directory)

    csr = sub.add_parser("csr", help="new TLS key (tls.key.next) and a certificate request")
    csr.add_argument("--node-dir", required=True, help="the node's key folder")
    csr.add_argument("--out", required=True, help="CSR file to write (PEM)")
    csr.set_defaults(handler=_csr)

    scsr = sub.add_parser("sign-csr", help="the development CA signs a node's TLS CSR")
    scsr.add_argument("--federation", required=True, help="federation directory")
    scsr.add_argument("--csr", required=True, help="PEM certificate request")
    scsr.add_argument("--out", required=True, help="certificate file to write (PEM)")
    scsr.set_defaults(handler=_sign_csr)

    rot = sub.add_parser("rotate-hpke", help="add new HPKE keys; the old ones retire later")
    rot.add_argument("--node-dir", required=True, help="the node's key folder")
    rot.add_argument(
        "--overlap",
        default="8d",
        help="how long the old keys still open packets (default 8d: more than a packet's "
        "7-day time to live)",
    )
    rot.set_defaults(handler=_rotate_hpke)

    ret = sub.add_parser("retire-hpke", help="drop the HPKE keys whose overlap has ended")
    ret.add_argument("--node-dir", required=True, help="the node's key folder")
    ret.set_defaults(handler=_retire_hpke)

    inst = sub.add_parser("install", help="install a signed TLS certificate for tls.key.next")
    inst.add_argument("--node-dir", required=True, help="the node's key folder")
    inst.add_argument("--cert", required=True, help="PEM: the certificate, then intermediates")
    inst.add_argument("--trust", required=True, help="trust bundle it must validate under")
    inst.set_defaults(handler=_install)
