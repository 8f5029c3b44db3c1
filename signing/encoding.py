"""Byte encodings shared by every tongban format.

- ``b64url`` / ``b64url_decode``: base64url without padding (RFC 7515 §2); decoding
  refuses padding, whitespace and non-alphabet characters.
- ``canonical_json``: the bytes tongban signs when it signs a JSON object: RFC 8785
  (JCS): keys sorted, no insignificant whitespace, UTF-8 without escaping non-ASCII
  characters, numbers written as ECMAScript writes them (``12.5``, ``12`` for 12.0,
  ``1e-7``). Only I-JSON values (RFC 7493, :func:`check_ijson`) are canonical.
- ``check_ijson`` / ``loads_ijson``: the JSON tongban accepts anywhere (protocol.md,
  "tongban JSON values"): numbers of magnitude at most 2^53-1 (fractions allowed), no NaN or
  Infinity, strings of valid Unicode (no lone surrogates), objects with unique keys,
  nesting at most :data:`MAX_DEPTH` arrays/objects deep. Anything else raises
  :class:`MalformedInput` naming the JSON pointer where it is wrong.
"""

from __future__ import annotations

import binascii
import json
import math
import re
from decimal import Decimal
from typing import Any

from signing.errors import MalformedInput

__all__ = [
    "MAX_DEPTH",
    "MAX_SAFE_INTEGER",
    "b64url",
    "b64url_decode",
    "canonical_json",
    "check_ijson",
    "is_canonical_b64url",
    "loads_ijson",
    "loads_shallow",
    "nested_deeper_than",
]

MAX_SAFE_INTEGER = 2**53 - 1
"""The largest magnitude of a JSON number tongban accepts (I-JSON, RFC 7493 §2.2)."""
MAX_DEPTH = 32
"""How deep arrays and objects may nest in one JSON document (the top level is 1)."""


_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_VALUE = {c: i for i, c in enumerate(_ALPHABET)}
_UNUSED_BITS = {2: 0b1111, 3: 0b11}  # by length mod 4: bits of the last character unused
_TO_STANDARD_STRICT = bytes.maketrans(b"-_+/=", b"+/!!!")  # "!": refused by strict mode
_FROM_STANDARD = bytes.maketrans(b"+/", b"-_")


def b64url(data: bytes) -> str:
    return (
        binascii.b2a_base64(data, newline=False)
        .translate(_FROM_STANDARD)
        .rstrip(b"=")
        .decode("ascii")
    )


def is_canonical_b64url(text: str) -> bool:
    """True when ``text`` is unpadded base64url (:func:`b64url_decode` takes it) and the
    encoding :func:`b64url` gives its bytes: the unused low bits of its last character
    are zero. The answer of decoding and encoding again, without doing either."""
    if not isinstance(text, str) or not text.isascii() or len(text) % 4 == 1:
        return False
    raw = text.encode("ascii")
    if raw.translate(None, _ALPHABET):  # a character outside the alphabet is left
        return False
    unused = _UNUSED_BITS.get(len(raw) % 4)
    return unused is None or _VALUE[raw[-1]] & unused == 0


def b64url_decode(text: str) -> bytes:
    """The bytes of unpadded base64url ``text`` (RFC 7515 §2): exactly the characters
    ``A-Z a-z 0-9 - _``, else :class:`MalformedInput`. On every packet's path (several
    KB per JWS): the alphabet is checked by ``binascii``'s strict mode, not by a regular
    expression, on the text translated once: ``-_`` to ``+/``, and ``+ / =`` (not
    base64url) to ``!``, which strict mode refuses."""
    if not isinstance(text, str) or not text.isascii() or len(text) % 4 == 1:
        raise MalformedInput("not base64url without padding")
    raw = text.encode("ascii").translate(_TO_STANDARD_STRICT)
    try:
        return binascii.a2b_base64(raw + b"=" * (-len(raw) % 4), strict_mode=True)
    except binascii.Error as exc:
        raise MalformedInput("not base64url without padding") from exc


def _check_string(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedInput(f"{path or '/'}: a string holds a lone surrogate") from None


def _check_scalar(value: Any, path: str) -> None:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, str):
        _check_string(value, path)
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise MalformedInput(f"{path or '/'}: integer outside the I-JSON range")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MalformedInput(f"{path or '/'}: NaN and Infinity are not JSON numbers")
        if abs(value) > MAX_SAFE_INTEGER:
            raise MalformedInput(f"{path or '/'}: number outside the I-JSON range")
        return
    raise MalformedInput(f"{path or '/'}: {type(value).__name__} is not a JSON value")


_UNSURE, _PLAIN, _FLOATS = 0, 1, 2


def _scan(value: Any, max_depth: int) -> int:
    """A quick pass over ``value`` (exact built-in types only, no paths built):
    :data:`_PLAIN` or :data:`_FLOATS` (valid, without or with a float) when it is surely
    an I-JSON value, :data:`_UNSURE` otherwise (invalid, or of a type it leaves to the
    full check, such as a str subclass)."""
    floats = False
    stack: list[tuple[Any, int]] = [(value, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        kind = type(item)
        if kind is str:
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return _UNSURE
        elif kind is dict:
            if depth >= max_depth:
                return _UNSURE
            for key, child in item.items():
                if type(key) is not str or not (key.isascii() or _encodes(key)):
                    return _UNSURE
                push((child, depth + 1))
        elif kind is list or kind is tuple:
            if depth >= max_depth:
                return _UNSURE
            for child in item:
                push((child, depth + 1))
        elif kind is int:
            if not -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                return _UNSURE
        elif kind is float:
            if not (math.isfinite(item) and abs(item) <= MAX_SAFE_INTEGER):
                return _UNSURE
            floats = True
        elif item is not None and kind is not bool:
            return _UNSURE
    return _FLOATS if floats else _PLAIN


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_ijson(value: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`MalformedInput` unless ``value`` is an I-JSON value (module docstring).

    Iterative, so a deeply nested value cannot exhaust the interpreter's stack. A quick
    pass settles the common case; anything it is unsure of gets the full check, which
    names where the value is wrong."""
    if _scan(value, max_depth) != _UNSURE:
        return
    _check_with_paths(value, max_depth)


def _check_with_paths(value: Any, max_depth: int) -> None:
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, list | tuple | dict):
            if depth + 1 > max_depth:
                raise MalformedInput(f"{path or '/'}: nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        raise MalformedInput(f"{path or '/'}: object keys must be strings")
                    _check_string(key, path)
                    stack.append((child, f"{path}/{key}", depth + 1))
            else:
                stack.extend((child, f"{path}/{i}", depth + 1) for i, child in enumerate(item))
        else:
            _check_scalar(item, path)


def _refuse_constant(name: str) -> Any:
    raise MalformedInput(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise MalformedInput("an object repeats a key")
    return obj


_INNERMOST = re.compile(rb"\[\]|\{\}")
_NOT_BRACKETS_OR_QUOTES = bytes(b for b in range(256) if b not in b'[]{}"')


def nested_deeper_than(text: bytes | str, max_depth: int) -> bool:
    """Whether the JSON text ``text`` nests arrays and objects more than ``max_depth``
    deep (text that is not JSON may answer either way: the parser refuses it anyway).

    Found without recursion, before parsing: the standard parser recurses once per
    level and stops only at the interpreter's recursion limit, and a garbage
    collection that starts down there runs finalizers with no stack left, whose
    errors cannot even be reported. Strings are taken out first (their brackets do
    not nest), then each pass removes the innermost ``[]`` and ``{}`` pairs: what is
    left after ``max_depth`` passes is deeper. Text with at most ``max_depth`` brackets
    in all is settled by counting them. All of it runs in C but the loop of passes, one
    per level of the text."""
    raw = text.encode("utf-8", "replace") if isinstance(text, str) else text
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return False
    # escaped backslashes, then escaped quotes, out: every quote left opens or closes a
    # string, and what lies between two of them (every other piece) is a string's
    kept = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_BRACKETS_OR_QUOTES)
    brackets = b"".join(kept.split(b'"')[0::2])
    for _ in range(max_depth):
        if not brackets:
            return False
        brackets = _INNERMOST.sub(b"", brackets)
    return bool(brackets)


def loads_shallow(text: bytes | str, *, max_depth: int = MAX_DEPTH, **options: Any) -> Any:
    """``json.loads(text, **options)`` for text from outside that needs no I-JSON check:
    text nested deeper than ``max_depth`` raises ``ValueError`` before it is parsed
    (:func:`nested_deeper_than`)."""
    if nested_deeper_than(text, max_depth):
        raise ValueError(f"nested deeper than {max_depth} levels")
    return json.loads(text, **options)


def loads_ijson(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON text and :func:`check_ijson` it; :class:`MalformedInput` if either fails
    (text nested deeper than ``max_depth`` is refused before it is parsed,
    :func:`nested_deeper_than`)."""
    if nested_deeper_than(data, max_depth):
        raise MalformedInput(f"nested deeper than {max_depth} levels")
    try:
        value = json.loads(data, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise MalformedInput(f"nested deeper than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedInput(f"not JSON: {exc}") from None
    check_ijson(value, max_depth=max_depth)
    return value


def _number(value: int | float) -> str:
    """A number as ECMAScript's Number.prototype.toString writes it (RFC 8785 §3.2.2.3)."""
    if isinstance(value, int) or value == 0:
        return str(int(value))
    if value < 0:
        return "-" + _number(-value)
    _sign, digit_tuple, exponent = Decimal(repr(value)).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    k = len(digits)
    n = k + int(exponent)  # value = 0.digits * 10**n
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    e = n - 1
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"


def _serialize(value: Any) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, dict):
        items = sorted(value.items())
        return "{" + ",".join(f"{_serialize(k)}:{_serialize(v)}" for k, v in items) + "}"
    return "[" + ",".join(_serialize(v) for v in value) + "]"


def canonical_json(value: Any) -> bytes:
    """Serialize ``value`` to its canonical bytes (JCS subset, see module docstring)."""
    scanned = _scan(value, MAX_DEPTH)
    if scanned == _UNSURE:
        _check_with_paths(value, MAX_DEPTH)
    if scanned == _PLAIN or (scanned == _UNSURE and not _has_float(value)):
        # the common case: the C encoder gives the same bytes, much faster
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return _serialize(value).encode()


def _has_float(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False
