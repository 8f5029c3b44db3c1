"""Who this node's partners are and how to reach them (pure).

A node's partners are the other parties of its agreements that are live (active or
suspended) at the instant asked, resolved through the directories the node holds
(:class:`~relay.federation.directories.DirectorySet`). ``[[partners]]`` in ``node.toml``
is an override: a partner listed there is reached at its configured URL with its
configured descriptor, whether or not an agreement or a directory names it. A party no
directory lists and no override names is *unresolved* (the node raises a staff alert).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from agreements.lifecycle import Lifecycle, State
from relay.federation.directories import DirectorySet
from signing.federation_directory import EntryLimits

__all__ = ["PartnerRoute", "Resolution", "agreement_partners", "resolve_partners"]

_LIVE = frozenset({State.ACTIVE, State.SUSPENDED})


@dataclass(frozen=True)
class PartnerRoute:
    """Where a partner is and which descriptor it published."""

    node_id: str
    federation_url: str
    node_json: bytes
    source: str  # "directory <federation>" or "override"
    public_url: str | None = None
    limits: EntryLimits | None = None


@dataclass(frozen=True)
class Resolution:
    routes: Mapping[str, PartnerRoute] = field(default_factory=dict)
    unresolved: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "routes", MappingProxyType(dict(self.routes)))

    def urls(self) -> dict[str, str]:
        return {n: r.federation_url for n, r in self.routes.items()}


def agreement_partners(
    node_id: str, lifecycles: Iterable[Lifecycle], *, at: datetime
) -> frozenset[str]:
    """The other parties of the live agreements ``node_id`` is party to at ``at``."""
    out: set[str] = set()
    for lifecycle in lifecycles:
        parties = lifecycle.agreement.party_ids
        if node_id in parties and lifecycle.state_at(at) in _LIVE:
            out |= parties
    out.discard(node_id)
    return frozenset(out)


def resolve_partners(
    wanted: Iterable[str],
    directories: DirectorySet,
    overrides: Mapping[str, PartnerRoute],
) -> Resolution:
    """Routes for ``wanted`` through ``directories``; every override is a route too."""
    routes = dict(overrides)
    unresolved = set()
    for node_id in sorted(set(wanted) - set(overrides)):
        found = directories.entry(node_id)
        if found is None:
            unresolved.add(node_id)
            continue
        verified, entry = found
        routes[node_id] = PartnerRoute(
            node_id=node_id,
            federation_url=entry.federation_url.rstrip("/"),
            node_json=entry.node_json,
            source=f"directory {verified.directory.federation}",
            public_url=entry.public_url.rstrip("/"),
            limits=entry.limits,
        )
    return Resolution(routes, frozenset(unresolved))
