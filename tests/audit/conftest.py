"""Fixtures for the audit tests: nodes with a real SQLite log file and a seal key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from audit_nodes import LogNode
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[Callable[[str], LogNode]]:
    nodes: list[LogNode] = []

    def make(node_id: str) -> LogNode:
        node = LogNode(tmp_path, node_id, Ed25519PrivateKey.generate())
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.close()
