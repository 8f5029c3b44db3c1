"""``tongban init`` makes a node folder from a directory entry; the node it makes runs
under ``tongban serve`` and reloads on SIGHUP (refusing a broken file, then taking the
fixed one)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
from federation_kit import NOW, add_node, agreement_file, bundle_bytes, endpoints, make_province

from relay.cli import main
from relay.config import load_config
from relay.federation.publish import publish_directory
from relay.loopback import free_ports

A, B = "420106", "420981"


@pytest.fixture
def province(tmp_path: Path) -> tuple[Path, Path, dict[str, Path], tuple[int, ...]]:
    hubei = make_province(tmp_path, "Hubei")
    ports = tuple(free_ports(5))
    a = add_node(tmp_path, hubei, A, endpoints=endpoints(ports[:3]))  # type: ignore[arg-type]
    b = add_node(tmp_path, hubei, B, endpoints=endpoints((ports[3], ports[4], 0)))
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(bundle_bytes([hubei]))
    directory = tmp_path / "hubei.directory.jws"
    publish_directory(
        key_dir=hubei.key_dir,
        trust_bundle=bundle,
        federation="Hubei",
        node_files=[a / "node.json", b / "node.json"],
        out=directory,
        now=NOW,
        valid_for=86400,
    )
    return directory, bundle, {A: a, B: b}, ports


def test_init_writes_a_node_folder_from_the_directory_entry(province, tmp_path: Path) -> None:
    directory, bundle, nodes, ports = province
    out = tmp_path / "srv-420106"
    argv = ["init", "--directory", str(directory), "--trust", str(bundle), "--own"]
    argv += ["--key-dir", str(nodes[A]), "--out", str(out), "--listen", "127.0.0.1"]
    assert main([*argv, "--staff-port", str(ports[2])]) == 0
    config = load_config(out / "node.toml")
    assert config.node_id == A
    assert (config.federation.port, config.public.port, config.public.tls) == (
        ports[0],
        ports[1],
        False,
    )
    assert config.partners == ()
    settings = config.directory_settings
    assert settings.own == directory.resolve()
    assert settings.sources == (f"http://127.0.0.1:{ports[4]}",)  # the other member
    assert list((out / "data" / "directories").glob("*.directory.jws"))
    assert (out / "trust-bundle.pem").read_bytes() == bundle.read_bytes()
    # again into the same folder: refused, nothing changed
    text = (out / "node.toml").read_text(encoding="utf-8")
    assert main([*argv, "--staff-port", str(ports[2])]) == 2
    assert (out / "node.toml").read_text(encoding="utf-8") == text


def test_init_refuses_a_node_the_directory_does_not_list(
    province, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory, bundle, _, _ = province
    jiangsu = make_province(tmp_path, "Jiangsu")
    other = add_node(tmp_path, jiangsu, "320982")
    out = tmp_path / "srv"
    argv = ["init", "--directory", str(directory), "--trust", str(bundle)]
    assert main([*argv, "--key-dir", str(other), "--out", str(out)]) == 2
    assert "does not list the node" in capsys.readouterr().err
    assert not out.exists()


def test_init_writes_no_node_toml_the_node_would_refuse(
    province, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--staff-port 0`` (or a source that is no http(s) URL) made a folder whose
    node.toml the node then refused to start with, and init said it was done."""
    directory, bundle, nodes, _ = province
    argv = ["init", "--directory", str(directory), "--trust", str(bundle)]
    argv += ["--key-dir", str(nodes[A]), "--listen", "127.0.0.1"]
    for bad in (["--staff-port", "0"], ["--source", "ftp://x"]):
        out = tmp_path / f"srv-{bad[1].replace(':', '').replace('/', '')}"
        assert main([*argv, "--out", str(out), *bad]) == 2, bad
        assert "node.toml it would write is refused" in capsys.readouterr().err
        assert not out.exists()  # nothing written
    prepared = tmp_path / "prepared"  # a folder an administrator made for the node
    prepared.mkdir(mode=0o750)
    assert main([*argv, "--out", str(prepared), "--staff-port", "0"]) == 2
    assert prepared.is_dir()  # left as it was: there, and empty
    assert list(prepared.iterdir()) == []


async def _line(stream: asyncio.StreamReader, needle: str) -> str:
    async with asyncio.timeout(60):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"the process ended before {needle!r}")
            if needle in line:
                return line


async def test_a_node_made_by_init_serves_and_reloads_on_sighup(province, tmp_path: Path) -> None:
    directory, bundle, nodes, ports = province
    out = tmp_path / "srv-420106"
    argv = ["init", "--directory", str(directory), "--trust", str(bundle), "--own"]
    argv += ["--key-dir", str(nodes[A]), "--out", str(out), "--listen", "127.0.0.1"]
    assert main([*argv, "--staff-port", str(ports[2])]) == 0
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relay.cli",
        "serve",
        "--config",
        str(out / "node.toml"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        await _line(proc.stdout, f"tongban: node {A} serving")
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{ports[1]}/.well-known/tongban/directory") as resp,
        ):
            assert resp.status == 200
            served = await resp.json()
        assert served["directories"] == [directory.read_text().strip()]

        (out / "agreements" / "broken.json").write_text("{", encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        line = await _line(proc.stderr, "reload refused")
        assert "agreements" in line
        assert "broken.json" in line
        (out / "agreements" / "broken.json").unlink()
        agreement_file(out / "agreements" / "hubei.json", nodes)
        proc.send_signal(signal.SIGHUP)
        line = await _line(proc.stderr, "reloaded:")
        assert "1 agreement file(s)" in line
        assert B in line
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            await proc.wait()
        assert proc.returncode == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
