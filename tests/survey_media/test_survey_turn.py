"""TURN credentials of the REST scheme, checked against openssl's HMAC-SHA1, the
``[survey]`` settings, and the credentials a page gets in ``welcome``."""

from __future__ import annotations

import base64
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from media_support import make_plan, make_world

from relay.config import ConfigError, SurveySettings, parse_config
from remote_survey.errors import SurveyError
from remote_survey.nodehub import ice_config
from remote_survey.room import RoomConfig, SurveyRoom
from remote_survey.session import Participant, Role
from remote_survey.turn import IceConfig, load_turn_secret, turn_credential


def _openssl_hmac_sha1(secret: bytes, message: str) -> str:
    done = subprocess.run(
        ["openssl", "dgst", "-sha1", "-hmac", secret.decode(), "-binary"],
        input=message.encode(), capture_output=True, check=True, timeout=30,
    )  # fmt: skip
    return base64.b64encode(done.stdout).decode()


def test_credentials_are_expiry_colon_user_and_the_hmac_sha1_of_the_secret() -> None:
    secret = b"a-shared-turn-secret-of-the-node"
    expires = datetime.now(UTC) + timedelta(hours=6)
    username, credential = turn_credential(secret, "sv-1.site-1", expires)
    assert username == f"{int(expires.timestamp())}:sv-1.site-1"
    assert credential == _openssl_hmac_sha1(secret, username)
    with pytest.raises(ValueError, match="must not contain"):
        turn_credential(secret, "a:b", expires)


def test_each_participant_gets_fresh_time_limited_turn_credentials_in_welcome(
    tmp_path: Path,
) -> None:
    world = make_world(tmp_path)
    now = datetime.now(UTC).replace(microsecond=0)
    ice = IceConfig(
        stun_urls=("stun:stun.example.test:3478",),
        turn_urls=("turn:turn.example.test:3478?transport=udp", "turns:turn.example.test:5349"),
        turn_secret=b"0123456789abcdef0123",
        turn_ttl=timedelta(hours=2),
    )
    base = world.hub.config
    config = RoomConfig(node_id=base.node_id, join_key=base.join_key, seal=base.seal,
                        media_root=base.media_root, clock=lambda: now, ice=ice)  # fmt: skip
    room = SurveyRoom(make_plan(now), config)
    servers = room.welcome(Participant("site-1", "张店主"), Role.SITE)["iceServers"]
    assert servers[0] == {"urls": ["stun:stun.example.test:3478"]}
    turn = servers[1]
    expiry = int((now + timedelta(hours=2)).timestamp())
    assert turn["urls"] == list(ice.turn_urls)
    assert turn["username"] == f"{expiry}:sv-media-0001.site-1"
    assert turn["credential"] == _openssl_hmac_sha1(b"0123456789abcdef0123", turn["username"])
    other = room.welcome(Participant("insp-1", "李勘查"), Role.INSPECTOR)["iceServers"][1]
    assert other["username"] == f"{expiry}:sv-media-0001.insp-1"


def _config(tmp_path: Path, survey: dict[str, object]) -> SurveySettings:
    data = {
        "node": {"id": "420106", "key_dir": "k", "data_dir": "d", "trust_bundle": "b.pem"},
        "listeners": {
            "federation": {"host": "127.0.0.1", "port": 1},
            "public": {"host": "127.0.0.1", "port": 2},
            "staff": {"host": "127.0.0.1", "port": 3, "tls": False},
        },
        "survey": survey,
    }
    return parse_config(data, source=tmp_path / "node.toml").survey


def test_survey_settings_and_the_node_secret_file(tmp_path: Path) -> None:
    settings = _config(
        tmp_path,
        {"turn_urls": ["turn:10.0.0.1:3478"], "turn_secret_file": "turn.secret", "turn_ttl": "1h"},
    )
    assert settings.turn_secret_file == (tmp_path / "turn.secret").resolve()
    assert settings.turn_ttl == 3600
    with pytest.raises(SurveyError, match="cannot read the TURN secret"):
        ice_config(settings)
    (tmp_path / "turn.secret").write_text("short\n")
    with pytest.raises(SurveyError, match="shorter than 16 bytes"):
        ice_config(settings)
    (tmp_path / "turn.secret").write_text("0123456789abcdef0123\n")
    ice = ice_config(settings)
    assert ice is not None
    assert ice.turn_secret == load_turn_secret(tmp_path / "turn.secret") == b"0123456789abcdef0123"
    assert ice_config(_config(tmp_path, {})) is None
    for bad, key in (
        ({"turn_urls": ["turn:10.0.0.1"]}, "turn_secret_file"),
        ({"turn_urls": ["http://x"], "turn_secret_file": "s"}, "turn_urls"),
        ({"stun_urls": "stun:x"}, "stun_urls"),
        ({"turn_ttl": "10s"}, "turn_ttl"),
        ({"turn_server": "x"}, "turn_server"),
    ):
        with pytest.raises(ConfigError) as refused:
            _config(tmp_path, bad)
        assert key in str(refused.value)
