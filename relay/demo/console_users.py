"""A console account per demo office, so a person can sign in to each office's console.

Each running node gets one account ``demo.<node id>`` holding the clerk, approver and
licence-officer roles (one person plays the whole office in the demo), with a fresh
random password. The passwords are printed and written to ``<demo dir>/console-users.txt``
(mode 0600) — never committed, recreated with the demo folder on every run.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from relay.config import load_config
from relay.demo.context import Demo
from relay.signin.passwords import hash_password
from relay.signin.store import StaffStore
from relay.staff_auth import StaffRole

__all__ = ["ConsoleUser", "demo_console_users"]

ROLES = (StaffRole.CLERK, StaffRole.APPROVER, StaffRole.LICENCE_OFFICER)


@dataclass(frozen=True)
class ConsoleUser:
    node_id: str
    url: str  # the console: the staff listener's root
    name: str
    password: str


def demo_console_users(demo: Demo, now: float) -> list[ConsoleUser]:
    """Create (or reset) the demo account of every running node; write the list."""
    users = []
    for office in demo.offices:
        if office.node_id not in demo.nodes:
            continue
        config = load_config(demo.config_path(office.node_id))
        name, password = f"demo.{office.node_id}", secrets.token_urlsafe(12)
        store = StaffStore.for_node(config)
        try:
            display = f"演示职员（{office.place_zh}）"
            if not store.add_account(name, display, ROLES, hash_password(password), now):
                store.set_password(name, hash_password(password))
        finally:
            store.close()
        users.append(ConsoleUser(office.node_id, demo.endpoints(office.node_id)["staff"] + "/",
                                 name, password))  # fmt: skip
    _write(demo.root / "console-users.txt", users)
    return users


def _write(path: Path, users: list[ConsoleUser]) -> None:
    lines = [f"{u.node_id}  {u.url}  {u.name}  {u.password}\n" for u in users]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("# node  console URL  user  password (demo only)\n")
        out.writelines(lines)
