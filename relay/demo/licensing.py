"""E-licences in the demo: the handling office's status lists, sealing a licence (the
``vc+jwt`` and the compact form's verify URL), and the QR code of that URL (PNG, SVG and
the terminal) — through :mod:`signing.licence`, :mod:`signing.licence_compact`,
:mod:`signing.status_list` and :mod:`signing.qr`, as ``tongban licence`` does."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from relay.demo.context import Demo
from relay.http.licences import status_url
from signing.descriptor import verify_descriptor
from signing.licence import Licence, StatusEntry, issue_licence
from signing.licence_compact import Issuer, issue_compact_licence, licence_url
from signing.qr import QrImage, render_url_qr, url_symbol
from signing.status_list import (
    StatusList,
    StatusListCredential,
    StatusPurpose,
    sign_status_list,
)

__all__ = [
    "LicenceFacts",
    "compact_url",
    "publish_status_lists",
    "save_qr",
    "seal_licence",
    "status_lists",
    "terminal_qr",
]

_PURPOSES = (StatusPurpose.REVOCATION, StatusPurpose.SUSPENSION)


@dataclass(frozen=True)
class LicenceFacts:
    """What the handling office decided to license."""

    matter: str
    number: str
    holder_id: str  # 统一社会信用代码
    holder_name: str
    scope: str
    department_zh: str
    department_en: str
    valid_days: int
    status_index: int


def _status_dir(demo: Demo, node_id: str) -> Path:
    return demo.config_path(node_id).parent / "data" / "status"


def publish_status_lists(demo: Demo, node_id: str, at: datetime) -> list[str]:
    """Write the node's empty revocation and suspension lists where it serves them
    (``<data_dir>/status/<purpose>.jwt``); returns their URLs."""
    folder = _status_dir(demo, node_id)
    folder.mkdir(parents=True, exist_ok=True)
    public = demo.endpoints(node_id)["public"]
    urls = []
    for purpose in _PURPOSES:
        url = status_url(public, purpose)
        credential = StatusListCredential(
            issuer_node=node_id,
            url=url,
            status_list=StatusList.empty(purpose),
            issued_at=at,
            valid_from=at,
            valid_until=at + timedelta(days=7),
        )
        token = sign_status_list(credential, demo.signer(node_id), at=at)
        (folder / f"{purpose.value}.jwt").write_text(token + "\n", encoding="ascii")
        urls.append(url)
    return urls


def status_lists(demo: Demo, node_id: str) -> dict[str, str]:
    """The node's published lists as ``{url: token}`` (for offline verification)."""
    public = demo.endpoints(node_id)["public"]
    folder = _status_dir(demo, node_id)
    return {
        status_url(public, p): (folder / f"{p.value}.jwt").read_text("ascii").strip()
        for p in _PURPOSES
    }


def seal_licence(demo: Demo, node_id: str, facts: LicenceFacts, at: datetime) -> str:
    """The licence credential sealed by ``node_id``'s seal (whole-second times)."""
    at = at.replace(microsecond=0)
    public = demo.endpoints(node_id)["public"]
    licence = Licence(
        issuer_node=node_id,
        number=facts.number,
        licence_type=facts.matter,
        holder_id=facts.holder_id,
        holder_name=facts.holder_name,
        scope=facts.scope,
        department_zh=facts.department_zh,
        department_en=facts.department_en,
        issued_at=at,
        valid_from=at,
        valid_until=at + timedelta(days=facts.valid_days),
        status=tuple(StatusEntry(p, facts.status_index, status_url(public, p)) for p in _PURPOSES),
    )
    return issue_licence(licence, demo.signer(node_id), at=at)


def compact_url(demo: Demo, node_id: str, token: str) -> str:
    """The compact form of the licence ``node_id`` just sealed as ``token``, in the
    verify URL of its public listener; the issuer is its verified ``node.json``."""
    from signing.licence import parse_licence

    data = (demo.node_dir(node_id) / "node.json").read_bytes()
    issuer = Issuer.from_descriptor(verify_descriptor(data, demo.bundle(), at=demo.now()))
    credential = issue_compact_licence(parse_licence(token), demo.signer(node_id), issuer)
    return licence_url(issuer.public_base, credential)


def save_qr(url: str, folder: Path, stem: str) -> tuple[QrImage, Path, Path]:
    """The QR code of a licence's verify URL as ``<stem>.png`` (300 dpi, 4 dots a
    module: 0.34 mm) and ``<stem>.svg``."""
    qr = render_url_qr(url)
    folder.mkdir(parents=True, exist_ok=True)
    png, svg = folder / f"{stem}.png", folder / f"{stem}.svg"
    png.write_bytes(qr.png)
    svg.write_bytes(qr.svg)
    return qr, png, svg


def terminal_qr(url: str, qr: QrImage) -> str:
    """The same symbol as :func:`render_url_qr` drawn with half blocks for a terminal
    (one column a module: a version-12 code with its quiet zone is 73 columns)."""
    code = url_symbol(url)
    if code.version != qr.version:
        raise ValueError("the terminal drawing would differ from the printed code")
    buffer = io.StringIO()
    code.terminal(out=buffer, compact=True)
    return buffer.getvalue().rstrip("\n")
