"""`tongban demo --database`: a schema per office on a real PostgreSQL, recreated on each
run with the work folder's care (a schema the demo did not make is refused, kept)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from demo_processes import processes_naming

from relay.demo.database import MARK, node_url, prepare_schemas, schema_name
from relay.demo.errors import NotADemoDatabase

TONGBAN = [sys.executable, "-m", "relay.cli"]


def test_a_node_url_puts_its_schema_first_on_the_search_path_and_keeps_the_rest() -> None:
    url = node_url("postgresql://demo@127.0.0.1:5433/tongban?sslmode=disable", "420106")
    assert url == (
        "postgresql://demo@127.0.0.1:5433/tongban?sslmode=disable"
        "&options=-c%20search_path%3Dtongban_demo_420106"
    )


def test_schemas_are_made_fresh_on_each_run_and_reached_through_their_urls(pg_url: str) -> None:
    first = prepare_schemas(pg_url, ["420106", "320982"])
    with psycopg.connect(first["420106"], autocommit=True) as conn:
        conn.execute("CREATE TABLE left_over (n BIGINT)")
        conn.execute("INSERT INTO left_over VALUES (1)")
        assert conn.execute("SELECT current_schema()").fetchone() == ("tongban_demo_420106",)
    again = prepare_schemas(pg_url, ["420106", "320982"])
    assert again == first
    with psycopg.connect(pg_url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema_name("420106"),),
        ).fetchall()
        assert tables == []  # the previous run's tables are gone
        comment = conn.execute(
            "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
            (schema_name("320982"),),
        ).fetchone()
        assert comment == (MARK,)


def test_a_schema_the_demo_did_not_make_is_refused_and_kept(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA tongban_demo_371422")
        conn.execute("CREATE TABLE tongban_demo_371422.precious (n BIGINT)")
    with pytest.raises(NotADemoDatabase, match="not created by `tongban demo`"):
        prepare_schemas(pg_url, ["371422"])
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT COUNT(*) FROM tongban_demo_371422.precious").fetchone() == (0,)


def test_the_demo_refuses_a_database_option_that_is_not_a_postgresql_url(tmp_path: Path) -> None:
    result = subprocess.run(
        [*TONGBAN, "demo", "--once", "--dir", str(tmp_path / "d"), "--database", "mysql://x/y"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error[demo-database]: --database must start with postgresql://" in result.stderr
    assert not (tmp_path / "d").exists()


def test_the_whole_demo_plays_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    work = tmp_path / "demo"
    result = subprocess.run(
        [*TONGBAN, "demo", "--once", "--dir", str(work), "--database", pg_url],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out[-6000:] + result.stderr
    assert "✗" not in out
    assert "tongban demo — on PostgreSQL (development PKI, local federation)" in out
    assert "the rating reached 320982 and both copies hold the same" in out
    assert "`tongban survey verify` accepts the report against the media at 371422" in out
    for node in ("420106", "320982", "371422"):
        assert f"{node}'s data is in PostgreSQL schema tongban_demo_{node}" in out
        assert f"{node} stopped (exit status 0)" in out
        assert (
            f'search_path%3Dtongban_demo_{node}"'
            in (work / "nodes" / node / "node.toml").read_text()
        )
    assert "all steps held" in out
    with psycopg.connect(pg_url, autocommit=True) as conn:
        cases = conn.execute("SELECT COUNT(*) FROM tongban_demo_320982.cases").fetchone()
        assert cases == (2,)  # the food business and the pesticide retail licence


@pytest.mark.timeout(240)
def test_a_kill_of_the_throwaway_postgresql_demo_stops_the_demo_and_the_cluster(
    tmp_path: Path,
) -> None:
    """``make demo DATABASE=postgres`` killed with SIGTERM (not a Ctrl-C to the whole
    group): before, the wrapper ended at once and left its PostgreSQL server running and
    its folder in /tmp, and the demo's nodes with it."""
    work = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay.demo.throwaway_postgres", "--dir", str(work)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "press Ctrl-C to stop" in line:
                break
        text = "".join(lines)
        assert "all steps held" in text, text[-4000:]
        [cluster] = re.findall(r"throwaway PostgreSQL cluster in (\S+): ", text)
        nodes = str(work / "nodes")  # in each node's command line (--config)
        assert len(processes_naming(nodes)) == 3, "the demo's nodes serve"
        assert Path(cluster).is_dir()
        assert processes_naming(cluster), "the cluster's server runs"
        proc.send_signal(signal.SIGTERM)  # to the wrapper alone
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest
    for node in ("420106", "320982", "371422"):
        assert f"{node} stopped (exit status 0)" in rest
    assert not Path(cluster).exists()
    assert processes_naming(cluster) == []
    assert processes_naming(nodes) == []
