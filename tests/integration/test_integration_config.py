"""``[[webhooks]]`` in the node configuration: defaults, and a clear error for each
mistake (the key named, the node not started)."""

from __future__ import annotations

from pathlib import Path

import pytest
from casekit import HANDLING, RECEIVING
from casekit_offices import Pki
from test_node_cases import write_config

from relay.config import ConfigError, load_config
from relay.integration.events import EventType


def _config(pki: Pki, tmp_path: Path, webhooks: str) -> Path:
    ports = {"federation": 1, "public": 2, "staff": 3}
    path = write_config(tmp_path / "n", pki, RECEIVING, ports, HANDLING, 4)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(webhooks)
    return path


def test_a_target_takes_every_event_by_default(data_pki: Pki, tmp_path: Path):
    config = load_config(_config(data_pki, tmp_path, '[[webhooks]]\nurl = "https://p.example/h"\n'
                                 '[[webhooks]]\nurl = "http://127.0.0.1:9/h"\n'
                                 'events = ["sla-red"]\nmax_attempts = 3\n'))  # fmt: skip
    first, second = config.webhooks
    assert first.events == frozenset(EventType)
    assert (first.max_attempts, first.base_backoff, first.max_backoff) == (12, 1.0, 600.0)
    assert (second.events, second.max_attempts) == (frozenset({"sla-red"}), 3)


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ('url = "http://platform.example/h"', "webhooks[0].url", "loopback"),
        ('url = "ftp://127.0.0.1/h"', "webhooks[0].url", "https://"),
        ('url = "https://p.example/h"\nevents = ["case-opened"]', "webhooks[0].events",
         "unknown event type"),
        ('url = "https://p.example/h"\nevents = []', "webhooks[0].events", "unknown event"),
        ('url = "https://p.example/h"\nbase_backoff = "1m"\nmax_backoff = "1s"',
         "webhooks[0].max_backoff", "base_backoff"),
        ('url = "https://p.example/h"\nsecret = "x"', "webhooks[0].secret", "unknown setting"),
    ],
)  # fmt: skip
def test_a_wrong_target_is_refused_naming_the_key(
    data_pki: Pki, tmp_path: Path, text: str, key: str, words: str
):
    with pytest.raises(ConfigError) as info:
        load_config(_config(data_pki, tmp_path, f"[[webhooks]]\n{text}\n"))
    assert key in str(info.value)
    assert words in str(info.value)
