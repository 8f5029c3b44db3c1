"""Exceptions of the relay core.

::

    RelayError
    ├── PeerUnavailable       the link could not reach the peer (retry later; transient)
    │   └── PeerRefused       the peer answered an HTTP refusal (status, code, limits)
    ├── UnknownNode           no verified descriptor for that node id
    ├── NotAuthorized         the agreement does not grant what a caller asked (reason)
    ├── NotFound              no packet / attachment with that id or digest
    ├── MalformedPacket       authentic bytes that are not a well-formed v1 packet/receipt
    ├── PacketTooLarge        a new packet would not fit in any batch the partner takes
    ├── AttachmentError       an upload does not fit (offset, size, digest); reason code
    └── StoreError            the store refused an operation (corrupt state, conflict)

Refused *incoming* packets are not exceptions: they are answered with a signed
``rejected`` receipt carrying a stable reason code (see :mod:`relay.core.receiver`).
HTTP status codes exist only in the HTTP layer, which maps this tree in one place.
"""

from __future__ import annotations

__all__ = [
    "AttachmentError",
    "MalformedPacket",
    "NotAuthorized",
    "NotFound",
    "PacketTooLarge",
    "PeerRefused",
    "PeerUnavailable",
    "RelayError",
    "StoreError",
    "UnknownNode",
]


class RelayError(Exception):
    """Base of every error raised by :mod:`relay.core`."""


class PeerUnavailable(RelayError):
    """The peer could not be reached or did not answer usefully; try again later."""


class PeerUnreachable(PeerUnavailable):
    """No connection to the peer could be made (refused, no route, TLS handshake
    failed): nothing of the request reached it."""


class PeerRefused(PeerUnavailable):
    """The peer answered a request of ``kind`` (``batch``, ``blob-offset``,
    ``blob-upload``) with a refusal: ``status`` (HTTP status), ``code``
    (its problem code, if any), ``limits`` (limit extension members of its problem,
    e.g. ``max_batch_size``), ``retry_after`` (its ``Retry-After`` in seconds, if any).
    Whether to retry is decided by :func:`relay.core.outbox.classify_refusal`; code that
    only knows :class:`PeerUnavailable` retries it, which is the safe default."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        kind: str = "batch",
        code: str | None = None,
        limits: dict[str, int] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.code = code
        self.limits = dict(limits or {})
        self.retry_after = retry_after  # seconds the partner asked us to wait (Retry-After)


class UnknownNode(RelayError):
    """No verified descriptor is known for this node id."""

    def __init__(self, node_id: str) -> None:
        super().__init__(f"no verified descriptor for node {node_id}")
        self.node_id = node_id


class NotAuthorized(RelayError):
    """The agreement does not grant the request; ``reason`` is the agreement's code,
    ``detail`` a sentence saying more when the authorizer gave one."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(f"not authorized: {reason}")
        self.reason = reason
        self.detail = detail


class MalformedPacket(RelayError):
    """Bytes that verify but are not a well-formed packet, content or receipt."""


class NotFound(RelayError):
    """No packet or attachment with that id or digest."""


class PacketTooLarge(RelayError):
    """A new packet is ``size`` bytes on the wire; batches take at most ``limit``."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"the packet would be {size} bytes on the wire; a batch holds at most {limit} "
            "bytes, so it could never be delivered (send large files as attachments)"
        )
        self.size = size
        self.limit = limit


class AttachmentError(RelayError):
    """An attachment upload was refused; ``reason`` is a stable code.

    Codes: ``offset-mismatch`` (the upload does not continue at the stored offset; ask
    again), ``size-mismatch``, ``too-large`` (more bytes than announced),
    ``digest-mismatch`` (complete but the SHA-256 differs; the partial data is dropped),
    ``bad-digest`` (not 64 lowercase hex characters).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class StoreError(RelayError):
    """The store refused an operation."""
