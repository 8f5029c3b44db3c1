"""The evidence chain of a survey: every recorded fact, hash-linked in server order.

Each fact is an :class:`Entry`: the session id, a sequence number, the server time
``t_ms`` (milliseconds since the Unix epoch) at which the server recorded it, a kind
and its data, and ``prev``, the hash of the entry before it (64 zeros for the first).
The entry's hash is ``SHA-256(canonical_json(entry without "hash"))`` in lowercase hex,
so changing, removing, inserting or reordering any entry breaks the link of the entry
after it, and rewriting every later hash changes the chain head that the signed survey
report pins. Kinds (:class:`EntryKind`) and their data:

==================== ==============================================================
segment              recording segment: name, size, sha256, start_ms, end_ms
snapshot             full-resolution frame: name, size, sha256, by (inspector)
geofix               site device fix: lat_e7, lon_e7, accuracy_mm, distance_mm
challenge_issued     liveness challenge: challenge_id, challenge (code/instruction), by
challenge_shown      the site page displayed it: challenge_id, by
challenge_confirmed  the inspector judged it: challenge_id, by, result
gap                  an interruption: start_ms, end_ms
note                 free text: text, by
==================== ==============================================================

:class:`EvidenceChain` builds a chain (pure, immutable); :func:`verify_chain` lists
every integrity and consistency problem of a sequence of entries;
:func:`~remote_survey.media.verify_media` checks the files the entries name;
:func:`~remote_survey.geosummary.geolocation_summary` summarizes the fixes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from remote_survey.entries import (
    BODY_TYPES,
    EVIDENCE_FILE,
    HEX64,
    Body,
    ChallengeConfirmed,
    ChallengeIssued,
    ChallengeShown,
    EntryKind,
    Gap,
    GeoFix,
    Note,
    Segment,
    Snapshot,
    epoch_ms,
    geofix,
)
from remote_survey.errors import MalformedEvidence
from remote_survey.geosummary import GeoSummary, geolocation_summary
from remote_survey.media import MediaProblem, verify_media
from signing.encoding import canonical_json
from signing.errors import MalformedInput

__all__ = [
    "EVIDENCE_FILE",
    "FORMAT_VERSION",
    "GENESIS",
    "Body",
    "ChainProblem",
    "ChainVerification",
    "ChallengeConfirmed",
    "ChallengeIssued",
    "ChallengeShown",
    "Entry",
    "EntryKind",
    "EvidenceChain",
    "Gap",
    "GeoFix",
    "GeoSummary",
    "MediaProblem",
    "Note",
    "Segment",
    "Snapshot",
    "epoch_ms",
    "geofix",
    "geolocation_summary",
    "parse_evidence",
    "verify_chain",
    "verify_media",
]

GENESIS = "0" * 64
FORMAT_VERSION = 1


def _bad(message: str) -> MalformedEvidence:
    return MalformedEvidence(message)


@dataclass(frozen=True)
class Entry:
    """One chain entry as recorded; ``hash`` is the declared hash (checked by verify)."""

    session: str
    seq: int
    t_ms: int
    body: Body
    prev: str
    hash: str

    @property
    def kind(self) -> EntryKind:
        return self.body.KIND

    def hashed_object(self) -> dict[str, Any]:
        return {
            "v": FORMAT_VERSION,
            "session": self.session,
            "seq": self.seq,
            "t_ms": self.t_ms,
            "kind": self.kind.value,
            "data": self.body.to_data(),
            "prev": self.prev,
        }

    def computed_hash(self) -> str:
        return hashlib.sha256(canonical_json(self.hashed_object())).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {**self.hashed_object(), "hash": self.hash}

    @classmethod
    def from_json(cls, obj: object) -> Entry:
        """Parse the wire form; the hash is *not* checked here (see :func:`verify_chain`)."""
        keys = {"v", "session", "seq", "t_ms", "kind", "data", "prev", "hash"}
        if not isinstance(obj, dict) or set(obj) != keys:
            raise _bad(f"an entry is an object with exactly the members {sorted(keys)}")
        if obj["v"] != FORMAT_VERSION:
            raise _bad(f"unsupported evidence format version {obj['v']!r}")
        for name in ("seq", "t_ms"):
            value = obj[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise _bad(f"entry {name} must be a non-negative integer")
        for name in ("prev", "hash"):
            if not isinstance(obj[name], str) or not HEX64.fullmatch(obj[name]):
                raise _bad(f"entry {name} must be 64 lowercase hex digits")
        if not isinstance(obj["session"], str) or not obj["session"]:
            raise _bad("entry session must be a non-empty string")
        body_cls = BODY_TYPES.get(obj["kind"]) if isinstance(obj["kind"], str) else None
        if body_cls is None:
            raise _bad(f"unknown entry kind {obj['kind']!r}")
        data = obj["data"]
        names = {f.name for f in fields(body_cls)}  # type: ignore[arg-type]
        older = names - set(body_cls.OPTIONAL)
        if not isinstance(data, dict) or set(data) not in (names, older):
            raise _bad(f"{body_cls.KIND} data must have exactly the members {sorted(names)}")
        body: Body = body_cls(**data)  # type: ignore[assignment]
        return cls(obj["session"], obj["seq"], obj["t_ms"], body, obj["prev"], obj["hash"])


@dataclass(frozen=True)
class _Consistency:
    """Facts a well-formed chain obeys beyond its hashes, carried one entry at a time."""

    last_t: int = 0
    last_segment_end: int = 0
    files: frozenset[str] = frozenset()
    issued: frozenset[str] = frozenset()
    shown: frozenset[str] = frozenset()
    confirmed: frozenset[str] = frozenset()

    def step(self, e: Entry) -> tuple[_Consistency, tuple[str, str] | None]:
        """The state after ``e`` and the problem ``e`` has, if any."""
        b = e.body
        if e.t_ms < self.last_t:
            return self, ("time-regression", f"time {e.t_ms} is before the previous {self.last_t}")
        state = replace(self, last_t=e.t_ms)
        if isinstance(b, Segment | Snapshot):
            if b.name in state.files:
                return state, ("inconsistent", f"file {b.name} appears twice")
            state = replace(state, files=state.files | {b.name})
        if isinstance(b, Segment | Gap) and b.end_ms > e.t_ms:
            return state, ("inconsistent", f"{b.KIND} ends after it was recorded")
        if isinstance(b, Segment):
            if b.start_ms < state.last_segment_end:
                return state, ("inconsistent", f"segment {b.name} overlaps the previous one")
            state = replace(state, last_segment_end=b.end_ms)
        if isinstance(b, ChallengeIssued):
            if b.challenge_id in state.issued:
                return state, ("inconsistent", f"challenge {b.challenge_id} issued twice")
            state = replace(state, issued=state.issued | {b.challenge_id})
        if isinstance(b, ChallengeShown | ChallengeConfirmed):
            shown = isinstance(b, ChallengeShown)
            seen = state.shown if shown else state.confirmed
            if b.challenge_id not in state.issued:
                return state, ("inconsistent", f"challenge {b.challenge_id} was never issued")
            if b.challenge_id in seen:
                return state, ("inconsistent", f"challenge {b.challenge_id}: {b.KIND} twice")
            if shown:
                state = replace(state, shown=seen | {b.challenge_id})
            else:
                state = replace(state, confirmed=seen | {b.challenge_id})
        return state, None


@dataclass(frozen=True)
class EvidenceChain:
    """An immutable, always-valid chain under construction for one session."""

    session_id: str
    entries: tuple[Entry, ...] = ()
    _state: _Consistency | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._state is not None:
            return
        result = verify_chain(self.entries, session_id=self.session_id)
        if not result.ok:
            raise _bad(f"not a valid chain: {result.problems[0].message}")
        state = _Consistency()
        for e in self.entries:
            state, _ = state.step(e)
        object.__setattr__(self, "_state", state)

    @property
    def head(self) -> str:
        return self.entries[-1].hash if self.entries else GENESIS

    def append(self, body: Body, t_ms: int) -> EvidenceChain:
        """Return the chain with ``body`` recorded at server time ``t_ms``.

        Raises :class:`MalformedEvidence` when the entry would make the chain
        inconsistent (time going backwards, a file named twice, an unknown challenge).
        """
        assert self._state is not None  # set by __post_init__
        draft = Entry(self.session_id, len(self.entries), t_ms, body, self.head, GENESIS)
        state, problem = self._state.step(draft)
        if problem is not None:
            raise _bad(problem[1])
        entry = Entry(self.session_id, draft.seq, t_ms, body, draft.prev, draft.computed_hash())
        return EvidenceChain(self.session_id, (*self.entries, entry), state)

    def extend(self, items: Iterable[tuple[Body, int]]) -> EvidenceChain:
        chain = self
        for body, t_ms in items:
            chain = chain.append(body, t_ms)
        return chain

    def to_jsonl(self) -> bytes:
        return b"".join(canonical_json(e.to_json()) + b"\n" for e in self.entries)


def parse_evidence(data: bytes) -> tuple[Entry, ...]:
    """Parse an evidence file: one canonical JSON entry per line, each ending in LF."""
    if data and not data.endswith(b"\n"):
        raise _bad("the evidence file must end with a line feed")
    entries = []
    for number, line in enumerate(data.split(b"\n")[:-1], start=1):
        try:
            obj = json.loads(line)
        except ValueError:
            raise _bad(f"line {number} is not JSON") from None
        try:
            entry = Entry.from_json(obj)
            canonical = canonical_json(entry.to_json())
        except (MalformedEvidence, MalformedInput, TypeError) as exc:
            raise _bad(f"line {number}: {exc}") from None
        if canonical != line:
            raise _bad(f"line {number} is not in canonical JSON form")
        entries.append(entry)
    return tuple(entries)


@dataclass(frozen=True)
class ChainProblem:
    index: int  # position in the sequence checked; -1 for the chain as a whole
    code: str
    message: str


@dataclass(frozen=True)
class ChainVerification:
    head: str
    length: int
    problems: tuple[ChainProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_chain(
    entries: Sequence[Entry],
    *,
    session_id: str | None = None,
    head: str | None = None,
    length: int | None = None,
) -> ChainVerification:
    """List every problem of ``entries``: altered, removed, inserted or reordered ones.

    Each entry must hash to its declared hash (else ``hash-mismatch``: altered), name
    the previous entry's hash as ``prev`` (else ``broken-link``: something removed,
    inserted or reordered before it), carry its position as ``seq`` (``bad-sequence``),
    the session id (``wrong-session``) and a non-decreasing time (``time-regression``),
    and be consistent with what came before (``inconsistent``). ``head`` and ``length``,
    when given (from a signed report), catch a truncated or rewritten tail.
    """
    problems: list[ChainProblem] = []
    session = session_id if session_id is not None else (entries[0].session if entries else "")
    state = _Consistency()
    prev = GENESIS
    for i, e in enumerate(entries):
        if e.computed_hash() != e.hash:
            problems.append(ChainProblem(i, "hash-mismatch", f"entry {i} was altered"))
        if e.prev != prev:
            problems.append(
                ChainProblem(i, "broken-link", f"entry {i} does not follow entry {i - 1}")
            )
        if e.seq != i:
            problems.append(ChainProblem(i, "bad-sequence", f"entry {i} carries seq {e.seq}"))
        if e.session != session:
            problems.append(
                ChainProblem(i, "wrong-session", f"entry {i} belongs to session {e.session}")
            )
        state, problem = state.step(e)
        if problem is not None:
            problems.append(ChainProblem(i, problem[0], f"entry {i}: {problem[1]}"))
        prev = e.hash
    actual_head = entries[-1].hash if entries else GENESIS
    if length is not None and len(entries) != length:
        problems.append(
            ChainProblem(-1, "length-mismatch", f"{len(entries)} entries, {length} expected")
        )
    if head is not None and actual_head != head:
        problems.append(
            ChainProblem(-1, "head-mismatch", f"chain head {actual_head} is not {head}")
        )
    return ChainVerification(actual_head, len(entries), tuple(problems))
