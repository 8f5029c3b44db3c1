"""Kit of tests/survey_case: two real nodes (relay.node.Node: federation over mutual
TLS on 127.0.0.1, SQLite, the outbox task) with the case layer and survey reports in
the case flow; the offices' PKI and agreement come from tests/cases (casekit_offices)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cases"))

import casekit_offices
from casekit import HANDLING, RECEIVING

from relay.config import load_config
from relay.console import ConsoleLayer
from relay.http.case_services import CaseLayer
from relay.http.survey_admission import survey_checked
from relay.http.survey_cases import SurveyCaseLayer
from relay.node import Node
from relay.staff_auth import StaffRole, issue_token, load_or_create_token_key
from remote_survey.room import RoomConfig
from remote_survey.web import SurveyHub
from signing.keys import Signer

__all__ = ["HANDLING", "RECEIVING", "Office", "casekit_offices", "make_office", "node_config"]


@dataclass
class Office:
    node: Node
    layer: SurveyCaseLayer
    cases: CaseLayer
    hub: SurveyHub
    bundle: Path

    def auth(self) -> dict[str, str]:
        key = load_or_create_token_key(self.node.config.staff.token_key)
        token = issue_token(key, node_id=self.node.config.node_id, subject="clerk-1",
                            roles=[StaffRole.CLERK], now=datetime.now(UTC), ttl=600)  # fmt: skip
        return {"Authorization": f"Bearer {token}"}

    def url(self, path: str) -> str:
        return f"{self.node.urls['staff']}{path}"


def node_config(folder: Path, pki: casekit_offices.Pki, node: str, ports: dict[str, int],
            partner: str, partner_port: int) -> Path:  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    node_dir = pki.federation.parent / node
    fed = pki.federation
    bundle = folder / "bundle.pem"
    bundle.write_bytes((fed / "root.pem").read_bytes() + (fed / "crl.pem").read_bytes())
    text = f"""[node]
id = "{node}"
key_dir = "{node_dir}"
data_dir = "data"
trust_bundle = "{bundle}"
[listeners.federation]
port = {ports["federation"]}
[listeners.public]
port = {ports["public"]}
tls = false
[listeners.staff]
port = {ports["staff"]}
tls = false
[[partners]]
id = "{partner}"
descriptor = "{fed.parent / partner / "node.json"}"
federation_url = "https://127.0.0.1:{partner_port}"
[agreements]
files = ["{pki.agreement}"]
[outbox]
base_backoff = "50ms"
"""
    path = folder / "node.toml"
    path.write_text(text, encoding="utf-8")
    return path


def make_office(config_path: Path, pki: casekit_offices.Pki, *, console: bool = False) -> Office:
    """An office; with ``console`` the staff console is served too."""
    config = load_config(config_path)
    node_dir = pki.federation.parent / config.node_id
    seal = Signer.from_pem(
        (node_dir / "seal.key").read_bytes(), (node_dir / "seal.pem").read_bytes()
    )
    hub = SurveyHub(
        RoomConfig(
            node_id=config.node_id,
            join_key=Ed25519PrivateKey.generate().public_key(),
            seal=seal,
            media_root=config.data_dir / "survey",
            clock=lambda: datetime.now(UTC),
        )
    )
    cases = CaseLayer(inner=survey_checked())
    layer = SurveyCaseLayer(cases, hub)
    extensions = [cases.extension, layer.extension]
    if console:
        extensions.append(ConsoleLayer(cases, config).extension)
    node = Node(config, core_factory=layer.core_factory, extensions=extensions)
    return Office(node, layer, cases, hub, config_path.parent / "bundle.pem")
