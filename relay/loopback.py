"""Choosing listening ports for local federations (the demo, tests, benchmarks).

A port the kernel hands out for ``bind(0)`` comes from the ephemeral range, the same
range outgoing connections draw their source ports from; between releasing it and the
node binding it again, any client connection on the machine may take it ("address
already in use"). Ports are therefore drawn at random from below the ephemeral range
(Linux default 32768-60999) and checked to be bindable right now.
"""

from __future__ import annotations

import random
import socket

__all__ = ["free_ports"]

_LOW, _HIGH = 20000, 32767


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports on ``host``, outside the ephemeral range, free right now."""
    rng = random.SystemRandom()
    chosen: list[int] = []
    for _ in range(count * 200):
        if len(chosen) == count:
            break
        port = rng.randrange(_LOW, _HIGH)
        if port not in chosen and _bindable(host, port):
            chosen.append(port)
    if len(chosen) != count:
        raise OSError(f"no {count} free ports on {host} in {_LOW}-{_HIGH}")
    return chosen
