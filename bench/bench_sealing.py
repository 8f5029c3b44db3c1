"""Seal, open and sign-digest a 1 GiB file; baselines: plain copy and SHA-256 of the same file.

``seal`` and ``open`` read and write 1 GiB each, like ``copy``; ``seal-to-null`` writes
to ``/dev/null`` and so shows the cost of the cryptography alone against reading and
hashing the file (``sha256``); ``sign-digest`` is the detached file signature.

Every operation runs in a fresh Python process so its peak RSS is its own; the time
covers the operation only (not interpreter start-up or key loading). The file is real
(non-sparse) data in a temporary directory, deleted afterwards; ratios compare against
the baseline measured in the same run on the same file, so the page cache treats all
operations alike. Each operation runs twice, interleaved with the others, and the
faster run is reported (shared machines are noisy).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from datetime import UTC, datetime
from pathlib import Path

SIZE = 1 << 30
ROUNDS = 2  # interleaved; the fastest round of each operation is reported
MIB = 1 << 20

_CHILD = textwrap.dedent(
    """
    import hashlib, json, resource, shutil, sys, time
    from datetime import UTC, datetime
    from pathlib import Path

    op, work = sys.argv[1], Path(sys.argv[2])
    plain, sealed, opened = work / "plain.bin", work / "plain.bin.sealed", work / "opened.bin"

    def rss():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    if op == "copy":
        def task():
            with plain.open("rb") as src, (work / "copy.bin").open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    elif op == "sha256":
        def task():
            digest = hashlib.sha256()
            with plain.open("rb") as src:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
    elif op in ("seal", "seal-to-null", "open"):
        from signing.hpke import HpkePrivateKey
        from signing.sealed import open_file, seal_file
        keys = [HpkePrivateKey.from_pem(p.read_bytes()) for p in sorted(work.glob("hpke-*.key"))]
        if op in ("seal", "seal-to-null"):
            target = sealed if op == "seal" else Path("/dev/null")
            def task():
                with plain.open("rb") as src, target.open("wb") as dst:
                    seal_file(src, dst, [k.public_key() for k in keys], recipient_node="420106")
        else:
            def task():
                with sealed.open("rb") as src, opened.open("wb") as dst:
                    open_file(src, dst, keys[-1:])
    elif op == "sign-digest":
        from signing.keys import Signer
        node = work / "node"
        signer = Signer.from_pem((node / "seal.key").read_bytes(), (node / "seal.pem").read_bytes())
        from signing.files import sign_file

        def task():
            with plain.open("rb") as src:
                sign_file(src, name="plain.bin", media_type="application/octet-stream",
                          signer=signer, at=datetime.now(UTC))
    else:
        raise SystemExit(f"unknown op {op}")

    before = rss()
    started = time.perf_counter()
    task()
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "rss_before_kib": before, "rss_peak_kib": rss()}))
    """
)


def _make_file(path: Path) -> None:
    block = os.urandom(MIB)
    with path.open("wb") as f:
        for i in range(SIZE // MIB):
            f.write(i.to_bytes(8, "big") + block[8:])


def _prepare(work: Path) -> None:
    from certs.pki import init_federation, issue_node
    from signing.hpke import HpkeSuite, generate_hpke_key

    _make_file(work / "plain.bin")
    for suite in HpkeSuite:
        name = "hpke-0-x25519.key" if suite is HpkeSuite.X25519 else "hpke-1-mlkem768x25519.key"
        (work / name).write_bytes(generate_hpke_key(suite).to_pem())
    now = datetime.now(UTC)
    init_federation(work / "federation", "Bench", now=now)
    issue_node(
        work / "federation", "420106", "武昌区政务服务中心", "127.0.0.1", work / "node", now=now
    )


def _measure(op: str, work: Path) -> dict[str, float]:
    os.sync()  # start every operation without the previous one's dirty pages
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, op, str(work)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parent.parent,
    )
    data: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def run() -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="tongban-bench-") as tmp:
        work = Path(tmp)
        _prepare(work)
        ops = ("copy", "sha256", "seal", "seal-to-null", "open", "sign-digest")
        rounds = [{op: _measure(op, work) for op in ops} for _ in range(ROUNDS)]
        measured = {op: min((r[op] for r in rounds), key=lambda m: m["seconds"]) for op in ops}
        opened_ok = (work / "opened.bin").stat().st_size == SIZE
        sealed_size = (work / "plain.bin.sealed").stat().st_size
    baseline = {"copy": "copy", "sha256": "sha256", "seal": "copy", "open": "copy"}
    baseline |= {"seal-to-null": "sha256", "sign-digest": "sha256"}
    rows: list[dict[str, object]] = []
    for op, data in measured.items():
        mb_s = SIZE / 1e6 / data["seconds"]
        base = measured[baseline[op]]
        rows.append(
            {
                "operation": op,
                "size MiB": SIZE // MIB,
                "seconds": data["seconds"],
                "MB/s": mb_s,
                "baseline": baseline[op],
                "time ÷ baseline": data["seconds"] / base["seconds"],
                "peak RSS MiB": data["rss_peak_kib"] / 1024,
                "RSS growth MiB": (data["rss_peak_kib"] - data["rss_before_kib"]) / 1024,
            }
        )
    rows.append(
        {
            "operation": "check",
            "size MiB": SIZE // MIB,
            "baseline": f"opened == size: {opened_ok}; sealed overhead {sealed_size - SIZE} B",
        }
    )
    return rows
