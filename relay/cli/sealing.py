"""``tongban seal`` and ``tongban open``: files sealed to a node's HPKE keys.

``tongban seal FILE --to node.json --out FILE.sealed [--suite x25519|mlkem768x25519|all]
[--trust BUNDLE]`` seals to the keys the recipient's descriptor lists. With ``--trust``
the descriptor is verified first (signature, certificate paths, node id); without it the
keys are taken as listed and a warning says so.

``tongban open FILE.sealed --node-dir DIR --out FILE`` opens with the node's HPKE keys.

Both write to a temporary file in the target directory and rename it into place only
when the whole file has been processed, so a failed ``open`` (tampered, truncated, or
not for this node) never leaves plaintext, whole or partial, at ``--out``.
Exit codes: 0 done; 1 the descriptor is invalid or the file cannot be opened (one
opaque reason); 2 usage or I/O error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from relay.cli._common import CliError, read_bytes
from signing.certificates import TrustBundle
from signing.descriptor import NodeDescriptor, verify_descriptor
from signing.encoding import b64url_decode, canonical_json
from signing.errors import (
    CertificateRejected,
    DecryptionFailed,
    InvalidSignature,
    MalformedInput,
)
from signing.hpke import HpkePublicKey, HpkeSuite
from signing.nodedir import load_node_keys
from signing.sealed import open_file, seal_file

__all__ = ["register"]

_SUITES = {"x25519": HpkeSuite.X25519, "mlkem768x25519": HpkeSuite.MLKEM768_X25519}


def _unverified_descriptor(data: bytes) -> NodeDescriptor:
    """Read the descriptor payload of ``node.json`` without checking its signature."""
    try:
        token = json.loads(data.decode("utf-8"))["descriptor"]
        payload = b64url_decode(token.split(".")[1])
        obj = json.loads(payload.decode("utf-8"))
        if canonical_json(obj) != payload:
            raise MalformedInput("descriptor payload is not canonical JSON")
        return NodeDescriptor.from_json(obj)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, MalformedInput):
        raise CliError(
            "descriptor-malformed", "the recipient node.json is not a descriptor"
        ) from None


def _recipient(args: argparse.Namespace) -> NodeDescriptor:
    data = read_bytes(args.to, "recipient descriptor")
    if args.trust is None:
        sys.stderr.write(
            "tongban: warning: recipient descriptor not verified (no --trust); "
            "sealing to the keys it lists\n"
        )
        return _unverified_descriptor(data)
    try:
        bundle = TrustBundle.from_pem(read_bytes(args.trust, "trust bundle"))
    except MalformedInput as exc:
        raise CliError("trust-bundle", f"cannot load trust bundle {args.trust}: {exc}") from None
    try:
        return verify_descriptor(data, bundle, at=datetime.now(UTC))
    except CertificateRejected as exc:
        raise CliError(
            "descriptor-invalid",
            f"the recipient's certificate was rejected ({exc.reason})",
            1,
        ) from None
    except InvalidSignature:
        raise CliError(
            "descriptor-invalid", "the recipient descriptor does not verify", 1
        ) from None


def _keys(descriptor: NodeDescriptor, choice: str) -> tuple[HpkePublicKey, ...]:
    keys = descriptor.hpke_keys if choice == "all" else descriptor.keys_for(_SUITES[choice])
    if not keys:
        raise CliError(
            "no-recipient-key", f"node {descriptor.node_id} lists no HPKE key of suite {choice}"
        )
    return keys


@contextlib.contextmanager
def _replace_on_success(target: Path, force: bool) -> Iterator[BinaryIO]:
    """Yield a temporary file beside ``target``; rename it to ``target`` only on success."""
    if target.exists() and not force:
        raise CliError("output-exists", f"{target} exists (use --force to replace it)")
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".part")
    except OSError as exc:
        raise CliError(
            "output-unwritable", f"cannot write in {directory}: {exc.strerror}"
        ) from None
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def _run_to(
    target: Path, force: bool, source: Path, work: Callable[[BinaryIO, BinaryIO], None]
) -> None:
    try:
        with source.open("rb") as src, _replace_on_success(target, force) as dst:
            work(src, dst)
    except FileNotFoundError as exc:  # the input, or the output's folder: say which
        if exc.filename is None or Path(exc.filename) == source:
            raise CliError("file-not-found", f"{source} does not exist") from None
        raise CliError("file-unwritable", f"the folder of {target} does not exist") from None
    except IsADirectoryError as exc:
        where = source if exc.filename is None or Path(exc.filename) == source else target
        raise CliError("file-not-found", f"{where} is a directory, not a file") from None
    except OSError as exc:
        raise CliError("io", f"{exc.filename or source}: {exc.strerror}") from None


def _seal(args: argparse.Namespace) -> int:
    descriptor = _recipient(args)
    keys = _keys(descriptor, args.suite)

    def work(src: BinaryIO, dst: BinaryIO) -> None:
        seal_file(src, dst, keys, recipient_node=descriptor.node_id)

    _run_to(Path(args.out), args.force, Path(args.file), work)
    kids = ", ".join(f"{k.suite.value}:{k.kid}" for k in keys)
    print(f"sealed {args.file} for node {descriptor.node_id} ({kids}) into {args.out}")
    return 0


def _open(args: argparse.Namespace) -> int:
    try:
        node = load_node_keys(Path(args.node_dir))
    except MalformedInput as exc:
        raise CliError("node-dir", f"cannot load node directory: {exc}") from None

    def work(src: BinaryIO, dst: BinaryIO) -> None:
        header = open_file(src, dst, node.hpke_keys)
        print(f"opened {args.file} (sealed for node {header.recipient_node}) into {args.out}")

    try:
        _run_to(Path(args.out), args.force, Path(args.file), work)
    except DecryptionFailed:
        raise CliError(
            "cannot-open",
            f"{args.file} cannot be opened with the keys in {args.node_dir} "
            "(not sealed to this node, or damaged or altered)",
            1,
        ) from None
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    seal = subparsers.add_parser("seal", help="encrypt a file to a node's HPKE keys")
    seal.add_argument("file", metavar="FILE", help="file to seal")
    seal.add_argument("--to", required=True, metavar="NODE_JSON", help="recipient node.json")
    seal.add_argument("--out", required=True, metavar="FILE", help="sealed file to write")
    seal.add_argument(
        "--suite",
        choices=["all", *_SUITES],
        default="all",
        help="seal to every listed key (default), or only to keys of one suite; "
        "mlkem768x25519 alone keeps the file confidential against a quantum adversary",
    )
    seal.add_argument("--trust", metavar="BUNDLE", help="verify node.json against this bundle")
    seal.add_argument("--force", action="store_true", help="replace --out if it exists")
    seal.set_defaults(handler=_seal)

    open_ = subparsers.add_parser("open", help="decrypt a sealed file with this node's keys")
    open_.add_argument("file", metavar="FILE", help="sealed file")
    open_.add_argument("--node-dir", required=True, metavar="DIR", help="this node's directory")
    open_.add_argument("--out", required=True, metavar="FILE", help="plaintext file to write")
    open_.add_argument("--force", action="store_true", help="replace --out if it exists")
    open_.set_defaults(handler=_open)
