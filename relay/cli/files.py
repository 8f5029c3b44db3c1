"""``tongban sign`` / ``tongban verify``: detached file signatures with a node's seal."""

from __future__ import annotations

import argparse
import logging
import mimetypes
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from relay.cli._common import CliError, read_bytes, seal_signer, write_output
from signing.certificates import TrustBundle
from signing.errors import InvalidSignature, MalformedInput
from signing.files import sign_file, verify_file

__all__ = ["register"]


def _sign(args: argparse.Namespace) -> int:
    signer = seal_signer(args.node_dir)
    media_type = args.media_type or mimetypes.guess_type(args.file)[0] or "application/octet-stream"
    out = Path(args.out or f"{args.file}.jws")
    try:
        with Path(args.file).open("rb") as stream:
            token = sign_file(
                stream,
                name=Path(args.file).name,
                media_type=media_type,
                signer=signer,
                at=datetime.now(UTC),
            )
    except FileNotFoundError:
        raise CliError("file-not-found", f"file {args.file} does not exist") from None
    except ValueError as exc:
        raise CliError("usage", str(exc)) from None
    except OSError as exc:
        raise CliError("file-unreadable", f"cannot read {args.file}: {exc.strerror}") from None
    write_output(out, (token + "\n").encode("ascii"))
    print(f"signed {args.file} as node {signer.leaf.subject.rfc4514_string()} -> {out}")
    return 0


class _LastCause(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _capture() -> Iterator[_LastCause]:
    logger = logging.getLogger("tongban.signing")
    handler = _LastCause()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _verify(args: argparse.Namespace) -> int:
    token = read_bytes(args.sig, "signature").decode("ascii", errors="replace").strip()
    try:
        bundle = TrustBundle.from_pem(read_bytes(args.trust, "trust bundle"))
    except MalformedInput as exc:
        raise CliError("bad-trust-bundle", f"{args.trust}: {exc}") from None
    try:
        stream = Path(args.file).open("rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        raise CliError("file-not-found", f"file {args.file} does not exist") from None
    except OSError as exc:
        raise CliError("file-unreadable", f"cannot read {args.file}: {exc.strerror}") from None
    with stream, _capture() as causes:
        try:
            result = verify_file(stream, token, bundle, at=datetime.now(UTC))
        except InvalidSignature:
            reason = "; ".join(causes.messages) or "signature verification failed"
            raise CliError("invalid-signature", f"{args.file}: INVALID: {reason}", 1) from None
    signer = result.signer
    print(f"{args.file}: VALID")
    print(f"signer node: {signer.node_id} ({signer.name})")
    print(f"certificate serial: {signer.serial:x}")
    print(f"signed at: {result.signed_at.isoformat()}")
    print(f"signed name: {result.manifest.name} ({result.manifest.media_type})")
    print(f"size: {result.manifest.size} sha256: {result.manifest.sha256_hex}")
    if result.manifest.name != Path(args.file).name:
        sys.stderr.write("tongban: note: the file was signed under another name\n")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sign = subparsers.add_parser("sign", help="sign a file with this node's seal (detached JWS)")
    sign.add_argument("file", help="file to sign")
    sign.add_argument("--node-dir", required=True, help="node directory (seal.key, seal.pem)")
    sign.add_argument("--out", help="signature file (default FILE.jws)")
    sign.add_argument("--media-type", help="media type (default guessed from the name)")
    sign.set_defaults(handler=_sign)

    verify = subparsers.add_parser("verify", help="verify a detached file signature")
    verify.add_argument("file", help="signed file")
    verify.add_argument("--sig", required=True, help="signature file (compact JWS)")
    verify.add_argument("--trust", required=True, help="trust bundle (roots and CRLs, PEM)")
    verify.set_defaults(handler=_verify)
