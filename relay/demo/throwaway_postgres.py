"""``make demo DATABASE=postgres``: the demo on a throwaway PostgreSQL cluster.

``python -m relay.demo.throwaway_postgres [demo options]`` starts a cluster with
:func:`relay.db.cluster.start_cluster` (Debian's ``initdb``/``pg_ctl`` in a temporary
folder, one loopback port), creates the database ``tongban_demo``, runs ``tongban demo
--database <its URL>`` with the options given, and stops and deletes the cluster once
the demo has ended. A Ctrl-C reaches both processes: the demo stops its nodes, this
wrapper waits for it, then stops the cluster. A SIGTERM or SIGHUP sent to this wrapper
alone (a ``kill``, a closed terminal) is passed on to the demo as a SIGTERM, and ends
the same way: no node and no PostgreSQL server is left running.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Sequence

from relay.db.cluster import ClusterError, start_cluster

__all__ = ["main"]

_PASSED_ON = (signal.SIGTERM, signal.SIGHUP)


def main(argv: Sequence[str] = ()) -> int:
    received: list[int] = []
    running: list[subprocess.Popen[bytes]] = []

    def pass_on(signum: int, frame: object) -> None:
        received.append(signum)
        if running:
            running[0].send_signal(signal.SIGTERM)  # the demo stops its nodes, then ends

    for sig in _PASSED_ON:  # noted while the cluster starts; acted on once it can stop
        signal.signal(sig, pass_on)
    try:
        cluster = start_cluster()
    except (ClusterError, OSError) as exc:
        sys.stderr.write(f"tongban: error[demo-database]: no PostgreSQL cluster: {exc}\n")
        return 2
    try:
        if received:
            return 128 + received[0]
        url = cluster.create_database("tongban_demo")
        sys.stdout.write(f"throwaway PostgreSQL cluster in {cluster.directory}: {url}\n")
        sys.stdout.flush()
        demo = subprocess.Popen(  # noqa: S603 - our own CLI, fixed argv
            [sys.executable, "-m", "relay.cli", "demo", "--database", url, *argv]
        )
        running.append(demo)
        if received:  # came before the demo could be told
            demo.send_signal(signal.SIGTERM)
        while True:
            try:
                status = demo.wait()
            except KeyboardInterrupt:
                continue  # the demo got the same Ctrl-C: wait until it has stopped its nodes
            return 128 - status if status < 0 else status  # killed by a signal: as a shell says
    finally:
        for sig in _PASSED_ON:  # the cluster's stop is not cut short
            signal.signal(sig, signal.SIG_IGN)
        cluster.stop()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
