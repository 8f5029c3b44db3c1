"""The delivery latency metric reads a sent packet's ``created`` from the head of its
payload (relay.metrics._created): the same value as decoding the whole payload, for a
packet without attachments and for one whose attachment list pushes ``created`` past
the head."""

from __future__ import annotations

import json
import random
from pathlib import Path

from relay_core_support import (
    DAFENG,
    WUCHANG,
    FakeAgreement,
    FakeClock,
    Federation,
    facts,
    forge,
    make_pki,
)

from relay.core.fakes import FakeNetwork
from relay.core.outbox import OutboxPolicy
from relay.metrics import _created
from signing.encoding import b64url_decode


def _whole(token: str) -> int:
    created = json.loads(b64url_decode(token.split(".")[1]))["created"]
    assert isinstance(created, int)
    return created


def test_created_read_from_the_head_equals_the_whole_payload(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    fed = Federation(
        pki=pki, root=tmp_path, clock=FakeClock(), agreement=FakeAgreement(),
        network=FakeNetwork(rng=random.Random(1)), policy=OutboxPolicy(),
    )  # fmt: skip
    plain = forge(fed, pki.keys[WUCHANG], DAFENG, facts(fed, WUCHANG, DAFENG))
    many = [
        {"digest": f"{i:064x}", "size": 10, "media_type": "application/pdf", "name": f"第{i}页"}
        for i in range(6)
    ]
    listed = forge(fed, pki.keys[WUCHANG], DAFENG, facts(fed, WUCHANG, DAFENG, attachments=many))
    payload = listed.split(".")[1]
    assert b'"created":' not in b64url_decode(payload[:512]), "the fallback is not exercised"
    for token in (plain, listed):
        assert _created(token) == _whole(token)
    assert _created("not.a-token") is None
