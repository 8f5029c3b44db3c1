"""``make demo DATABASE=postgres``: the demo on a throwaway PostgreSQL cluster.

``python -m relay.demo.throwaway_postgres [demo options]`` starts a cluster with
:func:`relay.db.cluster.start_cluster` (Debian's ``initdb``/``pg_ctl`` in a temporary
folder, one loopback port), creates the database ``tongban_demo``, runs ``tongban demo
--database <its URL>`` with the options given, and stops and deletes the cluster once
the demo has ended. A Ctrl-C reaches both processes: the demo stops its nodes, this
wrapper waits for it, then stops the cluster.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from relay.db.cluster import ClusterError, start_cluster

__all__ = ["main"]


def main(argv: Sequence[str] = ()) -> int:
    try:
        cluster = start_cluster()
    except (ClusterError, OSError) as exc:
        sys.stderr.write(f"tongban: error[demo-database]: no PostgreSQL cluster: {exc}\n")
        return 2
    try:
        url = cluster.create_database("tongban_demo")
        sys.stdout.write(f"throwaway PostgreSQL cluster in {cluster.directory}: {url}\n")
        sys.stdout.flush()
        demo = subprocess.Popen(  # noqa: S603 - our own CLI, fixed argv
            [sys.executable, "-m", "relay.cli", "demo", "--database", url, *argv]
        )
        while True:
            try:
                return demo.wait()
            except KeyboardInterrupt:
                continue  # the demo got the same Ctrl-C: wait until it has stopped its nodes
    finally:
        cluster.stop()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
