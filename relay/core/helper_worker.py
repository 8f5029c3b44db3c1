"""The crypto helper process of a node: it examines incoming batches and seals new packets.

Most of the CPU a packet costs a node is pure cryptography that holds the interpreter
lock: on the receiving side verifying the outer JWS, the certificate path, opening the
HPKE-sealed content and verifying the inner JWS (:func:`relay.core.receiver.examine`);
on the sending side signing the inner JWS, sealing it to the recipient, sealing the
node's own copy and signing the outer JWS ahead of the commit
(:func:`relay.core.packets.seal_content`, :func:`relay.core.packets.seal_own_copy`,
:func:`sign_outer`). A node with more than one core runs that here,
in a process of its own (:class:`relay.core.helper.CryptoHelper` starts it with
``python -m relay.core.helper_worker``), so that it and the node's event loop use two
cores.

The conversation runs over the process's stdin and stdout, in frames of a 4-byte
big-endian length and a pickle (a pipe between a node and the child it started: both
ends are the node's own code). The first frame is the hello: the node id, the HPKE
private keys (suite and secret, current first) and the seal signer (PKCS#8 PEM key and
PEM chain). Then each request is answered, in order:

Times (``at``) cross as integer microseconds since the Unix epoch
(:func:`relay.core.fields.time_micros`).

- ``("examine", bundle fingerprint, bundle PEM or None, tokens, at, peer id)`` → one
  packed result per token (:func:`pack`). The bundle's PEM comes with the first request
  that names a new fingerprint, so fresh CRLs apply from the next batch, as in the node.
- ``("seal", packet id, case id, to, body, attachment keys, (suite, recipient public
  bytes), at, facts)`` → ``(sealed member, own copy, signed)``. ``facts``
  are the packet's routing facts without ``sealed``, for the sequence number and
  ``prev`` the node expects the packet to get, or None; ``signed`` is then the packet
  signed with them, ``(outer JWS, digest, packet-sent leaf, routing facts)``
  (:func:`sign_outer`), or None. The node uses it when the group commit allots that
  number and ``prev``, and signs the packet itself otherwise.

A request that fails is answered ``("error", text)`` (the node then does the work
itself, which raises what it would have raised). The process ends when its stdin closes —
also when the node is killed, since only the node holds the pipe's other end.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pickle
import signal
import struct
import sys
from collections.abc import Callable
from typing import IO, Any

from relay.audit.leaves import LeafKind
from relay.core.fields import micros_time
from relay.core.leaves import packet_leaf
from relay.core.packets import (
    RoutingFacts,
    key_ring,
    packet_digest,
    seal_content,
    seal_own_copy,
    sign_packet,
)
from relay.core.receiver import Examined, examine
from signing import pathcache
from signing.certificates import TrustBundle
from signing.hpke import HpkePrivateKey, HpkePublicKey, HpkeSuite
from signing.keys import Signer

__all__ = ["PIPE_BYTES", "Packed", "frame", "pack", "read_frame", "serve"]

_LEN = struct.Struct(">I")

Packed = tuple[Any, ...]
"""An :class:`Examined` as it crosses the pipe: ``(reason,)`` for a refused packet, else
``(digest, facts, signer DER, signer node id, signer name, signer purpose, content
verdict, body)`` (the token stays with the node, which sent it)."""

PIPE_BYTES = 1 << 20
"""Capacity asked for both pipes (Linux ``F_SETPIPE_SZ``): a whole batch and its answer
fit, so neither side waits for the other to read while it works."""


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


def pack(examined: Examined) -> Packed:
    """``examined`` as it crosses the pipe (see :data:`Packed`)."""
    packet = examined.packet
    if isinstance(packet, str):
        return (packet,)
    signer = packet.signer
    der = pathcache.der(signer.certificate)  # encoded once per certificate object
    return (
        packet.digest, packet.facts, der, signer.node_id, signer.name, signer.purpose,
        examined.content, examined.body,
    )  # fmt: skip


Signed = tuple[str, str, bytes, RoutingFacts]
"""A packet signed ahead of its commit: outer JWS, its digest, its ``packet-sent`` leaf
and its routing facts."""


def sign_outer(
    facts: dict[str, Any], sealed: dict[str, str], signer: Signer, me: str, at: Any
) -> Signed:
    """The outer JWS over ``facts`` with ``sealed``, and what the node stores with it: made
    here ahead of the commit, and by the node in the commit when the commit allots
    another sequence number or ``prev`` (:meth:`relay.core.service.RelayNode.create_packet`)."""
    token, parsed = sign_packet(facts, sealed, signer=signer, at=at)
    digest = packet_digest(token)
    return token, digest, packet_leaf(LeafKind.PACKET_SENT, parsed, digest, node=me, at=at), parsed


class _Node:
    """What the helper holds of its node: keys, signer, the bundle last sent."""

    def __init__(self, hello: tuple[Any, ...]) -> None:
        me, keys_raw, (key_pem, chain_pem) = hello
        self.me: str = me
        self.hpke = [HpkePrivateKey(HpkeSuite(suite), secret) for suite, secret in keys_raw]
        self.ring = key_ring(self.hpke)
        self.own_kid = self.hpke[0].public_key().kid
        self.signer = Signer.from_pem(key_pem, chain_pem)
        self._fingerprint: bytes | None = None
        self._bundle: TrustBundle | None = None
        self._recipients: dict[tuple[str, bytes], HpkePublicKey] = {}

    def bundle(self, fingerprint: bytes, pem: bytes | None) -> TrustBundle:
        if pem is not None:
            self._bundle, self._fingerprint = TrustBundle.from_pem(pem), fingerprint
        if self._bundle is None or self._fingerprint != fingerprint:
            raise LookupError("the node named a trust bundle it has not sent")
        return self._bundle

    def recipient(self, suite: str, raw: bytes) -> HpkePublicKey:
        key = self._recipients.get((suite, raw))
        if key is None:  # parsing an ML-KEM public key costs as much as using it
            if len(self._recipients) >= 256:
                self._recipients.clear()
            key = self._recipients[(suite, raw)] = HpkePublicKey(HpkeSuite(suite), raw)
        return key

    def examine(self, fingerprint: bytes, pem: bytes | None, tokens: list[str], micros: int,
                peer_id: str) -> list[Packed]:  # fmt: skip
        bundle, at = self.bundle(fingerprint, pem), micros_time(micros)
        return [
            pack(examine(t, bundle, self.ring, at=at, peer_id=peer_id, me=self.me)) for t in tokens
        ]

    def seal(self, packet_id: str, case_id: str, to: str, body: Any, keys: Any,
             recipient: tuple[str, bytes], micros: int, facts: dict[str, Any] | None = None,
             ) -> tuple[dict[str, str], str, Signed | None]:  # fmt: skip
        at = micros_time(micros)
        inner, sealed = seal_content(
            packet_id, case_id, self.me, to, body, keys,
            signer=self.signer, recipient=self.recipient(*recipient), at=at,
        )  # fmt: skip
        own_copy = seal_own_copy(inner, packet_id, self.hpke[0], self.own_kid)
        signed = None if facts is None else sign_outer(facts, sealed, self.signer, self.me, at)
        return sealed, own_copy, signed  # the inner JWS stays here: the node keeps the copy


def serve(source: IO[bytes], sink: IO[bytes]) -> int:
    """Answer the node's requests until ``source`` ends, or until ``sink`` is closed (the
    node died while we worked: nobody is left to answer)."""
    hello = read_frame(source)
    if hello is None:
        return 0
    node = _Node(hello)
    kinds: dict[str, Callable[..., object]] = {"examine": node.examine, "seal": node.seal}
    while (request := read_frame(source)) is not None:
        kind, *args = request
        try:
            answer: object = kinds[kind](*args)
        except Exception as exc:
            answer = ("error", f"{type(exc).__name__}: {exc}")
        try:
            sink.write(frame(answer))
            sink.flush()
        except BrokenPipeError:
            return 0
    return 0


def _widen_pipes() -> None:
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is None:
        return
    for stream in (sys.stdin, sys.stdout):
        with contextlib.suppress(OSError, ValueError):
            fcntl.fcntl(stream.fileno(), set_size, PIPE_BYTES)


def main() -> int:
    # Ctrl-C in a terminal reaches the whole process group: the node decides when its
    # helper ends (by closing its stdin), not the interrupt
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    _widen_pipes()
    status = serve(sys.stdin.buffer, sys.stdout.buffer)
    # stdout may be a broken pipe now: the interpreter's last flush must not complain
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return status


if __name__ == "__main__":
    raise SystemExit(main())
