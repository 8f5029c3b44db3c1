"""`tongban demo`: the scripted run as a real subprocess, and the work-folder rules."""

from __future__ import annotations

import contextlib
import io
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from demo_processes import processes_naming

from relay.demo.context import Demo
from relay.demo.errors import NotADemoFolder, StepFailed
from relay.demo.report import Reporter
from relay.demo.runner import Step, run_demo
from relay.demo.workdir import MARKER, prepare_workdir

TONGBAN = [sys.executable, "-m", "relay.cli"]


def _decode_qr(png: Path) -> str:
    import zxingcpp
    from PIL import Image

    results = zxingcpp.read_barcodes(Image.open(png), formats=zxingcpp.BarcodeFormat.QRCode)
    assert len(results) == 1
    return str(results[0].text)


def test_demo_once_runs_every_step_and_exits_zero_with_the_proofs(tmp_path: Path):
    work = tmp_path / "demo"
    result = subprocess.run(
        [*TONGBAN, "demo", "--once", "--dir", str(work)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "✗" not in out
    # PKI: three roots and the CRL at work
    assert "3 roots + 3 CRLs" in out
    assert "refused: revoked" in out
    # signing core
    assert "320982 verifies it: signer 420106" in out
    assert "one bit flipped is refused" in out
    assert "mlkem768x25519" in out
    assert "371422 cannot open it" in out
    # agreement: partial signing state, then active, then decisions
    assert "missing 320982, 371422; state proposed" in out
    assert "the agreement is active" in out
    assert "/ receiver-to-handler" in out
    assert "reason role-not-granted" in out
    # federation: a verified receipt, the inbox, the content read back
    assert "signed receipt verified: status accepted, receiver 320982" in out
    assert "audit-log position" in out
    assert "320982's inbox lists it: from 420106" in out
    assert "plaintext SHA-256 matches" in out
    # cases: food licence 420106 -> 320982 to rating; pesticide licence, delegated survey
    assert "320982's copy is submitted" in out
    assert "420106's copy holds licence JY13209820260001" in out
    assert "the rating reached 320982 and both copies hold the same" in out
    assert "all 9 packets of the case, both directions, were delivered and each signed" in out
    assert "320982→420106 #5  issue-licence   accepted by 420106" in out
    assert "signature, chain, validity, revocation, suspension, entitlement all passed" in out
    assert "371422's public endpoint POST /public/v1/licences/verify says valid" in out
    assert "320982 accepts and delegates the site survey: 371422's copy is survey_requested" in out
    assert "371422 schedules remote survey SV-371422-" in out
    assert "/survey/v1/site#token=" in out
    # a real recorded survey: synthetic camera, snapshot, challenge, fix, sealed report
    assert "a synthetic camera sent" in out
    assert re.search(r"frames, recorded in [2-9] segments", out)
    assert "acknowledged on site and confirmed" in out
    assert "320982's copy is survey_reported" in out
    assert "`tongban survey verify` accepts the report against the media at 371422" in out
    assert "kept encrypted at rest, opened with its survey-media.key" in out
    assert "concluded on both sides" in out
    assert out.count("/track#link=") >= 2
    assert "▀" in out  # the licence QR code drawn in the terminal
    # the licence QR holds the compact form's verify URL: version 12 or less at level M,
    # drawn within 80 columns, and a partner verifies what it holds
    found = re.search(r"licence QR: version (\d+), level M", out)
    assert found, out
    assert int(found.group(1)) <= 12
    drawing = [line for line in out.splitlines() if "▀" in line or "▄" in line]
    assert max(len(line) for line in drawing) <= 80
    assert "the code opens the verify page: http://127.0.0.1:" in out
    assert "371422 verifies the QR code's compact licence" in out
    sms = re.search(r"SMS link \((\d+) characters.*: (http://127\.0\.0\.1:\d+/t/\w{6})$", out, re.M)
    assert sms, out
    assert int(sms.group(1)) == len(sms.group(2)) <= 60
    # listing and graceful stop of the three nodes
    for node in ("420106", "320982", "371422"):
        assert f"{node} stopped (exit status 0)" in out
    assert out.count("token      eyJ") == 3
    assert "all steps held" in out
    assert (work / MARKER).is_file()
    assert (work / "pki" / "trust-bundle.pem").is_file()
    for node in ("420106", "320982", "371422"):
        assert "serving" in (work / "nodes" / node / "node.log").read_text()
    # an independent decoder reads the licence's verify URL back from the saved QR PNG
    verify_url = (work / "licences" / "food-business-licence.url").read_text().strip()
    assert _decode_qr(work / "licences" / "food-business-licence.png") == verify_url
    assert (work / "licences" / "food-business-licence.jwt").read_text().startswith("eyJ")
    assert (work / "licences" / "food-business-licence.svg").read_bytes().startswith(b"<svg")
    # library log lines (the precise causes of the refusals) went to the log file
    assert "wrong-purpose" in (work / "demo.log").read_text()
    surveyed = next((work / "nodes" / "371422" / "data" / "survey").iterdir())
    assert len(list(surveyed.glob("seg-*.mkv"))) >= 2
    assert (surveyed / "report.jws").is_file()
    assert "certificate rejected" not in result.stderr


def test_demo_refuses_to_delete_a_folder_it_did_not_create(tmp_path: Path):
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.txt").write_text("keep me")
    result = subprocess.run(
        [*TONGBAN, "demo", "--once", "--dir", str(precious)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "error[demo-dir]" in result.stderr
    assert "refusing to delete" in result.stderr
    assert (precious / "chapter1.txt").read_text() == "keep me"
    assert sorted(p.name for p in precious.iterdir()) == ["chapter1.txt"]


def test_workdir_with_the_marker_is_recreated_empty(tmp_path: Path):
    work = prepare_workdir(tmp_path / "d")
    (work / "old-run.txt").write_text("x")
    again = prepare_workdir(tmp_path / "d")
    assert sorted(p.name for p in again.iterdir()) == [MARKER]


def test_workdir_empty_folder_is_used_and_a_file_is_refused(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (prepare_workdir(empty) / MARKER).is_file()
    target = tmp_path / "file.txt"
    target.write_text("data")
    with pytest.raises(NotADemoFolder):
        prepare_workdir(target)
    assert target.read_text() == "data"


async def test_a_failing_step_makes_the_run_fail_and_stops_there(tmp_path: Path):
    ran: list[str] = []

    async def good(demo: Demo, out: Reporter) -> None:
        ran.append("good")
        out.proved("好", "good")

    async def bad(demo: Demo, out: Reporter) -> None:
        ran.append("bad")
        raise StepFailed("the receipt did not verify")

    async def never(demo: Demo, out: Reporter) -> None:
        ran.append("never")

    stream = io.StringIO()
    steps = (Step("一", "one", good), Step("二", "two", bad), Step("三", "three", never))
    ok = await run_demo(tmp_path / "d", Reporter(stream), once=True, steps=steps)
    assert ok is False
    assert ran == ["good", "bad"]
    text = stream.getvalue()
    assert "✗" in text
    assert "the receipt did not verify" in text
    assert "demo failed" in text


@contextlib.contextmanager
def _demo_process(work: Path) -> Iterator[subprocess.Popen[str]]:
    """``tongban demo --dir work`` as a process of its own, killed at the end if it
    still runs."""
    proc = subprocess.Popen(
        [*TONGBAN, "demo", "--dir", str(work)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _lines_until(proc: subprocess.Popen[str], done: Callable[[list[str]], bool]) -> list[str]:
    """The demo's output lines up to the first for which ``done(lines so far)`` holds
    (all of them if none does)."""
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        if done(lines):
            break
    return lines


def _serving_pids(lines: list[str]) -> list[int]:
    return [int(m.group(1)) for ln in lines if (m := re.search(r" serving pid (\d+):", ln))]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM])
def test_demo_keeps_the_nodes_running_until_ctrl_c_or_a_kill_then_stops_them_gracefully(
    tmp_path: Path, how: signal.Signals
):
    import urllib.error
    import urllib.request

    work = tmp_path / "demo"
    with _demo_process(work) as proc:
        lines = _lines_until(proc, lambda lines: "press Ctrl-C to stop" in lines[-1])
        text = "".join(lines)
        assert "all steps held" in text, text
        publics = [ln.split()[1] for ln in lines if ln.strip().startswith("public ")]
        assert len(publics) == 3
        for url in publics:  # the nodes still serve after the scripted part
            with urllib.request.urlopen(f"{url}/readyz", timeout=10) as resp:
                assert resp.status == 200
        proc.send_signal(how)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    for node in ("420106", "320982", "371422"):
        assert f"{node} stopped (exit status 0)" in rest
        assert "stopped" in (work / "nodes" / node / "node.log").read_text()
    for url in publics:
        with pytest.raises(urllib.error.URLError, match="refused"):
            urllib.request.urlopen(f"{url}/readyz", timeout=5)
    assert processes_naming(str(work / "nodes")) == []  # no node process is left


@pytest.mark.timeout(120)
def test_a_demo_killed_before_its_last_step_stops_the_nodes_it_started(tmp_path: Path):
    """A SIGTERM (a ``kill``) while the scenario runs: before, it ended the demo at once
    and the three nodes it had started went on serving, orphaned."""
    nodes = str(tmp_path / "demo" / "nodes")  # in each node's command line (--config)
    with _demo_process(tmp_path / "demo") as proc:
        # the federation step started the three nodes
        lines = _lines_until(proc, lambda lines: len(_serving_pids(lines)) == 3)
        assert len(_serving_pids(lines)) == 3, "".join(lines)
        assert sorted(processes_naming(nodes)) == sorted(_serving_pids(lines))
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, rest  # the run did not prove everything it shows
    assert "✗ 演示被终止 — demo stopped by SIGTERM before its last step" in rest
    assert "SIGTERM received: stopping the nodes" in rest
    assert "all steps held" not in rest
    for node in ("420106", "320982", "371422"):
        assert f"{node} stopped (exit status 0)" in rest
    assert processes_naming(nodes) == []


def test_workdir_of_a_demo_still_running_is_refused_and_kept(tmp_path: Path):
    work = prepare_workdir(tmp_path / "d")
    (work / "node.log").write_text("serving")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (work / MARKER).write_text(f"made by tongban demo\npid {other.pid}\n")
        with pytest.raises(NotADemoFolder, match=f"running `tongban demo` \\(pid {other.pid}\\)"):
            prepare_workdir(work)
        assert (work / "node.log").read_text() == "serving"
    finally:
        other.kill()
        other.wait()
    assert sorted(p.name for p in prepare_workdir(work).iterdir()) == [MARKER]
