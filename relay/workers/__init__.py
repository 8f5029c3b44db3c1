"""Several workers of one node: what they share, and what runs once per node.

An office that outgrows one process runs several ``tongban serve`` workers of the same
node (same node id, keys and configuration) on one PostgreSQL database
(``[database] url``) and one blob directory reachable from all of them:

- on one host the workers share the listening ports (``tongban serve --reuse-port``:
  ``SO_REUSEPORT``, the kernel spreads new connections over them); on several hosts a
  TCP load balancer in front of the federation listener passes TLS through, so partner
  nodes' mutual TLS still ends at a worker (docs/operations.md, *Several workers*);
- the stores keep every guarantee across workers in the database (outbox claims with
  leases, per-case order, deduplication by constraint, one audit appender at a time);
- work that must happen once per node — the periodic checkpoint and the witness round,
  the integration sweep (webhooks, the event scan, the retention purge), the expiry
  warnings — runs on one worker, the leader, chosen by a PostgreSQL advisory lock
  (:mod:`relay.workers.leader`);
- every worker refreshes the federation directories (its routes to partners are in its
  memory) and renews the licence status lists in its own data directory (they are
  files there, served by that worker).

Several workers on one SQLite file are refused (:func:`check_reuse_port`): SQLite is the
single-process default.
"""

from __future__ import annotations

from relay.config import NodeConfig
from relay.workers.leader import (
    LEADER_KEY,
    LEADERSHIP,
    AdvisoryLeadership,
    Leadership,
    SoleWorker,
    leader_gauges,
    leadership_for,
    while_leading,
)

__all__ = [
    "LEADERSHIP",
    "LEADER_KEY",
    "AdvisoryLeadership",
    "Leadership",
    "SoleWorker",
    "WorkersRefused",
    "check_reuse_port",
    "leader_gauges",
    "leadership_for",
    "while_leading",
]


class WorkersRefused(ValueError):
    """Several workers asked for on a configuration that cannot carry them."""


def check_reuse_port(config: NodeConfig) -> None:
    """Refuse shared ports (several workers) unless the node's tables are on PostgreSQL."""
    if not config.database.postgresql:
        raise WorkersRefused(
            "several workers (--reuse-port) need the node's tables on PostgreSQL: set"
            " [database] url; several processes on one SQLite file are not supported"
        )
