"""Issue 14: expiry alerts cover the province's directory-signing certificate (30 days
ahead a warning, within 7 critical), on an injected clock, for the province whose
directory lists the node only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from federation_kit import resolved, running_federation, staff_client, until

from relay.alerts import Severity
from relay.expiry import expiry_alerts
from relay.staff_auth import StaffRole

A, B = "420106", "320982"


class Clock:
    """The wall clock moved by ``offset`` (the test moves it)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


async def _directory_key_alerts(node: object) -> dict[str, tuple[str, str]]:
    alerts = await staff_client(node, StaffRole.READER).get("/staff/v1/alerts")  # type: ignore[arg-type]
    return {
        a["subject"]: (a["code"], a["severity"])
        for a in alerts["alerts"]
        if a["code"] == "directory-key-expiring"
    }


async def test_the_directory_signing_certificate_of_the_own_province_warns_ahead(
    tmp_path: Path,
) -> None:
    clock = Clock()
    async with running_federation(tmp_path, {"Hubei": (A,), "Jiangsu": (B,)}, clock=clock) as fed:
        await until("both nodes resolved each other", lambda: resolved(fed, 1))
        assert fed.nodes[A].federation is not None
        signers = fed.nodes[A].federation.directory_signers()
        assert set(signers) == {"Hubei"}  # Jiangsu's directory is held, but not A's province
        end = signers["Hubei"].not_valid_after_utc
        assert await _directory_key_alerts(fed.nodes[A]) == {}

        clock.offset = end - timedelta(days=20) - datetime.now(UTC)
        assert await _directory_key_alerts(fed.nodes[A]) == {
            "Hubei": ("directory-key-expiring", "warning")
        }
        clock.offset = end - timedelta(days=3) - datetime.now(UTC)
        assert await _directory_key_alerts(fed.nodes[A]) == {
            "Hubei": ("directory-key-expiring", "critical")
        }
        assert set(await _directory_key_alerts(fed.nodes[B])) == {"Jiangsu"}


def test_expiry_alerts_for_directory_keys_follow_the_certificate_thresholds(
    tmp_path: Path,
) -> None:
    from certs.pki import init_federation, issue_directory_key

    now = datetime.now(UTC).replace(microsecond=0)
    init_federation(tmp_path / "fed", "Hubei", now=now)
    cert = issue_directory_key(tmp_path / "fed", tmp_path / "dirkey", now=now)
    end = cert.not_valid_after_utc

    def alerts(at: datetime) -> list[tuple[str, Severity, str]]:
        found = expiry_alerts(
            at, crls=(), certificates={}, agreements=(), node_id=A, directory_keys={"Hubei": cert}
        )
        return [(a.code, a.severity, a.subject) for a in found]

    assert alerts(end - timedelta(days=31)) == []
    assert alerts(end - timedelta(days=29)) == [
        ("directory-key-expiring", Severity.WARNING, "Hubei")
    ]
    assert alerts(end - timedelta(days=6)) == [
        ("directory-key-expiring", Severity.CRITICAL, "Hubei")
    ]
    [expired] = expiry_alerts(
        end + timedelta(days=1),
        crls=(),
        certificates={},
        agreements=(),
        node_id=A,
        directory_keys={"Hubei": cert},
    )
    assert "expired at" in expired.detail
    assert expired.title_zh == "联邦目录签名证书即将过期"
