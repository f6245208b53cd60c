"""Policies, limits and socket options from TOML and JSON files: ``pulsewire.load_config``."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

import pulsewire
from pulsewire import Config, KernelKeepalive, Limits, Policy, PolicyError, SocketOptions

TOML = """\
[policy]
interval = 0.5
timeout = 2
evidence = "pong"

[policy.adaptive]
min_timeout = 1

[limits]
max_message_size = 1048576

[socket_options]
congestion = "reno"

[socket_options.keepalive]
idle = 10
interval = 5
count = 3
"""

EXPECTED = Config(
    policy=Policy(
        interval=0.5,
        timeout=2.0,
        evidence=pulsewire.Evidence.PONG,
        adaptive=pulsewire.Adaptive(min_timeout=1.0),
    ),
    limits=Limits(max_message_size=1048576),
    socket_options=SocketOptions(
        congestion="reno", keepalive=KernelKeepalive(idle=10, interval=5, count=3)
    ),
)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_toml_file_gives_the_values_it_describes(tmp_path: Path) -> None:
    assert pulsewire.load_config(_write(tmp_path, "pulsewire.toml", TOML)) == EXPECTED


def test_a_json_file_gives_the_same_values(tmp_path: Path) -> None:
    # What msgspec writes for a Config is a configuration file, read back as it was.
    text = msgspec.json.encode(EXPECTED).decode()
    assert pulsewire.load_config(_write(tmp_path, "pulsewire.json", text)) == EXPECTED


def test_missing_sections_keep_their_defaults(tmp_path: Path) -> None:
    config = pulsewire.load_config(_write(tmp_path, "c.toml", "[policy]\ntimeout = 5\n"))
    assert config.policy == Policy(timeout=5)
    assert config.limits == Limits()
    assert config.socket_options == SocketOptions()
    assert pulsewire.load_config(_write(tmp_path, "empty.json", "{}")) == Config()


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("policy.json", '{"policy": {"intervall": 5}}'),
        ("policy.toml", "[policy]\nintervall = 5\n"),
    ],
)
def test_an_unknown_key_is_named_with_its_file_and_the_nearest_known_key(
    tmp_path: Path, name: str, text: str
) -> None:
    path = _write(tmp_path, name, text)
    with pytest.raises(PolicyError) as refused:
        pulsewire.load_config(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: unknown key 'intervall' in 'policy'")
    assert "did you mean 'interval'?" in message


def test_an_unknown_key_at_the_top_lists_the_sections(tmp_path: Path) -> None:
    path = _write(tmp_path, "top.json", '{"intervall": 5}')
    with pytest.raises(PolicyError, match="unknown key 'intervall' at the top level") as refused:
        pulsewire.load_config(path)
    assert "sections are: policy, limits, socket_options" in str(refused.value)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[policy.adaptive]\nmin_timeout = 2\nphi = 8\n", "unknown key 'phi' in 'policy.adaptive'"),
        (
            "[socket_options.keepalive]\nidel = 1\n",
            "unknown key 'idel' in 'socket_options.keepalive'",
        ),
        ("[limits]\nwindow = 5\n", "unknown key 'window' in 'limits'"),
    ],
)
def test_unknown_keys_in_nested_sections_are_named_too(
    tmp_path: Path, text: str, where: str
) -> None:
    with pytest.raises(PolicyError, match=where):
        pulsewire.load_config(_write(tmp_path, "nested.toml", text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[policy]\ninterval = 2\ntimeout = 1\n",
            r"policy: timeout \(1.0 s\) must be longer than interval \(2.0 s\)",
        ),
        ("[policy]\ninterval = 0.001\n", "policy: interval 0.001 s is below pulsewire's floor"),
        ('[policy]\ninterval = "fast"\n', "policy.interval: Expected float, got str"),
        ('[policy]\nevidence = "pongs"\n', "policy.evidence: Invalid enum value 'pongs'"),
        ("[socket_options.keepalive]\nidle = 1\n", "socket_options.keepalive: idle, interval"),
        ("[policy\n", "not valid TOML: Expected ']'"),
    ],
)
def test_values_that_cannot_work_are_refused_naming_the_file_and_section(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _write(tmp_path, "bad.toml", text)
    with pytest.raises(PolicyError, match=message) as refused:
        pulsewire.load_config(path)
    assert str(refused.value).startswith(f"{path}: ")
    assert "\n" not in str(refused.value)


def test_malformed_json_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.json", '{"policy": ')
    with pytest.raises(PolicyError, match=f"^{re.escape(str(path))}: not valid JSON"):
        pulsewire.load_config(path)


def test_the_format_comes_from_the_suffix_or_is_given(tmp_path: Path) -> None:
    path = _write(tmp_path, "pulsewire.conf", "[policy]\ntimeout = 5\n")
    with pytest.raises(pulsewire.UsageError, match="format='toml'"):
        pulsewire.load_config(path)
    assert pulsewire.load_config(path, format="toml").policy.timeout == 5


def test_a_missing_file_raises_the_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        pulsewire.load_config(tmp_path / "nowhere.toml")


def test_text_can_be_parsed_without_a_file() -> None:
    config = pulsewire.parse_config('{"policy": {"timeout": 5}}', format="json", source="env")
    assert config.policy.timeout == 5
    with pytest.raises(PolicyError, match=r"^env: unknown key"):
        pulsewire.parse_config('{"policy": {"timeot": 5}}', format="json", source="env")
