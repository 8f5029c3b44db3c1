"""``tongban staff user ...`` on a node's data dir: clear errors, non-zero exits."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyotp
import pytest
from relay_http_support import Pki, write_config

from relay.cli import main
from relay.signin.passwords import verify_password
from relay.signin.store import StaffStore


@pytest.fixture
def config(pki: Pki, tmp_path: Path) -> Path:
    return write_config(tmp_path / "node", pki, pki.a, "420106")


def _run(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *argv: str,
    stdin: str = "",
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(["staff", "user", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _store(config: Path) -> StaffStore:
    return StaffStore(config.parent / "data")


def test_add_prints_a_one_time_password_that_signs_in(capsys, monkeypatch, config) -> None:
    code, out, err = _run(
        capsys, monkeypatch, "add", "--config", str(config), "wang.fang",
        "--role", "clerk", "--role", "approver", "--display-name", "王芳",
    )  # fmt: skip
    assert (code, err) == (0, "")
    password = out.strip()
    assert len(password) >= 16
    store = _store(config)
    account = store.account("wang.fang")
    assert account is not None
    assert account.display_name == "王芳"
    assert [r.value for r in account.roles] == ["clerk", "approver"]
    assert account.password_hash is not None
    assert account.password_hash.startswith("$argon2id$")
    assert verify_password(account.password_hash, password)

    code, _, err = _run(
        capsys, monkeypatch, "add", "--config", str(config), "wang.fang", "--role", "clerk"
    )
    assert code == 1
    assert "error[account-exists]" in err
    assert "wang.fang" in err


def test_bad_input_is_refused_on_stderr(capsys, monkeypatch, config, tmp_path) -> None:
    base = ["--config", str(config)]
    code, _, err = _run(capsys, monkeypatch, "add", *base, "Wang Fang", "--role", "clerk")
    assert code == 2
    assert "error[usage]" in err
    assert "a-z 0-9" in err
    code, _, err = _run(
        capsys, monkeypatch, "add", *base, "li", "--role", "clerk", "--password-stdin",
        stdin="short\n",
    )  # fmt: skip
    assert code == 2
    assert "error[weak-password]" in err
    assert "10 characters" in err
    assert _store(config).account("li") is None  # nothing half-written
    code, _, err = _run(capsys, monkeypatch, "disable", *base, "nobody")
    assert code == 1
    assert "error[no-such-account]" in err
    code, _, err = _run(capsys, monkeypatch, "list", "--config", str(tmp_path / "none.toml"))
    assert code != 0
    assert "error[config]" in err
    with pytest.raises(SystemExit) as exit_info:
        _run(capsys, monkeypatch, "add", *base, "li", "--role", "superuser")
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_disable_reset_roles_totp_and_list(capsys, monkeypatch, config) -> None:
    base = ["--config", str(config)]
    assert _run(capsys, monkeypatch, "add", *base, "zhao", "--role", "clerk")[0] == 0
    assert _run(capsys, monkeypatch, "disable", *base, "zhao")[0] == 0
    code, out, _ = _run(capsys, monkeypatch, "list", *base, "--json")
    [row] = [json.loads(line) for line in out.splitlines()]
    assert (row["name"], row["enabled"], row["roles"], row["totp"]) == (
        "zhao", False, ["clerk"], False,
    )  # fmt: skip
    assert _run(capsys, monkeypatch, "enable", *base, "zhao")[0] == 0
    code, out, _ = _run(
        capsys, monkeypatch, "reset", *base, "zhao", "--password-stdin",
        stdin="a new long password\n",
    )  # fmt: skip
    assert (code, out) == (0, "")  # a password read from stdin is not echoed
    account = _store(config).account("zhao")
    assert account is not None
    assert verify_password(account.password_hash, "a new long password")
    assert _run(capsys, monkeypatch, "roles", *base, "zhao", "--role", "inspector")[0] == 0
    code, out, _ = _run(capsys, monkeypatch, "totp", *base, "zhao")
    assert code == 0
    uri = out.strip()
    assert uri.startswith("otpauth://totp/")
    parsed = pyotp.parse_uri(uri)
    account = _store(config).account("zhao")
    assert account is not None
    assert parsed.secret == account.totp_secret
    assert [r.value for r in account.roles] == ["inspector"]
    code, out, _ = _run(capsys, monkeypatch, "list", *base)
    assert out.split("\t")[0] == "zhao"
    assert "inspector totp" in out
    events = [(e.name, e.event) for e in _store(config).journal_entries()]
    assert events == [
        ("cli", "account-added"), ("cli", "account-disabled"), ("cli", "account-enabled"),
        ("cli", "password-reset"), ("cli", "roles-changed"), ("cli", "totp-enrolled"),
    ]  # fmt: skip
