"""The helper process that examines incoming packets (checks 1 and 7) for a node.

A node's inbox verifies the outer JWS, opens the sealed content and verifies the inner
JWS of every packet it receives (:func:`relay.core.receiver.examine`): pure work, most
of the CPU a received packet costs, and most of it holding the interpreter lock. A
node with more than one core runs it here, in a process of its own
(:class:`relay.core.examine_pool.ExamineProcess` starts it with
``python -m relay.core.examine_worker``), so that the node's event loop, its store and
this work use two cores.

The conversation runs over the process's stdin and stdout, in frames of a 4-byte
big-endian length and a pickle (a pipe between a node and the child it started: both
ends are the node's own code). The first frame gives the HPKE private keys (suite and
secret, as :func:`relay.core.packets.key_ring` takes them) and the node id; then each
request is ``(bundle fingerprint, bundle PEM or None, tokens, at, peer id)`` and its
answer, in order, one packed result per token (:func:`pack`) or ``("error", text)``.
The bundle's PEM comes with the first request that names a new fingerprint, so fresh
CRLs apply from the next batch, as in the node. The process ends when its stdin
closes — also when the node is killed, since only the node holds the pipe's other end.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import pickle
import struct
import sys
from typing import IO, Any

from cryptography.hazmat.primitives.serialization import Encoding

from relay.core.packets import key_ring
from relay.core.receiver import Examined, examine
from signing.certificates import TrustBundle
from signing.hpke import HpkePrivateKey, HpkeSuite

__all__ = ["pack", "read_frame", "write_frame"]

_LEN = struct.Struct(">I")

Packed = tuple[Any, ...]
"""An :class:`Examined` as it crosses the pipe: ``(reason,)`` for a refused packet, else
``(digest, facts, signer DER, signer node id, signer name, signer purpose, content
verdict, body)`` (the token stays with the node, which sent it)."""


def read_frame(stream: IO[bytes]) -> Any | None:
    """The next frame's object, or None at the end of the stream."""
    head = stream.read(_LEN.size)
    if len(head) < _LEN.size:
        return None
    (size,) = _LEN.unpack(head)
    body = stream.read(size)
    if len(body) < size:
        return None
    return pickle.loads(body)  # noqa: S301 - the node that started us, over our own pipe


def frame(obj: object) -> bytes:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(body)) + body


def write_frame(stream: IO[bytes], obj: object) -> None:
    stream.write(frame(obj))
    stream.flush()


def pack(examined: Examined) -> Packed:
    """``examined`` as it crosses the pipe (see :data:`Packed`)."""
    packet = examined.packet
    if isinstance(packet, str):
        return (packet,)
    signer = packet.signer
    der = signer.certificate.public_bytes(Encoding.DER)
    return (
        packet.digest, packet.facts, der, signer.node_id, signer.name, signer.purpose,
        examined.content, examined.body,
    )  # fmt: skip


class _Bundles:
    """The bundle by fingerprint: the last one the node sent."""

    def __init__(self) -> None:
        self._fingerprint: bytes | None = None
        self._bundle: TrustBundle | None = None

    def get(self, fingerprint: bytes, pem: bytes | None) -> TrustBundle:
        if pem is not None:
            self._bundle, self._fingerprint = TrustBundle.from_pem(pem), fingerprint
        if self._bundle is None or self._fingerprint != fingerprint:
            raise LookupError("the node named a trust bundle it has not sent")
        return self._bundle


def serve(source: IO[bytes], sink: IO[bytes]) -> int:
    """Answer the node's requests until ``source`` ends."""
    hello = read_frame(source)
    if hello is None:
        return 0
    keys_raw, me = hello
    keys = key_ring([HpkePrivateKey(HpkeSuite(suite), secret) for suite, secret in keys_raw])
    bundles = _Bundles()
    while (request := read_frame(source)) is not None:
        fingerprint, pem, tokens, at, peer_id = request
        try:
            bundle = bundles.get(fingerprint, pem)
            answer: object = [
                pack(examine(t, bundle, keys, at=at, peer_id=peer_id, me=me)) for t in tokens
            ]
        except Exception as exc:
            answer = ("error", f"{type(exc).__name__}: {exc}")
        write_frame(sink, answer)
    return 0


PIPE_BYTES = 1 << 20
"""Capacity asked for both pipes (Linux ``F_SETPIPE_SZ``): a whole batch and its answer
fit, so neither side waits for the other to read while it works."""


def _widen_pipes() -> None:
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    for stream in (sys.stdin, sys.stdout):
        with contextlib.suppress(OSError, ValueError):
            if set_size is not None:
                fcntl.fcntl(stream.fileno(), set_size, PIPE_BYTES)


def main() -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    _widen_pipes()
    return serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    raise SystemExit(main())
