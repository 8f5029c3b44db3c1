"""Authorization decision cost: 10 agreements vs 10,000 agreements x 1,000 matters.

``agreements.authorize`` looks up the ordered pair (from, to) in a hash index, then the
matter code in each candidate agreement's own clause mapping, so the cost of one
decision should not grow with the number of agreements or matters held.

Setup (same process, same query mix, in this run):

- nodes: 2,850 generated 6-digit division codes (about the number of counties);
- agreements: 70% bilateral, 25% with 3-15 parties, 5% with 46 parties; every party
  handles, issues and receives for every other party; matters are drawn from a pool of
  1,000 codes (the whole pool when an agreement has 1,000 matters);
- lifecycles are built active directly (the document bytes are never serialized, which
  would dominate the build and is not what is measured);
- queries: 50% "hit" requests (a pair of an agreement in the index and a matter it
  covers: runs the full check down to a Permit) and 50% random requests (mostly denied
  at the pair lookup or as matter-not-covered), 200,000 of each kind, timed per kind,
  best of 5 rounds.

``ratio`` = wall-clock ns per decision at this size / the same for the 10-agreement,
10-matter baseline of the same kind; ``cpu_ratio`` the same from this process's CPU
time (steadier on a shared machine). ``candidates`` is the mean number of agreements
evaluated per decision (the algorithmic work; the rest is memory locality).
``rss_mb`` is this process's resident-set growth while building that index (psutil).
A ``control`` row per size times the same random (from, to) probes against a bare
Python dict with the index's keys: the part of any growth that is the memory hierarchy
(a bigger table no longer fits the caches), not tongban's algorithm.
"""

from __future__ import annotations

import gc
import random
import time
from datetime import UTC, datetime, timedelta

import psutil

from agreements.actions import Action
from agreements.authorize import AgreementIndex, Request, authorize
from agreements.events import EventKind
from agreements.lifecycle import Lifecycle, Snapshot, State
from agreements.model import (
    Agreement,
    Material,
    MaterialCopy,
    MaterialForm,
    MatterClause,
    Party,
    Roles,
    ServiceMode,
)

NODES = 2_850
MATTER_POOL = 1_000
QUERIES = 200_000
ROUNDS = 5
SIZES = ((10, 10), (10, 1_000), (1_000, 1_000), (10_000, 1_000))
T0 = datetime(2026, 1, 1, tzinfo=UTC)
AT = T0 + timedelta(days=100)
MODES = frozenset({ServiceMode.PROXY_RECEIPT, ServiceMode.JOINT})
MATERIALS = (
    Material("申请书", "Application form", MaterialForm.PAPER_OR_ELECTRONIC, MaterialCopy.ORIGINAL),
)


def _nodes(rng: random.Random) -> list[str]:
    codes: set[str] = set()
    while len(codes) < NODES:
        codes.add(f"{rng.randrange(110000, 660000):06d}")
    return sorted(codes)


def _party_count(rng: random.Random) -> int:
    x = rng.random()
    if x < 0.70:
        return 2
    if x < 0.95:
        return rng.randint(3, 15)
    return 46


def _agreement(i: int, parties: list[str], matters: list[str]) -> Lifecycle:
    ids = frozenset(parties)
    roles = Roles.build(
        receive_for={p: ids - {p} for p in parties},
        handle=ids,
        survey_for={},
        issue=ids,
    )
    clauses = {m: MatterClause(m, MODES, roles, MATERIALS, 20, False, ()) for m in matters}
    ag = Agreement(
        id=f"bench-{i}",
        version=1,
        title_zh="基准协议",
        title_en="Benchmark agreement",
        parties=tuple(Party(p, p, p, "省") for p in parties),
        valid_from=T0,
        valid_until=T0 + timedelta(days=3650),
        clauses=clauses,
        data_categories=frozenset({"case-materials"}),
        retention_years=30,
    )
    snap = Snapshot(T0, State.ACTIVE, frozenset(), frozenset(), EventKind.ACTIVATE)
    return Lifecycle(ag, (snap,))


def _build(
    n_agreements: int, n_matters: int, nodes: list[str], pool: list[str], rng: random.Random
) -> list[Lifecycle]:
    out = []
    for i in range(n_agreements):
        parties = rng.sample(nodes, _party_count(rng))
        matters = pool if n_matters >= len(pool) else rng.sample(pool, n_matters)
        out.append(_agreement(i, parties, matters))
    return out


def _queries(
    lifecycles: list[Lifecycle], nodes: list[str], pool: list[str], rng: random.Random
) -> tuple[list[Request], list[Request]]:
    hits, randoms = [], []
    actions = list(Action)
    for _ in range(QUERIES):
        ag = rng.choice(lifecycles).agreement
        a, b = rng.sample(sorted(ag.party_ids), 2)
        matter = rng.choice(list(ag.clauses)) if len(ag.clauses) < 50 else rng.choice(pool)
        if matter not in ag.clauses:
            matter = next(iter(ag.clauses))
        hits.append(Request(a, b, matter, Action.SUBMIT))
        randoms.append(
            Request(rng.choice(nodes), rng.choice(nodes), rng.choice(pool), rng.choice(actions))
        )
    return hits, randoms


def _time(index: AgreementIndex, requests: list[Request]) -> tuple[float, float]:
    """Best-of-rounds wall and CPU (this process) nanoseconds per decision."""
    wall = cpu = float("inf")
    for _ in range(ROUNDS):
        w0, c0 = time.perf_counter_ns(), time.process_time_ns()
        for req in requests:
            authorize(index, req, AT)
        wall = min(wall, (time.perf_counter_ns() - w0) / len(requests))
        cpu = min(cpu, (time.process_time_ns() - c0) / len(requests))
    return wall, cpu


def run() -> list[dict[str, object]]:
    rng = random.Random(20260101)
    nodes = _nodes(rng)
    pool = [f"matter-{i:04d}" for i in range(MATTER_POOL)]
    proc = psutil.Process()
    rows: list[dict[str, object]] = []
    baseline: dict[str, float] = {}
    for n_agreements, n_matters in SIZES:
        gc.collect()
        rss_before = proc.memory_info().rss
        started = time.perf_counter()
        lifecycles = _build(n_agreements, n_matters, nodes, pool, rng)
        index = AgreementIndex(lifecycles)
        build_s = time.perf_counter() - started
        rss_mb = (proc.memory_info().rss - rss_before) / 2**20
        hits, randoms = _queries(lifecycles, nodes, pool, rng)
        permits = sum(1 for r in hits[:1000] if authorize(index, r, AT).permitted)
        for kind, requests in (("hit", hits), ("random", randoms)):
            wall, cpu = _time(index, requests)
            baseline.setdefault(kind, wall)
            baseline.setdefault(kind + "-cpu", cpu)
            candidates = sum(len(index.candidates(r.sender, r.recipient)) for r in requests)
            rows.append(
                {
                    "agreements": n_agreements,
                    "matters_each": n_matters,
                    "clauses": n_agreements * n_matters,
                    "queries": kind,
                    "permit_share": f"{permits / 10:.0f}%" if kind == "hit" else "",
                    "build_s": build_s,
                    "rss_mb": rss_mb,
                    "candidates": candidates / len(requests),
                    "ns_per_decision": wall,
                    "ratio": wall / baseline[kind],
                    "cpu_ns": cpu,
                    "cpu_ratio": cpu / baseline[kind + "-cpu"],
                }
            )
        rows.append(_control(index, randoms, n_agreements, n_matters, baseline))
        del lifecycles, index, hits, randoms
    return rows


def _control(
    index: AgreementIndex,
    requests: list[Request],
    n_agreements: int,
    n_matters: int,
    baseline: dict[str, float],
) -> dict[str, object]:
    """The same random (from, to) probes against a bare dict as large as the pair index.

    Shows what the memory hierarchy alone costs at this size (no tongban code involved).
    """
    table = {key: None for key in index._by_pair}  # same keys, same size
    probes = [(r.sender, r.recipient) for r in requests]
    cpu = float("inf")
    for _ in range(ROUNDS):
        c0 = time.process_time_ns()
        for key in probes:
            table.get(key)
        cpu = min(cpu, (time.process_time_ns() - c0) / len(probes))
    baseline.setdefault("control-cpu", cpu)
    return {
        "agreements": n_agreements,
        "matters_each": n_matters,
        "clauses": n_agreements * n_matters,
        "queries": f"control: bare dict of {len(table):,} pairs",
        "cpu_ns": cpu,
        "cpu_ratio": cpu / baseline["control-cpu"],
    }
