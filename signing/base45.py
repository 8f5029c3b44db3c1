"""Base45 (RFC 9285): binary data as text in the QR alphanumeric character set.

Every two bytes ``a, b`` become three characters ``c, d, e`` with
``a * 256 + b = c + d * 45 + e * 45²``; a last odd byte becomes two characters. The
45 characters are exactly those of the QR code's alphanumeric mode, which stores 5.5
bits per character, so base45 text costs about 8.25 bits per byte in a QR code
(base64 in byte mode costs 10.7).
"""

from __future__ import annotations

from signing.errors import MalformedInput

__all__ = ["ALPHABET", "b45decode", "b45encode"]

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}


def b45encode(data: bytes) -> str:
    out: list[str] = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        n, c = divmod(n, 45)
        e, d = divmod(n, 45)
        out += (ALPHABET[c], ALPHABET[d], ALPHABET[e])
    if len(data) % 2:
        d, c = divmod(data[-1], 45)
        out += (ALPHABET[c], ALPHABET[d])
    return "".join(out)


def b45decode(text: str) -> bytes:
    """Decode base45; raises :class:`MalformedInput` on a character outside the set,
    a length of 1 modulo 3, or a group that does not fit its bytes."""
    try:
        values = [_VALUE[ch] for ch in text]
    except KeyError as exc:
        raise MalformedInput(f"{exc.args[0]!r} is not a base45 character") from None
    if len(values) % 3 == 1:
        raise MalformedInput("base45 text cannot have a length of 1 modulo 3")
    out = bytearray()
    for i in range(0, len(values), 3):
        group = values[i : i + 3]
        n = sum(v * 45**k for k, v in enumerate(group))
        if len(group) == 3:
            if n > 0xFFFF:
                raise MalformedInput("base45 group out of range")
            out += n.to_bytes(2, "big")
        else:
            if n > 0xFF:
                raise MalformedInput("base45 group out of range")
            out.append(n)
    return bytes(out)
