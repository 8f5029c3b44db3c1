"""The node configuration: defaults, resolved paths, errors naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.config import ConfigError, load_config, parse_duration

VALID = """
[node]
id = "420106"
key_dir = "keys"
data_dir = "data"
trust_bundle = "bundle.pem"

[listeners.federation]
port = 8443
[listeners.public]
port = 8080
[listeners.staff]
port = 8444

[[partners]]
id = "320982"
descriptor = "partners/320982.json"
federation_url = "https://127.0.0.1:9443/"

[limits]
request_timeout = "45s"

[staff]
token_ttl = "1h30m"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    return str(info.value)


def test_valid_config_resolves_paths_against_its_folder(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, VALID))
    assert cfg.node_id == "420106"
    assert cfg.key_dir == (tmp_path / "keys").resolve()
    assert cfg.trust_bundle == (tmp_path / "bundle.pem").resolve()
    assert cfg.staff.token_key == (tmp_path / "data" / "staff-token.key").resolve()
    assert cfg.staff.token_ttl == 5400.0
    assert cfg.limits.request_timeout == 45.0
    assert cfg.limits.max_batch_size == 100
    assert cfg.federation.tls is True
    assert cfg.public.tls is False
    assert cfg.public.host == "127.0.0.1"
    partner = cfg.partner("320982")
    assert partner is not None
    assert partner.federation_url == "https://127.0.0.1:9443"
    assert partner.descriptor == (tmp_path / "partners" / "320982.json").resolve()


def test_bad_port_names_file_and_dotted_key(tmp_path: Path) -> None:
    message = _error(tmp_path, VALID.replace("port = 8443", "port = 70000"))
    assert message.endswith("node.toml: listeners.federation.port: must be an integer 1-65535")


def test_string_port_is_refused(tmp_path: Path) -> None:
    message = _error(tmp_path, VALID.replace("port = 8080", 'port = "8080"'))
    assert "node.toml: listeners.public.port: must be an integer" in message


def test_missing_section_is_named(tmp_path: Path) -> None:
    message = _error(tmp_path, VALID.replace("[listeners.staff]\nport = 8444\n", ""))
    assert "node.toml: listeners.staff: is required" in message


def test_bad_node_id_is_named(tmp_path: Path) -> None:
    message = _error(tmp_path, VALID.replace('id = "420106"', 'id = "42010"'))
    assert "node.toml: node.id: must be a 6-digit division code" in message


def test_unknown_key_is_reported_as_typo(tmp_path: Path) -> None:
    message = _error(tmp_path, VALID.replace("[limits]\n", "[limits]\nmax_bodybytes = 5\n"))
    assert "node.toml: limits.max_bodybytes: unknown setting" in message


def test_plain_federation_listener_is_refused(tmp_path: Path) -> None:
    message = _error(tmp_path, VALID.replace("port = 8443", "port = 8443\ntls = false"))
    assert "listeners.federation.tls: must be true" in message


def test_partner_url_must_be_https(tmp_path: Path) -> None:
    message = _error(tmp_path, VALID.replace("https://127.0.0.1:9443/", "http://x:1"))
    assert "node.toml: partners[0].federation_url: must be an https:// URL" in message


def test_bad_duration_is_named(tmp_path: Path) -> None:
    message = _error(tmp_path, VALID.replace('"45s"', '"soon"'))
    assert "node.toml: limits.request_timeout: must be a duration" in message


def test_invalid_toml_names_file(tmp_path: Path) -> None:
    message = _error(tmp_path, "[node\n")
    assert "node.toml: not valid TOML" in message


def test_missing_file_names_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: file not found"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30.0), ("8h", 28800.0), ("1h30m", 5400.0), (2, 2.0)]
)
def test_durations_parse(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "8", "h", "-1s", "1x", 0, True])
def test_bad_durations_are_refused(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_plain_staff_listener_only_on_loopback(tmp_path: Path) -> None:
    ok = VALID.replace("port = 8444", "port = 8444\ntls = false")
    assert load_config(_write(tmp_path, ok)).staff_listener.tls is False
    exposed = VALID.replace("port = 8444", 'port = 8444\ntls = false\nhost = "0.0.0.0"')
    message = _error(tmp_path, exposed)
    assert "node.toml: listeners.staff.tls: may be false only when" in message


def test_the_crypto_helper_is_on_with_a_second_core_and_can_be_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert load_config(_write(tmp_path, VALID)).helper.enabled is True
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert load_config(_write(tmp_path, VALID)).helper.enabled is False
    on = VALID + "\n[helper]\nenabled = true\n"
    assert load_config(_write(tmp_path, on)).helper.enabled is True
    message = _error(tmp_path, VALID + '\n[helper]\nenabled = "yes"\n')
    assert "node.toml: helper.enabled: must be true or false" in message
    assert load_config(_write(tmp_path, on)).helper.seal_inline_up_to == 0
    some = on + "seal_inline_up_to = 4\n"
    assert load_config(_write(tmp_path, some)).helper.seal_inline_up_to == 4
    message = _error(tmp_path, on + "seal_inline_up_to = -1\n")
    assert "node.toml: helper.seal_inline_up_to: must be an integer 0-10000" in message
