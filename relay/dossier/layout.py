"""The dossier container: member names, the signed manifest, the ZIP (pure).

A dossier is a ZIP file. Its first entry is ``mimetype`` (stored, not compressed)
holding :data:`MEDIA_TYPE`; ``META-INF/manifest.jws`` is a compact JWS (typ
:data:`MANIFEST_TYP`, signed by the exporting node's seal) whose payload is the
canonical JSON::

    {"format": "tongban-dossier/1", "case": CASE, "node": NODE, "created": UNIX,
     "members": [{"path": PATH, "sha256": HEX, "size": N}, ...]}   # sorted by path

Every other entry of the ZIP is listed in ``members`` exactly once, and nothing else.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from signing.encoding import b64url_decode, canonical_json
from signing.errors import SigningError
from signing.jws import sign_compact
from signing.keys import Signer

__all__ = [
    "DOSSIER_FORMAT",
    "MANIFEST_PATH",
    "MANIFEST_TYP",
    "MEDIA_TYPE",
    "DossierError",
    "Unpacked",
    "pack",
    "unpack",
]

DOSSIER_FORMAT = "tongban-dossier/1"
MEDIA_TYPE = "application/vnd.tongban.dossier+zip"
MANIFEST_PATH = "META-INF/manifest.jws"
MANIFEST_TYP = "tongban-dossier+jws"
MAX_MEMBERS = 100_000
MAX_MEMBER_BYTES = 256 * 1024 * 1024
_PATH = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")


class DossierError(Exception):
    """The file is not a dossier at all (not a ZIP, no manifest, unreadable)."""


def pack(
    members: Mapping[str, bytes], *, case: str, node: str, seal: Signer, at: datetime
) -> bytes:
    """The ZIP of ``members`` with a manifest signed by ``seal`` at ``at``."""
    for path in members:
        if not _PATH.fullmatch(path) or path.startswith("META-INF/") or path == "mimetype":
            raise ValueError(f"bad member path {path!r}")
    manifest = {
        "format": DOSSIER_FORMAT,
        "case": case,
        "node": node,
        "created": int(at.timestamp()),
        "members": [
            {"path": p, "sha256": hashlib.sha256(d).hexdigest(), "size": len(d)}
            for p, d in sorted(members.items())
        ],
    }
    token = sign_compact(canonical_json(manifest), seal, typ=MANIFEST_TYP, at=at)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), MEDIA_TYPE, compress_type=zipfile.ZIP_STORED)
        zf.writestr(MANIFEST_PATH, token, compress_type=zipfile.ZIP_DEFLATED)
        for path, data in sorted(members.items()):
            zf.writestr(path, data, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


@dataclass(frozen=True)
class Unpacked:
    manifest_token: str
    manifest: Mapping[str, Any]  # the payload, as the token says (not yet verified)
    files: Mapping[str, bytes]  # every entry except mimetype and the manifest


def unpack(data: bytes) -> Unpacked:
    """Read the ZIP; :class:`DossierError` if it is not a dossier at all."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise DossierError("the file is not a ZIP archive") from exc
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise DossierError("the dossier has too many entries")
        files: dict[str, bytes] = {}
        for info in infos:
            if info.file_size > MAX_MEMBER_BYTES or info.filename in files:
                raise DossierError(f"entry {info.filename!r} is too large or repeated")
            try:
                files[info.filename] = zf.read(info)
            except Exception as exc:  # zlib.error, an unknown method, encryption...: all of it
                raise DossierError(f"entry {info.filename!r} cannot be read: {exc}") from exc
    if files.pop("mimetype", b"") != MEDIA_TYPE.encode():
        raise DossierError(f"the dossier's mimetype is not {MEDIA_TYPE}")
    token_bytes = files.pop(MANIFEST_PATH, None)
    if token_bytes is None:
        raise DossierError(f"the dossier has no {MANIFEST_PATH}")
    try:
        token = token_bytes.decode("ascii")
        manifest = json.loads(b64url_decode(token.split(".")[1]))
    except (UnicodeDecodeError, IndexError, ValueError, SigningError) as exc:
        raise DossierError("the manifest is not a compact JWS with a JSON payload") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != DOSSIER_FORMAT:
        raise DossierError(f"the manifest is not {DOSSIER_FORMAT}")
    return Unpacked(token, manifest, files)
