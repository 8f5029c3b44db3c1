"""``[outbox] lease``: how long a worker's claim on a case lasts (PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.config import ConfigError, load_config

BASE = (
    '[node]\nid = "420106"\nkey_dir = "keys"\ndata_dir = "data"\n'
    'trust_bundle = "bundle.pem"\n[listeners.federation]\nport = 8443\n'
    "[listeners.public]\nport = 8080\n[listeners.staff]\nport = 8444\n"
)


def test_the_lease_defaults_to_two_minutes_and_must_outlast_one_send(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(BASE, encoding="utf-8")
    assert load_config(path).outbox.lease == 120.0
    path.write_text(BASE + '[limits]\nrequest_timeout = "5s"\n[outbox]\nlease = "6s"\n')
    assert load_config(path).outbox.lease == 6.0
    path.write_text(BASE + '[outbox]\nlease = "10s"\n')  # request_timeout: 30 s
    with pytest.raises(ConfigError, match=r"outbox\.lease.*request_timeout"):
        load_config(path)
