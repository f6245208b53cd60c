"""Tests for pulsewire.core.keepalive: KernelKeepalive is a frozen, validated value."""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec
import pytest

from pulsewire.core.keepalive import CONGESTION_NAME_MAX, NEVER_THIN_CONGESTION, KernelKeepalive
from pulsewire.errors import PolicyError


def test_value_semantics() -> None:
    a = KernelKeepalive(idle=10, interval=5, count=3, user_timeout=30)
    b = KernelKeepalive(idle=10, interval=5, count=3, user_timeout=30)
    assert a == b
    assert hash(a) == hash(b)
    assert repr(a) == (
        "KernelKeepalive(idle=10, interval=5, count=3, user_timeout=30, strict=False, "
        "linear_timeouts=False, thin_stream_congestion=None, rto_max=None)"
    )
    assert a.nominal_detection_time == 25
    with pytest.raises(AttributeError):
        a.idle = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        KernelKeepalive(10, 5, 3)  # type: ignore[call-arg]


def test_json_round_trip_validates() -> None:
    ka = KernelKeepalive(idle=10, interval=5, count=3, user_timeout=2.5, strict=True)
    assert msgspec.json.decode(msgspec.json.encode(ka), type=KernelKeepalive) == ka
    with pytest.raises(msgspec.ValidationError, match="count must be between 1 and 127"):
        msgspec.json.decode(b'{"idle": 1, "interval": 1, "count": 0}', type=KernelKeepalive)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"idle": 0}, "idle must be a positive number of seconds, got 0"),
        ({"idle": -1}, "idle must be a positive number of seconds, got -1"),
        ({"idle": math.nan}, "idle must be a positive number of seconds, got nan"),
        ({"idle": math.inf}, "idle must be a positive number of seconds, got inf"),
        ({"idle": True}, "idle must be a positive number of seconds, got True"),
        ({"idle": "10"}, "idle must be a positive number of seconds, got '10'"),
        ({"interval": 0}, "interval must be a positive number of seconds, got 0"),
        ({"idle": 32768}, r"idle must be at most 32767 s \(.*TCP_KEEPIDLE\), got 32768"),
        ({"interval": 40000}, r"interval must be at most 32767 s \(.*TCP_KEEPINTVL\)"),
        ({"count": 0}, r"count must be between 1 and 127 probes \(Linux's limit"),
        ({"count": 128}, "count must be between 1 and 127 probes"),
        ({"count": 2.5}, "count must be a whole number of probes, got 2.5"),
        ({"count": True}, "count must be a whole number of probes, got True"),
        ({"user_timeout": 0}, "use None to leave TCP_USER_TIMEOUT unset"),
        ({"user_timeout": -3}, "user_timeout must be positive, got -3"),
        ({"user_timeout": math.nan}, "user_timeout must be a number of seconds or None"),
        ({"user_timeout": 3e6}, r"user_timeout must be at most 2147483 s"),
        ({"strict": 1}, "strict must be True or False, got 1"),
        ({"linear_timeouts": 1}, "linear_timeouts must be True or False, got 1"),
        ({"linear_timeouts": "yes"}, "linear_timeouts must be True or False, got 'yes'"),
        (
            {"idle": 2.5, "strict": True},
            r"idle must be a whole number of seconds >= 1 in strict mode .* got 2.5",
        ),
        (
            {"interval": 0.5, "strict": True},
            "interval must be a whole number of seconds >= 1 in strict mode",
        ),
        (
            {"user_timeout": 1.0005, "strict": True},
            r"user_timeout must be a whole number of milliseconds in strict mode",
        ),
    ],
)
def test_invalid_values_say_what_is_wrong(kwargs: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {"idle": 10, "interval": 5, "count": 3, **kwargs}
    with pytest.raises(PolicyError, match=message):
        KernelKeepalive(**values)


def test_valid_edge_values() -> None:
    KernelKeepalive(idle=0.5, interval=0.25, count=1)  # rounded up when applied
    KernelKeepalive(idle=32767, interval=32767, count=127, user_timeout=2147483)
    KernelKeepalive(idle=1, interval=1, count=1, user_timeout=2.3, strict=True)  # 2300 ms
    KernelKeepalive(idle=2.0, interval=3, count=1, strict=True)


# --------------------------------------------------------------------------------------
# Keepalive probing is optional
# --------------------------------------------------------------------------------------


def test_user_timeout_alone_turns_probing_off() -> None:
    ka = KernelKeepalive(user_timeout=5)
    assert not ka.probing
    assert (ka.idle, ka.interval, ka.count) == (None, None, None)
    assert ka.nominal_detection_time is None
    assert repr(ka) == (
        "KernelKeepalive(idle=None, interval=None, count=None, user_timeout=5, strict=False, "
        "linear_timeouts=False, thin_stream_congestion=None, rto_max=None)"
    )
    assert KernelKeepalive(user_timeout=0.25, strict=True).user_timeout == 0.25
    assert msgspec.json.decode(b'{"user_timeout": 5}', type=KernelKeepalive) == ka


def test_probing_without_user_timeout() -> None:
    ka = KernelKeepalive(idle=10, interval=5, count=3)
    assert ka.probing
    assert ka.user_timeout is None
    assert not ka.linear_timeouts
    assert ka.nominal_detection_time == 25
    assert ka.whole_second_detection_time == 25


def test_whole_second_detection_time_rounds_as_the_options_do() -> None:
    # The probe options take whole seconds, at least 1, rounded up: 1 + 1 * 3 and 2 + 1 * 2.
    assert KernelKeepalive(idle=0.5, interval=0.25, count=3).whole_second_detection_time == 4
    assert KernelKeepalive(idle=1.5, interval=1.0, count=2).whole_second_detection_time == 4
    # A float a hair above a whole number is that whole number, not the next one.
    assert 0.1 * 3 * 10 == 3.0000000000000004
    assert KernelKeepalive(idle=0.1 * 3 * 10, interval=1, count=1).whole_second_detection_time == 4
    assert KernelKeepalive(user_timeout=5).whole_second_detection_time is None


def test_linear_timeouts_alone_is_something_to_apply() -> None:
    ka = KernelKeepalive(linear_timeouts=True)
    assert not ka.probing
    assert ka.user_timeout is None
    assert ka.linear_timeouts
    assert msgspec.json.decode(b'{"linear_timeouts": true}', type=KernelKeepalive) == ka
    both = KernelKeepalive(user_timeout=5, linear_timeouts=True)
    assert msgspec.json.decode(msgspec.json.encode(both), type=KernelKeepalive) == both


@pytest.mark.parametrize(
    "kwargs",
    [
        {"idle": 10},
        {"interval": 5},
        {"count": 3},
        {"idle": 10, "interval": 5},
        {"idle": 10, "count": 3},
        {"interval": 5, "count": 3, "user_timeout": 30},
    ],
)
def test_probe_settings_are_all_set_or_all_none(kwargs: dict[str, Any]) -> None:
    with pytest.raises(
        PolicyError,
        match=r"idle, interval and count must be all set \(keepalive probing on\) or all None "
        r"\(probing off\), got idle=",
    ):
        KernelKeepalive(**kwargs)


def test_all_or_none_message_shows_the_values() -> None:
    with pytest.raises(PolicyError, match=r"got idle=10, interval=None, count=3$"):
        KernelKeepalive(idle=10, count=3)


def test_a_bad_value_is_named_before_the_missing_ones() -> None:
    with pytest.raises(PolicyError, match="idle must be a positive number of seconds, got 0"):
        KernelKeepalive(idle=0)
    with pytest.raises(PolicyError, match="use None to leave TCP_USER_TIMEOUT unset"):
        KernelKeepalive(user_timeout=0)


@pytest.mark.parametrize("kwargs", [{}, {"strict": True}, {"linear_timeouts": False}])
def test_nothing_to_apply_is_an_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(PolicyError, match=r"^nothing to apply: set idle, interval and count"):
        KernelKeepalive(**kwargs)


def test_nothing_to_apply_when_decoding() -> None:
    with pytest.raises(msgspec.ValidationError, match="nothing to apply"):
        msgspec.json.decode(b"{}", type=KernelKeepalive)


# --------------------------------------------------------------------------------------
# thin_stream_congestion: a congestion control name, for linear timeouts under BBR
# --------------------------------------------------------------------------------------


def test_thin_stream_congestion_is_off_by_default_and_carried_as_given() -> None:
    assert KernelKeepalive(linear_timeouts=True).thin_stream_congestion is None
    ka = KernelKeepalive(linear_timeouts=True, thin_stream_congestion="reno")
    assert ka.thin_stream_congestion == "reno"
    assert msgspec.json.decode(msgspec.json.encode(ka), type=KernelKeepalive) == ka
    # The longest name Linux takes: TCP_CA_NAME_MAX (16) less the NUL.
    longest = "x" * CONGESTION_NAME_MAX
    assert KernelKeepalive(linear_timeouts=True, thin_stream_congestion=longest)
    assert CONGESTION_NAME_MAX == 15
    assert {"bbr"} == set(NEVER_THIN_CONGESTION)


@pytest.mark.parametrize(
    "name", ["", "x" * 16, "réno", "re no", "reno\n", "re\0no", 5, b"reno", True]
)
def test_thin_stream_congestion_must_be_a_name_linux_takes(name: object) -> None:
    with pytest.raises(
        PolicyError,
        match=r"^thin_stream_congestion must be a congestion control name \(1 to 15 "
        r"printable ASCII characters, no spaces, as Linux's TCP_CONGESTION takes it\) or "
        rf"None, got {re.escape(repr(name))}$",
    ):
        KernelKeepalive(linear_timeouts=True, thin_stream_congestion=name)  # type: ignore[arg-type]


def test_thin_stream_congestion_cannot_name_a_never_thin_algorithm() -> None:
    with pytest.raises(
        PolicyError,
        match=r"^thin_stream_congestion 'bbr' never lets a stream count as thin, so linear "
        r"timeouts would still do nothing: name one that sets a slow-start threshold",
    ):
        KernelKeepalive(linear_timeouts=True, thin_stream_congestion="bbr")


def test_thin_stream_congestion_is_validated_when_decoding() -> None:
    with pytest.raises(msgspec.ValidationError, match="thin_stream_congestion must be"):
        msgspec.json.decode(
            b'{"linear_timeouts": true, "thin_stream_congestion": ""}', type=KernelKeepalive
        )


def test_thin_stream_congestion_alone_is_nothing_to_apply() -> None:
    with pytest.raises(PolicyError, match=r"^nothing to apply"):
        KernelKeepalive(thin_stream_congestion="reno")


# ---------------------------------------------------------------- rto_max


@pytest.mark.parametrize("value", [1.0, 1.5, 120])
def test_rto_max_alone_is_something_to_apply(value: float) -> None:
    assert KernelKeepalive(rto_max=value).rto_max == value


@pytest.mark.parametrize("value", [0.5, 0, -1, 121, float("nan"), float("inf"), "1", True])
def test_rto_max_is_within_what_linux_accepts(value: object) -> None:
    with pytest.raises(PolicyError, match=r"^rto_max must be between 1 and 120 seconds"):
        KernelKeepalive(rto_max=value)  # type: ignore[arg-type]
