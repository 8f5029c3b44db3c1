"""How much of a file the page cache holds: for the tests of what leaves it (attachments,
backups)."""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path


def cached_bytes(path: Path) -> int:
    """How much of the file is in the page cache now (mincore(2) over a shared mapping of
    it; ``fincore`` from util-linux prints the same)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]  # fmt: skip
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size, page = path.stat().st_size, mmap.PAGESIZE
    pages = (size + page - 1) // page
    with path.open("rb") as f:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, f.fileno(), 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
    try:
        vector = (ctypes.c_ubyte * pages)()
        assert libc.mincore(addr, size, vector) == 0, os.strerror(ctypes.get_errno())
    finally:
        libc.munmap(addr, size)
    return sum(v & 1 for v in vector) * page
