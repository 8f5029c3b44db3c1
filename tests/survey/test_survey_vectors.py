"""A fixed evidence chain as data (``vectors/evidence-v1``): the format, frozen.

The vector directory holds the evidence file, the two media files it names and
``expected.json`` (head, length, geolocation summary). Another implementation of
docs/protocol.md §10 can check itself against these bytes; here they check that our
builder still writes exactly them and that the hashing rules, recomputed with nothing
but ``hashlib`` and ``json``, give the recorded head.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from remote_survey.entries import (
    Body,
    ChallengeConfirmed,
    ChallengeIssued,
    ChallengeShown,
    Gap,
    Note,
    Segment,
    Snapshot,
    geofix,
)
from remote_survey.evidence import (
    EVIDENCE_FILE,
    EvidenceChain,
    geolocation_summary,
    parse_evidence,
    verify_chain,
    verify_media,
)
from remote_survey.geo import GeoPoint

VECTOR = Path(__file__).parent / "vectors" / "evidence-v1"
SITE = GeoPoint(305_428_000, 1_143_162_000)
T0 = 1_795_000_000_000
MEDIA = {"seg-0000.webm": b"segment 0000\n", "seg-0001.webm": b"segment 0001\n"}
MEDIA["snap-0001.jpg"] = b"snapshot 0001\n"


def _file(name: str) -> tuple[str, int, str]:
    data = MEDIA[name]
    return name, len(data), hashlib.sha256(data).hexdigest()


def vector_chain() -> EvidenceChain:
    items: list[tuple[Body, int]] = [
        (geofix(SITE, GeoPoint(SITE.lat_e7 + 180, SITE.lon_e7), 4_000), T0),
        (Segment(*_file("seg-0000.webm"), T0, T0 + 10_000), T0 + 10_000),
        (Snapshot(*_file("snap-0001.jpg"), "insp-1"), T0 + 12_000),
        (ChallengeIssued("ch-1", "请举起三根手指", "insp-1"), T0 + 13_000),
        (ChallengeShown("ch-1", "site-1"), T0 + 13_400),
        (ChallengeConfirmed("ch-1", "insp-1", "confirmed"), T0 + 16_000),
        (Gap(T0 + 20_000, T0 + 25_000), T0 + 25_000),
        (geofix(SITE, GeoPoint(SITE.lat_e7, SITE.lon_e7 - 3_000), 25_000), T0 + 26_000),
        (Segment(*_file("seg-0001.webm"), T0 + 25_000, T0 + 35_000), T0 + 35_000),
        (Note("现场勘查完成", "insp-1"), T0 + 35_000),
    ]
    return EvidenceChain("sv-vector-0001").extend(items)


def test_builder_writes_the_vector_bytes() -> None:
    assert vector_chain().to_jsonl() == (VECTOR / EVIDENCE_FILE).read_bytes()


def test_head_recomputed_with_hashlib_and_json_only() -> None:
    expected = json.loads((VECTOR / "expected.json").read_text())
    prev = "0" * 64
    count = 0
    for line in (VECTOR / EVIDENCE_FILE).read_bytes().splitlines():
        obj = json.loads(line)
        declared = obj.pop("hash")
        assert obj["prev"] == prev
        canon = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(canon.encode()).hexdigest() == declared
        prev, count = declared, count + 1
    assert (prev, count) == (expected["head"], expected["length"])


def test_vector_verifies_with_its_media_and_summary() -> None:
    expected = json.loads((VECTOR / "expected.json").read_text())
    entries = parse_evidence((VECTOR / EVIDENCE_FILE).read_bytes())
    assert verify_chain(entries, head=expected["head"], length=expected["length"]).ok
    assert verify_media(entries, VECTOR) == ()
    span = expected["span"]
    summary = geolocation_summary(
        entries, start_ms=span["start_ms"], end_ms=span["end_ms"], radius_mm=20_000
    )
    assert summary.to_json() == expected["geolocation"]


def write_vector() -> None:  # pragma: no cover - run by hand when the format changes
    VECTOR.mkdir(parents=True, exist_ok=True)
    chain = vector_chain()
    (VECTOR / EVIDENCE_FILE).write_bytes(chain.to_jsonl())
    for name, data in MEDIA.items():
        (VECTOR / name).write_bytes(data)
    span = {"start_ms": T0, "end_ms": T0 + 35_000}
    summary = geolocation_summary(chain.entries, radius_mm=20_000, **span)
    expected = {
        "head": chain.head,
        "length": len(chain.entries),
        "span": span,
        "geolocation": summary.to_json(),
    }
    (VECTOR / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")


if __name__ == "__main__":  # pragma: no cover
    write_vector()
