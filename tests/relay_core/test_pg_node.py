"""The node keeps its relay and audit tables where ``[database]`` says (issue 15), and
``tongban db migrate`` brings every component to this release's schema, refusing a
newer one — on a real PostgreSQL server and on the SQLite file."""

from __future__ import annotations

import random
from pathlib import Path

import psycopg
import pytest
from relay_core_support import START, WUCHANG, Pki

from relay.cli import main
from relay.config import load_config
from relay.core.fakes import FakeNetwork
from relay.core.sqlite_schema import MIGRATIONS
from relay.node import relay_core_factory
from relay.tls import BundleSource

RELAY_STEPS = len(MIGRATIONS)  # the relay component's schema steps


def node_toml(pki: Pki, folder: Path, database: str = "") -> Path:
    bundle = folder / "bundle.pem"
    fed = pki.federation_dir
    bundle.write_bytes((fed / "root.pem").read_bytes() + (fed / "crl.pem").read_bytes())
    path = folder / "node.toml"
    path.write_text(
        f'[node]\nid = "{WUCHANG}"\nkey_dir = "{fed.parent / WUCHANG}"\n'
        'data_dir = "data"\ntrust_bundle = "bundle.pem"\n[listeners.federation]\nport = 8443\n'
        "[listeners.public]\nport = 8080\n[listeners.staff]\nport = 8444\n" + database,
        encoding="utf-8",
    )
    return path


def versions(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT component, version FROM schema_versions").fetchall()
    return {str(c): int(v) for c, v in rows}


def test_a_node_with_a_database_url_keeps_its_tables_there_and_blobs_in_the_shared_dir(
    pki: Pki, tmp_path: Path, pg_url: str
) -> None:
    config = load_config(
        node_toml(pki, tmp_path, f'[database]\nurl = "{pg_url}"\nblob_dir = "shared"\n')
    )
    handle = relay_core_factory(
        config,
        FakeNetwork(rng=random.Random(1)).link(WUCHANG),
        BundleSource(tmp_path / "bundle.pem"),
        lambda: START,  # the kit's PKI and CRL are made for its clock, not for today
    )
    try:
        assert handle.storage_ok()
        assert versions(pg_url) == {"relay": RELAY_STEPS, "audit": 1}
        assert not (config.data_dir / "relay.sqlite3").exists()
        assert (tmp_path / "shared" / "partial").is_dir()  # uploads go where every worker is
        assert not (config.data_dir / "blobs").exists()
    finally:
        handle.close()


def test_db_migrate_applies_every_component_once_and_refuses_a_newer_schema(
    pki: Pki, tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = node_toml(pki, tmp_path, f'[database]\nurl = "{pg_url}"\n')
    assert main(["db", "migrate", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"relay: {RELAY_STEPS} steps applied, at version {RELAY_STEPS}" in out
    assert "audit: 1 step applied, at version 1" in out
    assert main(["db", "migrate", "--config", str(config)]) == 0
    assert f"relay: up to date, at version {RELAY_STEPS}" in capsys.readouterr().out
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE schema_versions SET version = 7 WHERE component = 'audit'")
    assert main(["db", "migrate", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "error[schema-too-new]" in err
    assert "schema version 7" in err
    assert versions(pg_url)["audit"] == 7  # left as it was


def test_db_migrate_on_the_sqlite_file_of_a_node_without_a_database_url(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = node_toml(pki, tmp_path)
    assert main(["db", "migrate", "--config", str(config)]) == 0
    assert f"relay: {RELAY_STEPS} steps applied" in capsys.readouterr().out
    assert (tmp_path / "data" / "relay.sqlite3").exists()
    assert main(["db", "migrate", "--config", str(config)]) == 0
    assert "audit: up to date, at version 1" in capsys.readouterr().out


def test_db_migrate_names_an_unreachable_database(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = node_toml(pki, tmp_path, '[database]\nurl = "postgresql://nobody@127.0.0.1:1/x"\n')
    assert main(["db", "migrate", "--config", str(config)]) == 2
    assert "error[database-unreachable]" in capsys.readouterr().err


def test_db_migrate_names_a_sqlite_file_that_is_not_a_database(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = node_toml(pki, tmp_path)
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "relay.sqlite3").write_bytes(b"not a database, " * 512)
    assert main(["db", "migrate", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "error[database-unreachable]" in err
    assert "relay.sqlite3" in err
    assert (tmp_path / "data" / "relay.sqlite3").read_bytes() == b"not a database, " * 512
