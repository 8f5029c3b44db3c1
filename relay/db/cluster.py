"""A throwaway PostgreSQL cluster for the tests, the benchmarks and the demo.

:func:`start_cluster` runs Debian's ``initdb`` and ``pg_ctl`` in a temporary directory:
a server listening on one loopback port (and a Unix socket in that directory), trust
authentication for loopback only, ``fsync`` on (commits are as durable as in
production). PostgreSQL refuses to run as root, so as root the cluster belongs to the
``postgres`` account Debian's package creates. Nothing here is for a production
server; an office points ``[database] url`` at the cluster its administrators run.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from relay.loopback import free_ports

__all__ = ["Cluster", "ClusterError", "postgres_bin", "start_cluster"]

SUPERUSER = "tongban"


class ClusterError(RuntimeError):
    """The PostgreSQL server binaries are missing or the cluster did not start."""


def postgres_bin(name: str) -> str:
    """The path of a PostgreSQL server program (``initdb``, ``pg_ctl``), newest major."""
    found = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path:
        return on_path
    raise ClusterError(
        f"{name} not found: install the Debian package postgresql (make system-deps does"
        " so as root)"
    )


def _as_owner(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


@dataclass
class Cluster:
    directory: Path
    host: str
    port: int
    _owned_dir: bool = True

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """A new empty database ``name``; its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(  # noqa: S603 - fixed argv
            _as_owner([postgres_bin("pg_ctl"), "-D", str(self.directory / "data"), "-m",
                       "immediate", "-w", "stop"]),
            capture_output=True, check=False, timeout=60,
        )  # fmt: skip
        if self._owned_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_cluster(base: Path | None = None, *, host: str = "127.0.0.1") -> Cluster:
    """Initialise and start a new cluster under ``base`` (a new temporary directory
    if None); return once it accepts connections."""
    initdb, pg_ctl = postgres_bin("initdb"), postgres_bin("pg_ctl")
    directory = Path(tempfile.mkdtemp(prefix="tongban-pg-", dir=base))
    directory.chmod(0o755)
    data = directory / "data"
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    try:
        init = subprocess.run(  # noqa: S603 - fixed argv
            _as_owner([initdb, "-D", str(data), "-U", SUPERUSER, "--auth=trust",
                       "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]),
            capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        if init.returncode != 0:
            raise ClusterError(f"initdb failed: {init.stderr.strip() or init.stdout.strip()}")
        (port,) = free_ports(1, host)
        options = (
            f"-c listen_addresses={host} -c port={port} -c unix_socket_directories={directory}"
            " -c max_connections=200 -c shared_buffers=64MB -c fsync=on"
            " -c synchronous_commit=on -c log_min_messages=warning"
        )
        start = subprocess.run(  # noqa: S603 - fixed argv
            _as_owner([pg_ctl, "-D", str(data), "-o", options, "-l",
                       str(directory / "server.log"), "-w", "-t", "60", "start"]),
            capture_output=True, text=True, check=False, timeout=90,
        )  # fmt: skip
        if start.returncode != 0:
            log = (directory / "server.log").read_text(errors="replace")[-2000:]
            raise ClusterError(f"pg_ctl start failed: {start.stderr.strip()}\n{log}")
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    cluster = Cluster(directory=directory, host=host, port=port)
    _wait_ready(cluster)
    return cluster


def _wait_ready(cluster: Cluster, timeout: float = 60.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(cluster.url(), connect_timeout=5):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
