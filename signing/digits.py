"""Binary data as decimal digits, for the numeric mode of a QR code.

Bytes are cut into groups of 7; each group, read as a big-endian unsigned integer, is
written as exactly 17 decimal digits (2⁵⁶ < 10¹⁷), zero-padded. A last group of
``k`` < 7 bytes is written with ``(0, 3, 5, 8, 10, 13, 15)[k]`` digits, the fewest that
hold 256ᵏ − 1. A QR code stores digits at 10 bits for 3, so this costs about 8.1 bits
a byte, a little less than base45 in alphanumeric mode (8.25), and, unlike base45
(whose space and ``%`` must be percent-escaped in a URL), digits go into a URL fragment
as they are: the length of the text depends only on the number of bytes.

A decoder refuses a non-digit, a length whose remainder modulo 17 is not a last-group
width, and a group whose value does not fit its bytes, so every byte string has exactly
one text.
"""

from __future__ import annotations

from signing.errors import MalformedInput

__all__ = ["digits_decode", "digits_encode"]

_GROUP_BYTES = 7
_GROUP_DIGITS = 17
_LAST_DIGITS = (0, 3, 5, 8, 10, 13, 15)  # digits for a last group of 0..6 bytes
_LAST_BYTES = {digits: count for count, digits in enumerate(_LAST_DIGITS)}


def digits_encode(data: bytes) -> str:
    out: list[str] = []
    for i in range(0, len(data), _GROUP_BYTES):
        group = data[i : i + _GROUP_BYTES]
        width = _GROUP_DIGITS if len(group) == _GROUP_BYTES else _LAST_DIGITS[len(group)]
        out.append(str(int.from_bytes(group, "big")).zfill(width))
    return "".join(out)


def digits_decode(text: str) -> bytes:
    """Decode; raises :class:`MalformedInput` on anything :func:`digits_encode` cannot
    have written."""
    if not (text.isascii() and text.isdigit()) and text:
        raise MalformedInput("a compact licence is written in decimal digits only")
    full, rest = divmod(len(text), _GROUP_DIGITS)
    if rest not in _LAST_BYTES:
        raise MalformedInput(f"{len(text)} digits is not a length the encoding produces")
    out = bytearray()
    for i in range(full + (1 if rest else 0)):
        chunk = text[i * _GROUP_DIGITS : (i + 1) * _GROUP_DIGITS]
        count = _GROUP_BYTES if len(chunk) == _GROUP_DIGITS else _LAST_BYTES[len(chunk)]
        value = int(chunk)
        if value >= 256**count:
            raise MalformedInput("a group of digits is too large for its bytes")
        out += value.to_bytes(count, "big")
    return bytes(out)
