"""Bilingual demo output: step headings, information lines and ✓ proofs."""

from __future__ import annotations

import os
from typing import TextIO

__all__ = ["Reporter"]


class Reporter:
    """Writes the demo's narrative to ``stream`` (flushed line by line)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.proofs = 0

    def terminal_columns(self) -> int | None:
        """The terminal's width when writing to one; None for files and pipes."""
        try:
            if not self._stream.isatty():
                return None
            return os.get_terminal_size(self._stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            return None

    def _line(self, text: str) -> None:
        self._stream.write(text + "\n")
        self._stream.flush()

    def title(self, zh: str, en: str) -> None:
        self._line(f"\n{zh}\n{en}")

    def step(self, number: int, total: int, zh: str, en: str) -> None:
        self._line(f"\n[{number}/{total}] {zh} · {en}")

    def info(self, text: str) -> None:
        """A fact shown (not a check)."""
        self._line(f"    {text}")

    def proved(self, zh: str, en: str) -> None:
        """A check that ran and held."""
        self.proofs += 1
        self._line(f"  ✓ {zh} — {en}")

    def failed(self, zh: str, en: str) -> None:
        self._line(f"  ✗ {zh} — {en}")

    def plain(self, text: str = "") -> None:
        self._line(text)
