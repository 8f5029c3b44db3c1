"""Issue 14: the shipped systemd unit is hardened (``systemd-analyze security`` exposure
at most 3.0, judged by the real systemd) and runs ``tongban serve`` as the guide says."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from opskit import tool

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "tongban.service"


def test_the_unit_exposure_is_at_most_3() -> None:
    run = subprocess.run(
        [tool("systemd-analyze", "systemd"), "security", "--offline=yes", str(UNIT)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    found = re.search(r"Overall exposure level for tongban\.service: ([0-9.]+)", run.stdout)
    assert found, f"no exposure level in: {run.stdout}{run.stderr}"
    assert float(found.group(1)) <= 3.0, run.stdout


def test_the_unit_has_no_unknown_or_misspelt_directive(tmp_path: Path) -> None:
    """``systemd-analyze verify`` on a copy whose ExecStart exists on this machine (the
    real one is where docs/operations.md installs tongban)."""
    text = UNIT.read_text(encoding="utf-8").replace("/opt/tongban/bin/tongban", "/bin/true")
    copy = tmp_path / "tongban.service"
    copy.write_text(text, encoding="utf-8")
    run = subprocess.run(
        [tool("systemd-analyze", "systemd"), "verify", str(copy)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Unknown" not in run.stderr, run.stderr


def test_the_unit_serves_with_json_logs_as_an_unprivileged_user() -> None:
    text = UNIT.read_text(encoding="utf-8")
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert " serve --config /etc/tongban/node.toml" in exec_start
    assert "--log-format json" in exec_start
    assert "User=tongban" in text
    assert "ProtectSystem=strict" in text
