"""The pure outbox policy: full-jitter capped backoff, case heads, batches, wake-ups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from relay.core.model import OutboxState
from relay.core.outbox import (
    OutboxPolicy,
    OutboxRow,
    PeerBackoff,
    backoff_delay,
    blocked_successors,
    due_batches,
    expired,
    next_wakeup,
)

T = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
POLICY = OutboxPolicy(base_delay=timedelta(seconds=1), max_delay=timedelta(minutes=5), batch_size=3)


def row(pid: str, peer: str, case: str, seq: int, order: int, **kw: object) -> OutboxRow:
    defaults: dict[str, object] = {"state": OutboxState.QUEUED, "expires": T + timedelta(days=1)}
    defaults.update(kw)
    return OutboxRow(pid, peer, case, seq, order, **defaults)  # type: ignore[arg-type]


@given(st.integers(min_value=1, max_value=200), st.floats(min_value=0.0, max_value=1.0))
def test_backoff_is_full_jitter_under_a_capped_exponential(failures: int, rand: float) -> None:
    delay = backoff_delay(POLICY, failures, rand)
    ceiling = min(POLICY.max_delay, POLICY.base_delay * 2 ** min(failures - 1, 40))
    assert timedelta(0) <= delay <= ceiling
    assert backoff_delay(POLICY, failures, 1.0) == ceiling


def test_backoff_grows_then_stops_at_the_cap() -> None:
    ceilings = [backoff_delay(POLICY, n, 1.0).total_seconds() for n in range(1, 12)]
    assert ceilings == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert backoff_delay(POLICY, 0, 0.5) == timedelta(0)


def test_only_case_heads_go_out_oldest_first_in_batches_per_peer() -> None:
    rows = [
        row("a1", "P", "a", 1, 1),
        row("a2", "P", "a", 2, 2),
        row("b1", "P", "b", 1, 3),
        row("c3", "P", "c", 3, 4, state=OutboxState.IN_FLIGHT),  # resent after a crash
        row("d1", "P", "d", 1, 5),
        row("q1", "Q", "a", 1, 6),
    ]
    batches = {b.peer: b.packet_ids for b in due_batches(rows, {}, POLICY, T)}
    assert batches == {"P": ("a1", "b1", "c3"), "Q": ("q1",)}


def test_peers_in_backoff_and_packets_not_yet_due_wait_expired_ones_get_a_last_chance() -> None:
    rows = [
        row("a1", "P", "a", 1, 1),
        row("b1", "Q", "b", 1, 2, next_attempt_at=T + timedelta(seconds=5)),
        row("c1", "Q", "c", 1, 3, expires=T),
        row("d1", "Q", "d", 1, 4),
    ]
    peers = {"P": PeerBackoff(3, T + timedelta(seconds=30))}
    assert [(b.peer, b.packet_ids) for b in due_batches(rows, peers, POLICY, T)] == [
        ("Q", ("c1", "d1"))  # c1 expired: it still goes, for its last chance
    ]
    assert expired(rows, POLICY, T) == []  # c1 gets its last chance first
    assert expired(rows, POLICY, T + POLICY.expiry_grace) == ["c1"]
    later = [r for r in rows if r.packet_id != "c1"]
    assert next_wakeup(later, peers, POLICY, T) == T  # d1 is due now
    waiting = [r for r in later if r.packet_id != "d1"]
    assert next_wakeup(waiting, peers, POLICY, T) == T + timedelta(seconds=5)


def test_successors_of_a_settled_packet_are_the_later_open_ones_of_its_case_and_peer() -> None:
    rows = [
        row("a1", "P", "a", 1, 1),
        row("a2", "P", "a", 2, 2),
        row("a3", "P", "a", 3, 3),
        row("b2", "P", "b", 2, 4),
        row("x2", "Q", "a", 2, 5),
    ]
    assert blocked_successors(rows, rows[0]) == ["a2", "a3"]
