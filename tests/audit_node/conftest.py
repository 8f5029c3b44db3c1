"""Fixtures: a three-node federation PKI, and running nodes with the audit log mounted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from audit_node_support import IDS, Federation, Pki, make_pki, write_configs


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("audit-pki"))


@pytest.fixture
async def trio(pki: Pki, tmp_path: Path) -> AsyncIterator[Federation]:
    """Three running nodes, each a partner of the other two."""
    federation = Federation(pki, write_configs(pki, tmp_path, IDS))
    try:
        for node in federation.nodes.values():
            await node.start()
        yield federation
    finally:
        for node in federation.nodes.values():
            await node.stop()


@pytest.fixture
async def pair(pki: Pki, tmp_path: Path) -> AsyncIterator[Federation]:
    """Two running nodes, partners of each other."""
    federation = Federation(pki, write_configs(pki, tmp_path, IDS[:2]))
    try:
        for node in federation.nodes.values():
            await node.start()
        yield federation
    finally:
        for node in federation.nodes.values():
            await node.stop()
