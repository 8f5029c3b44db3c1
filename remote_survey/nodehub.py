"""The survey hub of a running node: its seal, its join-link key, its media directory.

:func:`node_survey_hub` builds the :class:`~remote_survey.web.SurveyHub` that
``tongban serve`` mounts on the public listener. Reports are sealed with the node's seal
(``seal.key``/``seal.pem`` in the node directory). Join links are signed with a separate
Ed25519 key, ``survey-join.key`` in the node directory, created on first use with mode
0600 (a key that others can read is refused): join links and sealed documents never
share a key. Media and evidence go under ``<data dir>/survey/<session id>/``. The
Segments and snapshots are sealed at rest with ``survey-media.key`` in the node
directory (:mod:`remote_survey.vault`). The ``[survey]`` settings give the pages STUN
and TURN servers, TURN with time-limited
credentials (:mod:`remote_survey.turn`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from remote_survey.errors import SurveyError
from remote_survey.room import Clock, RoomConfig
from remote_survey.turn import IceConfig, load_turn_secret
from remote_survey.vault import MEDIA_KEY_FILE, MediaVault, load_or_create_media_key
from remote_survey.web import SurveyHub
from signing.keyfile import KeyFileError, load_or_create_ed25519_key
from signing.keys import Signer

if TYPE_CHECKING:
    from relay.config import SurveySettings

__all__ = ["JOIN_KEY_FILE", "ice_config", "load_or_create_join_key", "node_survey_hub"]

JOIN_KEY_FILE = "survey-join.key"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def load_or_create_join_key(path: Path) -> Ed25519PrivateKey:
    """The join-link signing key at ``path``, created (0600, exclusive) when missing."""
    try:
        return load_or_create_ed25519_key(path, "survey join key")
    except KeyFileError as exc:
        raise SurveyError(str(exc)) from exc.__cause__


def ice_config(survey: SurveySettings) -> IceConfig | None:
    """The ICE servers of the node's ``[survey]`` settings (None when there are none)."""
    if not survey.stun_urls and not survey.turn_urls:
        return None
    secret = b""
    if survey.turn_urls:
        assert survey.turn_secret_file is not None  # the configuration requires it
        secret = load_turn_secret(survey.turn_secret_file)
    return IceConfig(
        stun_urls=survey.stun_urls,
        turn_urls=survey.turn_urls,
        turn_secret=secret,
        turn_ttl=timedelta(seconds=survey.turn_ttl),
    )


def node_survey_hub(
    node_id: str,
    key_dir: Path,
    data_dir: Path,
    *,
    clock: Clock = _utc_now,
    survey: SurveySettings | None = None,
) -> tuple[SurveyHub, Ed25519PrivateKey]:
    """The node's hub (with the sessions it kept, resumed) and the key of its join links;
    ``survey`` (the node's ``[survey]`` settings) gives the pages their ICE servers."""
    seal = Signer.from_pem((key_dir / "seal.key").read_bytes(), (key_dir / "seal.pem").read_bytes())
    join_key = load_or_create_join_key(key_dir / JOIN_KEY_FILE)
    config = RoomConfig(
        node_id=node_id,
        join_key=join_key.public_key(),
        seal=seal,
        media_root=data_dir / "survey",
        clock=clock,
        ice=None if survey is None else ice_config(survey),
        vault=MediaVault(load_or_create_media_key(key_dir / MEDIA_KEY_FILE)),
    )
    hub = SurveyHub(config)
    hub.resume()
    return hub, join_key
