"""SocketOptions: what the driver sets on each TCP socket, apart from the heartbeat policy."""

from __future__ import annotations

import msgspec
import pytest

from pulsewire.core import KernelKeepalive, Policy, SocketOptions
from pulsewire.errors import PolicyError


def test_the_defaults_cap_the_rto_turn_on_linear_timeouts_and_leave_the_rest_alone() -> None:
    options = SocketOptions()
    # TCP_USER_TIMEOUT is off: Linux can fire it on a live connection after local drops.
    assert options.user_timeout is False
    assert options.congestion is None  # switching congestion control is opt-in, never a default
    assert options.resolve(4.0) == KernelKeepalive(linear_timeouts=True, rto_max=1.0)


def test_each_option_can_be_turned_off() -> None:
    assert SocketOptions(rto_max=None).resolve(3.0) == KernelKeepalive(linear_timeouts=True)
    assert SocketOptions(linear_timeouts=False).resolve(3.0) == KernelKeepalive(rto_max=1.0)
    assert SocketOptions(linear_timeouts=False, rto_max=None).resolve(3.0) is None


def test_a_user_timeout_is_derived_from_the_policy_or_applied_as_given() -> None:
    derived = SocketOptions(user_timeout=True, rto_max=None).resolve(4.0)
    assert derived == KernelKeepalive(user_timeout=4.0, linear_timeouts=True)
    given = SocketOptions(user_timeout=7.5, rto_max=None).resolve(3.0)
    assert given == KernelKeepalive(user_timeout=7.5, linear_timeouts=True)


def test_the_congestion_switch_goes_only_with_linear_timeouts() -> None:
    assert SocketOptions(congestion="reno", rto_max=None).resolve(3.0) == KernelKeepalive(
        linear_timeouts=True, thin_stream_congestion="reno"
    )
    assert SocketOptions(congestion="reno", linear_timeouts=False).resolve(3.0) == (
        KernelKeepalive(rto_max=1.0)
    )


@pytest.mark.parametrize(
    ("probing", "timeout", "user_timeout"),
    [
        # Linux replaces TCP_KEEPCNT by TCP_USER_TIMEOUT: a user timeout shorter than
        # idle + interval * count would drop after fewer probes than asked for.
        ((1, 1, 3), 3.0, 4),
        ((1, 1, 3), 4.0, 4.0),
        ((1, 1, 3), 6.0, 6.0),  # longer than the probing: the heartbeat's timeout stands
        ((0.5, 0.25, 3), 2.0, 4),  # the whole seconds applied: 1 + 1 * 3
        ((30, 10, 3), 5.0, 60),  # NAT-keeping probes
    ],
)
def test_kernel_probing_raises_a_derived_user_timeout_to_keep_its_probe_count(
    probing: tuple[float, float, int], timeout: float, user_timeout: float
) -> None:
    idle, interval, count = probing
    keepalive = KernelKeepalive(idle=idle, interval=interval, count=count)
    derived = SocketOptions(keepalive=keepalive, user_timeout=True, rto_max=None)
    assert derived.resolve(timeout) == KernelKeepalive(
        idle=idle, interval=interval, count=count, user_timeout=user_timeout, linear_timeouts=True
    )
    assert SocketOptions(keepalive=keepalive, rto_max=None).resolve(timeout) == (
        KernelKeepalive(idle=idle, interval=interval, count=count, linear_timeouts=True)
    )


def test_the_probings_own_settings_win() -> None:
    keepalive = KernelKeepalive(
        idle=1, interval=1, count=3, user_timeout=2.0, strict=True, rto_max=2.0
    )
    options = SocketOptions(keepalive=keepalive, linear_timeouts=False)
    assert options.resolve(3.0) == keepalive


def test_keepalive_must_ask_for_probing() -> None:
    with pytest.raises(PolicyError, match="keepalive must ask for probing"):
        SocketOptions(keepalive=KernelKeepalive(user_timeout=2.0))


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), "3"])
def test_user_timeout_is_a_switch_or_positive_seconds(value: object) -> None:
    with pytest.raises(PolicyError, match="user_timeout must be True"):
        SocketOptions(user_timeout=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0.5, 200.0, float("nan")])
def test_rto_max_is_validated(value: float) -> None:
    with pytest.raises(PolicyError, match="rto_max must be between"):
        SocketOptions(rto_max=value)


@pytest.mark.parametrize("field", ["linear_timeouts", "strict"])
def test_switches_must_be_booleans(field: str) -> None:
    with pytest.raises(PolicyError, match=rf"^{field} must be True or False, got 1$"):
        SocketOptions(**{field: 1})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", r"congestion must be a congestion control name \(1 to 15 printable"),
        ("a" * 16, r"congestion must be a congestion control name"),
        ("cubic ", r"congestion must be a congestion control name"),
        ("réno", r"congestion must be a congestion control name"),
        (3, r"congestion must be a congestion control name .* got 3$"),
        ("bbr", r"congestion 'bbr' never lets a stream count as thin"),
    ],
)
def test_congestion_is_validated(value: object, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        SocketOptions(congestion=value)  # type: ignore[arg-type]


def test_socket_options_load_from_json_and_refuse_unknown_keys() -> None:
    options = msgspec.json.decode(
        b'{"user_timeout": 5.0, "congestion": "reno"}', type=SocketOptions
    )
    assert options == SocketOptions(user_timeout=5.0, congestion="reno")
    assert msgspec.json.decode(msgspec.json.encode(SocketOptions()), type=SocketOptions) == (
        SocketOptions()
    )
    with pytest.raises(msgspec.ValidationError, match="never lets a stream count as thin"):
        msgspec.json.decode(b'{"congestion": "bbr"}', type=SocketOptions)
    with pytest.raises(msgspec.ValidationError, match="unknown field `user_timout`"):
        msgspec.json.decode(b'{"user_timout": 5}', type=SocketOptions)


def test_policy_no_longer_carries_socket_settings() -> None:
    fields = set(Policy.__struct_fields__)
    assert not fields & {"tcp_user_timeout", "tcp_thin_linear_timeouts", "kernel"}
