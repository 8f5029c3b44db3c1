"""The staff directory on both backends (SQLite and a real PostgreSQL): what several
workers sharing it need — a session made at one is good at another, and parallel failed
sign-ins all count toward the lockout."""

from __future__ import annotations

import threading
from pathlib import Path

from dbkit import Database

from relay.db.migrations import schema_version
from relay.signin.store import SessionRecord, StaffStore
from relay.staff_auth import StaffRole

CLERK = (StaffRole.CLERK,)


def open_store(database: Database, tmp_path: Path) -> StaffStore:
    return StaffStore(tmp_path, connect=lambda: database.connect("staff"))


def test_accounts_and_sessions_are_shared_by_the_workers(
    database: Database, tmp_path: Path
) -> None:
    one, two = open_store(database, tmp_path), open_store(database, tmp_path)
    assert one.add_account("wang.fang", "王芳", CLERK, "hash", 1.0) is True
    assert two.add_account("wang.fang", "someone else", CLERK, "hash", 2.0) is False
    account = two.account("wang.fang")
    assert account is not None
    assert (account.display_name, account.roles, account.enabled) == ("王芳", CLERK, True)
    one.add_session(SessionRecord("h1", "wang.fang", "王芳", CLERK, "csrf", "password", 5.0, 5.0))
    seen = two.session("h1")
    assert seen is not None
    assert seen.csrf == "csrf"
    assert two.set_password("wang.fang", "new hash") is True  # ends the sessions
    assert one.session("h1") is None
    assert one.use_totp_step("wang.fang", 7) is True
    assert two.use_totp_step("wang.fang", 7) is False  # a code is good once, at any worker
    one.add_address_failure("10.0.0.1", 1.0)
    two.add_address_failure("10.0.0.1", 9.0)
    assert one.address_failures("10.0.0.1", since=5.0) == [9.0]
    assert schema_version(database.connect("staff"), "staff") == 1
    one.close()
    two.close()


def test_parallel_failed_sign_ins_at_several_workers_all_count(
    database: Database, tmp_path: Path
) -> None:
    setup = open_store(database, tmp_path)
    setup.add_account("li.na", "李娜", CLERK, "hash", 1.0)
    workers = [open_store(database, tmp_path) for _ in range(4)]
    rounds, errors = 25, []

    def step(failures: int) -> tuple[int, float | None]:
        return failures + 1, None

    def work(store: StaffStore) -> None:
        try:
            for _ in range(rounds):
                store.count_failure("li.na", step)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    account = setup.account("li.na")
    assert account is not None
    assert account.failures == 4 * rounds
    assert setup.count_failure("nobody", step) is None
    for store in [setup, *workers]:
        store.close()
