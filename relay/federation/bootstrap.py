"""``tongban init``: a node's folder and ``node.toml`` from its directory entry.

The office has its key folder (``tongban pki issue-node``, or ``pki csr`` + ``install``),
the trust bundle and its province's signed directory that lists it. :func:`init_node`
verifies the directory, checks that the entry is this key folder's node (the entry's
descriptor is the folder's ``node.json``), and writes into a new folder:

- ``node.toml`` — listeners on the ports of the entry's URLs (federation always TLS,
  public TLS when its URL is https, staff on 127.0.0.1 without TLS), ``data_dir``, an
  ``agreements`` folder read at every start and reload, and ``[directory]`` with the
  province file as ``own`` (when asked) and the other members' public URLs as sources;
- ``trust-bundle.pem`` (a copy: the node writes fresher CRLs into it);
- ``data/directories/``: the verified directory as the first cached copy.

:func:`config_text` is the pure part (the entry and choices in, TOML text out).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tomllib
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from relay.config import ConfigError, parse_config
from relay.federation.directories import DirectoryCache
from signing.certificates import TrustBundle
from signing.errors import InvalidSignature, MalformedInput
from signing.federation_directory import DirectoryEntry, verify_directory

__all__ = ["InitError", "config_text", "init_node"]

STAFF_PORT = 8445
MAX_SOURCES = 3


class InitError(Exception):
    """The node folder cannot be made as asked (says why)."""


def _port(url: str, default: int) -> int:
    return urlsplit(url).port or default


def _q(value: str | Path) -> str:
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string


def config_text(
    entry: DirectoryEntry,
    *,
    key_dir: Path,
    own: Path | None,
    sources: Sequence[str],
    listen: str,
    staff_port: int = STAFF_PORT,
) -> str:
    """The ``node.toml`` text for ``entry`` (see the module docstring)."""
    public_tls = urlsplit(entry.public_url).scheme == "https"
    lines = [
        f"# {entry.name_zh} ({entry.name_en}), made by tongban init",
        "[node]",
        f"id = {_q(entry.node_id)}",
        f"key_dir = {_q(key_dir)}",
        'data_dir = "data"',
        'trust_bundle = "trust-bundle.pem"',
        "",
        "[listeners.federation]",
        f"host = {_q(listen)}",
        f"port = {_port(entry.federation_url, 443)}",
        "",
        "[listeners.public]",
        f"host = {_q(listen)}",
        f"port = {_port(entry.public_url, 443 if public_tls else 80)}",
        f"tls = {'true' if public_tls else 'false'}",
        "",
        "[listeners.staff]",
        'host = "127.0.0.1"',
        f"port = {staff_port}",
        "tls = false",
        "",
        "[limits]",
        f"max_body_bytes = {entry.limits.max_body_bytes}",
        f"max_batch_size = {entry.limits.max_batch_size}",
        "",
        "[agreements]",
        'folder = "agreements"',
        "",
        "[directory]",
    ]
    if own is not None:
        lines.append(f"own = {_q(own)}")
    lines.append("sources = [" + ", ".join(_q(s) for s in sources) + "]")
    return "\n".join(lines) + "\n"


def init_node(
    *,
    directory: Path,
    trust_bundle: Path,
    key_dir: Path,
    out: Path,
    now: datetime,
    own: bool = False,
    sources: Sequence[str] = (),
    listen: str = "0.0.0.0",  # noqa: S104 - a node serves its partners from other hosts
    staff_port: int = STAFF_PORT,
) -> DirectoryEntry:
    """Make the node folder ``out``; raises :class:`InitError` (nothing written then)."""
    try:
        bundle = TrustBundle.from_pem(trust_bundle.read_bytes())
        data = directory.read_bytes()
        node_json = (key_dir / "node.json").read_bytes()
    except OSError as exc:
        raise InitError(f"cannot read {exc.filename}: {exc.strerror}") from None
    except MalformedInput as exc:
        raise InitError(f"{trust_bundle}: {exc}") from None
    try:
        verified = verify_directory(data, bundle, at=now)
    except InvalidSignature:
        raise InitError(f"{directory} is not a valid directory for {trust_bundle}") from None
    try:
        mine = json.loads(node_json).get("descriptor") if node_json.strip() else None
    except (ValueError, AttributeError):  # UnicodeDecodeError is a ValueError
        raise InitError(f"{key_dir / 'node.json'} is not a node descriptor file") from None
    entry = next((e for e in verified.entries.values() if e.descriptor_token == mine), None)
    if entry is None:
        listed = ", ".join(sorted(verified.entries)) or "no node"
        raise InitError(
            f"{directory} ({verified.directory.federation}) does not list the node of "
            f"{key_dir} with its current node.json (it lists {listed}); ask the province "
            "to publish a directory with it (tongban pki sign-directory)"
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InitError(f"{out} exists and is not empty; refusing to overwrite")
    if not sources:
        others = [e.public_url for e in verified.entries.values() if e.node_id != entry.node_id]
        sources = sorted(others)[:MAX_SOURCES]
    text = config_text(
        entry,
        key_dir=key_dir.resolve(),
        own=directory.resolve() if own else None,
        sources=sources,
        listen=listen,
        staff_port=staff_port,
    )
    existed = out.exists()
    try:
        (out / "agreements").mkdir(parents=True)
        shutil.copyfile(trust_bundle, out / "trust-bundle.pem")
        DirectoryCache(out / "data" / "directories").save(verified)
        (out / "data").chmod(0o700)
        # the node must accept what is written for it (ports, source URLs), else nothing
        parse_config(tomllib.loads(text), source=out / "node.toml")
        (out / "node.toml").write_text(text, encoding="utf-8")
    except (ConfigError, tomllib.TOMLDecodeError, OSError) as exc:
        _take_back(out, existed)  # it was empty or not there (checked above)
        if isinstance(exc, OSError):
            raise InitError(f"cannot write {exc.filename or out}: {exc.strerror}") from None
        raise InitError(f"the node.toml it would write is refused: {exc}") from None
    return entry


def _take_back(out: Path, existed: bool) -> None:
    """Remove what :func:`init_node` made in ``out`` (and ``out`` when it made it)."""
    for name in ("agreements", "data"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in ("trust-bundle.pem", "node.toml"):
        (out / name).unlink(missing_ok=True)
    if not existed:
        with contextlib.suppress(OSError):
            out.rmdir()
