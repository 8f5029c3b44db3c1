"""WebRTC survey tests, each run in its own network namespace (loopback only).

ICE does not offer 127.0.0.1, and these tests must not reach any other host, so each
case runs in a private namespace with 127.0.0.2 added to its loopback device
(``../shared/TESTING.md``). The namespace needs root (CAP_SYS_ADMIN), as in CI; without
it these tests fail with that explanation rather than skip. Each keeps the inner run's
output, full log and files in its tmp dir, and prints them when it fails.
"""

from __future__ import annotations

from pathlib import Path

from media_support import run_in_netns


def test_aiortc_peers_go_live_record_snapshot_rejoin_and_report_in_a_netns(
    tmp_path: Path,
) -> None:
    run_in_netns("_netns_aiortc.py", timeout=240, artefacts=tmp_path)


def test_chromium_site_and_inspector_survey_verifies_and_tampering_fails_in_a_netns(
    tmp_path: Path,
) -> None:
    run_in_netns("_netns_browser.py", timeout=240, artefacts=tmp_path)


def test_chromium_phone_denied_camera_or_location_presence_and_guarded_signing_in_a_netns(
    tmp_path: Path,
) -> None:
    """Screenshots of every step are kept in this test's tmp dir (``screenshots/``)."""
    run_in_netns("_netns_browser_field.py", timeout=240, artefacts=tmp_path)


def test_chromium_phone_reaches_the_node_only_through_a_coturn_relay_in_netns(
    tmp_path: Path,
) -> None:
    """coturn (Debian) between a phone namespace and a node namespace; see _netns_turn.py."""
    run_in_netns("_netns_turn.py", timeout=240, artefacts=tmp_path)
