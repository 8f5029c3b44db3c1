"""Choosing listening ports for local federations (the demo, tests, benchmarks).

A port the kernel hands out for ``bind(0)`` comes from the ephemeral range, the same
range outgoing connections draw their source ports from; between releasing it and the
node binding it again, any client connection on the machine may take it ("address
already in use"). Ports are therefore drawn at random from below the ephemeral range
(Linux default 32768-60999) and checked to be bindable right now.

Parallel test workers (pytest-xdist sets ``PYTEST_XDIST_WORKER=gwN`` and
``PYTEST_XDIST_WORKER_COUNT``) each draw from their own slice of that range, and so do
the processes they start: between one worker's check and its node's bind, another
worker could otherwise check and take the same port. Within one process, a port handed
out stays reserved for a minute: callers often draw ports in several calls before they
bind any (``pa, pb = free_ports(3), free_ports(3)``), and a port that is free but not
yet bound would otherwise be handed out twice.
"""

from __future__ import annotations

import os
import random
import re
import socket
import threading
import time

__all__ = ["free_ports"]

_LOW, _HIGH = 20000, 32767
_RESERVED_FOR = 60.0  # seconds a handed-out port is not handed out again by this process
_handed_out: dict[int, float] = {}  # port -> monotonic time it was handed out
_lock = threading.Lock()


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _slice() -> tuple[int, int]:
    """The part of the range this process draws from (all of it outside parallel tests)."""
    worker = re.fullmatch(r"gw(\d+)", os.environ.get("PYTEST_XDIST_WORKER", ""))
    try:
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    except ValueError:
        workers = 1
    if worker is None or workers < 2 or int(worker.group(1)) >= workers:
        return _LOW, _HIGH
    width = (_HIGH - _LOW) // workers
    low = _LOW + int(worker.group(1)) * width
    return low, low + width


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports on ``host``, outside the ephemeral range, free right now."""
    rng = random.SystemRandom()
    low, high = _slice()
    chosen: list[int] = []
    with _lock:
        now = time.monotonic()
        for port, at in list(_handed_out.items()):
            if now - at > _RESERVED_FOR:
                del _handed_out[port]
        for _ in range(count * 200):
            if len(chosen) == count:
                break
            port = rng.randrange(low, high)
            if port not in chosen and port not in _handed_out and _bindable(host, port):
                chosen.append(port)
        if len(chosen) != count:
            raise OSError(f"no {count} free ports on {host} in {low}-{high}")
        _handed_out.update(dict.fromkeys(chosen, now))
    return chosen
