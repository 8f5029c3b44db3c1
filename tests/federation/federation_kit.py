"""A small multi-province PKI for the federation tests: roots, directory keys, nodes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from certs.pki import init_federation, issue_directory_key, issue_node

NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass
class Province:
    name: str
    folder: Path  # the federation (root) folder
    key_dir: Path  # the directory key
    nodes: dict[str, Path] = field(default_factory=dict)  # node id -> node dir


def make_province(base: Path, name: str, *, now: datetime = NOW) -> Province:
    folder = base / f"fed-{name}"
    init_federation(folder, name, now=now)
    key_dir = base / f"dirkey-{name}"
    issue_directory_key(folder, key_dir, now=now)
    return Province(name, folder, key_dir)


def add_node(
    base: Path,
    province: Province,
    node_id: str,
    *,
    endpoints: dict[str, str] | None = None,
    now: datetime = NOW,
) -> Path:
    out = base / "nodes" / node_id
    issue_node(
        province.folder,
        node_id,
        f"办公室{node_id}",
        "127.0.0.1",
        out,
        now=now,
        name_en=f"Office {node_id}",
        endpoints=endpoints,
    )
    province.nodes[node_id] = out
    return out


def bundle_bytes(provinces: list[Province]) -> bytes:
    roots = b"".join((p.folder / "root.pem").read_bytes() for p in provinces)
    return roots + b"".join((p.folder / "crl.pem").read_bytes() for p in provinces)


def agreement_file(
    path: Path,
    signers: dict[str, Path],
    *,
    agreement_id: str = "federation-test",
    version: int = 1,
    at: datetime = NOW,
) -> Path:
    """A fully signed reciprocal agreement among ``signers`` (id -> node dir)."""
    from agreements.catalog import default_catalog
    from agreements.draft import draft_from_template, reciprocal_template
    from agreements.signatures import sign_agreement
    from agreements.signed import SignedAgreement
    from signing.nodedir import load_node_keys

    template = reciprocal_template(
        list(signers),
        agreement_id=agreement_id,
        valid_from=(at - timedelta(days=30)).isoformat(),
        valid_until=(at + timedelta(days=3 * 365)).isoformat(),
        title_zh="测试协议",
        title_en="Test agreement",
    )
    if version > 1:
        template["version"] = version
        template["supersedes"] = version - 1
    agreement = draft_from_template(template, default_catalog())
    signed = SignedAgreement(agreement)
    for node_dir in signers.values():
        signed = signed.with_signature(
            sign_agreement(agreement, load_node_keys(node_dir).seal, at=at)
        )
    path.write_bytes(signed.to_bytes())
    return path
