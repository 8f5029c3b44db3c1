"""The load-balancer configuration docs/operations.md gives for several workers is one
HAProxy accepts (Debian ``haproxy -c``)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from workerkit import haproxy_binary

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def test_the_documented_haproxy_configuration_is_valid(tmp_path: Path) -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## 7. Several workers") :]
    (block,) = re.findall(r"```haproxy\n(.*?)```", section, flags=re.S)
    assert "mode tcp" in block  # TLS passes through to the workers
    assert "balance first" in block  # the pinned listener
    config = tmp_path / "haproxy.cfg"
    config.write_text(block, encoding="utf-8")
    check = subprocess.run(
        [haproxy_binary(), "-c", "-f", str(config)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
