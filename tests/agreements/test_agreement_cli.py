"""``tongban agreement``: draft, sign, verify, event and check, with exit codes and
JSON-pointer errors, against real files and a generated federation."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from relay.cli import main

IDS = {"420106": "420106", "420981": "420102", "320982": "420103", "371422": "420104"}
SIGN_AT = "2026-03-02T01:00:00Z"
LATER = "2026-03-03T00:00:00Z"


def _template(tmp_path: Path) -> Path:
    text = resources.files("agreements.data").joinpath("template.json").read_text("utf-8")
    for real, generated in IDS.items():
        text = text.replace(real, generated)
    path = tmp_path / "template.json"
    path.write_text(text, "utf-8")
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def drafted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    out = tmp_path / "agreement.json"
    code, text, _ = _run(
        capsys, "agreement", "draft", "--template", str(_template(tmp_path)), "--out", str(out)
    )
    assert code == 0
    assert "4 parties, 3 matters" in text
    return out


def _sign(capsys, federation, path: Path, parties) -> None:
    for p in parties:
        code, _, err = _run(
            capsys,
            "agreement",
            "sign",
            str(path),
            "--node-dir",
            str(federation.node_dirs[p]),
            "--at",
            SIGN_AT,
        )
        assert code == 0, err


def _check(capsys, federation, path: Path, *extra: str) -> tuple[int, str, str]:
    return _run(
        capsys,
        "agreement",
        "check",
        str(path),
        "--trust",
        str(federation.bundle_path),
        "--matter",
        "food-business-licence",
        "--at",
        LATER,
        *extra,
    )


def test_partially_signed_agreement_verifies_as_not_active(capsys, federation, drafted) -> None:
    _sign(capsys, federation, drafted, ["420106", "420102", "420103"])
    code, out, _ = _run(
        capsys,
        "agreement",
        "verify",
        str(drafted),
        "--trust",
        str(federation.bundle_path),
        "--at",
        LATER,
    )
    assert code == 1
    assert "proposed" in out
    assert "signed 3 of 4; missing: 420104" in out


def test_fully_signed_agreement_is_active_and_decides(capsys, federation, drafted) -> None:
    _sign(capsys, federation, drafted, IDS.values())
    code, out, _ = _run(
        capsys,
        "agreement",
        "verify",
        str(drafted),
        "--trust",
        str(federation.bundle_path),
        "--at",
        LATER,
    )
    assert code == 0, out
    assert "state at 2026-03-03T00:00:00+00:00: active" in out
    code, out, _ = _check(
        capsys, federation, drafted, "--from", "420106", "--to", "420103", "--action", "submit"
    )
    assert (code, out.strip()) == (
        0,
        "permit: kuasheng-tongban-2026-001 v1 matter food-business-licence as receiver-to-handler",
    )
    code, out, _ = _check(
        capsys, federation, drafted, "--from", "420102", "--to", "420104", "--action", "submit"
    )
    assert (code, out.strip()) == (1, "deny: role-not-granted (kuasheng-tongban-2026-001 v1)")
    code, out, _ = _check(
        capsys,
        federation,
        drafted,
        "--from",
        "420106",
        "--to",
        "420103",
        "--action",
        "submit",
        "--mode",
        "online",
    )
    assert (code, out.split()[1]) == (1, "mode-not-allowed")
    code, out, _ = _check(
        capsys, federation, drafted, "--from", "420106", "--to", "420145", "--action", "submit"
    )
    assert (code, out.strip()) == (1, "deny: no-agreement")


def test_before_the_last_signature_the_check_denies(capsys, federation, drafted) -> None:
    _sign(capsys, federation, drafted, IDS.values())
    code, out, _ = _run(
        capsys,
        "agreement",
        "check",
        str(drafted),
        "--trust",
        str(federation.bundle_path),
        "--matter",
        "food-business-licence",
        "--from",
        "420106",
        "--to",
        "420103",
        "--action",
        "submit",
        "--at",
        "2026-03-02T00:59:59Z",
    )
    assert (code, out.split()[1]) == (1, "agreement-not-signed")


def test_signed_suspension_denies_from_its_instant(capsys, federation, drafted) -> None:
    _sign(capsys, federation, drafted, IDS.values())
    code, _, err = _run(
        capsys,
        "agreement",
        "event",
        str(drafted),
        "--node-dir",
        str(federation.node_dirs["420104"]),
        "--kind",
        "suspend",
        "--at",
        "2026-03-02T12:00:00Z",
        "--reason",
        "系统维护",
    )
    assert code == 0, err
    base = (
        "agreement",
        "check",
        str(drafted),
        "--trust",
        str(federation.bundle_path),
        "--matter",
        "food-business-licence",
        "--from",
        "420106",
        "--to",
        "420103",
        "--action",
        "submit",
        "--at",
    )
    assert _run(capsys, *base, "2026-03-02T11:59:59Z")[0] == 0
    code, out, _ = _run(capsys, *base, "2026-03-02T12:00:00Z")
    assert (code, out.split()[1]) == (1, "suspended")
    code, out, _ = _run(
        capsys,
        "agreement",
        "verify",
        str(drafted),
        "--trust",
        str(federation.bundle_path),
        "--at",
        LATER,
    )
    assert code == 1
    assert "suspended by: 420104" in out


def test_document_changed_after_signing_has_no_valid_signature(capsys, federation, drafted) -> None:
    _sign(capsys, federation, drafted, IDS.values())
    data = json.loads(drafted.read_text("utf-8"))
    data["document"]["matters"][0]["time_limit_working_days"] = 99
    drafted.write_text(json.dumps(data, ensure_ascii=False), "utf-8")
    code, out, _ = _run(
        capsys,
        "agreement",
        "verify",
        str(drafted),
        "--trust",
        str(federation.bundle_path),
        "--at",
        LATER,
    )
    assert code == 1
    assert out.count("REFUSED") == 4
    assert "signed 0 of 4" in out


def test_non_party_node_cannot_sign(capsys, federation, drafted) -> None:
    code, _, err = _run(
        capsys,
        "agreement",
        "sign",
        str(drafted),
        "--node-dir",
        str(federation.node_dirs[federation.outsider]),
        "--at",
        SIGN_AT,
    )
    assert code == 1
    assert "error[not-a-party]" in err


@pytest.mark.parametrize("command", ["verify", "check"])
def test_malformed_document_exits_2_with_the_pointer(capsys, federation, drafted, command) -> None:
    data = json.loads(drafted.read_text("utf-8"))
    modes = data["document"]["matters"][1]["modes"]
    modes.append("by-fax")
    drafted.write_text(json.dumps(data), "utf-8")
    argv = ["agreement", command, str(drafted), "--trust", str(federation.bundle_path)]
    if command == "check":
        argv += ["--from", "420106", "--to", "420103", "--matter", "m", "--action", "submit"]
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert "error[malformed-agreement]" in err
    assert f"/document/matters/1/modes/{len(modes) - 1}: must be one of" in err


def test_malformed_template_exits_2_with_the_pointer(capsys, tmp_path) -> None:
    template = _template(tmp_path)
    data = json.loads(template.read_text("utf-8"))
    data["parties"][2]["id"] = "12345"
    template.write_text(json.dumps(data), "utf-8")
    code, _, err = _run(
        capsys,
        "agreement",
        "draft",
        "--template",
        str(template),
        "--out",
        str(tmp_path / "out.json"),
    )
    assert code == 2
    assert "/parties/2/id" in err
    assert not (tmp_path / "out.json").exists()


def test_missing_file_and_bad_time_are_usage_errors(capsys, federation, tmp_path) -> None:
    code, _, err = _run(
        capsys,
        "agreement",
        "verify",
        str(tmp_path / "nope.json"),
        "--trust",
        str(federation.bundle_path),
    )
    assert code == 2
    assert "error[file-not-found]" in err
    code, _, err = _run(
        capsys,
        "agreement",
        "draft",
        "--template",
        str(_template(tmp_path)),
        "--out",
        str(tmp_path / "a.json"),
    )
    assert code == 0
    code, _, err = _run(
        capsys,
        "agreement",
        "verify",
        str(tmp_path / "a.json"),
        "--trust",
        str(federation.bundle_path),
        "--at",
        "2026-03-03",
    )
    assert code == 2
    assert "UTC offset" in err


def test_drafted_profiles_are_signed_shown_and_checked(capsys, federation, tmp_path) -> None:
    out = tmp_path / "default-only.json"
    template = str(_template(tmp_path))
    argv = ["agreement", "draft", "--template", template, "--out", str(out)]
    code, _, err = _run(capsys, *argv, "--crypto-profiles", "default,rsa")
    assert code == 2
    assert "error[malformed-agreement]" in err
    assert "/crypto_profiles/1: must be a cryptographic profile" in err
    code, _, err = _run(capsys, *argv, "--crypto-profiles", "default")
    assert code == 0, err
    assert json.loads(out.read_text("utf-8"))["document"]["crypto_profiles"] == ["default"]
    _sign(capsys, federation, out, IDS.values())
    verify = ["agreement", "verify", str(out), "--trust", str(federation.bundle_path)]
    code, text, _ = _run(capsys, *verify, "--at", LATER)
    assert code == 0, text
    assert "cryptographic profiles: default" in text
    submit = ("--from", "420106", "--to", "420103", "--action", "submit")
    assert _check(capsys, federation, out, *submit)[0] == 0  # no profiles named: not checked
    code, text, _ = _check(capsys, federation, out, *submit, "--from-profile", "default",
                           "--to-profile", "sm")  # fmt: skip
    assert (code, text.strip()) == (1, "deny: profile-not-allowed (kuasheng-tongban-2026-001 v1)")
    code, text, _ = _check(capsys, federation, out, *submit, "--from-profile", "default",
                           "--to-profile", "default")  # fmt: skip
    assert code == 0, text


def test_signing_an_agreement_that_excludes_the_own_profile_warns(
    capsys, federation, tmp_path, drafted
) -> None:
    data = json.loads(drafted.read_text("utf-8"))
    assert "crypto_profiles" not in data["document"]  # drafted from a template without them
    code, _, err = _run(capsys, "agreement", "sign", str(drafted), "--node-dir",
                        str(federation.node_dirs["420106"]), "--at", SIGN_AT)  # fmt: skip
    assert code == 0
    assert "warning" not in err
    out = tmp_path / "sm-only.json"
    argv = ["agreement", "draft", "--template", str(_template(tmp_path)), "--out", str(out)]
    assert _run(capsys, *argv, "--crypto-profiles", "sm")[0] == 0
    code, _, err = _run(capsys, "agreement", "sign", str(out), "--node-dir",
                        str(federation.node_dirs["420106"]), "--at", SIGN_AT)  # fmt: skip
    assert code == 0
    assert "the seal of 420106 is in the default profile" in err


def test_a_signature_that_cannot_be_written_leaves_the_agreement_as_it_was(
    capsys, federation, drafted, monkeypatch
) -> None:
    """``agreement sign`` rewrites its file: a write that failed half-way (a full disk)
    left it cut short, the first party's signature lost with it."""
    node = str(federation.node_dirs["420106"])
    assert (
        _run(capsys, "agreement", "sign", str(drafted), "--node-dir", node, "--at", SIGN_AT)[0] == 0
    )
    before = drafted.read_bytes()

    def full(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("relay.durable.os.replace", full)
    other = str(federation.node_dirs["420103"])
    code, _, err = _run(
        capsys, "agreement", "sign", str(drafted), "--node-dir", other, "--at", SIGN_AT
    )
    assert code == 2
    assert "error[file-unwritable]" in err
    assert drafted.read_bytes() == before
    assert [p.name for p in drafted.parent.iterdir() if p.name.startswith(".")] == []


def test_input_nested_too_deeply_is_an_error_not_a_traceback(capsys, federation, tmp_path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000, encoding="utf-8")
    code, _, err = _run(
        capsys, "agreement", "verify", str(deep), "--trust", str(federation.bundle_path)
    )
    assert code == 2
    assert "tongban: error[" in err
    assert "Traceback" not in err


def test_an_event_every_verifier_would_refuse_is_not_recorded(capsys, federation, drafted) -> None:
    """``agreement event`` wrote events that ``verify`` then refused, all with exit 0: by
    a node that is no party, a resume of an agreement not suspended, a reason over 2,000
    characters, a time the seal certificate does not cover."""
    _sign(capsys, federation, drafted, IDS.values())
    before = drafted.read_bytes()

    def event(node: str, kind: str, *extra: str) -> tuple[int, str]:
        code, _, err = _run(
            capsys, "agreement", "event", str(drafted), "--node-dir",
            str(federation.node_dirs[node]), "--kind", kind, *extra,
        )  # fmt: skip
        return code, err

    at = ("--at", "2026-03-02T12:00:00Z")
    assert event("420104", "resume", *at, "--reason", "x") == (
        1,
        event("420104", "resume", *at, "--reason", "x")[1],
    )
    assert "error[event]" in event("420104", "resume", *at, "--reason", "x")[1]
    code, err = event("420104", "suspend", *at, "--reason", "长" * 2001)
    assert (code, "error[usage]" in err) == (2, True)
    code, err = event("420104", "suspend", "--at", "2001-01-01T00:00:00Z", "--reason", "x")
    assert (code, "outside the seal certificate's validity" in err) == (2, True)
    outsider = next(n for n in federation.node_dirs if n not in IDS.values())
    code, err = event(outsider, "suspend", *at, "--reason", "x")
    assert (code, "error[not-a-party]" in err) == (1, True)
    assert drafted.read_bytes() == before  # none of them written
    assert event("420104", "suspend", *at, "--reason", "系统维护")[0] == 0
    # back-dated before the suspension it would end, or have refused: not written
    suspended = drafted.read_bytes()
    code, err = event("420104", "resume", "--at", "2026-03-02T06:00:00Z", "--reason", "x")
    assert (code, "error[event]" in err) == (1, True)
    assert drafted.read_bytes() == suspended
    assert event("420104", "resume", "--at", "2026-03-02T18:00:00Z", "--reason", "x")[0] == 0
