"""Fixtures for the e-licence tests (helpers live in ``licence_support``)."""

from __future__ import annotations

import pytest
from licence_support import ISSUER, OTHER, Federation, make_federation


@pytest.fixture(scope="session")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return make_federation(
        tmp_path_factory.mktemp("licence-fed"),
        "Jiangsu-Hubei",
        [(ISSUER, "盐城市大丰区行政审批局"), (OTHER, "武汉市武昌区政务服务中心")],
    )


@pytest.fixture(scope="session")
def rogue(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    """A federation nobody trusts, with a node using the issuer's node id."""
    return make_federation(tmp_path_factory.mktemp("rogue-fed"), "Rogue", [(ISSUER, "假冒审批局")])
