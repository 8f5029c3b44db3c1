"""Append-only JSON-lines records the console keeps beside the node's data (who did what
and why, where the signed audit log has no field for it): each record is one line,
flushed and fsynced before the request is answered."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["append_record"]


def append_record(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
    with path.open("a", encoding="utf-8") as out:
        out.write(line)
        out.flush()
        os.fsync(out.fileno())
