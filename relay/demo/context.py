"""The state the demo steps share: where things are, which ports, which processes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from relay import loopback
from relay.demo.offices import OFFICES, Office
from signing.certificates import TrustBundle
from signing.hpke import HpkePrivateKey
from signing.keys import Signer

__all__ = ["Demo", "Ports", "free_ports"]


@dataclass(frozen=True)
class Ports:
    federation: int
    public: int
    staff: int


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports free on ``host`` right now (see :mod:`relay.loopback`)."""
    return loopback.free_ports(count, host)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Demo:
    """Paths, ports and running nodes of one demo run (the shell's mutable state)."""

    root: Path
    ports: Mapping[str, Ports]
    offices: tuple[Office, ...] = OFFICES
    clock: Callable[[], datetime] = _utc_now
    nodes: dict[str, Any] = field(default_factory=dict)  # node id -> NodeProcess
    facts: dict[str, Any] = field(default_factory=dict)  # what a step leaves for later ones
    #: Federations (by name, e.g. ``"Jiangsu"``) made in the SM profile (SM2/SM3/SM4).
    sm_federations: frozenset[str] = frozenset()
    database: str | None = None  # PostgreSQL server URL (None: each node's SQLite file)
    database_urls: dict[str, str] = field(default_factory=dict)  # node id -> its URL

    @classmethod
    def create(
        cls,
        root: Path,
        offices: tuple[Office, ...] = OFFICES,
        *,
        sm_federations: frozenset[str] = frozenset(),
        database: str | None = None,
    ) -> Demo:
        numbers = free_ports(3 * len(offices))
        ports = {o.node_id: Ports(*numbers[3 * i : 3 * i + 3]) for i, o in enumerate(offices)}
        return cls(
            root=root,
            ports=ports,
            offices=offices,
            sm_federations=sm_federations,
            database=database,
        )

    def profile(self, office: Office) -> str:
        """The cryptographic profile of ``office``'s federation: ``sm`` or ``default``."""
        return "sm" if office.federation in self.sm_federations else "default"

    def now(self) -> datetime:
        return self.clock()

    def office(self, node_id: str) -> Office:
        for office in self.offices:
            if office.node_id == node_id:
                return office
        raise KeyError(node_id)

    # paths
    def federation_dir(self, office: Office) -> Path:
        return self.root / "pki" / f"federation-{office.federation.lower()}"

    def node_dir(self, node_id: str) -> Path:
        return self.root / "pki" / "nodes" / node_id

    @property
    def bundle_path(self) -> Path:
        return self.root / "pki" / "trust-bundle.pem"

    @property
    def agreement_path(self) -> Path:
        return self.root / "agreement" / "agreement.signed.json"

    def config_path(self, node_id: str) -> Path:
        return self.root / "nodes" / node_id / "node.toml"

    # endpoints
    def endpoints(self, node_id: str) -> dict[str, str]:
        p = self.ports[node_id]
        return {
            "federation": f"https://127.0.0.1:{p.federation}",
            "public": f"http://127.0.0.1:{p.public}",
            "staff": f"https://127.0.0.1:{p.staff}",
        }

    # keys
    def bundle(self) -> TrustBundle:
        return TrustBundle.from_pem(self.bundle_path.read_bytes())

    def signer(self, node_id: str) -> Signer:
        d = self.node_dir(node_id)
        return Signer.from_pem((d / "seal.key").read_bytes(), (d / "seal.pem").read_bytes())

    def hpke_keys(self, node_id: str) -> list[HpkePrivateKey]:
        d = self.node_dir(node_id)
        files = sorted(d.glob("hpke-*.key")) + sorted(d.glob("enc-sm2*.key"))
        return [HpkePrivateKey.from_pem(p.read_bytes()) for p in files]
