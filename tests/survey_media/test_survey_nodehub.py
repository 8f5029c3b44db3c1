"""The node's survey hub: seal from the node directory, a join key of its own."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from certs.pki import init_federation, issue_node
from remote_survey.errors import SurveyError
from remote_survey.nodehub import JOIN_KEY_FILE, node_survey_hub


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    base = datetime.now(UTC) - timedelta(hours=1)
    init_federation(tmp_path / "fed", "Hubei", now=base)
    issue_node(tmp_path / "fed", "420106", "武昌区", "127.0.0.1", tmp_path / "node", now=base)
    return tmp_path / "node"


def _raw(key: object) -> bytes:
    return key.public_key().public_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def test_the_join_key_is_created_private_once_and_differs_from_the_seal(
    node_dir: Path, tmp_path: Path
) -> None:
    hub, key = node_survey_hub("420106", node_dir, tmp_path / "data")
    path = node_dir / JOIN_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    _, again = node_survey_hub("420106", node_dir, tmp_path / "data")
    assert _raw(again) == _raw(key)
    assert _raw(hub.config.seal.key) != _raw(key)
    assert hub.config.media_root == tmp_path / "data" / "survey"
    assert hub.rooms == {}


def test_a_join_key_readable_by_others_is_refused(node_dir: Path, tmp_path: Path) -> None:
    node_survey_hub("420106", node_dir, tmp_path / "data")
    (node_dir / JOIN_KEY_FILE).chmod(0o640)
    with pytest.raises(SurveyError, match="readable by others"):
        node_survey_hub("420106", node_dir, tmp_path / "data")
